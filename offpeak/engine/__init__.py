"""The inference engine: chat requests in, OpenAI chat-completion bodies out.

``vllm_engine.ChatEngine`` runs requests through vLLM; ``sampling`` (request ->
SamplingParams arguments) and ``results`` (vLLM outputs -> response bodies) are pure and
tested without vLLM; ``tiny`` builds the tiny local chat model. vLLM is imported only by
``vllm_engine``, so this package imports without it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from offpeak.schemas import ChatCompletionRequest, ErrorInfo


@dataclass(frozen=True)
class EngineRequest:
    """One request to run."""

    id: str  # the request id; the response id is "chatcmpl-" + this
    model: str  # the name the caller asked for, echoed in the response
    body: ChatCompletionRequest


@dataclass(frozen=True)
class EngineResult:
    """The outcome of one request: a response body, or an error."""

    id: str
    result_body: dict[str, Any] | None  # an OpenAI `chat.completion` body when completed
    error: ErrorInfo | None  # why it failed, when it did
    prompt_tokens: int  # counted even for a failed request when known
    completion_tokens: int  # summed over the choices; 0 when failed


__all__ = ["EngineRequest", "EngineResult"]
