"""Loaded by every Python process of the harness's worker hosts (on their PYTHONPATH).

While the file named by OFFPEAK_TEST_ENGINE_SWITCH says `standin`, a job's engine is
the tests' stand-in (tests/utils/fake_engine.py, answering after a delay per request as
an engine would take) instead of vLLM: the fault scenarios exercise the job machinery
around the engine, and a vLLM start per job (~30-90 s on two shared cores) would not
fit the test budget. The two-pool run uses real vLLM.
"""

from __future__ import annotations

import importlib.util
import os
import time
from pathlib import Path

SWITCH = os.environ.get("OFFPEAK_TEST_ENGINE_SWITCH")
# First on PYTHONPATH, this module shadows the tests' network guard: load it too.
_GUARD = Path(__file__).resolve().parents[2] / "netguard" / "sitecustomize.py"
if _GUARD.is_file():
    _spec = importlib.util.spec_from_file_location("netguard", _GUARD)
    if _spec and _spec.loader:
        _spec.loader.exec_module(importlib.util.module_from_spec(_spec))


def _install() -> None:
    import offpeak.run.runner as runner

    real = runner.open_engine

    def open_engine(settings, registry, engine_model):  # type: ignore[no-untyped-def]
        if SWITCH and Path(SWITCH).read_text().strip() == "standin":
            from tests.utils.fake_engine import FakeEngine

            delay = float(os.environ.get("OFFPEAK_TEST_STANDIN_SECONDS", "0.01"))

            class Paced(FakeEngine):
                def run(self, requests):  # type: ignore[no-untyped-def]
                    time.sleep(delay * len(requests))
                    return super().run(requests)

            return Paced()
        return real(settings, registry, engine_model)

    runner.open_engine = open_engine


if SWITCH:
    _install()
