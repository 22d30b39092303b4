import os
from pathlib import Path

import pytest

from offpeak.config import PACKAGED_MODELS, Settings, load_settings
from offpeak.errors import ConfigError

AMBIENT = ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_REGION", "AWS_DEFAULT_REGION")


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Settings must come from what each test sets, not from the machine running it."""
    for name in list(os.environ):
        if name.startswith("OFFPEAK_") or name in AMBIENT:
            monkeypatch.delenv(name)


def test_defaults_derive_storage_and_database_under_data_dir(tmp_path: Path) -> None:
    settings = load_settings(data_dir=tmp_path / "data")
    assert settings.storage_url == (tmp_path / "data" / "objects").resolve().as_uri()
    assert settings.database_url == f"sqlite:///{(tmp_path / 'data' / 'offpeak.db').resolve()}"
    assert settings.models_path == PACKAGED_MODELS
    assert settings.s3_endpoint_url is None
    assert settings.s3_region == "us-east-1"


def test_offpeak_environment_variables_are_read(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    models = tmp_path / "models.yaml"
    models.write_text("models: {}\n")
    monkeypatch.setenv("OFFPEAK_DATA_DIR", str(tmp_path / "elsewhere"))
    monkeypatch.setenv("OFFPEAK_STORAGE_URL", "s3://bucket/prefix")
    monkeypatch.setenv("OFFPEAK_DATABASE_URL", "postgresql+psycopg://u@db/offpeak")
    monkeypatch.setenv("OFFPEAK_SEAL_INTERVAL", "0.5")
    monkeypatch.setenv("OFFPEAK_SEAL_ROWS", "42")
    monkeypatch.setenv("OFFPEAK_API_PORT", "9000")
    monkeypatch.setenv("OFFPEAK_MODELS_PATH", str(models))
    monkeypatch.setenv("OFFPEAK_MIN_BALANCE_USD", "1.5")
    settings = load_settings()
    assert settings.data_dir == tmp_path / "elsewhere"
    assert settings.storage_url == "s3://bucket/prefix"
    assert settings.database_url == "postgresql+psycopg://u@db/offpeak"
    assert settings.seal_interval == 0.5
    assert settings.seal_rows == 42
    assert settings.api_port == 9000
    assert settings.models_path == models
    assert settings.min_balance_usd == 1.5


def test_aws_endpoint_and_region_variables_are_honoured(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9999")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-3")
    settings = load_settings()
    assert settings.s3_endpoint_url == "http://127.0.0.1:9999"
    assert settings.s3_region == "eu-west-3"


def test_offpeak_s3_variables_win_over_aws_ones(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://aws.example")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-3")
    monkeypatch.setenv("OFFPEAK_S3_ENDPOINT_URL", "http://minio.example")
    monkeypatch.setenv("OFFPEAK_S3_REGION", "eu-central-1")
    settings = load_settings()
    assert settings.s3_endpoint_url == "http://minio.example"
    assert settings.s3_region == "eu-central-1"


@pytest.mark.parametrize(
    ("field", "value", "variable"),
    [
        ("storage_url", "ftp://x", "OFFPEAK_STORAGE_URL"),
        ("storage_url", "s3://", "OFFPEAK_STORAGE_URL"),
        ("database_url", "mysql://", "OFFPEAK_DATABASE_URL"),
        ("seal_interval", 0, "OFFPEAK_SEAL_INTERVAL"),
        ("seal_rows", 0, "OFFPEAK_SEAL_ROWS"),
        ("api_port", 70000, "OFFPEAK_API_PORT"),
        ("models_path", "/nonexistent/models.yaml", "OFFPEAK_MODELS_PATH"),
    ],
)
def test_bad_value_raises_config_error_naming_the_variable(
    field: str, value: object, variable: str
) -> None:
    with pytest.raises(ConfigError, match=variable):
        load_settings(**{field: value})


def test_bad_environment_variable_raises_config_error_naming_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("OFFPEAK_SEAL_INTERVAL", "0")
    with pytest.raises(ConfigError, match="OFFPEAK_SEAL_INTERVAL") as caught:
        load_settings()
    assert isinstance(caught.value, ValueError)
    assert caught.value.code == "config_error"


def test_every_setting_has_a_description() -> None:
    missing = [name for name, field in Settings.model_fields.items() if not field.description]
    assert missing == []
