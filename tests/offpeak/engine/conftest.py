"""The tiny model, built once per session, and one vLLM engine on it for every test."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from offpeak.engine.tiny import build_tiny
from tests.utils.services import require_module

if TYPE_CHECKING:
    from offpeak.engine.vllm_engine import ChatEngine

# Small context: fast tests, and easy to overflow on purpose.
MAX_MODEL_LEN = 512


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny chat model (seed 0), built into the session's temporary folder."""
    require_module("transformers", "building the tiny model needs the cpu extra")
    return build_tiny(tmp_path_factory.mktemp("models") / "tiny-chat")


@pytest.fixture(scope="session")
def engine(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ChatEngine]:
    """One real vLLM engine on the tiny model, shared by the whole session."""
    require_module("vllm", "needs vLLM (the cpu or gpu extra)")
    # Set the cache for this session unless the run already points at a warm one.
    os.environ.setdefault("VLLM_CACHE_ROOT", str(tmp_path_factory.mktemp("vllm-cache")))
    from offpeak.engine.vllm_engine import ChatEngine

    with ChatEngine(str(tiny_model), {"max_model_len": MAX_MODEL_LEN}) as started:
        yield started
