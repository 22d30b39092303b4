"""Settings: one class, every field from an ``OFFPEAK_`` environment variable.

Standard ``AWS_*`` variables are honoured for the S3 endpoint and region, so boto3,
pyarrow and polars all see the same object store.

Any setting may instead be read from a file named by ``OFFPEAK_<NAME>_FILE`` (the
convention of Docker's and PostgreSQL's images): a Kubernetes Secret mounted as files
then keeps the database URL out of the pod's environment. S3 credentials need no such
variable: boto3 and pyarrow both read the file named by AWS_SHARED_CREDENTIALS_FILE.
"""

from __future__ import annotations

import json
import os
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AliasChoices,
    Field,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
)
from pydantic.fields import FieldInfo
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from offpeak.errors import ConfigError

PACKAGED_MODELS = Path(__file__).parent / "catalog" / "defaults" / "models.yaml"
PACKAGED_POOLS = Path(__file__).parent / "catalog" / "defaults" / "pools.yaml"


class _FileVariables(PydanticBaseSettingsSource):
    """Settings read from the files that ``OFFPEAK_<NAME>_FILE`` variables name."""

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False  # unused: __call__ reads every field at once

    def __call__(self) -> dict[str, Any]:
        values: dict[str, Any] = {}
        for name in self.settings_cls.model_fields:
            variable = f"OFFPEAK_{name.upper()}"
            path = os.environ.get(f"{variable}_FILE")
            if not path:
                continue
            if variable in os.environ:  # two sources of one secret: neither may win silently
                raise ConfigError(f"set {variable} or {variable}_FILE, not both")
            try:
                # A file written by `echo` ends in a newline that is no part of the value.
                values[name] = Path(path).read_text().rstrip("\r\n")
            except OSError as exc:
                raise ConfigError(f"{variable}_FILE: cannot read {path}: {exc.strerror}") from None
        return values


class Settings(BaseSettings):
    """Everything offpeak reads from its environment."""

    model_config = SettingsConfigDict(
        env_prefix="OFFPEAK_", extra="ignore", validate_default=True, populate_by_name=True
    )

    data_dir: Path = Field(
        Path(".offpeak"),
        description="Folder for local state: the SQLite database, the local object store, caches.",
    )
    storage_url: str = Field(
        default_factory=lambda data: (data["data_dir"] / "objects").resolve().as_uri(),
        description="Object storage root: `file:///path` for a local folder or "
        "`s3://bucket/prefix`. Defaults to `file://<data_dir>/objects`.",
    )
    s3_endpoint_url: str | None = Field(
        None,
        validation_alias=AliasChoices(
            "OFFPEAK_S3_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL"
        ),
        description="Endpoint of an S3-compatible server (MinIO, Ceph RGW, ...); "
        "unset means AWS itself. Falls back to AWS_ENDPOINT_URL.",
    )
    s3_region: str = Field(
        "us-east-1",
        validation_alias=AliasChoices("OFFPEAK_S3_REGION", "AWS_REGION", "AWS_DEFAULT_REGION"),
        description="S3 region. Falls back to AWS_REGION, then AWS_DEFAULT_REGION.",
    )
    database_url: str = Field(
        default_factory=lambda data: f"sqlite:///{(data['data_dir'] / 'offpeak.db').resolve()}",
        description="SQLAlchemy URL of the state database: `sqlite:///path` or "
        "`postgresql+psycopg://user@host/db`. Defaults to `<data_dir>/offpeak.db`.",
    )
    seal_interval: Annotated[float, Field(gt=0)] = Field(
        2.0, description="Seconds between two seals of accepted requests into a Parquet segment."
    )
    seal_rows: Annotated[int, Field(gt=0)] = Field(
        10_000, description="Seal at once when this many accepted requests wait unsealed."
    )
    seal_buffer_rows: Annotated[int, Field(gt=0)] = Field(
        50_000,
        description="Most accepted requests the API's seal writer holds in memory; past "
        "that (S3 down, a slow store), they are sealed later from the database instead.",
    )
    ready_max_seal_lag: Annotated[float, Field(gt=0)] = Field(
        120.0,
        description="`/readyz` answers 503 (`sealing`) when the seal writer's last successful "
        "pass is older than this many seconds.",
    )
    log_format: Literal["json", "text"] = Field(
        "text",
        description="Log lines of the API, the flows and the CLI: `text` for people, `json` "
        "(one object per line, each id in its own field) for a log pipeline.",
    )
    api_host: str = Field("127.0.0.1", description="Interface the HTTP API listens on.")
    api_port: Annotated[int, Field(ge=0, le=65535)] = Field(
        8000, description="Port the HTTP API listens on (0 picks a free one)."
    )
    pools_path: Path = Field(
        PACKAGED_POOLS,
        description="Path of pools.yaml: GPU pools, their deployments, grid zones and power.",
    )
    models_path: Path = Field(
        PACKAGED_MODELS,
        description="Path of models.yaml, the registry of served models and their prices.",
    )
    max_body_bytes: Annotated[int, Field(gt=0)] = Field(
        4 * 1024 * 1024, description="Largest HTTP request body accepted, in bytes (else 413)."
    )
    max_dataset_bytes: Annotated[int, Field(gt=0)] = Field(
        20 * 1024**3,
        description="Largest dataset file accepted by `POST /v1/datasets`, in bytes (else 413).",
    )
    dataset_sources: Annotated[dict[str, list[str]], NoDecode] = Field(
        default_factory=dict,
        description="Where each API key may read datasets from (`POST /v1/datasets?source="
        "s3://...`): a JSON object mapping a key id, or `*` for every key, to a list of "
        '`s3://bucket/prefix/` locations, e.g. `{"<key id>": ["s3://team-data/datasets/"]}`. '
        "A source outside its key's locations answers 403 (`dataset_source_forbidden`); "
        "the service's own storage (OFFPEAK_STORAGE_URL) is never a source, whatever is "
        "listed. Empty (the default): no key may read from S3, uploads only.",
    )
    api_url: str = Field(
        "http://127.0.0.1:8000",
        description="Base URL of the offpeak API that the client and the CLI "
        "(`offpeak submit`, `status`, `results`, `cancel`) call.",
    )
    api_key: SecretStr | None = Field(
        None, description="API key the client and the CLI send (X-API-Key)."
    )
    min_balance_usd: Annotated[float, Field(ge=0)] = Field(
        0.20, description="Minimum credit balance an API key needs to submit work (else 402)."
    )
    auth_cache_seconds: Annotated[float, Field(ge=0, le=10)] = Field(
        2.0,
        description="Seconds an API process reuses a key it authenticated, sparing a database "
        "read per call (0 disables; at most 10). A key revoked through the same process "
        "is refused at once; an API process elsewhere (another replica, or `offpeak keys "
        "revoke` run beside it) refuses it within this many seconds, as do balance changes.",
    )
    openai_max_file_bytes: Annotated[int, Field(gt=0)] = Field(
        200 * 1024 * 1024,
        description="Largest file `POST /openai/v1/files` accepts, in bytes (else 413); "
        "each of its lines is limited like a request body (OFFPEAK_MAX_BODY_BYTES).",
    )
    openai_max_batch_lines: Annotated[int, Field(gt=0)] = Field(
        50_000, description="Most requests (lines) one OpenAI batch input file may hold."
    )
    anthropic_max_batch_bytes: Annotated[int, Field(gt=0)] = Field(
        256 * 1024 * 1024,
        description="Largest body `POST /anthropic/v1/messages/batches` accepts, in bytes "
        "(else 413 request_too_large); Anthropic's own limit is 256 MB.",
    )
    anthropic_max_batch_requests: Annotated[int, Field(ge=100_000)] = Field(
        100_000,
        description="Most requests one Anthropic message batch may hold (at least 100,000, "
        "Anthropic's own limit).",
    )

    # Checks are field validators so an error names its variable (OFFPEAK_STORAGE_URL),
    # not the whole settings object; defaults are derived afterwards and always valid.
    models_dir: Path = Field(
        default_factory=lambda data: data["data_dir"] / "models",
        description="Where built-in weights (the tiny model) are built: <data_dir>/models.",
    )
    cache_dir: Path = Field(
        default_factory=lambda data: data["data_dir"] / "cache",
        description="Engine caches (vLLM's inspected and compiled artefacts): <data_dir>/cache.",
    )
    scheduler_interval: Annotated[float, Field(gt=0)] = Field(
        30.0, description="Seconds between scheduler runs under `offpeak serve`."
    )
    scheduler_deployment: str | None = Field(
        None,
        description="Prefect deployment the API runs at once when a batch is submitted, so "
        "its work is planned within seconds rather than at the next tick (`offpeak serve` "
        "sets scheduler/scheduler); unset, submitted work waits for the next tick.",
    )
    scheduler_policy: Literal["carbon", "immediate"] = Field(
        "carbon",
        description="Launch policy: `carbon` follows the carbon-aware planner (when and in "
        "which pool each job runs, every deadline kept); `immediate` runs whatever is "
        "pending at once in the default pool (tests, demos).",
    )
    job_max_requests: Annotated[int, Field(gt=0)] = Field(
        5000, description="Most requests one inference job takes."
    )
    # The next chunk is queued in the engine before a chunk's results are collected, so
    # vLLM's batch stays full across chunks: the size sets how often results are saved
    # (and how much a crash costs), not the engine's batch.
    chunk_size: Annotated[int, Field(gt=0)] = Field(
        1024, description="Requests per inference chunk: results are saved chunk by chunk."
    )
    job_max_attempts: Annotated[int, Field(gt=0)] = Field(
        3, description="Launches of a job before its unfinished requests fail."
    )
    job_lease_seconds: Annotated[int, Field(ge=5)] = Field(
        60,
        description="Seconds a job's run holds it without a heartbeat (renewed every third of "
        "it): a run silent longer (killed, paused, cut off) has its job taken over.",
    )
    idempotency_lease_seconds: Annotated[int, Field(ge=3)] = Field(
        30,
        description="Seconds a create sent with an `Idempotency-Key` holds the key without "
        "renewing it (renewed every third of it while it works): a retry after a replica "
        "died mid-request takes the key over once this has run out; before, it gets 409 "
        "`idempotency_key_in_progress` with `Retry-After`.",
    )
    work_pool: str = Field("local", description="Prefect work pool `offpeak serve` runs.")
    webhook_allow_private: bool = Field(
        False,
        description="Let webhooks target loopback, private and link-local addresses and "
        "plain http (tests, local use). Off, a webhook URL must be https and resolve to "
        "public addresses only; metadata addresses are refused either way.",
    )
    webhook_timeout_seconds: Annotated[float, Field(gt=0, le=30)] = Field(
        5.0, description="Connect and read timeout of one webhook delivery attempt."
    )
    webhook_retry_base_seconds: Annotated[float, Field(gt=0)] = Field(
        10.0, description="First retry delay of a webhook event; it doubles per attempt."
    )
    webhook_retry_max_seconds: Annotated[float, Field(gt=0)] = Field(
        3600.0, description="Longest delay between two attempts at one webhook event."
    )
    webhook_give_up_seconds: Annotated[float, Field(gt=0)] = Field(
        86400.0, description="Age after which a webhook event that still fails is dropped."
    )
    webhook_secret_overlap_seconds: Annotated[float, Field(ge=0)] = Field(
        86400.0,
        description="How long a rotated-out webhook secret still signs events beside the "
        "new one, so receivers can switch without losing any.",
    )

    # Retention (offpeak/retention.py, run daily by the `gc` deployment).
    results_retention: Annotated[int, Field(ge=3600)] = Field(
        30 * 86400,
        description="Seconds that results (JSONL, Parquet), OpenAI input and output files, "
        "request bodies in segments and chunk result files are kept after their batch (or "
        "lone request) ended, unless the caller set `expires_after` on a file or "
        "`output_expires_after` on a batch; then the `gc` deployment deletes them.",
    )

    # The carbon signal (offpeak.carbon.open_provider builds the provider from these).
    carbon_provider: Literal["replay", "electricitymaps", "ukgrid", "watttime"] = Field(
        "replay",
        description="Where grid carbon intensity comes from: `replay` (a real 2022 trace "
        "shipped with offpeak, no network), `electricitymaps` (Electricity Maps API v3, "
        "needs OFFPEAK_ELECTRICITYMAPS_TOKEN), `ukgrid` (UK Carbon Intensity API, GB only) "
        "or `watttime` (WattTime API v3, marginal emissions; zones are WattTime regions; "
        "needs OFFPEAK_WATTTIME_USERNAME and OFFPEAK_WATTTIME_PASSWORD).",
    )
    electricitymaps_token: SecretStr | None = Field(
        None, description="Electricity Maps API token, sent as the `auth-token` header."
    )
    electricitymaps_base_url: str = Field(
        "https://api.electricitymaps.com/v3",
        description="Base URL of the Electricity Maps API (older: https://api.electricitymap.org/v3).",
    )
    ukgrid_base_url: str = Field(
        "https://api.carbonintensity.org.uk", description="Base URL of the UK Carbon Intensity API."
    )
    watttime_username: str | None = Field(
        None, description="WattTime account name, for the login that yields its API tokens."
    )
    watttime_password: SecretStr | None = Field(None, description="WattTime account password.")
    watttime_base_url: str = Field(
        "https://api.watttime.org",
        description="Base URL of the WattTime API (`/login` and `/v3/...` lie under it).",
    )
    carbon_timeout_seconds: Annotated[float, Field(gt=0)] = Field(
        10.0, description="Timeout of one request to a carbon-intensity API, in seconds."
    )
    carbon_cache_seconds: Annotated[float, Field(ge=0)] = Field(
        300.0,
        description="Seconds an answer of a carbon-intensity API is reused, so a scheduler "
        "tick asks each zone once; a zone's forecast is kept in the object store under "
        "carbon/, so the ticks of this many seconds fetch it once (0 disables the cache).",
    )
    carbon_last_good_hours: Annotated[float, Field(ge=0)] = Field(
        12.0,
        description="While the carbon provider fails, its last forecast (kept in the object "
        "store, so later ticks have it too) is used for this many hours after it was "
        "fetched; then a forecast from the last day's history.",
    )
    replay_traces: Path | None = Field(
        None,
        description="A trace (Electricity Maps hourly CSV, .csv or .csv.gz) or a folder of them "
        "for the replay provider. Defaults to the seven traces shipped with offpeak.",
    )
    replay_noise: Annotated[float, Field(ge=0)] = Field(
        0.0,
        description="Forecast error of the replay provider: each forecast point gets "
        "N(0, replay_noise x the trace's mean) added (0.05 is a typical real forecast).",
    )
    replay_seed: int = Field(0, description="Seed of the replay provider's forecast noise.")

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (
            init_settings,
            env_settings,
            _FileVariables(settings_cls),
            dotenv_settings,
            file_secret_settings,
        )

    @field_validator("storage_url")
    @classmethod
    def _storage_scheme(cls, url: str) -> str:
        if not url.startswith(("file://", "s3://")):
            raise ValueError(f"storage_url must start with file:// or s3://, not {url!r}")
        if url.startswith("s3://") and not url[5:].strip("/"):
            raise ValueError("storage_url s3:// needs a bucket name")
        return url

    @field_validator("dataset_sources", mode="before")
    @classmethod
    def _sources_json(cls, value: object) -> object:
        # Decoded here, not by pydantic-settings: bad JSON then names its variable.
        if isinstance(value, str):
            try:
                return json.loads(value)
            except json.JSONDecodeError as exc:
                raise ValueError(f"not JSON: {exc}") from None
        return value

    @field_validator("dataset_sources")
    @classmethod
    def _source_prefixes(cls, sources: dict[str, list[str]]) -> dict[str, list[str]]:
        for key_id, prefixes in sources.items():
            for prefix in prefixes:
                bucket = prefix.removeprefix("s3://").split("/", 1)[0]
                if not prefix.startswith("s3://") or not bucket:
                    raise ValueError(
                        f"dataset_sources[{key_id!r}]: {prefix!r} is not an s3://bucket/prefix/"
                    )
        return sources

    @field_validator("database_url")
    @classmethod
    def _database_scheme(cls, url: str) -> str:
        if not url.startswith(("sqlite", "postgresql")):
            raise ValueError(
                f"database_url must be a sqlite:// or postgresql+psycopg:// URL, not {url!r}"
            )
        return url

    @field_validator("models_path", "pools_path")
    @classmethod
    def _config_file(cls, path: Path, info: ValidationInfo) -> Path:
        if not path.is_file():
            raise ValueError(f"{info.field_name} {path} is not a file")
        return path

    @field_validator("electricitymaps_token")
    @classmethod
    def _token_when_needed(cls, token: SecretStr | None, info: ValidationInfo) -> SecretStr | None:
        if token is not None and not token.get_secret_value().strip():
            token = None
        if token is None and info.data.get("carbon_provider") == "electricitymaps":
            raise ValueError(
                "OFFPEAK_ELECTRICITYMAPS_TOKEN is required when OFFPEAK_CARBON_PROVIDER="
                "electricitymaps (or choose OFFPEAK_CARBON_PROVIDER=replay)"
            )
        return token

    @field_validator("watttime_password")
    @classmethod
    def _login_when_needed(
        cls, password: SecretStr | None, info: ValidationInfo
    ) -> SecretStr | None:
        if password is not None and not password.get_secret_value():
            password = None
        if info.data.get("carbon_provider") == "watttime" and (
            password is None or not (info.data.get("watttime_username") or "").strip()
        ):
            raise ValueError(
                "OFFPEAK_WATTTIME_USERNAME and OFFPEAK_WATTTIME_PASSWORD are required when "
                "OFFPEAK_CARBON_PROVIDER=watttime (or choose OFFPEAK_CARBON_PROVIDER=replay)"
            )
        return password

    @field_validator("replay_traces")
    @classmethod
    def _traces_exist(cls, path: Path | None) -> Path | None:
        if path is not None and not path.exists():
            raise ValueError(f"replay_traces {path} does not exist")
        return path

    @field_validator("models_dir", "cache_dir")
    @classmethod
    def _absolute(cls, path: Path) -> Path:
        return path.resolve()


def load_settings(**overrides: object) -> Settings:
    """Read and validate the settings, raising :class:`ConfigError` on a bad value."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        problems = "; ".join(
            f"OFFPEAK_{'_'.join(str(p) for p in err['loc']).upper() or 'SETTINGS'}: {err['msg']}"
            for err in exc.errors()
        )
        raise ConfigError(f"invalid settings: {problems}") from exc


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read once."""
    return load_settings()
