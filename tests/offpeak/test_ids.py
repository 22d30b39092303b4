import time

from offpeak.ids import id_time_ms, is_id, new_id


def test_new_id_is_24_lower_case_hex() -> None:
    value = new_id()
    assert len(value) == 24
    assert value == value.lower()
    assert int(value, 16) >= 0
    assert is_id(value)


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
