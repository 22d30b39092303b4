"""The queries that walk many requests are served by an index (migration 0012): the
scheduler's pending work and claims, and retention's pages and object holders. Checked
on PostgreSQL with sequential scans priced out, so the plan names the index exactly
when the query's conditions imply the partial index's predicate."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import Select, select
from sqlalchemy.dialects import postgresql

from offpeak.schemas import Status
from offpeak.state.db import Database
from offpeak.state.models import Request
from tests.conftest import new_postgres_database


@pytest.fixture
def pg(postgres_root: str) -> Iterator[Database]:
    database = Database.migrated(new_postgres_database(postgres_root))
    yield database
    database.dispose()


def plan_of(db: Database, query: Select[Any]) -> str:
    sql = query.compile(dialect=postgresql.dialect(), compile_kwargs={"literal_binds": True})
    with db.engine.connect() as connection:
        connection.exec_driver_sql("SET enable_seqscan = off")
        rows = connection.exec_driver_sql("EXPLAIN " + str(sql).replace("%%", "%"))
        return "\n".join(row[0] for row in rows)


def test_claiming_pending_requests_walks_the_pending_index_in_deadline_order(
    pg: Database,
) -> None:
    query = (
        select(Request.id)
        .where(
            Request.status == Status.REGISTERED.value,
            Request.segment.is_not(None),
            Request.model == "m",
            Request.expires_at.between(0, 100),
        )
        .order_by(Request.expires_at, Request.id)
        .limit(10)
    )
    plan = plan_of(pg, query)
    assert "ix_requests_pending" in plan
    assert "Sort" not in plan  # the index gives the order: the first rows come at once


def test_expiring_overdue_requests_reads_only_registered_ones(pg: Database) -> None:
    query = select(Request.id).where(
        Request.status == Status.REGISTERED.value, Request.expires_at < 100
    )
    assert "ix_requests_pending" in plan_of(pg, query)


def test_retention_walks_ended_unpurged_requests_by_id(pg: Database) -> None:
    query = (
        select(Request.id)
        .where(Request.id > "0", Request.ended_at.is_not(None), Request.purged_at.is_(None))
        .order_by(Request.id)
        .limit(1000)
    )
    assert "ix_requests_ended" in plan_of(pg, query)


@pytest.mark.parametrize("column", [Request.segment, Request.result_key])
def test_retention_finds_another_holder_of_an_object_by_index(pg: Database, column: Any) -> None:
    query = (
        select(Request.id)
        .where(
            column == "jobs/j/chunk-00000.parquet",
            Request.purged_at.is_(None),
            Request.id.not_in(["01a24f2b79644a0000000000"]),
        )
        .limit(1)
    )
    assert f"ix_requests_{column.key}" in plan_of(pg, query)


def test_a_claim_adds_no_entry_to_the_pending_index(pg: Database) -> None:
    # The pending index holds registered requests only: the scheduler's reads stay as
    # small as the pending work, whatever the table's history.
    with pg.engine.connect() as connection:
        predicate = connection.exec_driver_sql(
            "SELECT pg_get_expr(indpred, indrelid) FROM pg_index "
            "WHERE indexrelid = 'ix_requests_pending'::regclass"
        ).scalar()
    assert predicate == "((status)::text = 'registered'::text)"


def test_the_probe_for_another_holder_uses_the_index_on_real_statistics(pg: Database) -> None:
    # A LIMIT 1 probe for a common value invites a table scan that expects a match at
    # once; for a segment at the end of the table that scan reads all of it, per page.
    with pg.engine.begin() as connection:
        connection.exec_driver_sql(
            "INSERT INTO api_keys (id, name, key_hash, prefix, credits_usd, created_at) "
            "VALUES ('k', 'k', 'h', 'p', 1, 0)"
        )
        connection.exec_driver_sql(
            "INSERT INTO requests (id, key_id, status, model, completion_window, metadata, "
            "segment, created_at, expires_at, ended_at) "
            "SELECT lpad(to_hex(i), 24, '0'), 'k', 'completed', 'm', '24h', '{}', "
            "'segments/' || (i / 5000), 0, 0, 1 FROM generate_series(0, 19999) AS i"
        )
        connection.exec_driver_sql("ANALYZE requests")
        page = [f"{i:024x}" for i in range(15000, 16000)]
        query = (
            select(Request.id)
            .where(
                Request.segment == "segments/3",
                Request.purged_at.is_(None),
                Request.id.not_in(page),
            )
            .order_by(Request.id)
            .limit(1)
        )
        sql = query.compile(dialect=postgresql.dialect(), compile_kwargs={"literal_binds": True})
        plan = "\n".join(row[0] for row in connection.exec_driver_sql("EXPLAIN " + str(sql)))
    assert "ix_requests_segment" in plan, plan
