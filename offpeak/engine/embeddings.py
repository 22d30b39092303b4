"""From an embeddings request to token ids and back to an OpenAI response (pure, no vLLM).

The engine module tokenizes the texts and runs vLLM; the checks and the response shape
live here, so they are tested without an engine. Responses follow OpenAI's
``/v1/embeddings``: ``{"object": "list", "data": [...], "model", "usage"}``, with
``encoding_format: "base64"`` giving the little-endian float32 bytes of each vector.
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from offpeak.errors import EngineRequestError
from offpeak.schemas import ErrorCode


@dataclass(frozen=True)
class EmbeddingModel:
    """What the checks need to know about the model an engine serves."""

    max_model_len: int  # tokens one input may have, special tokens included
    vocab_size: int
    dimensions: int  # length of the vectors it returns
    matryoshka: bool = False  # trained so that shortened vectors stay useful
    matryoshka_dimensions: tuple[int, ...] | None = None  # the lengths allowed, if only some


def check_inputs(token_ids: Sequence[Sequence[int]], model: EmbeddingModel) -> None:
    """Raise :class:`EngineRequestError` unless every input fits the model.

    An input longer than the context fails the whole request rather than being cut, as
    OpenAI does: a silently truncated text would embed something the caller did not send.
    """
    for index, ids in enumerate(token_ids):
        if len(ids) > model.max_model_len:
            raise EngineRequestError(
                f"input {index} has {len(ids)} tokens but the model's context is "
                f"{model.max_model_len} tokens; shorten or split it",
                code=ErrorCode.CONTEXT_LENGTH_EXCEEDED,
            )
        if ids and max(ids) >= model.vocab_size:
            raise EngineRequestError(
                f"input {index} holds token id {max(ids)}, outside the model's vocabulary "
                f"of {model.vocab_size} tokens",
                code=ErrorCode.INVALID_REQUEST,
            )


def pooling_dimensions(asked: int | None, model: EmbeddingModel) -> int | None:
    """The ``dimensions`` to give vLLM for a request asking for ``asked``.

    None when the model's own length is wanted (asked for or not); a shorter length only
    for matryoshka models, which are trained for it. Cutting the vectors of any other
    model would quietly make them worse, so that is refused, as OpenAI refuses
    ``dimensions`` for its models without the feature.
    """
    if asked is None or asked == model.dimensions:
        return None
    if not model.matryoshka:
        raise EngineRequestError(
            f"this model returns {model.dimensions}-dimensional vectors and cannot shorten "
            f"them; leave dimensions unset or set it to {model.dimensions}",
            code=ErrorCode.INVALID_REQUEST,
        )
    allowed = model.matryoshka_dimensions
    if asked > model.dimensions or (allowed is not None and asked not in allowed):
        lengths = ", ".join(map(str, allowed)) if allowed else f"1 to {model.dimensions}"
        raise EngineRequestError(
            f"dimensions must be one of {lengths} for this model, not {asked}",
            code=ErrorCode.INVALID_REQUEST,
        )
    return asked


def encode_vector(vector: np.ndarray, encoding_format: str) -> list[float] | str:
    """One vector as OpenAI returns it: a list of floats, or base64 of float32 bytes."""
    values = np.asarray(vector, dtype="<f4")
    if encoding_format == "base64":
        return base64.b64encode(values.tobytes()).decode("ascii")
    floats: list[float] = values.tolist()  # float32 values, exact as Python floats
    return floats


def decode_base64(text: str) -> np.ndarray:
    """The float32 vector of a base64 embedding (what the OpenAI SDK does with one)."""
    return np.frombuffer(base64.b64decode(text), dtype="<f4")


def embedding_response(
    *,
    model: str,
    vectors: Sequence[np.ndarray],
    prompt_tokens: int,
    encoding_format: str,
) -> dict[str, Any]:
    """The ``/v1/embeddings`` response body: one entry per input, in input order.

    Embeddings have no completion: ``total_tokens`` equals ``prompt_tokens``.
    """
    return {
        "object": "list",
        "data": [
            {"object": "embedding", "index": index, "embedding": encode_vector(v, encoding_format)}
            for index, v in enumerate(vectors)
        ],
        "model": model,
        "usage": {"prompt_tokens": prompt_tokens, "total_tokens": prompt_tokens},
    }
