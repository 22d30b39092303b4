"""The distributed scenarios' traffic and its exact bookkeeping.

Submits a mix over both API replicas (single requests, EXXA batches of them, an OpenAI
batch file and a dataset, on two models, under several keys), failing over to the
other replica on a connection error with the same `Idempotency-Key`, so what counts
as acknowledged is exactly what the client got a 2xx for.
"""

from __future__ import annotations

import io
import json
import threading
import time
import uuid
from collections import defaultdict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx

MODELS = ("llama-3.1-8b-instruct-fp16", "llama-3.1-70b-instruct-fp16")
WINDOW = "15m"  # short: the carbon policy cannot wait for a cleaner hour
CREDITS = Decimal(100)
# Seconds a client waits on a key a killed replica claimed: past the claim's lease
# (OFFPEAK_IDEMPOTENCY_LEASE_SECONDS, 30 s), when a retry takes the key over, so that a
# new key (a create that may exist twice, never acknowledged) is a last resort.
ABANDON_AFTER = 45.0


class Failover:
    """An HTTP client of the API replicas: each call starts at the next replica and
    moves on when one does not answer (or answers 5xx), until ``patience`` runs out."""

    def __init__(self, base_urls: list[str], key: str, patience: float = 120.0) -> None:
        self.base_urls, self.key, self.patience = base_urls, key, patience
        self._turn = 0
        self._clients = [httpx.Client(base_url=u, timeout=30) for u in base_urls]
        self.failovers = 0
        self.abandoned = 0  # creates given up after a killed replica's claim

    def call(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        headers = {"X-API-Key": self.key, **kwargs.pop("headers", {})}
        if method == "POST":
            headers.setdefault("Idempotency-Key", uuid.uuid4().hex)
        deadline = time.monotonic() + self.patience
        claimed = None  # since when a dead replica's claim blocks the key
        self._turn += 1
        attempt = 0
        while True:
            client = self._clients[(self._turn + attempt) % len(self._clients)]
            attempt += 1
            try:
                response = client.request(method, path, headers=headers, **kwargs)
                # A claim a killed replica left on the key answers 409 in progress until
                # its lease runs out: a retry then does the work (or replays it).
                in_progress = response.status_code == 409 and "in_progress" in response.text
                if response.status_code < 500 and not in_progress:
                    return response
                if in_progress:
                    claimed = claimed or time.monotonic()
                    if time.monotonic() - claimed > ABANDON_AFTER:
                        # The claim outlives us (its lease is long): a new key, so a
                        # new create; the first may exist, never acknowledged.
                        headers["Idempotency-Key"] = uuid.uuid4().hex
                        claimed = None
                        self.abandoned += 1
            except httpx.TransportError:
                pass
            self.failovers += 1
            if time.monotonic() > deadline:
                raise TimeoutError(f"{method} {path}: no replica answered in {self.patience}s")
            time.sleep(1.0 if claimed else 0.2)  # a claim lasts seconds: no need to hammer

    def close(self) -> None:
        for client in self._clients:
            client.close()


class Hooks:
    """Webhook receiver on the test host's bridge address: batch events by batch id."""

    def __init__(self, address: str) -> None:
        self.events: dict[str, set[str]] = defaultdict(set)  # batch id -> event ids
        lock = threading.Lock()
        events = self.events

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["content-length"])))
                with lock:
                    events[body["data"]["id"]].add(self.headers["webhook-id"])
                self.send_response(200)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *_: object) -> None:
                pass

        self.server = ThreadingHTTPServer((address, 0), Handler)
        self.url = f"http://{address}:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@dataclass
class Submitted:
    """What the client was told: acknowledged request ids and batches, per key."""

    requests: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))
    batches: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))
    hooked: set[str] = field(default_factory=set)  # batches with our webhook
    abandoned: int = 0  # creates retried under a new key (never acknowledged)
    acked_at: list[float] = field(default_factory=list)  # monotonic times of acks
    lock: threading.Lock = field(default_factory=threading.Lock)

    def ack(self, key: str, ids: list[str], batch: str | None = None) -> None:
        with self.lock:
            self.requests[key].update(ids)
            if batch:
                self.batches[key].add(batch)
            self.acked_at.append(time.monotonic())

    @property
    def total(self) -> int:
        return sum(len(v) for v in self.requests.values())


def _body(i: int) -> dict[str, Any]:
    return {
        "model": MODELS[i % 2],
        "messages": [{"role": "user", "content": f"Say something about item {i}"}],
        "max_tokens": 4,
        "seed": i,
    }


def submit_mix(
    urls: list[str],
    keys: list[str],
    hooks: Hooks,
    *,
    singles: int,
    per_batch: int,
    file_lines: int,
    dataset_rows: int,
    threads: int = 16,
    between: Callable[[], None] | None = None,
) -> Submitted:
    """Send the mix; returns what was acknowledged (everything, or it raises).
    ``between`` runs after the single requests and batches, before the file and dataset."""
    done = Submitted()
    clients = {key: Failover(urls, key) for key in keys}

    def single(i: int) -> str:
        key = keys[i % len(keys)]
        payload = {"request_body": _body(i), "completion_window": WINDOW, "metadata": {"n": i}}
        response = clients[key].call("POST", "/v1/requests", json=payload)
        assert response.status_code == 201, response.text
        rid = str(response.json()["id"])
        done.ack(key, [rid])
        return rid

    with ThreadPoolExecutor(threads) as pool:
        ids = list(pool.map(single, range(singles)))
        # Batches of the single requests of one key: every per_batch-th of that key's.
        by_key: dict[str, list[str]] = defaultdict(list)
        for i, rid in enumerate(ids):
            by_key[keys[i % len(keys)]].append(rid)

        def batch(args: tuple[str, list[str]]) -> None:
            key, members = args
            payload = {"requests_ids": members, "webhook": hooks.url}
            response = clients[key].call("POST", "/v1/batches", json=payload)
            assert response.status_code == 201, response.text
            done.ack(key, members, response.json()["id"])
            with done.lock:
                done.hooked.add(response.json()["id"])

        groups = [
            (key, members[start : start + per_batch])
            for key, members in by_key.items()
            for start in range(0, len(members) - per_batch + 1, per_batch)
        ]
        list(pool.map(batch, groups))
    if between:
        between()
    _openai_batch(clients[keys[0]], keys[0], file_lines, done)
    _dataset(clients[keys[-1]], keys[-1], dataset_rows, done)
    for client in clients.values():
        done.abandoned += client.abandoned
        client.close()
    return done


def _listed_ids(api: Failover, batch_id: str) -> list[str]:
    response = api.call("GET", "/v1/requests", params={"batch_id": batch_id})
    assert response.status_code == 200, response.text
    return [json.loads(line)["id"] for line in response.text.splitlines() if line]


def _openai_batch(api: Failover, key: str, lines: int, done: Submitted) -> None:
    content = b"".join(
        json.dumps(
            {
                "custom_id": f"line-{i}",
                "method": "POST",
                "url": "/v1/chat/completions",
                "body": _body(i),
            }
        ).encode()
        + b"\n"
        for i in range(lines)
    )
    # One model per OpenAI file, as OpenAI requires.
    content = content.replace(MODELS[1].encode(), MODELS[0].encode())
    upload = api.call(
        "POST", "/openai/v1/files", files={"file": ("in.jsonl", content)}, data={"purpose": "batch"}
    )
    assert upload.status_code == 200, upload.text
    payload = {
        "input_file_id": upload.json()["id"],
        "endpoint": "/v1/chat/completions",
        "completion_window": WINDOW,
    }
    created = api.call("POST", "/openai/v1/batches", json=payload)
    assert created.status_code == 200, created.text
    batch_id = created.json()["id"]
    done.ack(key, _listed_ids(api, batch_id), batch_id)


def _dataset(api: Failover, key: str, rows: int, done: Submitted) -> None:
    body = io.BytesIO()
    for i in range(rows):
        body.write(json.dumps({"row": f"r{i}", "text": f"Describe dataset row {i}"}).encode())
        body.write(b"\n")
    params = {
        "model": MODELS[1],
        "prompt_column": "text",
        "id_column": "row",
        "max_tokens": 4,
        "completion_window": WINDOW,
    }
    response = api.call(
        "POST",
        "/v1/datasets",
        params=params,
        content=body.getvalue(),
        headers={"Content-Type": "application/x-ndjson"},
    )
    assert response.status_code in (200, 201, 202), response.text
    batch_id = response.json()["id"]
    done.ack(key, _listed_ids(api, batch_id), batch_id)
