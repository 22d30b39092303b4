"""Results as Parquet: published JSONL lines become rows, joined by custom_id, streamed."""

from __future__ import annotations

import io

import pyarrow as pa
import pyarrow.parquet as pq

from offpeak.publish.parquet import COLUMNS, RESULTS_SCHEMA, line_blocks, parquet_from_jsonl
from offpeak.schemas import ErrorInfo, RequestObject, Status
from offpeak.schemas.results import ResultsRow


def line(i: int, *, failed: bool = False, custom_id: object = None) -> str:
    result = {
        "id": f"cmpl-{i}",
        "object": "chat.completion",
        "created": 1,
        "model": "m",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": f'answer {i}\nwith "quotes"'},
                "finish_reason": "stop",
                "logprobs": None,
            }
        ],
        "usage": {"prompt_tokens": 10 + i, "completion_tokens": i, "total_tokens": 10 + 2 * i},
    }
    obj = RequestObject(
        id=f"{i:024x}",
        status=Status.FAILED if failed else Status.COMPLETED,
        created_at=1,
        expires_at=2,
        metadata={"custom_id": f"row-{i}" if custom_id is None else custom_id, "x": [1]},
        request_body={"model": "m", "messages": [{"role": "user", "content": "q"}]},
        result_body=None if failed else result,
        error=ErrorInfo(code="context_length_exceeded", message="too long") if failed else None,
    )
    return obj.model_dump_json()


def convert(text: str, block: int) -> pa.Table:
    parts = list(parquet_from_jsonl(io.BytesIO(text.encode()), block_bytes=block))
    assert len(parts) > 1  # streamed: row groups as they come, then the footer
    return pq.read_table(io.BytesIO(b"".join(parts)))


def test_each_line_becomes_a_row_with_its_custom_id_text_usage_and_error() -> None:
    text = "\n".join([line(1), line(2, failed=True), line(3, custom_id=42)]) + "\n"
    table = convert(text, block=10_000)
    assert table.schema == RESULTS_SCHEMA
    rows = table.to_pylist()
    assert [r["custom_id"] for r in rows] == ["row-1", "row-2", "42"]
    assert rows[0]["content"] == 'answer 1\nwith "quotes"'
    assert rows[0]["finish_reason"] == "stop" and rows[0]["status"] == "completed"
    assert (rows[0]["prompt_tokens"], rows[0]["completion_tokens"], rows[0]["total_tokens"]) == (
        11,
        1,
        12,
    )
    assert rows[1]["content"] is None and rows[1]["error_code"] == "context_length_exceeded"
    assert rows[1]["error_message"] == "too long" and rows[1]["status"] == "failed"


def test_small_blocks_give_many_row_groups_and_the_same_rows() -> None:
    text = "".join(line(i) + "\n" for i in range(50))
    parts = list(parquet_from_jsonl(io.BytesIO(text.encode()), block_bytes=2000))
    data = b"".join(parts)
    file = pq.ParquetFile(io.BytesIO(data))
    assert file.metadata.num_row_groups > 5
    assert file.read().column("custom_id").to_pylist() == [f"row-{i}" for i in range(50)]


def test_line_blocks_never_split_a_line() -> None:
    text = b"".join(b"x" * n + b"\n" for n in range(1, 40)) + b"tail"
    blocks = list(line_blocks(io.BytesIO(text), size=17))
    assert b"".join(blocks) == text
    assert all(b.endswith(b"\n") for b in blocks[:-1])


def test_every_column_of_the_results_row_is_read_from_the_line() -> None:
    assert RESULTS_SCHEMA.names == list(ResultsRow.model_fields) == list(COLUMNS)
    assert not RESULTS_SCHEMA.field("id").nullable and RESULTS_SCHEMA.field("custom_id").nullable


def test_lines_without_choices_give_empty_text_columns() -> None:
    embedding = {
        "object": "list",
        "model": "e",
        "data": [{"object": "embedding", "index": 0, "embedding": [0.5]}],
        "usage": {"prompt_tokens": 3, "total_tokens": 3},
    }
    empty = {"model": "m", "choices": [], "usage": None}
    objects = [
        RequestObject(
            id=f"{i:024x}", status=Status.COMPLETED, created_at=1, expires_at=2, result_body=body
        )
        for i, body in enumerate([embedding, empty])
    ]
    text = "".join(obj.model_dump_json() + "\n" for obj in objects)
    rows = convert(text + text, block=len(text) // 2).to_pylist()
    assert [(r["content"], r["model"], r["prompt_tokens"]) for r in rows[:2]] == [
        (None, "e", 3),
        (None, "m", None),
    ]
    assert rows[0]["custom_id"] is None and rows[0]["completion_tokens"] is None
