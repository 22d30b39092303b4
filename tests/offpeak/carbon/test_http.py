import random

import pytest

from offpeak.carbon.http import RetryPolicy, TTLCache
from tests.offpeak.carbon.helpers import Clock


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


def test_cache_entries_expire_after_the_ttl() -> None:
    clock = Clock()
    cache = TTLCache(300, clock=clock.monotonic)
    cache.put("DE", 1)
    clock.advance(seconds=299)
    assert cache.get("DE") == 1
    clock.advance(seconds=1)
    assert cache.get("DE") is None


@pytest.mark.parametrize("ttl", [0, -1])
def test_a_cache_without_ttl_keeps_nothing(ttl: float) -> None:
    cache = TTLCache(ttl)
    cache.put("DE", 1)
    assert cache.get("DE") is None


def test_the_cache_is_bounded() -> None:
    cache = TTLCache(300, max_entries=2)
    for zone in ("DE", "FR", "ES"):
        cache.put(zone, zone)
    assert [cache.get(z) for z in ("DE", "FR", "ES")] == [None, "FR", "ES"]
