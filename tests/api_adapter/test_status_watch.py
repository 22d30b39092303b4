"""`offpeak status --watch` follows a batch to its end, then prints its summary."""

from __future__ import annotations

import json
import threading

import httpx

from offpeak.client.commands import _tokens
from offpeak.schemas import BatchObject
from tests.api_adapter.conftest import LiveApi
from tests.api_adapter.helpers import submit
from tests.api_adapter.test_cli_client import offpeak


def test_status_watch_follows_the_batch_to_its_end(
    live_api: LiveApi, key: str, api: httpx.Client
) -> None:
    ids = [submit(api, f"q{i}")["id"] for i in range(2)]
    batch = api.post("/v1/batches", json={"requests_ids": ids}).json()
    # Cancelled while the command watches: it must notice and end.
    timer = threading.Timer(1.5, lambda: api.post(f"/v1/batches/{batch['id']}/cancel"))
    timer.start()
    try:
        done = offpeak(
            live_api.base_url, key, "status", batch["id"], "--watch", "--poll", "0.3", "--json"
        )
    finally:
        timer.join()
    watched = json.loads(done.stdout)
    assert watched["status"] == "cancelled" and watched["request_counts"]["cancelled"] == 2
    assert watched["usage"] == {"prompt_tokens": 0, "completion_tokens": 0}


def test_the_watch_bar_shows_tokens_so_far() -> None:
    batch = BatchObject.model_validate(
        {
            "id": "0" * 24,
            "status": "in_progress",
            "created_at": 0,
            "expires_at": 1,
            "usage": {"prompt_tokens": 24, "completion_tokens": 12},
        }
    )
    assert _tokens(batch) == "24 prompt + 12 completion tokens"
