"""`offpeak submit / status / results / cancel` against the live API, run as a user would."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tests.api_adapter.conftest import OFFPEAK, LiveApi
from tests.api_adapter.helpers import MODEL
from tests.utils.services import free_port

pytestmark = pytest.mark.live
README = Path(__file__).resolve().parents[2] / "README.md"


def offpeak(
    base_url: str, key: str | None, *args: str, ok: bool = True
) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OFFPEAK_API_")}
    env["OFFPEAK_API_URL"] = base_url
    if key is not None:
        env["OFFPEAK_API_KEY"] = key
    done = subprocess.run(
        [str(OFFPEAK), *args], env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert (done.returncode == 0) == ok, done.stderr
    return done


def test_submit_status_cancel_and_results_of_a_cancelled_batch(
    live_api: LiveApi, key: str, tmp_path: Path
) -> None:
    data = tmp_path / "tickets.csv"
    data.write_text("id,q\n1,Where is my parcel?\n2,Can I return it?\n")
    submitted = offpeak(
        live_api.base_url, key, "submit", str(data), "--model", MODEL, "--prompt-column", "q",
        "--id-column", "id", "--name", "tickets",
    )  # fmt: skip
    batch_id = submitted.stdout.strip()
    assert len(batch_id) == 24 and "2 requests registered" in submitted.stderr

    status = offpeak(live_api.base_url, key, "status", batch_id).stdout
    assert status.startswith(f"{batch_id}  registered") and "(tickets)" in status
    cancelled = offpeak(live_api.base_url, key, "cancel", batch_id).stdout
    assert cancelled.strip() == f"{batch_id}  cancelled"

    refused = offpeak(
        live_api.base_url, key, "results", batch_id, "-o", str(tmp_path / "r.parquet"), ok=False
    )
    assert refused.stderr.strip() == (
        f"error: batch {batch_id} is cancelled; its results are available once it is completed"
    )
    assert not (tmp_path / "r.parquet").exists()


def test_errors_are_one_line_and_a_non_zero_exit(
    live_api: LiveApi, key: str, tmp_path: Path
) -> None:
    data = tmp_path / "d.parquet"
    data.write_bytes(b"PAR1 broken")
    bad = offpeak(
        live_api.base_url, key, "submit", str(data), "--model", MODEL, "--prompt-column", "q",
        "--name", "x", ok=False,
    )  # fmt: skip
    last = bad.stderr.strip().splitlines()[-1]
    assert last.startswith("error: cannot read parquet dataset")

    no_key = offpeak(live_api.base_url, None, "status", "0" * 24, ok=False)
    assert no_key.stderr.strip() == "error: no API key: set OFFPEAK_API_KEY or pass one"
    down = offpeak(f"http://127.0.0.1:{free_port()}", key, "status", "0" * 24, ok=False)
    assert down.stderr.startswith("error: cannot reach http://127.0.0.1:")
    unknown = offpeak(live_api.base_url, key, "status", "0" * 24, ok=False)
    assert unknown.stderr.strip() == f"error: batch {'0' * 24} not found"


def test_the_readme_shows_every_data_team_command() -> None:
    from offpeak.client.commands import COMMANDS

    text = README.read_text()
    for command in COMMANDS:
        assert f"offpeak {command.name}" in text, command.name
