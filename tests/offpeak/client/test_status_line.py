"""`offpeak status` shows a batch's expected start and completion while it waits."""

from __future__ import annotations

from offpeak.client.commands import _expected, _summary
from offpeak.schemas import BatchObject, RequestCounts

AT = 1_796_625_600  # 2026-12-07 06:40 UTC


def batch(status: str = "registered", **fields: object) -> BatchObject:
    counts = RequestCounts(total=2, registered=2)
    return BatchObject.model_validate(
        {"id": "b1", "status": status, "created_at": 0, "expires_at": 1, **fields}
    ).model_copy(update={"request_counts": counts})


def test_a_planned_batch_shows_its_expected_times() -> None:
    planned = batch(expected_start_at=AT, expected_completion_at=AT + 3600)
    assert _expected(planned) == (
        "expected start 2026-12-07 06:40 UTC, expected completion 2026-12-07 07:40 UTC"
    )
    assert _summary(planned).endswith("pending of 2  " + _expected(planned))


def test_an_unplanned_or_ended_batch_shows_none() -> None:
    assert _expected(batch()) == ""
    assert _expected(batch(expected_start_at=AT)) == "expected start 2026-12-07 06:40 UTC"
    ended = batch("completed", expected_start_at=AT, expected_completion_at=AT)
    assert _expected(ended) == "" and _summary(ended).endswith("pending of 2")
