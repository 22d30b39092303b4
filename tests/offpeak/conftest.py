"""Fixtures shared by the core-library tests."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

from offpeak.state.db import Database
from offpeak.state.models import ApiKey
from tests.utils.factories import new_key
from tests.utils.services import require_module

if TYPE_CHECKING:
    from offpeak.engine.vllm_embed import EmbedEngine

EMBED_MODEL = "all-minilm-l6-v2"  # real weights, shipped in a Python package


@pytest.fixture(scope="session")
def embed_engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbedEngine]:
    """One real vLLM embedding engine for the session, started as a job starts it: by
    ``open_engine`` from the packaged models.yaml."""
    require_module("vllm", "needs vLLM (the cpu or gpu extra)")
    from offpeak.catalog.models import ModelRegistry
    from offpeak.config import PACKAGED_MODELS, load_settings
    from offpeak.engine.vllm_embed import EmbedEngine
    from offpeak.run.runner import open_engine

    settings = load_settings(data_dir=tmp_path_factory.mktemp("embed-data"))
    engine = open_engine(settings, ModelRegistry.load(PACKAGED_MODELS), EMBED_MODEL)
    assert isinstance(engine, EmbedEngine)
    with engine:
        yield engine


@pytest.fixture
def key(db: Database) -> ApiKey:
    """An API key with a comfortable balance."""
    return new_key(db)[0]


@pytest.fixture
def other_key(db: Database) -> ApiKey:
    """A second key, to check that objects stay private to their owner."""
    return new_key(db, name="someone else")[0]
