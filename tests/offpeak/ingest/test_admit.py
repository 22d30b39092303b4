"""The one admission check: the same refusals whichever ingest path asks."""

from __future__ import annotations

from decimal import Decimal

import pytest

from offpeak.catalog.models import ModelRegistry
from offpeak.config import PACKAGED_MODELS
from offpeak.errors import InsufficientCredits, LimitExceeded, UnknownModel, WrongModelKind
from offpeak.ingest.admit import admit, asked_tokens, context_cap, estimate
from offpeak.ingest.estimate import estimate_tokens
from offpeak.schemas import ChatCompletionRequest, EmbeddingRequest
from offpeak.state.models import ApiKey

REGISTRY = ModelRegistry.load(PACKAGED_MODELS)
CHAT, EMBED = "tiny-chat", "all-minilm-l6-v2"  # 512 and 256 tokens of context


def funded(usd: str) -> ApiKey:
    return ApiKey(id="k" * 24, name="k", credits_usd=Decimal(usd))


def chat(content: str = "hi", **fields: object) -> ChatCompletionRequest:
    return ChatCompletionRequest.model_validate(
        {"model": CHAT, "messages": [{"role": "user", "content": content}], **fields}
    )


def test_a_served_model_of_the_right_kind_within_its_limits_is_admitted() -> None:
    spec = admit(REGISTRY, CHAT, "chat", max_tokens=512, key=funded("1"), min_balance_usd=0.5)
    assert spec is REGISTRY.get(CHAT)
    assert admit(REGISTRY, EMBED, "embed") is REGISTRY.get(EMBED)


def test_an_unknown_model_is_refused_naming_the_served_ones() -> None:
    with pytest.raises(UnknownModel, match=f"'gpt-9' is not served here; available: .*{CHAT}"):
        admit(REGISTRY, "gpt-9", "chat")


@pytest.mark.parametrize(
    ("model", "wanted", "code", "says"),
    [
        (EMBED, "chat", "model_not_chat", "/openai/v1/batches"),
        (CHAT, "embed", "model_not_embed", "/v1/requests"),
    ],
)
def test_a_model_of_the_other_kind_is_refused(
    model: str, wanted: str, code: str, says: str
) -> None:
    with pytest.raises(WrongModelKind) as caught:
        admit(REGISTRY, model, wanted)  # type: ignore[arg-type]
    assert caught.value.code == code and says in caught.value.message
    assert (caught.value.kind, caught.value.wanted) == (REGISTRY.get(model).kind, wanted)


def test_max_tokens_above_the_models_is_refused() -> None:
    with pytest.raises(LimitExceeded) as caught:
        admit(REGISTRY, CHAT, "chat", max_tokens=513)
    assert caught.value.code == "invalid_input" and caught.value.param == "max_tokens"
    assert caught.value.message == "max_tokens 513 exceeds 512, the most tiny-chat allows"


def test_the_balance_is_checked_before_anything_else() -> None:
    with pytest.raises(InsufficientCredits):
        admit(REGISTRY, "gpt-9", "chat", key=funded("0.10"), min_balance_usd=0.20)
    admit(REGISTRY, CHAT, "chat", key=funded("0.20"), min_balance_usd=0.20)


def test_the_newer_completion_field_is_the_one_asked() -> None:
    assert asked_tokens(chat(max_completion_tokens=7)) == 7
    assert asked_tokens(chat(max_tokens=9)) == 9
    assert asked_tokens(chat()) is None


def test_estimates_stop_at_the_context_of_each_sequence() -> None:
    spec = REGISTRY.get(CHAT)
    short = chat("x" * 40, max_tokens=8)
    assert estimate(spec, short) == estimate_tokens(short) == 40 // 4 + 4 + 8
    long = chat("x" * 40_000, max_tokens=8, n=2)
    assert estimate_tokens(long) > context_cap(spec, 2)
    assert estimate(spec, long) == context_cap(spec, 2) == 2 * 512


def test_embedding_estimates_count_each_input_within_the_context() -> None:
    spec = REGISTRY.get(EMBED)
    body = EmbeddingRequest.model_validate({"model": EMBED, "input": ["abcdefgh", "x" * 4000]})
    assert estimate(spec, body) == (8 // 4 + 1) + 256  # the long input stops at the context
    tokens = EmbeddingRequest.model_validate({"model": EMBED, "input": [1, 2, 3]})
    assert estimate(spec, tokens) == 3
