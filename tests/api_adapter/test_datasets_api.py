"""`POST /v1/datasets` against the live API: a file becomes one batch, or a precise 4xx."""

from __future__ import annotations

import gzip
import io
import json
import uuid
from typing import Any

import boto3
import httpx
import polars as pl
import pytest

from tests.api_adapter.conftest import MAX_DATASET_BYTES, LiveApi
from tests.api_adapter.helpers import MODEL, error_code, lines

pytestmark = pytest.mark.live


def parquet(frame: pl.DataFrame) -> bytes:
    sink = io.BytesIO()
    frame.write_parquet(sink)
    return sink.getvalue()


def post(
    api: httpx.Client,
    body: bytes,
    content_type: str = "application/octet-stream",
    **query: Any,
) -> httpx.Response:
    params = {"model": MODEL, **query}
    return api.post(
        "/v1/datasets", params=params, content=body, headers={"Content-Type": content_type}
    )


REVIEWS = pl.DataFrame(
    {"review_id": ["r1", "r2", "r3"], "text": ["Great phone", "Battery died", "Meh"]}
)


def test_a_parquet_dataset_becomes_one_batch_of_sealed_requests(api: httpx.Client) -> None:
    response = post(
        api,
        parquet(REVIEWS),
        prompt_column="text",
        id_column="review_id",
        system_prompt="Summarise",
        max_tokens=32,
        name="reviews",
    )
    assert response.status_code == 201, response.text
    batch = response.json()
    assert batch["status"] == "registered" and batch["request_counts"]["registered"] == 3
    assert batch["metadata"]["name"] == "reviews"
    assert batch["metadata"]["dataset"]["rows"] == 3

    requests = lines(api.get("/v1/requests", params={"full": "true", "batch_id": batch["id"]}))
    assert [r["metadata"]["custom_id"] for r in requests] == ["r1", "r2", "r3"]
    first = requests[0]["request_body"]
    assert first["messages"] == [
        {"role": "system", "content": "Summarise"},
        {"role": "user", "content": "Great phone"},
    ]
    assert first["max_tokens"] == 32 and first["model"] == MODEL
    assert all(r["batch_id"] == batch["id"] for r in requests)


def test_csv_with_per_row_parameters(api: httpx.Client) -> None:
    csv = b"id,prompt,temp\n1,Hello,0.1\n2,World,\n"
    response = post(
        api,
        csv,
        "text/csv",
        prompt_column="prompt",
        id_column="id",
        parameter_columns=["temperature=temp"],
        temperature=0.9,
    )
    assert response.status_code == 201, response.text
    requests = lines(
        api.get("/v1/requests", params={"full": "true", "batch_id": response.json()["id"]})
    )
    assert [r["request_body"]["temperature"] for r in requests] == [0.1, 0.9]
    assert [r["metadata"]["custom_id"] for r in requests] == ["1", "2"]


def test_several_parameter_columns_as_the_client_sends_them(api: httpx.Client) -> None:
    # A list parameter is given once per item (`?parameter_columns=a&parameter_columns=b`);
    # any other repeated parameter is still refused.
    jsonl = b'{"p": "Hi", "mt": 5, "s": 7}\n{"p": "Yo", "mt": 9, "s": 8}\n'
    response = post(
        api,
        jsonl,
        "application/x-ndjson",
        prompt_column="p",
        parameter_columns=["max_tokens=mt", "seed=s"],
    )
    assert response.status_code == 201, response.text
    requests = lines(
        api.get("/v1/requests", params={"full": "true", "batch_id": response.json()["id"]})
    )
    assert [(r["request_body"]["max_tokens"], r["request_body"]["seed"]) for r in requests] == [
        (5, 7),
        (9, 8),
    ]
    twice = post(api, jsonl, "application/x-ndjson", prompt_column=["p", "p"])
    assert (twice.status_code, error_code(twice)) == (422, "repeated_query_parameter")


def test_jsonl_with_a_messages_column(api: httpx.Client) -> None:
    rows = [
        {"messages": [{"role": "user", "content": "Hi"}], "k": 7},
        {"messages": [{"role": "system", "content": "Terse"}, {"role": "user", "content": "Yo"}]},
    ]
    body = "\n".join(json.dumps(r) for r in rows).encode()
    response = post(api, body, "application/x-ndjson", messages_column="messages")
    assert response.status_code == 201, response.text
    requests = lines(
        api.get("/v1/requests", params={"full": "true", "batch_id": response.json()["id"]})
    )
    assert [r["request_body"]["messages"] for r in requests] == [r["messages"] for r in rows]
    # Without an id column, the custom id is the row number.
    assert [r["metadata"]["custom_id"] for r in requests] == ["0", "1"]


@pytest.mark.parametrize(
    ("frame", "query", "status", "code", "says"),
    [
        (REVIEWS, {"prompt_column": "body"}, 422, "dataset_column_missing", "'body'"),
        (
            pl.DataFrame({"n": [1, 2]}),
            {"prompt_column": "n"},
            422,
            "dataset_column_type",
            "column 'n' (prompt_column) is int64, expected text",
        ),
        (
            pl.DataFrame({"text": ["a", None, "c"]}),
            {"prompt_column": "text"},
            422,
            "dataset_invalid_row",
            "row 1: prompt column 'text' is empty",
        ),
        (
            pl.DataFrame({"id": ["a", "b", "a"], "text": ["x", "y", "z"]}),
            {"prompt_column": "text", "id_column": "id"},
            422,
            "dataset_duplicate_id",
            "id 'a' appears more than once (rows 0, 2)",
        ),
        (
            pl.DataFrame({"text": ["x", "y"], "t": [0.5, 3.0]}),
            {"prompt_column": "text", "parameter_columns": ["temperature=t"]},
            422,
            "dataset_invalid_row",
            "row 1: temperature (column 't') is 3, must be at most 2",
        ),
        (
            pl.DataFrame({"text": ["x"], "mt": [20_000]}),
            {"prompt_column": "text", "parameter_columns": ["max_tokens=mt"]},
            422,
            "dataset_invalid_row",
            "row 0: max_tokens (column 'mt') is 20000, must be at most",
        ),
        (
            REVIEWS,
            {"prompt_column": "text", "parameter_columns": ["logit_bias=text"]},
            422,
            "dataset_invalid_mapping",
            "logit_bias cannot be set per row",
        ),
        (
            REVIEWS,
            {"prompt_column": "text", "messages_column": "text"},
            422,
            "validation_error",
            "exactly one of prompt_column or messages_column",
        ),
        (
            REVIEWS,
            {"prompt_column": "text", "completion_window": "9y"},
            422,
            "validation_error",
            "completion_window",
        ),
        (
            REVIEWS,
            {"prompt_column": "text", "model": "gpt-17"},
            422,
            "model_not_found",
            "gpt-17",
        ),
        (
            REVIEWS,
            {"prompt_column": "text", "model": "all-minilm-l6-v2"},
            422,
            "model_not_chat",
            "not a chat model",
        ),
    ],
)
def test_bad_datasets_are_refused_naming_the_column_or_row(
    api: httpx.Client,
    frame: pl.DataFrame,
    query: dict[str, Any],
    status: int,
    code: str,
    says: str,
) -> None:
    before = lines(api.get("/v1/batches"))
    response = post(api, parquet(frame), **query)
    assert response.status_code == status, response.text
    assert error_code(response) == code
    assert says in response.text
    assert lines(api.get("/v1/batches")) == before  # nothing half-created


def test_an_empty_body_an_unreadable_file_and_a_bad_source(api: httpx.Client) -> None:
    empty = post(api, b"", prompt_column="text")
    assert (empty.status_code, error_code(empty)) == (422, "dataset_empty")
    garbage = post(api, b"PAR1 not really parquet", prompt_column="text")
    assert (garbage.status_code, error_code(garbage)) == (422, "dataset_unreadable")
    assert "offpeak-dataset-" not in garbage.text  # the server's temporary file is no name
    header_only = post(api, b"text\n", "text/csv", prompt_column="text")
    assert (header_only.status_code, error_code(header_only)) == (422, "dataset_empty")
    local = api.post(
        "/v1/datasets", params={"model": MODEL, "prompt_column": "t", "source": "/etc/passwd"}
    )
    assert (local.status_code, error_code(local)) == (422, "dataset_invalid_source")


def test_datasets_over_the_size_limit_get_413(api: httpx.Client) -> None:
    big = b"text\n" + b"x" * (MAX_DATASET_BYTES + 10) + b"\n"
    announced = post(api, big, "text/csv", prompt_column="text")
    assert (announced.status_code, error_code(announced)) == (413, "payload_too_large")

    def chunks() -> Any:
        yield b"text\n"
        for _ in range(MAX_DATASET_BYTES // 4096 + 2):
            yield b"y" * 4096

    streamed = api.post(
        "/v1/datasets",
        params={"model": MODEL, "prompt_column": "text"},
        content=chunks(),
        headers={"Content-Type": "text/csv"},
    )
    assert (streamed.status_code, error_code(streamed)) == (413, "payload_too_large")


def test_a_key_short_of_credits_hears_402_before_its_query_is_checked(
    live_api: LiveApi,
) -> None:
    with live_api.client(live_api.new_key(credits=0.0)) as poor:
        response = post(poor, parquet(REVIEWS), prompt_column="text", colour="blue")
    assert (response.status_code, error_code(response)) == (402, "insufficient_credits")


def test_submitting_needs_a_key(live_api: LiveApi) -> None:
    with live_api.client(None) as anonymous:
        response = post(anonymous, parquet(REVIEWS), prompt_column="text")
    assert response.status_code == 401


def test_parquet_results_wait_for_the_batch(api: httpx.Client) -> None:
    batch = post(api, parquet(REVIEWS), prompt_column="text").json()
    response = api.get(f"/v1/batches/{batch['id']}/results", params={"format": "parquet"})
    assert (response.status_code, error_code(response)) == (409, "batch_not_completed")
    bad = api.get(f"/v1/batches/{batch['id']}/results", params={"format": "xlsx"})
    assert bad.status_code == 422


def test_an_s3_source_the_key_was_not_granted_is_forbidden(
    api: httpx.Client, s3_endpoint: str
) -> None:
    # The object is there and the service could read it: no allow-list names it.
    bucket = f"datasets-{uuid.uuid4().hex[:8]}"
    s3 = boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1")
    s3.create_bucket(Bucket=bucket)
    s3.put_object(Bucket=bucket, Key="in/reviews.parquet", Body=parquet(REVIEWS))
    response = api.post(
        "/v1/datasets",
        params={
            "model": MODEL,
            "prompt_column": "text",
            "source": f"s3://{bucket}/in/reviews.parquet",
        },
    )
    assert (response.status_code, error_code(response)) == (403, "dataset_source_forbidden")
    assert lines(api.get("/v1/batches")) == []


def test_a_deeply_nested_jsonl_line_is_refused_and_the_api_stays_up(
    api: httpx.Client, live_api: LiveApi
) -> None:
    # pyarrow's JSON reader dies with SIGSEGV on this line (tests/offpeak/ingest/
    # test_dataset_bounds.py shows it): the whole API process used to go with it.
    depth = 100_000
    body = b'{"text": "x"}\n{"text": "x", "o": ' + b"[" * depth + b"]" * depth + b"}\n"
    response = post(api, body, "application/x-ndjson", prompt_column="text")
    assert (response.status_code, error_code(response)) == (422, "json_too_deep")
    assert "line 1: a value nests deeper than 64 levels" in response.text
    assert live_api.process is not None and live_api.process.poll() is None
    assert httpx.get(f"{live_api.base_url}/healthz").status_code == 200
    fine = post(api, b'{"text": "x", "o": [[1]]}\n', "application/x-ndjson", prompt_column="text")
    assert fine.status_code == 201, fine.text


def _gzip_bomb(line: bytes, header: bytes = b"") -> bytes:
    """12 MB of ``line`` (2M rows of a short one) in a few KB of gzip."""
    return gzip.compress(header + line * (12_000_000 // len(line)), 9)


@pytest.mark.parametrize(
    ("name", "body", "media"),
    [
        ("bomb.csv.gz", _gzip_bomb(b"hello\n", b"text\n"), "application/gzip"),
        ("bomb.jsonl.gz", _gzip_bomb(b'{"text": "hello"}\n'), "application/gzip"),
        (
            "bomb.parquet",
            parquet(pl.DataFrame({"text": ["the same long prompt " * 10] * 100_000})),
            "application/octet-stream",
        ),
    ],
)
def test_a_dataset_expanding_past_the_limit_gets_413_whatever_its_size_as_sent(
    api: httpx.Client, name: str, body: bytes, media: str
) -> None:
    assert len(body) < MAX_DATASET_BYTES // 4
    response = api.post(
        "/v1/datasets",
        params={"model": MODEL, "prompt_column": "text"},
        content=body,
        headers={"Content-Type": media, "Content-Disposition": f'attachment; filename="{name}"'},
    )
    assert (response.status_code, error_code(response)) == (413, "dataset_too_large")
    assert str(MAX_DATASET_BYTES) in response.text
    assert lines(api.get("/v1/batches")) == []


def test_a_csv_header_that_is_not_utf8_is_refused(api: httpx.Client) -> None:
    body = "réponse,id\nhello,1\n".encode("latin-1")
    response = post(api, body, "text/csv", prompt_column="réponse")
    assert (response.status_code, error_code(response)) == (422, "dataset_not_utf8")
    assert "not UTF-8" in response.text


def test_the_query_string_is_documented_as_parameters(live_api: LiveApi) -> None:
    operation = httpx.get(f"{live_api.base_url}/openapi.json").json()["paths"]["/v1/datasets"]
    parameters = {p["name"]: p for p in operation["post"]["parameters"]}
    assert {"source", "model", "prompt_column", "parameter_columns", "format"} <= set(parameters)
    assert parameters["model"]["required"] is True
    assert parameters["parameter_columns"]["schema"]["type"] == "array"
    assert "OFFPEAK_DATASET_SOURCES" in parameters["source"]["description"]


def test_unknown_and_repeated_query_parameters(api: httpx.Client) -> None:
    unknown = post(api, parquet(REVIEWS), prompt_column="text", colour="blue")
    assert (unknown.status_code, error_code(unknown)) == (422, "validation_error")
    assert unknown.json()["detail"][0]["loc"] == ["query", "colour"]
    bad_number = post(api, parquet(REVIEWS), prompt_column="text", max_tokens="many")
    assert bad_number.json()["detail"][0]["loc"] == ["query", "max_tokens"]
