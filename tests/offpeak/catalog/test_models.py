from pathlib import Path

import pytest

from offpeak.catalog.models import ModelRegistry
from offpeak.config import PACKAGED_MODELS
from offpeak.errors import ConfigError, InvalidInput, UnknownModel
from tests.utils.factories import MODEL


def test_packaged_registry_serves_the_exxa_models() -> None:
    registry = ModelRegistry.load(PACKAGED_MODELS)
    assert MODEL in registry
    spec = registry.get(MODEL)
    assert spec.max_completion_tokens <= spec.context_length


def test_unknown_model_is_refused_listing_the_served_ones() -> None:
    registry = ModelRegistry.load(PACKAGED_MODELS)
    with pytest.raises(UnknownModel, match=MODEL) as caught:
        registry.get("gpt-17")
    assert caught.value.code == "model_not_found"
    assert isinstance(caught.value, InvalidInput)


@pytest.mark.parametrize(
    "text",
    [
        "models: {}\n",
        "models:\n  m:\n    context_length: 0\n",
        "not: [valid\n",
    ],
)
def test_invalid_registry_file_raises_config_error(tmp_path: Path, text: str) -> None:
    path = tmp_path / "models.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=str(path)):
        ModelRegistry.load(path)


def test_missing_registry_file_raises_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError):
        ModelRegistry.load(tmp_path / "absent.yaml")


def test_the_example_gpu_registry_loads_and_serves_the_exxa_names() -> None:
    example = Path(__file__).resolve().parents[3] / "infra" / "models.example.yaml"
    registry = ModelRegistry.load(example)
    default = ModelRegistry.load(PACKAGED_MODELS)
    assert set(default.stand_ins()) <= set(registry.models)
    assert registry.stand_ins() == {}


def test_stand_ins_resolve_to_their_engine_model() -> None:
    registry = ModelRegistry.load(PACKAGED_MODELS)
    assert registry.engine_model("llama-3.1-70b-instruct-fp16") == "tiny-chat"
    assert registry.engine_model("tiny-chat") == "tiny-chat"
    assert "llama-3.1-8b-instruct-fp16" in registry.served_by("tiny-chat")


def test_the_default_registry_serves_an_embedding_model() -> None:
    spec = ModelRegistry.load(PACKAGED_MODELS).get("all-minilm-l6-v2")
    assert spec.kind == "embed"
    assert spec.max_completion_tokens == 0 and spec.price_output_per_1m == 0
    assert spec.cost_usd(1_000_000, 0) == spec.price_input_per_1m


@pytest.mark.parametrize(
    ("entry", "problem"),
    [
        ("kind: chat\n    weights: w\n", "max_completion_tokens >= 1"),
        ("kind: embed\n    weights: w\n    max_completion_tokens: 16\n", "completes nothing"),
    ],
)
def test_completion_limits_must_fit_the_kind(tmp_path: Path, entry: str, problem: str) -> None:
    path = tmp_path / "models.yaml"
    prices = "    context_length: 256\n    price_input_per_1m: 1\n    price_output_per_1m: 0\n"
    path.write_text(f"models:\n  m:\n    {entry}{prices}")
    with pytest.raises(ConfigError, match=problem):
        ModelRegistry.load(path)
