"""The official Anthropic SDK's Message Batches workflow, unchanged, against the served
stack: create, poll, read the results, list with pagination, cancel, delete."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import anthropic
import pytest
from anthropic import Anthropic
from anthropic.types.messages import MessageBatch, MessageBatchIndividualResponse

from tests.e2e.conftest import Stack

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(900)]

MODEL = "llama-3.1-70b-instruct-fp16"
# Far longer than the tiny model's 512-token context: the engine refuses this one alone.
TOO_LONG = " ".join(f"word{i}" for i in range(1500))
STOPS = [" ", "e", "a", "o"]  # one of these comes within a few tokens of any answer
SHOWN: dict[str, Any] = {}  # printed at the end, for the closing note


@pytest.fixture
def client(stack: Stack) -> Iterator[Anthropic]:
    with Anthropic(
        api_key=stack.new_key(), base_url=f"{stack.base_url}/anthropic", max_retries=0
    ) as sdk:
        yield sdk


def entry(custom_id: str, content: str, **params: Any) -> dict[str, Any]:
    return {
        "custom_id": custom_id,
        "params": {
            "model": MODEL,
            "max_tokens": 8,
            "messages": [{"role": "user", "content": content}],
            **params,
        },
    }


def wait(client: Anthropic, batch_id: str, timeout: float = 600) -> MessageBatch:
    deadline = time.monotonic() + timeout
    while (batch := client.messages.batches.retrieve(batch_id)).processing_status != "ended":
        assert time.monotonic() < deadline, f"batch {batch_id} still {batch.processing_status}"
        time.sleep(1)
    return batch


def results(client: Anthropic, batch_id: str) -> dict[str, MessageBatchIndividualResponse]:
    lines = list(client.messages.batches.results(batch_id))
    by_id = {line.custom_id: line for line in lines}
    assert len(by_id) == len(lines), "one line per request"
    return by_id


def test_a_message_batch_runs_through_the_sdk(client: Anthropic) -> None:
    entries = [entry(f"q-{i}", f"Tell me about topic {i}", temperature=i / 20) for i in range(18)]
    entries.append(
        entry(
            "with-system",
            "Hello",
            system=[{"type": "text", "text": "You answer briefly."}],
            top_k=5,
            top_p=0.9,
            metadata={"user_id": "u-1"},
        )
    )
    entries.append(entry("stops", "Say something", max_tokens=32, stop_sequences=STOPS))
    entries.insert(7, entry("too-long", TOO_LONG))
    created = client.messages.batches.create(requests=entries)  # type: ignore[arg-type]
    SHOWN["created"] = created.model_dump(mode="json")
    assert created.type == "message_batch" and created.processing_status == "in_progress"
    assert created.request_counts.processing == 21 and created.results_url is None
    assert (created.expires_at - created.created_at).total_seconds() == 24 * 3600

    done = wait(client, created.id)
    SHOWN["retrieved"] = done.model_dump(mode="json")
    counts = done.request_counts
    assert (counts.processing, counts.succeeded, counts.errored) == (0, 20, 1)
    assert (counts.canceled, counts.expired) == (0, 0)
    assert done.ended_at is not None and done.cancel_initiated_at is None
    assert done.results_url and done.results_url.endswith(f"/{done.id}/results")

    lines = results(client, done.id)
    assert set(lines) == {e["custom_id"] for e in entries}
    for custom_id, line in lines.items():
        if custom_id == "too-long":
            continue
        assert line.result.type == "succeeded", line
        message = line.result.message
        assert message.type == "message" and message.role == "assistant"
        assert message.model == MODEL and message.id.startswith("msg_")
        assert [block.type for block in message.content] == ["text"]
        assert message.usage.input_tokens > 0 and message.usage.output_tokens > 0
        limit = 32 if custom_id == "stops" else 8
        assert message.usage.output_tokens <= limit
        if message.stop_reason == "max_tokens":
            assert message.usage.output_tokens == limit and message.stop_sequence is None
        elif message.stop_reason == "end_turn":
            assert message.stop_sequence is None
    stopped = lines["stops"].result
    assert stopped.type == "succeeded" and stopped.message.stop_reason == "stop_sequence"
    assert stopped.message.stop_sequence in STOPS
    text = stopped.message.content[0]
    assert text.type == "text" and not any(s in text.text for s in STOPS)

    errored = lines["too-long"].result
    assert errored.type == "errored"
    assert errored.error.type == "error"
    assert errored.error.error.type == "invalid_request_error"
    assert "context" in errored.error.error.message
    SHOWN["lines"] = [
        lines[custom_id].model_dump(mode="json", exclude_none=True)
        for custom_id in ("with-system", "stops", "too-long")
    ]

    # The EXXA routes see the same batch.
    with httpx_client(client) as exxa:
        seen = exxa.get(f"/v1/batches/{done.id}").json()
        assert seen["request_counts"]["total"] == 21

    client.messages.batches.delete(done.id)
    with pytest.raises(anthropic.NotFoundError):
        client.messages.batches.retrieve(done.id)
    print(json.dumps(SHOWN, indent=1))


def httpx_client(client: Anthropic) -> Any:
    import httpx

    base = str(client.base_url).removesuffix("/").removesuffix("/anthropic")
    return httpx.Client(base_url=base, headers={"X-API-Key": client.api_key or ""}, timeout=30)


def test_list_cancel_and_errors_through_the_sdk(client: Anthropic) -> None:
    # Refused at create time, parsed by the SDK: the index and field named.
    with pytest.raises(anthropic.BadRequestError) as refused:
        client.messages.batches.create(
            requests=[entry("a", "x"), entry("a", "y")]  # type: ignore[list-item]
        )
    assert refused.value.body == {
        "type": "error",
        "error": {
            "type": "invalid_request_error",
            "message": "requests.1.custom_id: 'a' is already used by requests.0",
        },
    }

    small = client.messages.batches.create(
        requests=[entry(f"s{i}", f"Count to {i}") for i in range(2)]  # type: ignore[misc]
    )
    big = client.messages.batches.create(
        requests=[entry(f"b{i}", f"Story {i}", max_tokens=32) for i in range(64)]  # type: ignore[misc]
    )
    first = client.messages.batches.list(limit=1)
    assert [b.id for b in first.data] == [big.id] and first.has_more
    assert [b.id for b in client.messages.batches.list(limit=1)] == [big.id, small.id]
    newer = client.messages.batches.list(limit=1, before_id=small.id)
    assert [b.id for b in newer.data] == [big.id] and not newer.has_more

    # Cancel mid-way: once some requests have succeeded, before all have.
    deadline = time.monotonic() + 600
    while (seen := client.messages.batches.retrieve(big.id)).request_counts.succeeded == 0:
        assert time.monotonic() < deadline and seen.processing_status == "in_progress"
        time.sleep(0.3)
    cancelling = client.messages.batches.cancel(big.id)
    assert cancelling.processing_status in {"canceling", "ended"}
    assert cancelling.cancel_initiated_at is not None

    ended = wait(client, big.id)
    counts = ended.request_counts
    assert counts.succeeded >= 1 and counts.canceled >= 1
    assert counts.succeeded + counts.canceled + counts.errored == 64 and counts.processing == 0
    lines = results(client, big.id)
    assert set(lines) == {f"b{i}" for i in range(64)}
    kinds = [line.result.type for line in lines.values()]
    assert kinds.count("succeeded") == counts.succeeded
    assert kinds.count("canceled") == counts.canceled
    for line in lines.values():
        if line.result.type == "succeeded":
            assert line.result.message.content[0].type == "text"
            assert line.result.message.usage.output_tokens > 0

    with pytest.raises(anthropic.ConflictError):
        client.messages.batches.cancel(wait(client, small.id).id)
    deleted = client.messages.batches.delete(big.id)
    assert (deleted.id, deleted.type) == (big.id, "message_batch_deleted")
    assert [b.id for b in client.messages.batches.list()] == [small.id]
