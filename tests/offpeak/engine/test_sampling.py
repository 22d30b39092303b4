"""Request -> SamplingParams arguments: pure, no vLLM."""

from __future__ import annotations

import pytest

from offpeak.engine.sampling import chat_messages, max_tokens, sampling_kwargs, structured_output
from offpeak.errors import EngineRequestError, InvalidInput
from offpeak.schemas import DEFAULT_MAX_TOKENS
from tests.utils.factories import chat_request

SCHEMA = {"type": "object", "properties": {"ok": {"type": "boolean"}}, "required": ["ok"]}


def test_defaults_map_to_vllm_names() -> None:
    kwargs = sampling_kwargs(chat_request(), prompt_tokens=10, max_model_len=8192)
    assert kwargs == {
        "n": 1,
        "temperature": 0.7,
        "top_p": 1.0,
        "max_tokens": DEFAULT_MAX_TOKENS,
        "presence_penalty": 0.0,
        "frequency_penalty": 0.0,
    }


def test_every_field_is_carried_over() -> None:
    body = chat_request(
        temperature=1.3,
        top_p=0.9,
        n=3,
        max_tokens=40,
        stop=["\n\n", "END"],
        seed=42,
        presence_penalty=0.5,
        frequency_penalty=-0.5,
        logprobs=True,
        top_logprobs=5,
        logit_bias={"17": -100, "3": 2.5},
    )
    assert sampling_kwargs(body, 10, 512) == {
        "n": 3,
        "temperature": 1.3,
        "top_p": 0.9,
        "max_tokens": 40,
        "stop": ["\n\n", "END"],
        "seed": 42,
        "presence_penalty": 0.5,
        "frequency_penalty": -0.5,
        "logprobs": 5,
        "logit_bias": {17: -100, 3: 2.5},
    }


def test_a_single_stop_string_becomes_a_list() -> None:
    assert sampling_kwargs(chat_request(stop="END"), 10, 512)["stop"] == ["END"]


def test_an_empty_stop_string_is_refused() -> None:
    with pytest.raises(EngineRequestError) as caught:
        sampling_kwargs(chat_request(stop=["END", ""]), 10, 512)
    assert caught.value.code == "invalid_request"


def test_logprobs_alone_asks_for_the_sampled_token_only() -> None:
    assert sampling_kwargs(chat_request(logprobs=True), 10, 512)["logprobs"] == 0


def test_no_logprobs_unless_asked() -> None:
    assert "logprobs" not in sampling_kwargs(chat_request(), 10, 512)


def test_seed_zero_is_kept() -> None:
    assert sampling_kwargs(chat_request(seed=0), 10, 512)["seed"] == 0


@pytest.mark.parametrize("field", ["max_tokens", "max_completion_tokens"])
def test_either_max_tokens_field_is_honoured(field: str) -> None:
    assert max_tokens(chat_request(**{field: 100}), prompt_tokens=10, max_model_len=512) == 100


def test_max_tokens_defaults_to_the_default() -> None:
    assert max_tokens(chat_request(), prompt_tokens=10, max_model_len=100_000) == DEFAULT_MAX_TOKENS


def test_max_tokens_is_capped_by_the_context_left() -> None:
    assert max_tokens(chat_request(), prompt_tokens=500, max_model_len=512) == 12
    assert max_tokens(chat_request(max_tokens=300), prompt_tokens=500, max_model_len=512) == 12
    assert max_tokens(chat_request(max_tokens=5), prompt_tokens=500, max_model_len=512) == 5


def test_a_prompt_one_token_short_of_the_context_may_answer_one_token() -> None:
    assert max_tokens(chat_request(), prompt_tokens=511, max_model_len=512) == 1


@pytest.mark.parametrize("prompt_tokens", [512, 900])
def test_a_prompt_that_fills_the_context_is_refused(prompt_tokens: int) -> None:
    with pytest.raises(EngineRequestError) as caught:
        sampling_kwargs(chat_request(), prompt_tokens, 512)
    assert caught.value.code == "context_length_exceeded"
    assert str(prompt_tokens) in caught.value.message
    assert isinstance(caught.value, InvalidInput)


def test_json_schema_becomes_a_json_spec() -> None:
    body = chat_request(
        response_format={"type": "json_schema", "json_schema": {"name": "x", "schema": SCHEMA}}
    )
    assert structured_output(body) == {"json": SCHEMA}
    assert sampling_kwargs(body, 10, 512)["structured_outputs"] == {"json": SCHEMA}


def test_json_object_becomes_a_json_object_spec() -> None:
    body = chat_request(response_format={"type": "json_object"})
    assert sampling_kwargs(body, 10, 512)["structured_outputs"] == {"json_object": True}


@pytest.mark.parametrize("response_format", [None, {"type": "text"}])
def test_plain_text_has_no_structured_output(response_format: object) -> None:
    body = chat_request(response_format=response_format)
    assert "structured_outputs" not in sampling_kwargs(body, 10, 512)


def test_logit_bias_keys_must_be_token_ids() -> None:
    with pytest.raises(EngineRequestError) as caught:
        sampling_kwargs(chat_request(logit_bias={"hello": 1}), 10, 512)
    assert caught.value.code == "invalid_request"


def test_several_greedy_choices_are_refused() -> None:
    with pytest.raises(EngineRequestError, match="temperature") as caught:
        sampling_kwargs(chat_request(n=2, temperature=0), 10, 512)
    assert caught.value.code == "invalid_request"


def test_developer_becomes_system_and_parts_are_joined() -> None:
    body = chat_request(
        messages=[
            {"role": "developer", "content": "Be brief."},
            {
                "role": "user",
                "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}],
            },
            {"role": "assistant", "content": "ok", "name": "bot"},
        ]
    )
    assert chat_messages(body) == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "a\nb"},
        {"role": "assistant", "content": "ok", "name": "bot"},
    ]
