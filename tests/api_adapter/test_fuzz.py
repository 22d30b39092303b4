"""schemathesis against the live API's own OpenAPI document, on both stacks.

Bounded here (a fixed seed, a few examples per operation); `make fuzz` runs the same
with a random seed and many more examples. A failure prints schemathesis's report with
a curl line that reproduces each case.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.api_adapter.conftest import LiveApi

ST = Path(sys.executable).with_name("st")
# What the API promises: never a 5xx, answers as the document declares them (status,
# body, content type, headers), invalid input refused, undeclared methods answered
# with 405 and an exact `Allow`. Not `positive_data_acceptance`: the document cannot
# say which model names are served or which fields exclude each other, so schema-valid
# bodies may be refused with a precise 4xx.
CHECKS = ",".join(
    [
        "not_a_server_error",
        "status_code_conformance",
        "content_type_conformance",
        "response_headers_conformance",
        "response_schema_conformance",
        "negative_data_rejection",
        "unsupported_method",
        "ignored_auth",
    ]
)


def schemathesis_run(live_api: LiveApi, key: str, tmp_path: Path) -> subprocess.CompletedProcess:
    examples = os.environ.get("OFFPEAK_FUZZ_EXAMPLES", "20")
    seed = os.environ.get("OFFPEAK_FUZZ_SEED", "20261207")
    command = [
        str(ST),
        "run",
        f"{live_api.base_url}/openapi.json",
        "--header",
        f"X-API-Key: {key}",
        "--checks",
        CHECKS,
        "--phases",
        "examples,coverage,fuzzing",
        "--max-examples",
        examples,
        "--workers",
        "1",
        "--generation-database",
        "none",
        "--no-color",
        "--request-timeout",
        "30",
    ]
    if seed:
        command += ["--seed", seed]
    return subprocess.run(
        command, cwd=tmp_path, capture_output=True, text=True, timeout=900, check=False
    )


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_schemathesis_finds_no_failure(live_api: LiveApi, key: str, tmp_path: Path) -> None:
    run = schemathesis_run(live_api, key, tmp_path)
    summary = run.stdout[run.stdout.rfind("SUMMARY") :]
    assert run.returncode == 0, run.stdout[-20_000:] + run.stderr[-5_000:]
    assert "generated" in summary, run.stdout[-5_000:]
    assert live_api.process is None or live_api.process.poll() is None, "the API died"
