"""Dataset ingestion on the real state database and object store: rows become sealed
requests of one batch, bodies as the API would store them; bad rows refuse the whole file."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest
from sqlalchemy import func, select, update

from offpeak.catalog.models import ModelRegistry
from offpeak.config import PACKAGED_MODELS
from offpeak.errors import DatasetError
from offpeak.ids import is_id
from offpeak.ingest.datasets import DatasetFile, format_of, ingest_dataset
from offpeak.ingest.datasets.ingest import rebatch
from offpeak.ingest.estimate import estimate_tokens
from offpeak.ingest.segments import read_bodies
from offpeak.plan.pending import pending_groups
from offpeak.schemas import ChatCompletionRequest, DatasetMapping
from offpeak.state.batches import ready_to_publish
from offpeak.state.db import Database
from offpeak.state.keys import create_key
from offpeak.state.models import Batch, Request
from offpeak.storage import ObjectStore

MODEL = "llama-3.1-8b-instruct-fp16"


def ingest(db: Database, store: ObjectStore, path: Path, mapping: DatasetMapping, rows: int = 4):
    key, _ = create_key(db, "team", 10)
    return ingest_dataset(
        db,
        store,
        DatasetFile(path),
        mapping,
        key_id=key.id,
        spec=ModelRegistry.load(PACKAGED_MODELS).get(MODEL),
        segment_rows=rows,
    )


def test_rows_become_sealed_requests_with_the_bodies_the_api_stores(
    db: Database, store: ObjectStore, tmp_path: Path
) -> None:
    path = tmp_path / "reviews.parquet"
    texts = [f'Review {i}: "quoted"\nnew line é' for i in range(10)]
    pl.DataFrame(
        {"rid": list(range(100, 110)), "text": texts, "mt": [8, None] * 5, "t": [0.5] * 10}
    ).write_parquet(path)
    mapping = DatasetMapping(
        model=MODEL,
        prompt_column="text",
        id_column="rid",
        system_prompt="Be brief",
        parameter_columns=["max_tokens=mt", "temperature=t"],
        max_tokens=64,
        seed=3,
    )
    done = ingest(db, store, path, mapping, rows=4)
    assert done.rows == 10 and len(done.segments) == 3  # 4 + 4 + 2

    with db.session() as session:
        rows = list(session.scalars(select(Request).order_by(Request.id)))
    assert [r.meta["custom_id"] for r in rows] == [str(i) for i in range(100, 110)]
    assert all(is_id(r.id) and r.batch_id == done.batch.id for r in rows)
    assert all(r.status == "registered" and r.body is None and r.segment for r in rows)
    bodies = {}
    for segment in done.segments:
        bodies.update(read_bodies(store, segment, None))
    for i, row in enumerate(rows):
        body = ChatCompletionRequest.model_validate_json(bodies[row.id])
        expected = ChatCompletionRequest(
            model=MODEL,
            messages=[
                {"role": "system", "content": "Be brief"},  # type: ignore[list-item]
                {"role": "user", "content": texts[i]},  # type: ignore[list-item]
            ],
            max_tokens=8 if i % 2 == 0 else 64,
            temperature=0.5,
            seed=3,
        )
        assert body == expected
        assert json.loads(bodies[row.id]) == expected.model_dump(by_alias=True, exclude_none=True)
        assert row.est_tokens == estimate_tokens(expected)


def test_a_bad_row_late_in_the_file_leaves_nothing_behind(
    db: Database, store: ObjectStore, tmp_path: Path
) -> None:
    path = tmp_path / "d.csv"
    path.write_text("prompt\n" + "hello\n" * 9 + '""\n')
    mapping = DatasetMapping(model=MODEL, prompt_column="prompt")
    with pytest.raises(DatasetError, match="row 9: prompt column 'prompt' is empty"):
        ingest(db, store, path, mapping, rows=3)
    with db.session() as session:
        assert session.scalar(select(func.count()).select_from(Request)) == 0
        assert session.scalar(select(func.count()).select_from(Batch)) == 0
    assert list(store.list("requests/")) == []


def test_gzipped_csv_and_jsonl_are_read(db: Database, tmp_path: Path) -> None:
    import gzip

    from offpeak.storage import LocalStore

    store = LocalStore(tmp_path / "objects")
    csv = tmp_path / "d.csv.gz"
    csv.write_bytes(gzip.compress(b"id,prompt\n007,a\n008,b\n"))
    done = ingest(
        db, store, csv, DatasetMapping(model=MODEL, prompt_column="prompt", id_column="id")
    )
    with db.session() as session:
        ids = session.scalars(select(Request.meta).where(Request.batch_id == done.batch.id))
        assert sorted(m["custom_id"] for m in ids) == ["007", "008"]  # text stays text

    jsonl = tmp_path / "d.jsonl"
    jsonl.write_text('{"q": "x", "extra": 1}\n{"q": "y"}\n')
    assert ingest(db, store, jsonl, DatasetMapping(model=MODEL, prompt_column="q")).rows == 2


def test_formats_from_names_and_bytes() -> None:
    assert format_of("a/b.PARQUET") == "parquet"
    assert format_of("x.csv.gz") == "csv"
    assert format_of("x.ndjson") == "jsonl"
    assert format_of("upload", b"PAR1....") == "parquet"
    assert format_of("upload", b' {"a": 1}') == "jsonl"
    assert format_of("upload", b"a,b\n") == "csv"
    with pytest.raises(DatasetError, match="format"):
        format_of("upload", b"")


def test_rebatch_cuts_exact_sizes() -> None:
    import pyarrow as pa

    batches = [pa.record_batch({"a": pa.array(range(n), pa.int64())}) for n in (3, 7, 1, 0, 5)]
    sizes = [t.num_rows for t in rebatch(iter(batches), 4)]
    assert sizes == [4, 4, 4, 4]


@pytest.mark.parametrize("statistics", [True, False])
def test_an_empty_prompt_is_found_with_or_without_parquet_statistics(
    db: Database, tmp_path: Path, statistics: bool
) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from offpeak.storage import LocalStore

    path = tmp_path / "d.parquet"
    table = pa.table({"q": ["a", "b", "", "d"]})
    pq.write_table(table, path, write_statistics=statistics, row_group_size=2)
    assert not DatasetFile(path).never_empty("q")
    with pytest.raises(DatasetError, match="row 2: prompt column 'q' is empty"):
        ingest(db, LocalStore(tmp_path / "o"), path, DatasetMapping(model=MODEL, prompt_column="q"))
    pq.write_table(pa.table({"q": ["a", "b"]}), path, write_statistics=statistics)
    assert DatasetFile(path).never_empty("q") == statistics


def test_a_duplicate_id_in_another_block_is_named_with_its_rows(
    db: Database, tmp_path: Path
) -> None:
    from offpeak.storage import LocalStore

    path = tmp_path / "d.parquet"
    ids = [f"id-{i}" for i in range(10)]
    ids[8] = "id-1"
    pl.DataFrame({"id": ids, "q": ["x"] * 10}).write_parquet(path, row_group_size=3)
    mapping = DatasetMapping(model=MODEL, prompt_column="q", id_column="id")
    with pytest.raises(DatasetError, match=r"id 'id-1' appears more than once \(rows 1, 8\)"):
        ingest(db, LocalStore(tmp_path / "o"), path, mapping, rows=3)


def test_a_dataset_waits_unscheduled_and_unpublished_until_every_row_is_in(
    db: Database, store: ObjectStore, tmp_path: Path
) -> None:
    path = tmp_path / "prompts.csv"
    pl.DataFrame({"text": [f"prompt {i}" for i in range(6)]}).write_csv(path)
    done = ingest(db, store, path, DatasetMapping(model=MODEL, prompt_column="text"))
    assert done.batch.status == "registered"
    registry = ModelRegistry.load(PACKAGED_MODELS)
    assert [g.count for g in pending_groups(db, registry)] == [6]
    # As while it is being registered:
    with db.session(write=True) as session:
        session.execute(update(Batch).values(status="validating"))
    assert pending_groups(db, registry) == []
    assert ready_to_publish(db) == []
