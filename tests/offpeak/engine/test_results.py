"""chat.completion bodies from plain generation data: pure, no vLLM."""

from __future__ import annotations

import json

from offpeak.engine.results import Choice, TokenLogprob, TopLogprob, chat_completion, usage


def body(*choices: Choice, prompt: tuple[int, ...] = (1, 2, 3)) -> dict:
    return chat_completion(
        request_id="abc123",
        model="llama-3.1-8b-instruct-fp16",
        created=1_700_000_000,
        prompt_token_ids=prompt,
        choices=choices,
    )


def test_body_has_the_openai_shape() -> None:
    assert body(Choice("Hello!", [5, 6, 7], "stop")) == {
        "id": "chatcmpl-abc123",
        "object": "chat.completion",
        "created": 1_700_000_000,
        "model": "llama-3.1-8b-instruct-fp16",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "Hello!"},
                "finish_reason": "stop",
                "logprobs": None,
            }
        ],
        "usage": {"prompt_tokens": 3, "completion_tokens": 3, "total_tokens": 6},
    }


def test_usage_sums_the_completions_of_every_choice() -> None:
    choices = [
        Choice("a", [1], "stop"),
        Choice("bc", [2, 3, 4, 5], "length"),
        Choice("", [], "stop"),
    ]
    assert usage(list(range(10)), choices) == {
        "prompt_tokens": 10,
        "completion_tokens": 5,
        "total_tokens": 15,
    }
    result = body(*choices)
    assert [c["index"] for c in result["choices"]] == [0, 1, 2]
    assert [c["finish_reason"] for c in result["choices"]] == ["stop", "length", "stop"]


def test_logprobs_have_the_openai_shape() -> None:
    logprobs = [
        TokenLogprob(" hi", -0.5, [TopLogprob(" hi", -0.5), TopLogprob(" yo", -1.5)]),
        TokenLogprob("é", -2.0, [TopLogprob(" a", -0.1), TopLogprob(" b", -0.2)]),
    ]
    choice = body(Choice(" hié", [8, 9], "length", logprobs))["choices"][0]
    assert choice["logprobs"] == {
        "content": [
            {
                "token": " hi",
                "logprob": -0.5,
                "bytes": [32, 104, 105],
                "top_logprobs": [
                    {"token": " hi", "logprob": -0.5, "bytes": [32, 104, 105]},
                    {"token": " yo", "logprob": -1.5, "bytes": [32, 121, 111]},
                ],
            },
            {
                "token": "é",
                "logprob": -2.0,
                "bytes": [195, 169],
                "top_logprobs": [
                    {"token": " a", "logprob": -0.1, "bytes": [32, 97]},
                    {"token": " b", "logprob": -0.2, "bytes": [32, 98]},
                ],
            },
        ]
    }


def test_logprobs_without_top_logprobs_have_empty_lists() -> None:
    choice = body(Choice("x", [4], "stop", [TokenLogprob("x", -1.0)]))["choices"][0]
    assert choice["logprobs"]["content"][0]["top_logprobs"] == []


def test_a_banned_token_logprob_stays_valid_json() -> None:
    choice = Choice("x", [4], "stop", [TokenLogprob("x", float("-inf"))])
    text = json.dumps(body(choice), allow_nan=False)
    assert json.loads(text)["choices"][0]["logprobs"]["content"][0]["logprob"] == -9999.0


def test_a_split_utf8_character_reports_the_replacement_bytes() -> None:
    choice = Choice("\ufffd", [200], "length", [TokenLogprob("\ufffd", -3.0)])
    assert body(choice)["choices"][0]["logprobs"]["content"][0]["bytes"] == [239, 191, 189]
