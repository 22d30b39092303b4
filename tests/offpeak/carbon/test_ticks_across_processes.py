"""The forecast chain across scheduler ticks, each a process of its own (as each tick is
a new flow run): the Electricity Maps client against a loopback server replaying its
documented forecast shape, a real state database and object store on disk."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from offpeak.carbon.signal import hour_start
from offpeak.ingest.sealing import seal_all
from offpeak.state.db import Database
from offpeak.storage import LocalStore
from tests.offpeak.carbon.helpers import em_forecast
from tests.offpeak.carbon.loopback import serve
from tests.utils.factories import add_requests, new_key

# One scheduler tick, as the scheduler's task runs it, minus Prefect.
TICK = """
import json, sys
from datetime import UTC, datetime
from offpeak.carbon import open_provider
from offpeak.config import load_settings
from offpeak.plan.gather import plan_tick
from offpeak.services import services

settings = load_settings()
opened = services(settings)
with open_provider(settings, opened.store) as provider:
    planned = plan_tick(opened, provider, datetime.now(UTC))
json.dump({"report": planned.report, "launches": len(planned.launches)}, sys.stdout)
"""


@dataclass
class Replay:
    """What the loopback Electricity Maps serves: a forecast dipping at +5 h, or 503."""

    down: bool = False
    asked: list[dict[str, list[str]]] = field(default_factory=list)

    def answer(self, path: str, query: dict[str, list[str]]) -> tuple[int, dict[str, Any]]:
        if path != "/v3/carbon-intensity/forecast":
            return 404, {"error": f"no route {path}"}
        self.asked.append(query)
        if self.down:
            return 503, {"error": "Service Unavailable"}
        hours = int(query.get("horizonHours", ["24"])[0])
        values = [300.0] * 5 + [50.0] * 3 + [300.0] * (hours - 8)
        return 200, em_forecast(hour_start(datetime.now(UTC)), values, zone=query["zone"][0])


@pytest.fixture
def replay() -> Iterator[tuple[Replay, str]]:
    state = Replay()
    with serve(lambda path, query, _: state.answer(path, query)) as url:
        yield state, f"{url}/v3"


def tick(env: dict[str, str], **settings: str) -> dict[str, Any]:
    """Run one tick in a new Python process; its report and launch count."""
    extra = {f"OFFPEAK_{k.upper()}": v for k, v in settings.items()}
    done = subprocess.run(
        [sys.executable, "-c", TICK],
        env={**env, **extra},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def test_the_next_tick_reuses_then_falls_back_on_the_forecast_the_last_one_fetched(
    replay: tuple[Replay, str], tmp_path: Path
) -> None:
    server, base_url = replay
    database_url = f"sqlite:///{tmp_path / 'state.db'}"
    db = Database.migrated(database_url)
    store = LocalStore(tmp_path / "objects")
    now = int(datetime.now(UTC).timestamp())
    add_requests(db, new_key(db)[0].id, 3, at=now, completion_window="24h")
    seal_all(db, store, 1000)
    db.dispose()
    env = {k: v for k, v in os.environ.items() if not k.startswith("OFFPEAK_")}
    env |= {
        "OFFPEAK_DATA_DIR": str(tmp_path / "data"),
        "OFFPEAK_DATABASE_URL": database_url,
        "OFFPEAK_STORAGE_URL": f"file://{tmp_path / 'objects'}",
        "OFFPEAK_SCHEDULER_POLICY": "carbon",
        "OFFPEAK_CARBON_PROVIDER": "electricitymaps",
        "OFFPEAK_ELECTRICITYMAPS_TOKEN": "secret-token",
        "OFFPEAK_ELECTRICITYMAPS_BASE_URL": base_url,
    }

    first = tick(env, carbon_cache_seconds="300")
    assert len(server.asked) == 1 and server.asked[0]["zone"] == ["GB"]
    assert "Forecast (electricitymaps)" in first["report"]
    assert "min 50 gCO2e/kWh" in first["report"] and first["launches"] == 0
    assert list(store.list("carbon/")) == ["carbon/electricitymaps/GB.json"]

    # Within the cache period the next tick asks nothing: the stored forecast answers.
    second = tick(env, carbon_cache_seconds="300")
    assert len(server.asked) == 1
    assert "Forecast (electricitymaps)" in second["report"]

    # Past it (no cache here), with the provider down: the last good forecast stands in,
    # and the work still waits for the clean hours.
    server.down = True
    third = tick(env, carbon_cache_seconds="0")
    assert len(server.asked) > 1  # asked, and refused
    assert "Forecast (last-good)" in third["report"]
    assert "min 50 gCO2e/kWh" in third["report"] and third["launches"] == 0
