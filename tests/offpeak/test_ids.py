import time
from itertools import pairwise

from offpeak.ids import id_time_ms, is_id, new_id, new_ids


def test_new_id_is_24_lower_case_hex() -> None:
    value = new_id()
    assert len(value) == 24
    assert set(value) <= set("0123456789abcdef")
    assert is_id(value)


def test_new_id_is_its_time_then_randomness() -> None:
    values = [new_id(now_ms=0x0123_4567_89AB) for _ in range(64)]
    assert {v[:12] for v in values} == {"0123456789ab"}
    # 48 random bits: 64 draws all differ, and every hex digit shows up in them.
    suffixes = [v[12:] for v in values]
    assert len(set(suffixes)) == 64
    assert set("".join(suffixes)) == set("0123456789abcdef")


def test_new_ids_ascend_within_and_across_calls() -> None:
    first, second = new_ids(1000).to_pylist(), new_ids(1000).to_pylist()
    ids = first + second
    assert all(is_id(i) for i in ids)
    assert ids == sorted(ids) and len(set(ids)) == 2000
    assert id_time_ms(second[0]) > id_time_ms(first[-1])


def test_new_ids_cannot_be_guessed_from_a_neighbour() -> None:
    # Not counted up from a start (a dataset's rows once were): the random parts of
    # neighbours lie far apart, about 2**48 / count on average.
    ids = new_ids(1000, now_ms=5).to_pylist()
    gaps = [int(b[12:], 16) - int(a[12:], 16) for a, b in pairwise(ids)]
    assert min(gaps) > 0
    assert sorted(gaps)[len(gaps) // 2] > 2**48 // 1000 // 4
    assert {i[:12] for i in ids} == {"000000000005"}


def test_new_ids_of_nothing_is_empty() -> None:
    assert new_ids(0).to_pylist() == []


def test_ids_sort_by_creation_time_across_milliseconds() -> None:
    ids = [new_id(now_ms=1_700_000_000_000 + ms) for ms in range(200)]
    assert ids == sorted(ids)


def test_ids_made_later_sort_after_earlier_ones() -> None:
    first = new_id()
    time.sleep(0.002)
    assert new_id() > first


def test_ids_are_unique_over_many() -> None:
    ids = [new_id() for _ in range(100_000)]
    assert len(set(ids)) == len(ids)


def test_ids_in_the_same_millisecond_differ() -> None:
    ids = {new_id(now_ms=123) for _ in range(1000)}
    assert len(ids) == 1000


def test_id_time_ms_round_trips_the_time_part() -> None:
    assert id_time_ms(new_id(now_ms=1_717_171_717_171)) == 1_717_171_717_171
    before = time.time_ns() // 1_000_000
    value = new_id()
    after = time.time_ns() // 1_000_000
    assert before <= id_time_ms(value) <= after


def test_is_id_refuses_other_shapes() -> None:
    valid = new_id()
    for value in (valid.upper(), valid[:-1], valid + "0", "g" * 24, "", f" {valid[1:]}"):
        assert not is_id(value), value
