"""`OFFPEAK_<NAME>_FILE`: settings read from files, as a Kubernetes Secret mounts them."""

import os
from pathlib import Path

import pytest

from offpeak.config import load_settings
from offpeak.errors import ConfigError


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("OFFPEAK_"):
            monkeypatch.delenv(name)


def test_database_url_is_read_from_the_file_its_variable_names(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    secret = tmp_path / "database-url"
    secret.write_text("postgresql+psycopg://offpeak:s3cret@db/offpeak\n")  # as `echo` writes it
    monkeypatch.setenv("OFFPEAK_DATABASE_URL_FILE", str(secret))
    assert load_settings().database_url == "postgresql+psycopg://offpeak:s3cret@db/offpeak"


def test_a_file_value_is_validated_like_an_environment_one(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    (tmp_path / "port").write_text("99999")
    monkeypatch.setenv("OFFPEAK_API_PORT_FILE", str(tmp_path / "port"))
    with pytest.raises(ConfigError, match="OFFPEAK_API_PORT"):
        load_settings()


def test_secret_settings_are_read_from_files(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    (tmp_path / "token").write_text("em-token")
    monkeypatch.setenv("OFFPEAK_CARBON_PROVIDER", "electricitymaps")
    monkeypatch.setenv("OFFPEAK_ELECTRICITYMAPS_TOKEN_FILE", str(tmp_path / "token"))
    token = load_settings().electricitymaps_token
    assert token is not None and token.get_secret_value() == "em-token"


def test_a_missing_file_is_a_config_error_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("OFFPEAK_DATABASE_URL_FILE", str(tmp_path / "absent"))
    with pytest.raises(ConfigError, match=r"OFFPEAK_DATABASE_URL_FILE: cannot read .*absent"):
        load_settings()


def test_a_variable_and_its_file_together_are_refused(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    (tmp_path / "url").write_text("sqlite:///a.db")
    monkeypatch.setenv("OFFPEAK_DATABASE_URL", "sqlite:///b.db")
    monkeypatch.setenv("OFFPEAK_DATABASE_URL_FILE", str(tmp_path / "url"))
    with pytest.raises(ConfigError, match="OFFPEAK_DATABASE_URL or OFFPEAK_DATABASE_URL_FILE"):
        load_settings()


def test_an_override_wins_over_a_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    (tmp_path / "url").write_text("sqlite:///from-file.db")
    monkeypatch.setenv("OFFPEAK_DATABASE_URL_FILE", str(tmp_path / "url"))
    assert load_settings(database_url="sqlite:///given.db").database_url == "sqlite:///given.db"
