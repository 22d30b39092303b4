"""Group commit: concurrent submissions share transactions; a bad row fails alone."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from offpeak.clock import now
from offpeak.state.committer import GroupCommitter
from offpeak.state.db import Database
from offpeak.state.models import ApiKey
from offpeak.state.requests import get_request, list_requests, new_request_row
from tests.utils.factories import request_create


def rows(key_id: str, count: int) -> list[dict[str, Any]]:
    return [new_request_row(key_id, request_create(f"prompt {i}"), now()) for i in range(count)]


@pytest.mark.parametrize("inline", [True, False], ids=["on-the-loop", "in-a-thread"])
def test_concurrent_inserts_are_all_committed_before_they_return(
    db: Database, key: ApiKey, inline: bool
) -> None:
    handed_over: list[dict[str, Any]] = []
    committer = GroupCommitter(db, on_commit=handed_over.extend, inline=inline)
    submitted = rows(key.id, 200)

    async def submit(row: dict[str, Any]) -> str:
        await committer.insert(row)
        # Committed means visible to any other connection right now.
        assert get_request(db, key.id, row["id"]).status == "registered"
        return str(row["id"])

    async def main() -> list[str]:
        done = await asyncio.gather(*(submit(row) for row in submitted))
        await committer.close()
        return done

    assert sorted(asyncio.run(main())) == sorted(r["id"] for r in submitted)
    assert len(list_requests(db, key.id, limit=1000)) == 200
    assert sorted(r["id"] for r in handed_over) == sorted(r["id"] for r in submitted)


def test_a_failing_row_fails_alone(db: Database, key: ApiKey) -> None:
    committer = GroupCommitter(db)
    good = rows(key.id, 5)
    duplicate = dict(good[0])  # same primary key: this one insert must fail

    async def main() -> list[BaseException | None]:
        await committer.insert(good[0])
        outcomes = await asyncio.gather(
            *(committer.insert(row) for row in [*good[1:], duplicate]), return_exceptions=True
        )
        await committer.close()
        return outcomes

    outcomes = asyncio.run(main())
    assert outcomes[:4] == [None] * 4
    assert isinstance(outcomes[4], Exception)
    assert {r.id for r in list_requests(db, key.id)} == {r["id"] for r in good}
