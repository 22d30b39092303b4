"""Models, health, the OpenAPI descriptions, and recovery of unsealed rows at start-up."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from fastapi.routing import APIRoute

from api_adapter.app import create_app
from offpeak.clock import now
from offpeak.config import load_settings
from offpeak.schemas import RequestCreate
from offpeak.state.db import Database
from offpeak.state.keys import create_key
from offpeak.state.models import Request
from offpeak.state.requests import insert_requests, new_request_row
from tests.api_adapter.conftest import LiveApi, stack_env, start_api, stop_api
from tests.api_adapter.helpers import chat_body
from tests.utils.services import wait_for

EXXA_MODELS = {
    "llama-3.1-8b-instruct-fp16",
    "llama-3.1-70b-instruct-fp16",
    "llama-3.3-70b-instruct-fp16",
    "llama-3.1-nemotron-70b-instruct-fp16",
}


def test_models_lists_the_exxa_models_with_prices(api: httpx.Client) -> None:
    models = {m["id"]: m for m in api.get("/v1/models").json()["data"]}
    assert set(models) >= EXXA_MODELS
    assert models["llama-3.1-8b-instruct-fp16"]["price_input_per_1m"] == 0.10


def test_models_needs_a_key(live_api: LiveApi) -> None:
    with live_api.client(None) as anonymous:
        assert anonymous.get("/v1/models").status_code == 401


def test_healthz_needs_no_key(live_api: LiveApi) -> None:
    assert httpx.get(f"{live_api.base_url}/healthz").json() == {"status": "ok"}


def test_every_route_has_a_description(tmp_path: Path) -> None:
    app = create_app(load_settings(data_dir=tmp_path))
    schema = app.openapi()
    operations = [op for path in schema["paths"].values() for op in path.values()]
    assert len(operations) >= 12
    undocumented = [op["operationId"] for op in operations if not op.get("description")]
    assert undocumented == []
    routes = [r for r in app.router.routes if isinstance(r, APIRoute)]
    assert all(r.description for r in routes)


@pytest.mark.parametrize("stack", ["sqlite-local", "postgres-s3"])
def test_rows_left_unsealed_by_a_crash_are_sealed_at_start(
    stack: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    env = stack_env(stack, tmp_path, request)
    db = Database.migrated(env["OFFPEAK_DATABASE_URL"])
    key, _ = create_key(db, "crashed", 5)
    create = RequestCreate.model_validate({"request_body": chat_body()})
    rows = [new_request_row(key.id, create, now()) for _ in range(25)]
    insert_requests(db, rows)  # accepted, then the process died before sealing
    process, _ = start_api(env)
    try:

        def all_sealed() -> bool:
            with db.session() as session:
                return all(session.get(Request, r["id"]).segment for r in rows)  # type: ignore[union-attr]

        wait_for(all_sealed, "start-up sealing", timeout=30)
    finally:
        stop_api(process)
        db.dispose()
