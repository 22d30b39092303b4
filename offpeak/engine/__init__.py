"""The inference engine: requests in, OpenAI response bodies out.

``vllm_engine.ChatEngine`` runs chat requests through vLLM; ``sampling`` (request ->
SamplingParams arguments) and ``results`` (vLLM outputs -> response bodies) are pure and
tested without vLLM; ``tiny`` builds the tiny local chat model. ``vllm_embed.EmbedEngine``
runs embeddings requests, with ``embeddings`` as its pure part; ``weights`` finds the
files a models.yaml entry names. vLLM is imported only by the two engine modules, so this
package imports without it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from offpeak.schemas import ChatCompletionRequest, EmbeddingRequest, ErrorInfo


@dataclass(frozen=True)
class EngineRequest:
    """One request to run."""

    id: str  # the request id; a chat response's id is "chatcmpl-" + this
    model: str  # the name the caller asked for, echoed in the response
    body: ChatCompletionRequest | EmbeddingRequest  # as the model's kind takes them


@dataclass(frozen=True)
class EngineResult:
    """The outcome of one request: a response body, or an error."""

    id: str
    result_body: dict[str, Any] | None  # an OpenAI `chat.completion` or embeddings body
    error: ErrorInfo | None  # why it failed, when it did
    prompt_tokens: int  # counted even for a failed request when known
    completion_tokens: int  # summed over the choices; 0 when failed


__all__ = ["EngineRequest", "EngineResult"]
