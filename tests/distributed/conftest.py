"""One distributed stack for the session: its hosts start once (about a minute)."""

from __future__ import annotations

import os
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.distributed.cluster import BIN, Cluster


@pytest.fixture(scope="session")
def cluster() -> Iterator[Cluster]:
    assert os.geteuid() == 0, "the distributed tests make network namespaces: run them as root"
    # Not under pytest's own temporary folder: PostgreSQL runs as its own user and
    # cannot enter that one. Logs stay there for a failed run to be read.
    stack = Cluster(Path(tempfile.mkdtemp(prefix="offpeak-distributed-")))
    try:
        # The tiny model built once, before two workers would each build it.
        env = {
            **stack.base_env(),
            "OFFPEAK_DATA_DIR": str(stack.root / "data" / "build"),
            "OFFPEAK_MODELS_DIR": str(stack.root / "models"),
        }
        subprocess.run([str(BIN / "offpeak"), "models", "build-tiny"], env=env, check=True,
                       capture_output=True, timeout=300)  # fmt: skip
        stack.start()
        yield stack
    finally:
        stack.close()
