"""The model registry: served models, the weights behind them, limits and prices.

Each entry of models.yaml either names its own weights (a local folder, a hub id,
``builtin:tiny-chat`` or ``package:<python package>/<folder>``, see
:mod:`offpeak.engine.weights`) or is a *stand-in*: a public model name served by another
entry's weights (on a laptop, the EXXA names run on the tiny model). Requests are
grouped by the engine model that serves them, so stand-ins share one engine.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from offpeak.errors import ConfigError, UnknownModel


class ModelSpec(BaseModel):
    """One entry of models.yaml."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["chat", "embed"] = Field("chat", description="What the model serves.")
    weights: str | None = Field(
        None,
        description="Local folder, hub id, `builtin:tiny-chat` (built on first use), or "
        "`package:<python package>/<folder>` (model files shipped in an installed package).",
    )
    stand_in: str | None = Field(
        None, description="Serve this name with another entry's weights (flagged as a stand-in)."
    )
    engine: dict[str, Any] = Field(
        default_factory=dict,
        description="vLLM engine arguments: dtype, max_model_len, tensor_parallel_size, ...",
    )
    context_length: int = Field(gt=0, description="Tokens of context (prompt + completion).")
    max_completion_tokens: int = Field(
        0, ge=0, description="Largest max_tokens accepted; 0 for embedding models (no completion)."
    )
    throughput_tokens_per_s: float = Field(
        1000.0,
        gt=0,
        description="Estimated tokens per second of one job, for planning: output tokens for "
        "chat models, input tokens for embedding models.",
    )
    price_input_per_1m: float = Field(ge=0, description="USD per million prompt tokens.")
    price_output_per_1m: float = Field(ge=0, description="USD per million completion tokens.")

    @model_validator(mode="after")
    def _consistent(self) -> ModelSpec:
        if (self.weights is None) == (self.stand_in is None):
            raise ValueError("give exactly one of `weights` or `stand_in`")
        if self.kind == "chat" and self.max_completion_tokens < 1:
            raise ValueError("a chat model needs max_completion_tokens >= 1")
        if self.kind == "embed" and self.max_completion_tokens:
            raise ValueError(
                "an embedding model completes nothing: leave max_completion_tokens out"
            )
        return self

    def cost_usd(self, prompt_tokens: int, completion_tokens: int) -> float:
        """What a request with this usage costs."""
        return (
            prompt_tokens * self.price_input_per_1m + completion_tokens * self.price_output_per_1m
        ) / 1_000_000


class _RegistryFile(BaseModel):
    models: dict[str, ModelSpec] = Field(min_length=1)


@dataclass(frozen=True)
class ModelRegistry:
    """The served models by name."""

    models: dict[str, ModelSpec]

    def __post_init__(self) -> None:
        for name, spec in self.models.items():
            if spec.stand_in is None:
                continue
            target = self.models.get(spec.stand_in)
            if target is None or target.stand_in is not None:
                raise ConfigError(
                    f"model {name!r} stands in for {spec.stand_in!r}, "
                    "which must be an entry with its own weights"
                )
            if target.kind != spec.kind:
                raise ConfigError(f"model {name!r} is {spec.kind} but {spec.stand_in!r} is not")

    @classmethod
    def load(cls, path: Path) -> ModelRegistry:
        try:
            raw = yaml.safe_load(path.read_text())
            return cls(_RegistryFile.model_validate(raw).models)
        except (OSError, yaml.YAMLError, ValidationError) as exc:
            raise ConfigError(f"cannot load model registry {path}: {exc}") from exc

    def get(self, name: str) -> ModelSpec:
        try:
            return self.models[name]
        except KeyError:
            available = ", ".join(sorted(self.models))
            raise UnknownModel(
                f"model {name!r} is not served here; available: {available}"
            ) from None

    def engine_model(self, name: str) -> str:
        """The entry whose weights serve ``name`` (itself unless it is a stand-in)."""
        return self.get(name).stand_in or name

    def served_by(self, engine_model: str) -> list[str]:
        """Every name served by ``engine_model``'s weights, itself included."""
        return sorted(n for n in self.models if self.engine_model(n) == engine_model)

    def stand_ins(self) -> dict[str, str]:
        """Stand-in name -> the entry whose weights serve it."""
        return {n: s.stand_in for n, s in self.models.items() if s.stand_in}

    def __contains__(self, name: object) -> bool:
        return name in self.models
