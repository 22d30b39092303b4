"""The Anthropic translation, both ways, without any service."""

from __future__ import annotations

from typing import Any

import pytest

from offpeak.anthropic import batch_object, chat_request, check_entries, message, result_line
from offpeak.catalog.models import ModelRegistry
from offpeak.config import PACKAGED_MODELS
from offpeak.errors import BatchInputInvalid
from offpeak.schemas import ErrorCode, RequestCounts, Status
from offpeak.schemas.anthropic import BatchEntry, MessageParams, ResultLine
from offpeak.state.batches import Tally
from offpeak.state.models import Batch

MODEL = "llama-3.1-70b-instruct-fp16"


def completion(finish: str = "stop", text: str = "Hi there", **choice: Any) -> dict[str, Any]:
    return {
        "id": "chatcmpl-x",
        "model": MODEL,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": text},
                "finish_reason": finish,
                **choice,
            }
        ],
        "usage": {"prompt_tokens": 12, "completion_tokens": 3, "total_tokens": 15},
    }


@pytest.mark.parametrize(
    ("finish", "choice", "reason", "sequence"),
    [
        ("stop", {}, "end_turn", None),
        ("length", {}, "max_tokens", None),
        ("stop", {"stop_reason": "END"}, "stop_sequence", "END"),
        ("stop", {"stop_reason": 7}, "end_turn", None),  # a stop token id: the model stopped
    ],
)
def test_a_completion_becomes_a_message(
    finish: str, choice: dict[str, Any], reason: str, sequence: str | None
) -> None:
    out = message("abc", completion(finish, **choice))
    assert out.model_dump() == {
        "id": "msg_abc",
        "type": "message",
        "role": "assistant",
        "model": MODEL,
        "content": [{"type": "text", "text": "Hi there"}],
        "stop_reason": reason,
        "stop_sequence": sequence,
        "usage": {"input_tokens": 12, "output_tokens": 3},
    }


def line(**given: Any) -> dict[str, Any]:
    args: dict[str, Any] = {
        "request_id": "r1",
        "custom_id": "c1",
        "status": Status.FAILED,
        "completion": None,
        "error_code": None,
        "error_message": None,
        **given,
    }
    made: ResultLine = result_line(**args)
    return made.model_dump()


def test_ended_requests_become_lines_of_each_kind() -> None:
    ok = line(status=Status.COMPLETED, completion=completion())
    assert ok["result"]["type"] == "succeeded" and ok["custom_id"] == "c1"
    assert line(status=Status.CANCELLED) == {"custom_id": "c1", "result": {"type": "canceled"}}
    assert line(error_code=ErrorCode.EXPIRED, error_message="too late") == {
        "custom_id": "c1",
        "result": {"type": "expired"},
    }
    refused = line(error_code=ErrorCode.CONTEXT_LENGTH_EXCEEDED, error_message="too long")
    assert refused["result"] == {
        "type": "errored",
        "error": {
            "type": "error",
            "error": {"type": "invalid_request_error", "message": "too long"},
        },
    }
    broken = line(error_code=ErrorCode.JOB_FAILED, error_message="the job kept failing")
    assert broken["result"]["error"]["error"]["type"] == "api_error"


def test_params_become_the_engines_chat_request() -> None:
    params = MessageParams.model_validate(
        {
            "model": MODEL,
            "max_tokens": 5,
            "system": "Be brief.",
            "messages": [
                {"role": "user", "content": "a"},
                {"role": "assistant", "content": [{"type": "text", "text": "b"}]},
                {"role": "user", "content": "c"},
            ],
            "stop_sequences": ["X"],
            "top_k": 3,
        }
    )
    body = chat_request(params).model_dump(exclude_none=True)
    assert [m["role"] for m in body["messages"]] == ["system", "user", "assistant", "user"]
    assert body["messages"][0]["content"] == "Be brief."
    assert body["messages"][2]["content"] == [{"type": "text", "text": "b"}]
    assert (body["max_tokens"], body["stop"], body["top_k"]) == (5, ["X"], 3)
    assert body["temperature"] == 1.0  # Anthropic's default, not the engine's


def test_check_entries_refuses_too_many_and_names_every_problem() -> None:
    registry = ModelRegistry.load(PACKAGED_MODELS)
    good = {"model": MODEL, "max_tokens": 4, "messages": [{"role": "user", "content": "x"}]}
    entries = [BatchEntry(custom_id=f"c{i}", params=good) for i in range(3)]
    assert [e.custom_id for e in check_entries(entries, registry, max_requests=3)] == [
        "c0",
        "c1",
        "c2",
    ]
    with pytest.raises(BatchInputInvalid) as refused:
        check_entries([*entries, BatchEntry(custom_id=5, params=[])], registry, max_requests=3)
    assert refused.value.message == (
        "requests: a batch holds at most 3 requests, not 4; "
        "requests.3.custom_id: must be 1 to 64 characters of a-z, A-Z, 0-9, _ and -; "
        "requests.3.params: must be an object (a Messages API request)"
    )


def test_a_batch_is_in_progress_canceling_then_ended() -> None:
    batch = Batch(
        id="b" * 24, key_id="k", status=Status.IN_PROGRESS, created_at=0, expires_at=86400
    )
    tally = Tally(counts=RequestCounts(total=3, completed=1, failed=1, in_progress=1), expired=1)
    shown = batch_object(batch, tally, settled=False, results_url="u")
    assert shown.processing_status == "in_progress" and shown.results_url is None
    assert shown.request_counts.model_dump() == {
        "processing": 1,
        "succeeded": 1,
        "errored": 0,
        "canceled": 0,
        "expired": 1,
    }
    assert (shown.created_at, shown.expires_at) == ("1970-01-01T00:00:00Z", "1970-01-02T00:00:00Z")
    batch.status, batch.ended_at = Status.CANCELLED, 60
    assert batch_object(batch, tally, settled=False, results_url="u").processing_status == (
        "canceling"
    )
    ended = batch_object(batch, tally, settled=True, results_url="u")
    assert (ended.processing_status, ended.results_url) == ("ended", "u")
    assert ended.cancel_initiated_at == "1970-01-01T00:01:00Z"
