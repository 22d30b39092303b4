"""Carbon accounting: what a job emitted, shared among its requests, against a baseline.

Pure arithmetic. A job's energy is GPUs x watts x wall time x PUE; its emissions are
that energy at the grid intensity seen while it ran. Each request takes a share in
proportion to its tokens; its baseline is the same energy at the intensity of the
default pool's zone at the hour it was submitted (running it at once, carbon-blind).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from offpeak.catalog.pools import PoolSpec


@dataclass(frozen=True)
class JobCarbon:
    energy_kwh: float
    intensity: float  # gCO2e/kWh seen while the job ran
    gco2e: float


@dataclass(frozen=True)
class RequestCarbon:
    id: str
    gco2e: float
    baseline_gco2e: float


def job_carbon(pool: PoolSpec, wall_seconds: float, intensity: float) -> JobCarbon:
    energy = pool.energy_kwh(wall_seconds)
    return JobCarbon(energy, intensity, energy * intensity)


def request_carbon(
    job: JobCarbon, tokens: Mapping[str, int], baseline_intensity: Mapping[str, float]
) -> list[RequestCarbon]:
    """Each request's share of the job's emissions (by tokens), and its baseline."""
    total = sum(tokens.values())
    shares = {rid: (n / total if total else 1 / len(tokens)) for rid, n in tokens.items()}
    return [
        RequestCarbon(
            rid,
            job.gco2e * share,
            job.energy_kwh * share * baseline_intensity[rid],
        )
        for rid, share in shares.items()
    ]


def saved_pct(gco2e: float, baseline_gco2e: float) -> float:
    """Percent saved against the baseline (negative when it emitted more)."""
    return 100.0 * (1 - gco2e / baseline_gco2e) if baseline_gco2e > 0 else 0.0
