"""Grid carbon intensity: traces, providers (Electricity Maps, UK Carbon Intensity,
replay of a shipped trace) and the fallback chain the scheduler reads through."""

from __future__ import annotations

from datetime import timedelta

from offpeak.carbon.electricitymaps import ElectricityMaps
from offpeak.carbon.fallback import FallbackProvider
from offpeak.carbon.replay import ReplayProvider
from offpeak.carbon.signal import CarbonProvider, Forecast, IntensityPoint
from offpeak.carbon.ukgrid import UKGrid
from offpeak.config import Settings
from offpeak.errors import ConfigError

__all__ = [
    "CarbonProvider",
    "ElectricityMaps",
    "FallbackProvider",
    "Forecast",
    "IntensityPoint",
    "ReplayProvider",
    "UKGrid",
    "open_provider",
]


def open_provider(settings: Settings) -> FallbackProvider:
    """The provider named by ``settings.carbon_provider``, behind the fallback chain."""
    provider: CarbonProvider
    if settings.carbon_provider == "electricitymaps":
        if settings.electricitymaps_token is None:  # Settings refuses this; be sure anyway
            raise ConfigError("OFFPEAK_ELECTRICITYMAPS_TOKEN is required for Electricity Maps")
        provider = ElectricityMaps(
            settings.electricitymaps_token.get_secret_value(),
            base_url=settings.electricitymaps_base_url,
            timeout=settings.carbon_timeout_seconds,
            cache_seconds=settings.carbon_cache_seconds,
        )
    elif settings.carbon_provider == "ukgrid":
        provider = UKGrid(
            base_url=settings.ukgrid_base_url,
            timeout=settings.carbon_timeout_seconds,
            cache_seconds=settings.carbon_cache_seconds,
        )
    else:
        provider = _replay(settings)
    return FallbackProvider(provider, max_age=timedelta(hours=settings.carbon_last_good_hours))


def _replay(settings: Settings) -> ReplayProvider:
    noise, seed, path = settings.replay_noise, settings.replay_seed, settings.replay_traces
    if path is None:
        return ReplayProvider(noise=noise, seed=seed)
    if path.is_file():
        paths = [path]
    else:
        paths = sorted(p for p in path.iterdir() if p.name.endswith((".csv", ".csv.gz")))
    if not paths:
        raise ConfigError(f"OFFPEAK_REPLAY_TRACES: no .csv or .csv.gz trace in {path}")
    return ReplayProvider.from_paths(paths, noise=noise, seed=seed)
