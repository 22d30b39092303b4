"""Fixtures shared by the core-library tests."""

from __future__ import annotations

import pytest

from offpeak.state.db import Database
from offpeak.state.models import ApiKey
from tests.utils.factories import new_key


@pytest.fixture
def key(db: Database) -> ApiKey:
    """An API key with a comfortable balance."""
    return new_key(db)[0]


@pytest.fixture
def other_key(db: Database) -> ApiKey:
    """A second key, to check that objects stay private to their owner."""
    return new_key(db, name="someone else")[0]
