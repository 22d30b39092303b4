"""OpenAI ``chat.completion`` bodies from plain generation data (pure, no vLLM).

The engine module copies what vLLM returns into the small dataclasses below; this module
shapes them the way the OpenAI API does, with usage counted exactly from token ids.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

MIN_LOGPROB = -9999.0


@dataclass(frozen=True)
class TopLogprob:
    """One of the most likely tokens at a position."""

    token: str
    logprob: float


@dataclass(frozen=True)
class TokenLogprob:
    """The sampled token at one position, with the most likely alternatives."""

    token: str
    logprob: float
    top: Sequence[TopLogprob] = ()  # best first; empty when top_logprobs was not asked


@dataclass(frozen=True)
class Choice:
    """One generated answer."""

    text: str
    token_ids: Sequence[int]
    finish_reason: str  # "stop" (eos or a stop string) or "length" (max_tokens reached)
    logprobs: Sequence[TokenLogprob] | None = field(default=None)  # one per token, if asked
    stop_reason: str | None = None  # the stop string that ended it, if one did


def usage(prompt_token_ids: Sequence[int], choices: Sequence[Choice]) -> dict[str, int]:
    """Token usage: the prompt once, the completions of every choice summed."""
    prompt = len(prompt_token_ids)
    completion = sum(len(c.token_ids) for c in choices)
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }


def chat_completion(
    *,
    request_id: str,
    model: str,
    created: int,
    prompt_token_ids: Sequence[int],
    choices: Sequence[Choice],
) -> dict[str, Any]:
    """The ``chat.completion`` body answering request ``request_id``."""
    return {
        "id": f"chatcmpl-{request_id}",
        "object": "chat.completion",
        "created": created,
        "model": model,
        "choices": [
            {
                "index": index,
                "message": {"role": "assistant", "content": choice.text},
                "finish_reason": choice.finish_reason,
                "logprobs": None if choice.logprobs is None else _logprobs(choice.logprobs),
                # As vLLM's server names it; only when a stop string matched, so other
                # answers keep OpenAI's exact shape.
                **({"stop_reason": choice.stop_reason} if choice.stop_reason else {}),
            }
            for index, choice in enumerate(choices)
        ],
        "usage": usage(prompt_token_ids, choices),
    }


def _logprobs(tokens: Sequence[TokenLogprob]) -> dict[str, Any]:
    return {
        "content": [
            {
                **_token(t.token, t.logprob),
                "top_logprobs": [_token(top.token, top.logprob) for top in t.top],
            }
            for t in tokens
        ]
    }


def _token(token: str, logprob: float) -> dict[str, Any]:
    # As OpenAI and vLLM's server do: -inf (a banned token) is reported as -9999 so the
    # body stays valid JSON, and a token that splits a UTF-8 character decodes to U+FFFD,
    # so its bytes are those of the replacement character.
    return {
        "token": token,
        "logprob": max(logprob, MIN_LOGPROB),
        "bytes": list(token.encode("utf-8")),
    }
