"""GPU pools (pools.yaml): where inference jobs run, in which grid zone, at what power."""

from __future__ import annotations

from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from offpeak.errors import ConfigError


class PoolSpec(BaseModel):
    """One entry of pools.yaml."""

    model_config = ConfigDict(extra="forbid")

    deployment: str = Field(description="Prefect deployment (flow/name) running its jobs.")
    zone: str = Field(description="Grid zone of the pool's data centre, as the provider names it.")
    gpus: int = Field(gt=0, description="Accelerators one job uses.")
    watts_per_gpu: float = Field(gt=0, description="Power draw of one accelerator at load.")
    pue: float = Field(1.2, ge=1.0, description="Power usage effectiveness of the data centre.")
    max_concurrent_jobs: int = Field(gt=0, description="Jobs the pool runs at once.")
    startup_seconds: float = Field(60.0, ge=0, description="Seconds from launch to first token.")

    def energy_kwh(self, seconds: float) -> float:
        """Energy drawn by one job running ``seconds`` on this pool, data centre included."""
        return self.gpus * self.watts_per_gpu * self.pue * seconds / 3_600_000


class _PoolsFile(BaseModel):
    pools: dict[str, PoolSpec] = Field(min_length=1)


def load_pools(path: Path) -> dict[str, PoolSpec]:
    """Pools by name, in file order: the first is the default pool (the baseline)."""
    try:
        return _PoolsFile.model_validate(yaml.safe_load(path.read_text())).pools
    except (OSError, yaml.YAMLError, ValidationError) as exc:
        raise ConfigError(f"cannot load pools {path}: {exc}") from exc


def pool_of_deployment(pools: dict[str, PoolSpec], deployment: str) -> tuple[str, PoolSpec]:
    """The pool whose jobs run on ``deployment`` (the default pool if none does)."""
    for name, pool in pools.items():
        if pool.deployment == deployment:
            return name, pool
    return next(iter(pools.items()))
