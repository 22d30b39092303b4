import random
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import respx

from offpeak.carbon.http import JsonClient, RetryPolicy
from offpeak.errors import CarbonNotInPlan, CarbonUnavailable
from tests.offpeak.carbon.helpers import Clock

BASE = "http://127.0.0.1:9/v1"


def test_backoff_doubles_with_jitter_and_is_capped() -> None:
    policy = RetryPolicy(base_delay=1.0, max_delay=5.0)
    rng = random.Random(0)
    for retry, ceiling in [(1, 1.0), (2, 2.0), (3, 4.0), (4, 5.0), (9, 5.0)]:
        delays = [policy.delay(retry, rng) for _ in range(200)]
        assert ceiling / 2 <= min(delays) and max(delays) <= ceiling
        assert len(set(delays)) > 100  # jittered: retries of many clients spread out


def test_retry_after_is_honoured_up_to_the_longest_delay() -> None:
    policy = RetryPolicy(max_delay=10.0)
    assert policy.delay(1, random.Random(0), retry_after=3) == 3.0
    assert policy.delay(1, random.Random(0), retry_after=3600) == 10.0


@pytest.fixture
def router() -> Iterator[respx.MockRouter]:
    with respx.mock(base_url=BASE) as router:
        yield router


def client(
    clock: Clock, sleeps: list[float], *, cache_seconds: float = 300.0, **retry: Any
) -> JsonClient:
    return JsonClient(
        "test",
        BASE,
        retry=RetryPolicy(**retry),
        cache_seconds=cache_seconds,
        sleep=sleeps.append,
        rng=random.Random(0),
        clock=clock.monotonic,
    )


def test_cache_entries_expire_after_the_ttl(router: respx.MockRouter) -> None:
    clock = Clock()
    route = router.get("/zone").respond(json={"zone": "DE"})
    http = client(clock, [])
    assert http.get("/zone", {"z": "DE"}) == {"zone": "DE"}
    clock.advance(seconds=299)
    http.get("/zone", {"z": "DE"})
    assert route.call_count == 1
    clock.advance(seconds=1)
    http.get("/zone", {"z": "DE"})
    assert route.call_count == 2


@pytest.mark.parametrize("ttl", [0, -1])
def test_a_cache_without_ttl_keeps_nothing(router: respx.MockRouter, ttl: float) -> None:
    route = router.get("/zone").respond(json={"zone": "DE"})
    http = client(Clock(), [], cache_seconds=ttl)
    http.get("/zone")
    http.get("/zone")
    assert route.call_count == 2


def test_the_cache_is_bounded(router: respx.MockRouter) -> None:
    route = router.get("/zone").respond(json={"zone": "any"})
    http = client(Clock(), [])
    for zone in range(300):  # more than the cache keeps
        http.get("/zone", {"z": zone})
    http.get("/zone", {"z": 299})
    assert route.call_count == 300  # the newest still cached
    http.get("/zone", {"z": 0})
    assert route.call_count == 301  # the oldest dropped


def test_throttling_401s_and_server_errors_have_their_own_budgets(
    router: respx.MockRouter,
) -> None:
    unauthorized, unavailable = httpx.Response(401), httpx.Response(503)
    route = router.get("/zone").mock(
        side_effect=[unauthorized, unavailable, unauthorized, unavailable, unavailable]
    )
    sleeps: list[float] = []
    http = client(Clock(), sleeps, attempts=3, unauthorized_attempts=3)
    with pytest.raises(CarbonUnavailable, match="503"):
        http.get("/zone")
    # Five tries: the third 503 ends its budget of three; the 401s used two of theirs.
    assert route.call_count == 5
    assert len(sleeps) == 4


def test_a_401_budget_ends_in_not_in_plan(router: respx.MockRouter) -> None:
    route = router.get("/zone").respond(401, json={"error": "throttled"})
    sleeps: list[float] = []
    http = client(Clock(), sleeps, unauthorized_attempts=2)
    with pytest.raises(CarbonNotInPlan, match="bad token, or throttled") as caught:
        http.get("/zone")
    assert route.call_count == 2
    assert len(sleeps) == 1
    assert caught.value.__cause__ is None  # an answer, not an exception, ended it


def test_retry_after_of_a_429_sets_the_wait(router: respx.MockRouter) -> None:
    router.get("/zone").mock(
        side_effect=[
            httpx.Response(429, headers={"Retry-After": "7"}),
            httpx.Response(429, headers={"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"}),
            httpx.Response(200, json={}),
        ]
    )
    sleeps: list[float] = []
    http = client(Clock(), sleeps, base_delay=1.0, max_delay=5.0)
    assert http.get("/zone") == {}
    assert sleeps[0] == 5.0  # Retry-After, capped at the longest delay
    assert 1.0 <= sleeps[1] <= 2.0  # a date: our own backoff (second retry)


def test_a_timeout_keeps_its_cause(router: respx.MockRouter) -> None:
    router.get("/zone").mock(side_effect=httpx.ReadTimeout("slow"))
    http = client(Clock(), [], attempts=2)
    with pytest.raises(CarbonUnavailable, match="timed out") as caught:
        http.get("/zone")
    assert isinstance(caught.value.__cause__, httpx.ReadTimeout)
