"""`POST /v1/datasets?source=s3://...` reads only where the calling key may read: its
allowed prefixes (OFFPEAK_DATASET_SOURCES), never the service's own storage. Against a
live API of each stack and the real S3 server over HTTP."""

from __future__ import annotations

import gzip
import io
import json
import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import httpx
import polars as pl
import pytest

from offpeak.state.db import Database, upgrade
from offpeak.state.keys import create_key
from tests.api_adapter.conftest import stack_env, start_api, stop_api
from tests.api_adapter.helpers import MODEL, error_code, lines

pytestmark = pytest.mark.live

REVIEWS = pl.DataFrame({"review_id": ["r1", "r2"], "text": ["Great phone", "Battery died"]})


def parquet(frame: pl.DataFrame) -> bytes:
    sink = io.BytesIO()
    frame.write_parquet(sink)
    return sink.getvalue()


@dataclass
class SourcedApi:
    """An API whose `reader` key may read `s3://{bucket}/team/` (and, on the S3 stack,
    is even listed for the service's own bucket), while `other` may read nothing."""

    base_url: str
    env: dict[str, str]
    bucket: str
    reader: str
    other: str
    other_id: str
    s3: Any

    def client(self, secret: str) -> httpx.Client:
        return httpx.Client(base_url=self.base_url, headers={"X-API-Key": secret}, timeout=30)

    @property
    def own_storage(self) -> str | None:
        """`s3://bucket/prefix` of the service's own objects, on the S3 stack."""
        url = self.env.get("OFFPEAK_STORAGE_URL")
        return url.rstrip("/") if url else None


@pytest.fixture(scope="module", params=["sqlite-local", "postgres-s3"])
def sourced(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[SourcedApi]:
    env = stack_env(request.param, tmp_path_factory.mktemp(f"sources-{request.param}"), request)
    upgrade(env["OFFPEAK_DATABASE_URL"])
    db = Database(env["OFFPEAK_DATABASE_URL"])
    reader, reader_secret = create_key(db, "reader", 10)
    other, other_secret = create_key(db, "other", 10)
    s3 = boto3.client("s3", endpoint_url=env["OFFPEAK_S3_ENDPOINT_URL"], region_name="us-east-1")
    bucket = f"datasets-{uuid.uuid4().hex[:8]}"
    s3.create_bucket(Bucket=bucket)
    allowed = [f"s3://{bucket}/team/"]
    if own := env.get("OFFPEAK_STORAGE_URL"):
        # Listing the service's own bucket must not open it.
        allowed.append(f"s3://{own.removeprefix('s3://').split('/')[0]}/")
    env["OFFPEAK_DATASET_SOURCES"] = json.dumps({reader.id: allowed})
    process, base_url = start_api(env)
    try:
        yield SourcedApi(base_url, env, bucket, reader_secret, other_secret, other.id, s3)
    finally:
        stop_api(process)
        db.dispose()


def submit(client: httpx.Client, source: str) -> httpx.Response:
    params = {"model": MODEL, "prompt_column": "text", "source": source}
    return client.post("/v1/datasets", params=params)


def test_a_dataset_under_an_allowed_prefix_is_read(sourced: SourcedApi) -> None:
    key = f"team/in/{uuid.uuid4().hex[:6]}.parquet"
    sourced.s3.put_object(Bucket=sourced.bucket, Key=key, Body=parquet(REVIEWS))
    with sourced.client(sourced.reader) as api:
        response = submit(api, f"s3://{sourced.bucket}/{key}")
        assert response.status_code == 201, response.text
        batch = response.json()
        assert batch["metadata"]["dataset"]["source"] == f"s3://{sourced.bucket}/{key}"
        requests = lines(api.get("/v1/requests", params={"full": "true", "batch_id": batch["id"]}))
        assert [r["request_body"]["messages"][-1]["content"] for r in requests] == [
            "Great phone",
            "Battery died",
        ]
        missing = submit(api, f"s3://{sourced.bucket}/team/nope.parquet")
        assert (missing.status_code, error_code(missing)) == (422, "dataset_unreadable")
        assert f"s3://{sourced.bucket}/team/nope.parquet" in missing.text
        header_only = f"team/{uuid.uuid4().hex[:6]}.csv"
        sourced.s3.put_object(Bucket=sourced.bucket, Key=header_only, Body=b"text\n")
        empty = submit(api, f"s3://{sourced.bucket}/{header_only}")
        assert (empty.status_code, error_code(empty)) == (422, "dataset_empty")
        assert f"s3://{sourced.bucket}/{header_only}" in empty.text  # not a temporary copy


def _refused(client: httpx.Client, source: str, status: int, code: str) -> None:
    before = lines(client.get("/v1/batches"))
    response = submit(client, source)
    assert (response.status_code, error_code(response)) == (status, code), response.text
    assert lines(client.get("/v1/batches")) == before  # nothing created


def test_sources_outside_the_keys_prefixes_are_forbidden(sourced: SourcedApi) -> None:
    # Real, readable objects: only the allow-list stands between them and the caller.
    unrelated = f"unrelated-{uuid.uuid4().hex[:8]}"
    sourced.s3.create_bucket(Bucket=unrelated)
    body = parquet(REVIEWS)
    for bucket, key in [
        (unrelated, "team/data.parquet"),
        (sourced.bucket, "private/data.parquet"),
        (sourced.bucket, "team-private/data.parquet"),  # shares the prefix's letters only
        (sourced.bucket, "team/data.parquet"),
    ]:
        sourced.s3.put_object(Bucket=bucket, Key=key, Body=body)
    with sourced.client(sourced.reader) as api:
        for source in (
            f"s3://{unrelated}/team/data.parquet",
            f"s3://{sourced.bucket}/private/data.parquet",
            f"s3://{sourced.bucket}/team-private/data.parquet",
        ):
            _refused(api, source, 403, "dataset_source_forbidden")
        for source in (
            f"s3://{sourced.bucket}/team/../private/data.parquet",
            f"s3://{sourced.bucket}/team//data.parquet",
            f"s3://{sourced.bucket}",
            "/etc/passwd",
            "file:///etc/passwd",
        ):
            _refused(api, source, 422, "dataset_invalid_source")
    # The reader's prefix is the reader's: a key with no locations reads nothing.
    with sourced.client(sourced.other) as other:
        _refused(other, f"s3://{sourced.bucket}/team/data.parquet", 403, "dataset_source_forbidden")


def test_the_services_own_storage_is_never_a_source(sourced: SourcedApi, tmp_path: Path) -> None:
    # Another key's uploaded file, and a segment of its requests.
    with sourced.client(sourced.other) as other:
        line = {
            "custom_id": "a",
            "method": "POST",
            "url": "/v1/chat/completions",
            "body": {"model": MODEL, "messages": [{"role": "user", "content": "secret"}]},
        }
        uploaded = other.post(
            "/openai/v1/files",
            files={"file": ("in.jsonl", json.dumps(line).encode(), "application/jsonl")},
            data={"purpose": "batch"},
        )
        assert uploaded.status_code == 200, uploaded.text
        batch = other.post(
            "/v1/datasets",
            params={"model": MODEL, "prompt_column": "text"},
            content=parquet(REVIEWS),
            headers={"Content-Type": "application/octet-stream"},
        )
        assert batch.status_code == 201, batch.text
    file_path = f"openai/files/{sourced.other_id}/{uploaded.json()['id']}.jsonl"
    own = sourced.own_storage
    with sourced.client(sourced.reader) as api:
        if own is None:  # a folder store: its paths are no S3 source at all
            data_dir = Path(sourced.env["OFFPEAK_DATA_DIR"])
            stored = next(data_dir.rglob(f"{uploaded.json()['id']}.jsonl"))
            _refused(api, str(stored), 422, "dataset_invalid_source")
            return
        bucket, _, prefix = own.removeprefix("s3://").partition("/")
        listed = sourced.s3.list_objects_v2(Bucket=bucket, Prefix=f"{prefix}/requests/")
        segment = listed["Contents"][0]["Key"]
        sourced.s3.head_object(Bucket=bucket, Key=f"{prefix}/{file_path}")  # it is there
        for source in (
            f"{own}/{file_path}",
            f"s3://{bucket}/{segment}",
            f"{own}/results/{sourced.other_id}/x.jsonl",
            f"{own}/jobs/x/manifest.parquet",
            f"{own}/anything.parquet",
        ):
            _refused(api, source, 403, "dataset_source_forbidden")


def test_an_s3_dataset_past_the_size_limit_gets_413(sourced: SourcedApi) -> None:
    limit = int(sourced.env["OFFPEAK_MAX_DATASET_BYTES"])
    bomb = gzip.compress(b"text\n" + b"hello\n" * (2 * limit // 6), 9)  # small as stored
    noise = b"text\n" + os.urandom(limit)  # large as stored
    sourced.s3.put_object(Bucket=sourced.bucket, Key="team/bomb.csv.gz", Body=bomb)
    sourced.s3.put_object(Bucket=sourced.bucket, Key="team/big.csv", Body=noise)
    with sourced.client(sourced.reader) as api:
        for key in ("team/bomb.csv.gz", "team/big.csv"):
            _refused(api, f"s3://{sourced.bucket}/{key}", 413, "dataset_too_large")
