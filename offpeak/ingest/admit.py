"""The one admission check of every ingest path: single requests, OpenAI input files
and datasets all ask :func:`admit` whether work may come in.

It checks, in this order, the key's balance, that the model is served here and of the
kind the endpoint runs (chat or embeddings), and that the request asks no more than the
model allows (max_tokens). :func:`estimate` gives the tokens an admitted request may
take, within the model's context. Refusals are exceptions of :mod:`offpeak.errors`;
each path words them in its own dialect where it must (an OpenAI file lists them per
line, a dataset names its mapping). Pure apart from reading the key it is handed.
"""

from __future__ import annotations

from typing import Literal

from offpeak.catalog.models import ModelRegistry, ModelSpec
from offpeak.errors import LimitExceeded, WrongModelKind
from offpeak.ingest.estimate import CHARS_PER_TOKEN, estimate_tokens
from offpeak.schemas import ChatCompletionRequest, EmbeddingRequest
from offpeak.state.keys import require_balance
from offpeak.state.models import ApiKey

Kind = Literal["chat", "embed"]


def admit(
    registry: ModelRegistry,
    model: str,
    kind: Kind,
    *,
    max_tokens: int | None = None,
    key: ApiKey | None = None,
    min_balance_usd: float = 0.0,
) -> ModelSpec:
    """The model's spec if work for ``model`` may come in at an endpoint of ``kind``.

    ``key``: the caller, whose balance must reach ``min_balance_usd`` (checked first;
    paths that check many lines of one submission check the key once, before them).
    Raises :class:`~offpeak.errors.InsufficientCredits`,
    :class:`~offpeak.errors.UnknownModel`, :class:`~offpeak.errors.WrongModelKind`
    or :class:`~offpeak.errors.LimitExceeded`.
    """
    if key is not None:
        require_balance(key, min_balance_usd)
    spec = registry.get(model)
    if spec.kind != kind:
        raise _wrong_kind(model, spec.kind, kind)
    check_limits(spec, model, max_tokens)
    return spec


def check_limits(spec: ModelSpec, model: str, max_tokens: int | None) -> None:
    """Refuse a completion limit above the model's (:class:`LimitExceeded`). A dataset
    checks its mapping's here, and its per-row columns against the same limit."""
    if max_tokens is not None and max_tokens > spec.max_completion_tokens:
        raise LimitExceeded(
            "max_tokens",
            f"{max_tokens} exceeds {spec.max_completion_tokens}, the most {model} allows",
        )


def _wrong_kind(model: str, kind: str, wanted: Kind) -> WrongModelKind:
    if wanted == "chat":
        message = (
            f"{model} is an {kind} model, not a chat model: send its requests as "
            "/v1/embeddings lines of an OpenAI batch (/openai/v1/batches)"
        )
        return WrongModelKind(message, model=model, kind=kind, wanted=wanted, code="model_not_chat")
    message = (
        f"{model} is a {kind} model, not an embedding model: send its requests to "
        "/v1/requests or as /v1/chat/completions lines of an OpenAI batch"
    )
    return WrongModelKind(message, model=model, kind=kind, wanted=wanted, code="model_not_embed")


def asked_tokens(body: ChatCompletionRequest) -> int | None:
    """The completion limit a chat request asks for, if any (the newer field wins)."""
    return body.max_completion_tokens or body.max_tokens


def context_cap(spec: ModelSpec, n: int = 1) -> int:
    """The most tokens one request can take: each of its ``n`` sequences (prompt and
    answer) fits in the model's context, or the engine refuses it without running it."""
    return spec.context_length * n


def estimate(spec: ModelSpec, body: ChatCompletionRequest | EmbeddingRequest) -> int:
    """Tokens an admitted request may take (the planner's measure of work), from its
    body alone, within :func:`context_cap`."""
    if isinstance(body, ChatCompletionRequest):
        return min(estimate_tokens(body), context_cap(spec, body.n))
    # Each input is its own sequence: one longer than the context fails, it is not cut.
    cap = context_cap(spec)
    return sum(
        min(len(item) // CHARS_PER_TOKEN + 1 if isinstance(item, str) else len(item), cap)
        for item in body.inputs()
    )
