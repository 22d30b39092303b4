from typing import Any

import pytest
from pydantic import ValidationError

from offpeak.ids import new_id
from offpeak.schemas import (
    MAX_COMPLETION_TOKENS,
    BatchCreate,
    ChatCompletionRequest,
    JsonObjectFormat,
    JsonSchemaFormat,
    RequestCreate,
    Status,
    TextPart,
    window_seconds,
)
from tests.utils.factories import EXXA_EXAMPLE, chat_body


def test_request_create_accepts_the_exxa_example_body() -> None:
    create = RequestCreate.model_validate(EXXA_EXAMPLE)
    assert create.request_body.model == "llama-3.1-8b-instruct-fp16"
    assert [m.role for m in create.request_body.messages] == ["system", "user"]
    assert create.request_body.max_tokens == 256
    assert create.metadata == {"customer_id": "c-42", "dataset": "haikus"}
    assert create.completion_window == "24h"


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"stream": True}, "stream=true is not supported"),
        ({"messages": []}, "at least 1 item"),
        ({"messages": [{"role": "tool", "content": "42"}]}, "role"),
        ({"n": 0}, "greater than or equal to 1"),
        ({"n": 129}, "less than or equal to 128"),
        ({"max_tokens": 0}, "greater than or equal to 1"),
        ({"max_tokens": MAX_COMPLETION_TOKENS + 1}, "less than or equal to 16384"),
        ({"max_completion_tokens": MAX_COMPLETION_TOKENS + 1}, "less than or equal to 16384"),
        ({"functions": []}, "Extra inputs are not permitted"),
        ({"top_logprobs": 3}, "top_logprobs requires logprobs=true"),
        ({"max_tokens": 10, "max_completion_tokens": 20}, "disagree"),
        ({"temperature": 2.5}, "temperature"),
        ({"stop": ["a", "b", "c", "d", "e"]}, "stop"),
        ({"response_format": {"type": "xml"}}, "response_format"),
    ],
)
def test_chat_request_refuses_what_a_batch_engine_cannot_honour(
    fields: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValidationError, match=message):
        ChatCompletionRequest.model_validate(chat_body(**fields))


def test_chat_request_refuses_image_parts() -> None:
    image = {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}}
    body = chat_body(messages=[{"role": "user", "content": [image]}])
    with pytest.raises(ValidationError, match="content"):
        ChatCompletionRequest.model_validate(body)


def test_chat_request_refuses_unknown_fields_in_messages() -> None:
    body = chat_body(messages=[{"role": "user", "content": "hi", "tool_calls": []}])
    with pytest.raises(ValidationError, match="Extra inputs are not permitted"):
        ChatCompletionRequest.model_validate(body)


def test_chat_request_accepts_content_as_a_list_of_text_parts() -> None:
    parts = [{"type": "text", "text": "Describe"}, {"type": "text", "text": " the sea."}]
    request = ChatCompletionRequest.model_validate(
        chat_body(messages=[{"role": "user", "content": parts}])
    )
    assert request.messages[0].content == [
        TextPart(type="text", text="Describe"),
        TextPart(type="text", text=" the sea."),
    ]


def test_chat_request_accepts_a_json_schema_response_format() -> None:
    schema = {"type": "object", "properties": {"answer": {"type": "string"}}}
    request = ChatCompletionRequest.model_validate(
        chat_body(
            response_format={
                "type": "json_schema",
                "json_schema": {"name": "answer", "schema": schema, "strict": True},
            }
        )
    )
    assert isinstance(request.response_format, JsonSchemaFormat)
    assert request.response_format.json_schema.schema_ == schema
    dumped = request.model_dump(by_alias=True, exclude_none=True)
    assert dumped["response_format"]["json_schema"]["schema"] == schema


def test_chat_request_accepts_a_json_object_response_format() -> None:
    request = ChatCompletionRequest.model_validate(
        chat_body(response_format={"type": "json_object"})
    )
    assert isinstance(request.response_format, JsonObjectFormat)


def test_chat_request_accepts_logprobs_with_top_logprobs() -> None:
    request = ChatCompletionRequest.model_validate(chat_body(logprobs=True, top_logprobs=5))
    assert request.top_logprobs == 5


def test_chat_request_accepts_the_largest_limits() -> None:
    request = ChatCompletionRequest.model_validate(
        chat_body(n=128, max_tokens=MAX_COMPLETION_TOKENS, max_completion_tokens=16384)
    )
    assert request.n == 128


@pytest.mark.parametrize(
    ("window", "seconds"), [("24h", 86_400), ("10m", 600), ("72h", 259_200), ("3d", 259_200)]
)
def test_window_seconds_of_valid_windows(window: str, seconds: int) -> None:
    assert window_seconds(window) == seconds


@pytest.mark.parametrize("window", ["73h", "0m", "1 day", "4d", "24", "h", "-1h", "24H"])
def test_window_seconds_refuses_invalid_windows(window: str) -> None:
    with pytest.raises(ValueError, match="completion_window"):
        window_seconds(window)


def test_request_create_refuses_an_invalid_completion_window() -> None:
    with pytest.raises(ValidationError, match="between 1m and 72h"):
        RequestCreate.model_validate({**EXXA_EXAMPLE, "completion_window": "73h"})


def test_request_create_refuses_a_webhook_that_is_not_a_url() -> None:
    with pytest.raises(ValidationError, match="webhook"):
        RequestCreate.model_validate({**EXXA_EXAMPLE, "webhook": "not a url"})


def test_batch_create_accepts_distinct_ids() -> None:
    ids = [new_id() for _ in range(3)]
    assert BatchCreate(requests_ids=ids).requests_ids == ids


def test_batch_create_refuses_an_empty_list() -> None:
    with pytest.raises(ValidationError, match="at least 1 item"):
        BatchCreate(requests_ids=[])


def test_batch_create_refuses_duplicates_naming_them() -> None:
    a, b, c = (new_id() for _ in range(3))
    with pytest.raises(ValidationError, match="duplicate request ids") as caught:
        BatchCreate(requests_ids=[a, b, a, c, b])
    assert f"{min(a, b)}, {max(a, b)}" in str(caught.value)
    assert c not in str(caught.value)


@pytest.mark.parametrize(
    "bad", ["", "123", "A" * 24, "g" * 24, "0" * 25, "../../etc/passwd000000000"]
)
def test_batch_create_refuses_malformed_ids(bad: str) -> None:
    with pytest.raises(ValidationError, match="pattern"):
        BatchCreate(requests_ids=[new_id(), bad])


def test_only_completed_failed_and_cancelled_are_final() -> None:
    assert {s for s in Status if s.is_final} == {
        Status.COMPLETED,
        Status.FAILED,
        Status.CANCELLED,
    }
