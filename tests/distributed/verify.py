"""Exact outcomes of a scenario, read from the state database, the store and the API."""

from __future__ import annotations

import io
import json
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal

import pyarrow.parquet as pq
from sqlalchemy import func, select

from offpeak.state.db import Database
from offpeak.state.models import ApiKey, Batch, Request
from offpeak.storage import ObjectStore
from tests.distributed.workload import CREDITS, Failover, Hooks, Submitted

ENDED = ("completed", "failed", "cancelled")


def ended_count(db: Database, ids: set[str]) -> int:
    """How many of ``ids`` have ended (the pipeline's progress)."""
    with db.session() as session:
        query = select(func.count()).where(Request.status.in_(ENDED))
        return int(session.scalar(query.where(Request.id.in_(list(ids)))) or 0)


def wait_all_ended(db: Database, submitted: Submitted, timeout: float) -> None:
    ids = {rid for ids in submitted.requests.values() for rid in ids}
    deadline = time.monotonic() + timeout
    while (done := ended_count(db, ids)) < len(ids):
        assert time.monotonic() < deadline, f"{len(ids) - done} of {len(ids)} never ended"
        time.sleep(0.5)


def check_exactly_once(
    db: Database,
    store: ObjectStore,
    urls: list[str],
    submitted: Submitted,
    hooks: Hooks,
    earlier_jobs: frozenset[str] = frozenset(),
) -> None:
    """Every acknowledged request completed, ran once, was charged once; every batch was
    published once with each of its requests once; no key sees another's objects.
    ``earlier_jobs`` (opened before the scenario's first request) cannot hold its requests:
    their chunk files are not read again."""
    keys_by_id: dict[str, str] = {}
    with db.session() as session:
        for ids in submitted.requests.values():
            rows = session.execute(
                select(Request.id, Request.status, Request.result_key, Request.key_id).where(
                    Request.id.in_(list(ids))
                )
            ).all()
            assert len(rows) == len(ids), f"{len(ids) - len(rows)} acknowledged requests lost"
            statuses = Counter(r.status for r in rows)
            assert statuses == {"completed": len(ids)}, statuses
            keys_by_id.update({r.id: r.key_id for r in rows})
        key_ids = set(keys_by_id.values())
        # Nothing accepted beyond what was acknowledged (a retried create made one row),
        # but for creates whose key a killed replica still claims, retried under a new key.
        stored = session.scalar(select(func.count()).where(Request.key_id.in_(key_ids)))
        extra = (stored or 0) - len(keys_by_id)
        assert 0 <= extra <= submitted.abandoned, f"{stored} rows, {len(keys_by_id)} acknowledged"
        result_keys = dict(
            session.execute(
                select(Request.id, Request.result_key).where(Request.key_id.in_(key_ids))
            ).all()
        )
        # Credits: the starting balance less the sum of what each request cost, once.
        for key_id in key_ids:
            spent = session.scalar(
                select(func.sum(Request.cost_usd)).where(Request.key_id == key_id)
            ) or Decimal(0)
            balance = session.get(ApiKey, key_id).credits_usd  # type: ignore[union-attr]
            assert spent > 0 and balance == CREDITS - spent, (key_id, balance, spent)
    # One result per request across every chunk file, in the file its row points at.
    ran: Counter[str] = Counter()
    where: dict[str, str] = {}
    chunks = [
        key
        for key in store.list("jobs/")
        if "/chunk-" in key and key.split("/")[-2] not in earlier_jobs
    ]

    def ids_in(key: str) -> list[str]:
        return list(pq.read_table(io.BytesIO(store.get(key)), columns=["id"])["id"].to_pylist())

    with ThreadPoolExecutor(8) as readers:
        for key, in_chunk in zip(chunks, readers.map(ids_in, chunks), strict=True):
            for rid in in_chunk:
                ran[rid] += 1
                where[rid] = key
    twice = [rid for rid in keys_by_id if ran[rid] != 1]
    assert not twice, f"{len(twice)} requests ran {Counter(ran[r] for r in twice)} times"
    assert all(result_keys[rid] == where[rid] for rid in keys_by_id)
    _check_batches(db, urls, submitted, hooks)


def _check_batches(db: Database, urls: list[str], submitted: Submitted, hooks: Hooks) -> None:
    all_batches = {b for bs in submitted.batches.values() for b in bs}
    # Published after their last job ends (by that job's flow or the next tick).
    deadline = time.monotonic() + 90
    while True:
        with db.session() as session:
            status = dict(
                session.execute(
                    select(Batch.id, Batch.status).where(Batch.id.in_(all_batches))
                ).all()
            )
            members: dict[str, set[str]] = {}
            for batch_id, rid in session.execute(
                select(Request.batch_id, Request.id).where(Request.batch_id.in_(all_batches))
            ):
                members.setdefault(batch_id, set()).add(rid)
        counts = Counter(status.values())
        if counts == {"completed": len(all_batches)}:
            break
        assert time.monotonic() < deadline and not counts.keys() - {"completed", "in_progress"}, (
            f"batches: {dict(counts)}"
        )
        time.sleep(0.25)
    # The webhook of each hooked batch: one event, however many times it was delivered.
    deadline = time.monotonic() + 60
    while any(len(hooks.events.get(b, ())) != 1 for b in submitted.hooked):
        missing = [b for b in submitted.hooked if not hooks.events.get(b)]
        assert time.monotonic() < deadline, f"batch events: {len(missing)} missing"
        time.sleep(0.25)
    assert all(len(hooks.events[b]) == 1 for b in submitted.hooked)
    for key, batches in submitted.batches.items():
        api = Failover(urls, key)
        for batch_id in batches:
            response = api.call("GET", f"/v1/batches/{batch_id}/results")
            assert response.status_code == 200, response.text
            lines = [json.loads(line)["id"] for line in response.text.splitlines()]
            assert sorted(lines) == sorted(members[batch_id]), batch_id
        _check_isolation(api, key, submitted)
        api.close()


def _check_isolation(api: Failover, key: str, submitted: Submitted) -> None:
    """This key lists exactly its own requests and gets 404 for another key's objects."""
    listed = api.call("GET", "/v1/requests")
    assert listed.status_code == 200
    ids = {json.loads(line)["id"] for line in listed.text.splitlines() if line}
    assert ids >= submitted.requests[key]
    assert len(ids - submitted.requests[key]) <= submitted.abandoned
    for other, their in submitted.requests.items():
        if other != key:
            rid = next(iter(their))
            assert api.call("GET", f"/v1/requests/{rid}").status_code == 404
            for batch_id in list(submitted.batches[other])[:3]:
                assert api.call("GET", f"/v1/batches/{batch_id}").status_code == 404
