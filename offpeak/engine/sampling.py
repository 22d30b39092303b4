"""From a chat-completions request to what vLLM needs: messages and sampling arguments.

Pure functions, no vLLM import: the engine module turns the plain data returned here
into ``SamplingParams`` and ``StructuredOutputsParams``. The mapping follows what
vLLM's own OpenAI server does with the same fields.
"""

from __future__ import annotations

from typing import Any

from offpeak.errors import EngineRequestError
from offpeak.schemas import (
    DEFAULT_MAX_TOKENS,
    ChatCompletionRequest,
    ChatMessage,
    ErrorCode,
    JsonObjectFormat,
    JsonSchemaFormat,
)


def chat_messages(body: ChatCompletionRequest) -> list[dict[str, str]]:
    """The conversation as vLLM's ``LLM.chat`` takes it.

    ``developer`` becomes ``system`` (chat templates know no developer role), and text
    parts are joined with newlines, as vLLM joins them for string-content templates.
    """
    return [_message(m) for m in body.messages]


def _message(message: ChatMessage) -> dict[str, str]:
    content = message.content
    text = content if isinstance(content, str) else "\n".join(p.text for p in content)
    out = {"role": "system" if message.role == "developer" else message.role, "content": text}
    if message.name is not None:
        out["name"] = message.name
    return out


def max_tokens(body: ChatCompletionRequest, prompt_tokens: int, max_model_len: int) -> int:
    """Tokens the answer may take: what was asked (or the default), within the context left.

    Raises :class:`EngineRequestError` when the prompt leaves no room for any answer.
    """
    room = max_model_len - prompt_tokens
    if room < 1:
        raise EngineRequestError(
            f"the prompt has {prompt_tokens} tokens but the model's context is "
            f"{max_model_len} tokens, which leaves no room for an answer",
            code=ErrorCode.CONTEXT_LENGTH_EXCEEDED,
        )
    asked = body.max_completion_tokens or body.max_tokens or DEFAULT_MAX_TOKENS
    return min(asked, room)


def structured_output(body: ChatCompletionRequest) -> dict[str, Any] | None:
    """``StructuredOutputsParams`` keyword arguments for the response format, if any."""
    fmt = body.response_format
    if isinstance(fmt, JsonSchemaFormat):
        return {"json": fmt.json_schema.schema_}
    if isinstance(fmt, JsonObjectFormat):
        return {"json_object": True}
    return None


def sampling_kwargs(
    body: ChatCompletionRequest, prompt_tokens: int, max_model_len: int
) -> dict[str, Any]:
    """Keyword arguments of vLLM's ``SamplingParams`` for ``body``, as plain data.

    ``structured_outputs``, when present, is a dict of ``StructuredOutputsParams``
    arguments for the engine module to wrap. Raises :class:`EngineRequestError` for a
    request no engine could run as it is.
    """
    if body.n > 1 and body.temperature == 0:
        # Greedy decoding has one answer; vLLM refuses n > 1 with it.
        raise EngineRequestError(
            "n > 1 needs temperature > 0: greedy decoding gives a single answer",
            code=ErrorCode.INVALID_REQUEST,
        )
    kwargs: dict[str, Any] = {
        "n": body.n,
        "temperature": body.temperature,
        "top_p": body.top_p,
        "max_tokens": max_tokens(body, prompt_tokens, max_model_len),
        "presence_penalty": body.presence_penalty,
        "frequency_penalty": body.frequency_penalty,
    }
    if body.stop is not None:
        stop = [body.stop] if isinstance(body.stop, str) else list(body.stop)
        if not all(stop):
            raise EngineRequestError(
                "stop strings must not be empty", code=ErrorCode.INVALID_REQUEST
            )
        kwargs["stop"] = stop
    if body.top_k is not None:
        kwargs["top_k"] = body.top_k
    if body.seed is not None:
        kwargs["seed"] = body.seed
    if body.logprobs:
        # The sampled token's logprob always comes back; top_logprobs adds the k best.
        kwargs["logprobs"] = body.top_logprobs or 0
    if body.logit_bias:
        kwargs["logit_bias"] = _logit_bias(body.logit_bias)
    if (spec := structured_output(body)) is not None:
        kwargs["structured_outputs"] = spec
    return kwargs


def _logit_bias(bias: dict[str, float]) -> dict[int, float]:
    try:
        return {int(token): value for token, value in bias.items()}
    except ValueError:
        raise EngineRequestError(
            "logit_bias keys must be token ids (integers as strings)",
            code=ErrorCode.INVALID_REQUEST,
        ) from None
