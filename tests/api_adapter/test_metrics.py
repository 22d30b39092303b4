"""`GET /metrics` on a live API: the documented families, values equal to the state DB's,
HTTP traffic by route template; `X-Request-ID` and the ids on log lines."""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from api_adapter.app import create_app
from api_adapter.deps import KeyDep
from offpeak.config import load_settings
from offpeak.ids import new_id
from offpeak.logs import setup_logging
from offpeak.state.db import Database, upgrade
from offpeak.state.keys import create_key
from offpeak.state.metrics import read_state_metrics
from tests.api_adapter.conftest import LiveApi
from tests.api_adapter.helpers import MODEL, submit
from tests.utils.metrics import documented, parse, samples, state_mismatches, value
from tests.utils.services import wait_for

# Families present only when there is something to say: no waiting request, no tick yet.
CONDITIONAL = {"offpeak_deadline_slack_seconds", "offpeak_scheduler_last_tick_timestamp_seconds"}


def scrape(live_api: LiveApi) -> dict[str, Any]:
    response = httpx.get(f"{live_api.base_url}/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    return parse(response.text)


def test_metrics_are_the_documented_families_and_labels(
    live_api: LiveApi, api: httpx.Client
) -> None:
    submit(api)  # something waits, so the deadline slack is served
    docs = documented()
    families = scrape(live_api)
    assert set(families) <= set(docs)
    assert set(docs) - set(families) <= CONDITIONAL - {"offpeak_deadline_slack_seconds"}
    for name, family in families.items():
        kind, labels = docs[name]
        assert family.type == kind, name
        for sample in family.samples:
            if sample.name.endswith("_created"):
                continue
            assert set(sample.labels) - {"le"} == labels, (name, sample)


def test_state_gauges_equal_what_the_state_db_says(live_api: LiveApi, api: httpx.Client) -> None:
    for i in range(3):
        submit(api, f"count me {i}")
    # The state figures may be cached a couple of seconds: poll until they catch up.
    last: dict[str, Any] = {}

    def agrees() -> bool:
        state = read_state_metrics(live_api.db)
        families = scrape(live_api)
        last.update(families=families, state=state, wrong=state_mismatches(families, state))
        return not last["wrong"]

    try:
        wait_for(agrees, "the state metrics to match the database", timeout=15)
    except RuntimeError as exc:  # say which figures differ
        raise AssertionError(last["wrong"]) from exc
    families, state = last["families"], last["state"]
    assert value(families, "offpeak_requests", status="registered", model=MODEL) >= 3
    now = time.time()
    age = value(families, "offpeak_oldest_pending_age_seconds")
    assert age == pytest.approx(now - state.oldest_pending_created_at, abs=5)
    slack = value(families, "offpeak_deadline_slack_seconds")
    assert slack == pytest.approx(state.earliest_pending_deadline - now, abs=5)


def test_http_requests_are_counted_by_route_template(live_api: LiveApi, api: httpx.Client) -> None:
    route = "/v1/requests/{request_id}"
    before = scrape(live_api)
    request_id = submit(api)["id"]
    assert api.get(f"/v1/requests/{request_id}").status_code == 200
    assert api.get(f"/v1/requests/{request_id}").status_code == 200
    assert httpx.get(f"{live_api.base_url}/no/such/{request_id}").status_code == 404
    after = scrape(live_api)

    def grew(name: str, suffix: str = "", **labels: str) -> float:
        return value(after, name, suffix, **labels) - value(before, name, suffix, **labels)

    assert (
        grew("offpeak_http_requests_total", "_total", method="GET", route=route, status="200") == 2
    )
    assert grew("offpeak_http_requests_total", "_total", method="POST", route="/v1/requests",
                status="201") == 1  # fmt: skip
    assert grew("offpeak_http_requests_total", "_total", method="GET", route="<unmatched>",
                status="404") == 1  # fmt: skip
    assert grew("offpeak_http_request_duration_seconds", "_count", method="GET", route=route) == 2
    routes = {dict(k)["route"] for k in samples(after["offpeak_http_requests_total"], "_total")}
    assert not any(request_id in r for r in routes)  # raw paths never become labels
    # One submission at a time: each group commit carried exactly one row.
    assert grew("offpeak_group_commit_rows", "_sum") == 1
    assert grew("offpeak_group_commit_rows", "_count") == 1


def test_sealing_is_reported(live_api: LiveApi, api: httpx.Client) -> None:
    submit(api)
    families = scrape(live_api)
    assert 0 <= value(families, "offpeak_sealing_lag_seconds") < 60
    assert value(families, "offpeak_sealing_failures") == 0


def test_request_id_is_returned_or_made(live_api: LiveApi) -> None:
    url = f"{live_api.base_url}/healthz"
    assert httpx.get(url, headers={"X-Request-ID": "trace-42"}).headers["x-request-id"] == (
        "trace-42"
    )
    made = httpx.get(url).headers["x-request-id"]
    assert re.fullmatch(r"[0-9a-f]{32}", made)
    forged = httpx.get(url, headers={"X-Request-ID": "x" * 200}).headers["x-request-id"]
    assert re.fullmatch(r"[0-9a-f]{32}", forged)  # too long: replaced, not refused


@pytest.fixture
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    level = root.level
    yield
    for handler in [h for h in root.handlers if h.get_name() == "offpeak"]:
        root.removeHandler(handler)
    root.setLevel(level)


def test_log_lines_carry_the_request_key_and_path_ids(
    tmp_path: Path, restore_logging: None, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = load_settings(data_dir=tmp_path)
    upgrade(settings.database_url)
    db = Database(settings.database_url)
    key, secret = create_key(db, "logged", 1)
    setup_logging("json")  # after the migration: Alembic's logging set-up replaces handlers
    app = create_app(settings)
    batch_id = new_id()

    @app.get("/v1/batches/{batch_id}/logged")
    def logged(batch_id: str, _key: KeyDep) -> dict[str, str]:
        """A route that logs, for this test."""
        logging.getLogger("offpeak.test").warning("looked at %s", batch_id)
        return {}

    with TestClient(app) as client:
        answer = client.get(
            f"/v1/batches/{batch_id}/logged", headers={"X-API-Key": secret, "X-Request-ID": "r-1"}
        )
    db.dispose()
    assert answer.status_code == 200
    lines = [
        json.loads(line) for line in capsys.readouterr().err.splitlines() if line.startswith("{")
    ]
    line = next(x for x in lines if x.get("logger") == "offpeak.test")
    assert line["message"] == f"looked at {batch_id}"
    assert line["level"] == "WARNING"
    assert (line["x_request_id"], line["key_id"], line["batch_id"]) == ("r-1", key.id, batch_id)
