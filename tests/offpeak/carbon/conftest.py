"""HTTP providers against respx routers: no network, no real sleeping."""

from __future__ import annotations

import random
from collections.abc import Iterator

import pytest
import respx

from offpeak.carbon.electricitymaps import ElectricityMaps
from offpeak.carbon.ukgrid import UKGrid
from tests.offpeak.carbon.helpers import Clock

EM_BASE = "https://em.test/v3"
UK_BASE = "https://uk.test"


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def sleeps() -> list[float]:
    """Every backoff the provider asked for, in seconds, instead of sleeping."""
    return []


@pytest.fixture
def em_api() -> Iterator[respx.MockRouter]:
    with respx.mock(base_url=EM_BASE, assert_all_called=False) as router:
        yield router


@pytest.fixture
def em(em_api: respx.MockRouter, clock: Clock, sleeps: list[float]) -> Iterator[ElectricityMaps]:
    with ElectricityMaps(
        "secret-token",
        base_url=EM_BASE,
        sleep=sleeps.append,
        rng=random.Random(7),
        clock=clock.monotonic,
        now=clock.now,
    ) as provider:
        yield provider


@pytest.fixture
def uk_api() -> Iterator[respx.MockRouter]:
    with respx.mock(base_url=UK_BASE, assert_all_called=False) as router:
        yield router


@pytest.fixture
def uk(uk_api: respx.MockRouter, clock: Clock, sleeps: list[float]) -> Iterator[UKGrid]:
    with UKGrid(
        base_url=UK_BASE,
        sleep=sleeps.append,
        rng=random.Random(7),
        clock=clock.monotonic,
        now=clock.now,
    ) as provider:
        yield provider
