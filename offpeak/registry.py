"""The model registry: which models are served, their limits and prices (models.yaml)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import yaml
from pydantic import BaseModel, Field, ValidationError

from offpeak.errors import ConfigError, UnknownModel


class ModelSpec(BaseModel):
    """One entry of models.yaml."""

    context_length: int = Field(gt=0, description="Tokens of context (prompt + completion).")
    max_completion_tokens: int = Field(gt=0, description="Largest max_tokens accepted.")
    price_input_per_1m: float = Field(ge=0, description="USD per million prompt tokens.")
    price_output_per_1m: float = Field(ge=0, description="USD per million completion tokens.")


class _RegistryFile(BaseModel):
    models: dict[str, ModelSpec] = Field(min_length=1)


@dataclass(frozen=True)
class ModelRegistry:
    """The served models by name."""

    models: dict[str, ModelSpec]

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

    def __contains__(self, name: object) -> bool:
        return name in self.models
