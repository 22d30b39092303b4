"""offpeak.client.http against the live API: typed objects back, errors as ClientError."""

from __future__ import annotations

from pathlib import Path

import httpx
import polars as pl
import pytest

from offpeak.client.http import OffpeakClient, _query, raise_for_error, results_format
from offpeak.errors import ApiUnreachable, ClientError, OffpeakError
from offpeak.schemas import BatchObject, DatasetMapping, RequestObject, StatusObject
from tests.api_adapter.conftest import LiveApi
from tests.api_adapter.helpers import MODEL, chat_body
from tests.utils.services import free_port

pytestmark = pytest.mark.live


@pytest.fixture
def client(live_api: LiveApi, key: str) -> OffpeakClient:
    return OffpeakClient(live_api.base_url, key)


def test_requests_and_batches_come_back_as_schema_objects(client: OffpeakClient) -> None:
    with client:
        created = client.create_request(chat_body("Hi"), metadata={"custom_id": "a"})
        assert isinstance(created, StatusObject) and created.status == "registered"
        full = client.get_request(created.id)
        assert isinstance(full, RequestObject) and full.metadata == {"custom_id": "a"}
        assert client.request_status(created.id).id == created.id

        other = client.create_request(chat_body("Ho"))
        batch = client.create_batch([created.id, other.id], metadata={"team": "x"})
        assert isinstance(batch, BatchObject) and batch.request_counts.total == 2
        assert [b.id for b in client.list_batches()] == [batch.id]
        assert {r.id for r in client.list_requests(batch_id=batch.id)} == {created.id, other.id}

        cancelled = client.cancel(batch.id)
        assert isinstance(cancelled, BatchObject) and cancelled.status == "cancelled"
        assert client.wait(batch.id, poll_seconds=0.1).status == "cancelled"

        single = client.create_request(chat_body("Alone"))
        gone = client.cancel(single.id)  # a request id cancels that request
        assert not isinstance(gone, BatchObject) and gone.status == "cancelled"


def test_api_errors_carry_status_and_code(client: OffpeakClient) -> None:
    with client:
        with pytest.raises(ClientError) as caught:
            client.get_batch("0" * 24)
        assert (caught.value.status, caught.value.code) == (404, "batch_not_found")
        assert isinstance(caught.value, OffpeakError)

        batch = client.create_batch([client.create_request(chat_body()).id])
        with pytest.raises(ClientError) as caught:
            next(client.results(batch.id))
        assert (caught.value.status, caught.value.code) == (409, "batch_not_completed")


def test_a_wrong_key_and_no_server(live_api: LiveApi) -> None:
    with OffpeakClient(live_api.base_url, "op-wrong") as client, pytest.raises(ClientError) as e:
        next(client.list_batches())
    assert e.value.status == 401
    with (
        OffpeakClient(f"http://127.0.0.1:{free_port()}", "k") as client,
        pytest.raises(ApiUnreachable) as unreachable,
    ):
        client.get_batch("0" * 24)
    assert unreachable.value.status == 0 and isinstance(unreachable.value, ConnectionError)


def test_submit_dataset_streams_the_file_and_reports_progress(
    client: OffpeakClient, tmp_path: Path
) -> None:
    path = tmp_path / "prompts.parquet"
    pl.DataFrame({"q": [f"question {i}" for i in range(500)]}).write_parquet(path)
    seen: list[tuple[int, int | None]] = []
    mapping = DatasetMapping(model=MODEL, prompt_column="q", name="qs", max_tokens=16)
    with client:
        batch = client.submit_dataset(path, mapping, progress=lambda d, t: seen.append((d, t)))
        assert batch.request_counts.total == 500 and batch.metadata["name"] == "qs"
        assert batch.metadata["dataset"]["source"] == "prompts.parquet"
        assert seen[-1] == (path.stat().st_size, path.stat().st_size)

        with pytest.raises(ClientError) as caught:
            client.submit_dataset(path, DatasetMapping(model=MODEL, prompt_column="nope"))
        assert caught.value.code == "dataset_column_missing" and "'nope'" in str(caught.value)
        with pytest.raises(ClientError, match="cannot read"):
            client.submit_dataset(tmp_path / "missing.csv", mapping)
        with pytest.raises(ClientError) as waited:
            client.wait(batch.id, poll_seconds=0.05, timeout=0.1)
        assert waited.value.code == "wait_timeout"


def test_mapping_to_query_and_results_format() -> None:
    mapping = DatasetMapping(
        model="m", prompt_column="p", parameter_columns=["temperature=t", "seed"], max_tokens=5
    )
    assert _query(mapping) == [
        ("model", "m"),
        ("prompt_column", "p"),
        ("parameter_columns", "temperature=t"),
        ("parameter_columns", "seed"),
        ("max_tokens", "5"),
    ]
    assert results_format("out.parquet") == "parquet"
    assert results_format("out.jsonl") == "jsonl"


def test_error_bodies_of_every_shape_become_one_message() -> None:
    request = httpx.Request("GET", "http://x/")
    validation = httpx.Response(
        422,
        json={
            "detail": [{"loc": ["query", "model"], "msg": "missing"}],
            "code": "validation_error",
        },
        request=request,
    )
    with pytest.raises(ClientError, match=r"^model: missing$") as caught:
        raise_for_error(validation)
    assert caught.value.code == "validation_error"
    plain = httpx.Response(502, text="bad gateway", request=request)
    with pytest.raises(ClientError, match="HTTP 502: bad gateway"):
        raise_for_error(plain)
