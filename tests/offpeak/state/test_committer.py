"""Group commit: concurrent submissions share transactions; a bad row fails alone."""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path
from typing import Any

from offpeak.clock import now
from offpeak.state.committer import GroupCommitter
from offpeak.state.db import Database
from offpeak.state.keys import create_key
from offpeak.state.models import ApiKey
from offpeak.state.requests import get_request, list_requests, new_request_row
from tests.utils.factories import request_create


def rows(key_id: str, count: int) -> list[dict[str, Any]]:
    return [new_request_row(key_id, request_create(f"prompt {i}"), now()) for i in range(count)]


def test_concurrent_inserts_are_all_committed_before_they_return(db: Database, key: ApiKey) -> None:
    handed_over: list[dict[str, Any]] = []
    committer = GroupCommitter(db, on_commit=handed_over.extend)
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


def test_the_event_loop_keeps_running_while_a_commit_waits_for_the_writer_lock(
    tmp_path: Path,
) -> None:
    # SQLite's writers queue on a lock in this process (PostgreSQL's need none).
    db = Database.migrated(f"sqlite:///{tmp_path / 'state.db'}")
    key, _ = create_key(db, "k", 1)
    committer = GroupCommitter(db)
    held, release = threading.Event(), threading.Event()

    def writer_elsewhere() -> None:  # the seal thread or a bulk insert, say
        with db.writer_turn():
            held.set()
            release.wait(5)

    other = threading.Thread(target=writer_elsewhere)
    other.start()
    held.wait(5)

    async def main() -> tuple[int, float]:
        ticks = 0
        insert = asyncio.create_task(committer.insert(rows(key.id, 1)[0]))
        started = time.monotonic()
        while time.monotonic() - started < 0.3:
            await asyncio.sleep(0.01)
            ticks += 1
        assert not insert.done()  # still waiting for the lock...
        release.set()
        await insert  # ...and committed once it is free
        waited = time.monotonic() - started
        await committer.close()
        return ticks, waited

    ticks, waited = asyncio.run(main())
    other.join()
    db.dispose()
    assert ticks >= 10, "the loop was blocked while the commit waited"
    assert waited >= 0.3
