import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from offpeak.carbon import open_provider
from offpeak.carbon.electricitymaps import ElectricityMaps
from offpeak.carbon.fallback import FallbackProvider
from offpeak.carbon.replay import ReplayProvider
from offpeak.carbon.traces import shipped_traces
from offpeak.carbon.ukgrid import UKGrid
from offpeak.config import load_settings
from offpeak.errors import ConfigError


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Settings must come from what each test sets, not from the machine running it."""
    for name in list(os.environ):
        if name.startswith("OFFPEAK_"):
            monkeypatch.delenv(name)


def test_the_default_is_the_replay_of_the_shipped_traces_behind_the_fallback() -> None:
    provider = open_provider(load_settings())
    assert isinstance(provider, FallbackProvider)
    assert isinstance(provider.provider, ReplayProvider)
    assert provider.provider.zones == sorted(shipped_traces())
    assert (provider.provider.noise, provider.provider.seed) == (0.0, 0)


def test_replay_noise_and_seed_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OFFPEAK_REPLAY_NOISE", "0.05")
    monkeypatch.setenv("OFFPEAK_REPLAY_SEED", "42")
    replay = open_provider(load_settings()).provider
    assert isinstance(replay, ReplayProvider)
    assert (replay.noise, replay.seed) == (0.05, 42)


def test_replay_traces_may_be_a_file_or_a_folder(tmp_path: Path) -> None:
    shutil.copy(shipped_traces()["NO"], tmp_path / "no.csv.gz")
    shutil.copy(shipped_traces()["ES"], tmp_path / "es.csv.gz")
    (tmp_path / "README.md").write_text("attribution")
    folder = open_provider(load_settings(replay_traces=tmp_path)).provider
    single = open_provider(load_settings(replay_traces=tmp_path / "no.csv.gz")).provider
    assert isinstance(folder, ReplayProvider) and isinstance(single, ReplayProvider)
    assert folder.zones == ["ES", "NO"]
    assert single.zones == ["NO"]


def test_a_folder_without_traces_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="OFFPEAK_REPLAY_TRACES"):
        open_provider(load_settings(replay_traces=tmp_path))


def test_electricity_maps_with_a_token(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OFFPEAK_CARBON_PROVIDER", "electricitymaps")
    monkeypatch.setenv("OFFPEAK_ELECTRICITYMAPS_TOKEN", "s3cr3t")
    settings = load_settings()
    assert "s3cr3t" not in repr(settings)
    with open_provider(settings) as provider:
        assert isinstance(provider.provider, ElectricityMaps)


@pytest.mark.parametrize("token", [None, "", "   "])
def test_electricity_maps_without_a_token_fails_at_start_up(
    monkeypatch: pytest.MonkeyPatch, token: str | None
) -> None:
    monkeypatch.setenv("OFFPEAK_CARBON_PROVIDER", "electricitymaps")
    if token is not None:
        monkeypatch.setenv("OFFPEAK_ELECTRICITYMAPS_TOKEN", token)
    with pytest.raises(ConfigError, match="OFFPEAK_ELECTRICITYMAPS_TOKEN"):
        load_settings()


def test_a_token_alone_does_not_switch_the_provider(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OFFPEAK_ELECTRICITYMAPS_TOKEN", "s3cr3t")
    assert load_settings().carbon_provider == "replay"


def test_uk_grid_needs_no_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OFFPEAK_CARBON_PROVIDER", "ukgrid")
    with open_provider(load_settings()) as provider:
        assert isinstance(provider.provider, UKGrid)


@pytest.mark.parametrize(
    ("field", "value", "variable"),
    [
        ("carbon_provider", "watttime", "OFFPEAK_CARBON_PROVIDER"),
        ("carbon_timeout_seconds", 0, "OFFPEAK_CARBON_TIMEOUT_SECONDS"),
        ("carbon_cache_seconds", -1, "OFFPEAK_CARBON_CACHE_SECONDS"),
        ("replay_noise", -0.05, "OFFPEAK_REPLAY_NOISE"),
        ("replay_traces", "/nonexistent/traces", "OFFPEAK_REPLAY_TRACES"),
    ],
)
def test_a_bad_carbon_setting_raises_config_error_naming_it(
    field: str, value: object, variable: str
) -> None:
    with pytest.raises(ConfigError, match=variable):
        load_settings(**{field: value})


def test_the_carbon_core_imports_neither_prefect_nor_fastapi() -> None:
    code = (
        "import sys, offpeak.carbon; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('prefect', 'fastapi')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
