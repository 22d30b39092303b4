"""Grid carbon intensity: traces, providers (Electricity Maps, UK Carbon Intensity,
WattTime, replay of a shipped trace) and the fallback chain the scheduler reads through."""

from __future__ import annotations

from datetime import timedelta

from offpeak.carbon.electricitymaps import ElectricityMaps
from offpeak.carbon.fallback import FallbackProvider
from offpeak.carbon.replay import ReplayProvider
from offpeak.carbon.signal import CarbonProvider, Forecast, IntensityPoint
from offpeak.carbon.stored import ForecastStore
from offpeak.carbon.ukgrid import UKGrid
from offpeak.carbon.watttime import WattTime
from offpeak.config import Settings
from offpeak.errors import ConfigError
from offpeak.storage.base import ObjectStore

__all__ = [
    "CarbonProvider",
    "ElectricityMaps",
    "FallbackProvider",
    "Forecast",
    "ForecastStore",
    "IntensityPoint",
    "ReplayProvider",
    "UKGrid",
    "WattTime",
    "open_provider",
]


def open_provider(settings: Settings, store: ObjectStore | None = None) -> FallbackProvider:
    """The provider named by ``settings.carbon_provider``, behind the fallback chain.

    With ``store``, a network provider's last good forecast per zone is kept there
    (`offpeak.carbon.stored`), so the chain remembers it across flow runs and a tick
    reuses a forecast fetched less than ``carbon_cache_seconds`` ago. The replay needs
    neither: it never fails and costs nothing to ask.
    """
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
    elif settings.carbon_provider == "watttime":
        if settings.watttime_username is None or settings.watttime_password is None:
            raise ConfigError("OFFPEAK_WATTTIME_USERNAME and _PASSWORD are required for WattTime")
        provider = WattTime(
            settings.watttime_username,
            settings.watttime_password.get_secret_value(),
            base_url=settings.watttime_base_url,
            timeout=settings.carbon_timeout_seconds,
            cache_seconds=settings.carbon_cache_seconds,
        )
    else:
        return FallbackProvider(
            _replay(settings), max_age=timedelta(hours=settings.carbon_last_good_hours)
        )
    return FallbackProvider(
        provider,
        max_age=timedelta(hours=settings.carbon_last_good_hours),
        memory=None if store is None else ForecastStore(store, provider.name),
        cache_for=timedelta(seconds=settings.carbon_cache_seconds),
    )


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
