"""The demo's workload: the getting-started snippets, a few single requests and two
batches of varied prompts, one holding a prompt too long for the model."""

from __future__ import annotations

import os
import random
import time
from dataclasses import dataclass, field
from typing import Any

import requests

from offpeak.demo.display import (
    compact,
    header,
    note,
    show,
)

# The demo runs the carbon-aware scheduler (the default policy) with a short completion
# window, so that its requests run at once; it shows the plan a 24 h window would get.
WINDOW = "1h"

MODELS = [
    "llama-3.1-8b-instruct-fp16", "llama-3.1-70b-instruct-fp16",
    "llama-3.3-70b-instruct-fp16", "llama-3.1-nemotron-70b-instruct-fp16",
]  # fmt: skip
# Single requests: (model, prompt). The first is the getting-started payload as written.
SINGLES = [
    ("llama-3.1-70b-instruct-fp16", "Your query here"),
    ("llama-3.1-8b-instruct-fp16", "Write a haiku about wind turbines at night."),
    ("llama-3.3-70b-instruct-fp16", "Explain grid carbon intensity in two sentences."),
]
TEMPLATES = [
    "Write a haiku about {}.", "Explain {} to a ten-year-old.", "List three facts about {}.",
    "Summarise the history of {} in two sentences.", "Write a product description for {}.",
    "What are the pros and cons of {}?",
]  # fmt: skip
TOPICS = [
    "wind turbines", "solar panels at dusk", "heat pumps", "night trains", "data centres",
    "tidal power", "electric buses", "home batteries", "the power grid", "geothermal wells",
    "smart meters", "hydro dams", "bicycle couriers", "off-peak laundry", "cold storage",
]  # fmt: skip
# 1,500 words, far beyond the tiny model's 512-token context. The API accepts it (the
# name it is sent to has a 128k context); the engine fails this one request alone.
TOO_LONG = "Summarise this meeting transcript: " + " ".join(
    f"{TOPICS[i % len(TOPICS)].split()[-1]} number {i}" for i in range(500)
)


# --- sending: the getting-started snippets ------------------------------------------------


def send_singles(base_url: str, webhook: str) -> list[str]:
    header("3. Single requests (getting started, step 2), each with a `webhook`")
    request_ids: list[str] = []
    for model, content in SINGLES:
        api_key = os.environ["EXXA_API_KEY"]
        url = f"{base_url}/requests"
        headers = {"X-API-Key": api_key, "Content-Type": "application/json"}
        payload = {
            "request_body": {
                "model": model,
                "messages": [{"role": "user", "content": content}],
            },
            "completion_window": WINDOW,
            "webhook": webhook,
        }

        response = requests.post(url, headers=headers, json=payload)
        request_ids.append(show(response, 201)["id"])
    return request_ids


@dataclass
class DemoBatch:
    name: str
    custom_ids: dict[str, str] = field(default_factory=dict)  # request id -> custom_id
    bad_id: str | None = None
    id: str = ""
    bodies: list[dict[str, Any]] = field(default_factory=list)


def batch_payloads(name: str, count: int, rng: random.Random) -> list[dict[str, Any]]:
    """``count`` varied requests, each with a ``metadata.custom_id``."""
    payloads = []
    for i in range(count):
        body: dict[str, Any] = {
            "model": rng.choice(MODELS),
            "messages": [
                {"role": "user", "content": rng.choice(TEMPLATES).format(rng.choice(TOPICS))}
            ],
            "max_tokens": rng.randint(16, 64),
        }
        if i % 3 == 0:
            body["seed"] = i
        payloads.append(
            {
                "request_body": body,
                "metadata": {"custom_id": f"{name}-{i:03d}"},
                "completion_window": WINDOW,
            }
        )
    return payloads


def send_batch(
    base_url: str, name: str, count: int, rng: random.Random, bad: bool, webhook: str
) -> DemoBatch:
    batch = DemoBatch(name)
    payloads = batch_payloads(name, count, rng)
    headers = {"X-API-Key": os.environ["EXXA_API_KEY"]}
    started = time.monotonic()
    with requests.Session() as session:
        for payload in payloads:
            response = session.post(f"{base_url}/requests", headers=headers, json=payload)
            rid = show(response, 201, quiet=True)["id"]
            batch.custom_ids[rid] = payload["metadata"]["custom_id"]
    took = time.monotonic() - started
    note(f"{name}: {count} requests sent in {took:.1f}s, e.g. {compact(payloads[0])}")
    if bad:
        note("and one the engine cannot run: 1,500 words for the tiny model's 512 tokens")
        payload = {
            "request_body": {
                "model": MODELS[1],
                "messages": [{"role": "user", "content": TOO_LONG}],
            },
            "metadata": {"custom_id": f"{name}-too-long"},
            "completion_window": WINDOW,
        }
        response = requests.post(f"{base_url}/requests", headers=headers, json=payload)
        batch.bad_id = rid = show(response, 201, limit=120)["id"]
        batch.custom_ids[rid] = payload["metadata"]["custom_id"]

    api_key = os.environ["EXXA_API_KEY"]
    url = f"{base_url}/batches"
    headers = {"X-API-Key": api_key, "Content-Type": "application/json"}
    payload = {
        "requests_ids": list(batch.custom_ids),
        "metadata": {"batch_name": name},
        "webhook": webhook,
    }

    response = requests.post(url, headers=headers, json=payload)
    batch.id = show(response, 201)["id"]
    batch.bodies = [p["request_body"] for p in payloads]
    return batch
