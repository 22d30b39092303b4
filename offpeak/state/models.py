"""SQLAlchemy models of the control-plane state: API keys, requests, batches (with the
OpenAI view of those made through the OpenAI-compatible API), jobs, and that API's files."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Float,
    ForeignKey,
    Index,
    Integer,
    Numeric,
    String,
    Text,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

ID = String(24)


class Base(DeclarativeBase):
    pass


class ApiKey(Base):
    """An API key; only the SHA-256 of the secret is stored."""

    __tablename__ = "api_keys"

    id: Mapped[str] = mapped_column(ID, primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    prefix: Mapped[str] = mapped_column(String(16))
    credits_usd: Mapped[Decimal] = mapped_column(Numeric(18, 8))
    created_at: Mapped[int] = mapped_column(Integer)
    revoked_at: Mapped[int | None] = mapped_column(Integer)


class Batch(Base):
    """A group of requests that share a status and a results file: the one batch model
    of both dialects (a batch made through the OpenAI API has its `openai` view too)."""

    __tablename__ = "batches"

    id: Mapped[str] = mapped_column(ID, primary_key=True)
    key_id: Mapped[str] = mapped_column(ForeignKey("api_keys.id"))
    status: Mapped[str] = mapped_column(String(16))
    meta: Mapped[dict[str, Any]] = mapped_column("metadata", JSON)
    webhook: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[int] = mapped_column(Integer)
    expires_at: Mapped[int] = mapped_column(Integer)
    in_progress_at: Mapped[int | None] = mapped_column(Integer)
    ended_at: Mapped[int | None] = mapped_column(Integer)
    results_key: Mapped[str | None] = mapped_column(Text)
    # Retention (offpeak/retention.py): the caller's own, in seconds from the batch's end
    # (OpenAI's `output_expires_after`), and when the collector removed its results.
    retention_seconds: Mapped[int | None] = mapped_column(Integer)
    purged_at: Mapped[int | None] = mapped_column(Integer)
    # Loaded with the batch (one LEFT JOIN): a batch is read whole, then used detached.
    openai: Mapped[OpenAIView | None] = relationship(lazy="joined")

    __table_args__ = (Index("ix_batches_key_id", "key_id", "id"),)


class Request(Base):
    """One chat request. Its body lives here only until it is sealed into a segment."""

    __tablename__ = "requests"

    id: Mapped[str] = mapped_column(ID, primary_key=True)
    key_id: Mapped[str] = mapped_column(ForeignKey("api_keys.id"))
    batch_id: Mapped[str | None] = mapped_column(ForeignKey("batches.id"))
    status: Mapped[str] = mapped_column(String(16))
    model: Mapped[str] = mapped_column(String(200))
    completion_window: Mapped[str] = mapped_column(String(16))
    webhook: Mapped[str | None] = mapped_column(Text)
    meta: Mapped[dict[str, Any]] = mapped_column("metadata", JSON)
    body: Mapped[str | None] = mapped_column(Text)
    segment: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[int] = mapped_column(Integer)
    expires_at: Mapped[int] = mapped_column(Integer)
    in_progress_at: Mapped[int | None] = mapped_column(Integer)
    ended_at: Mapped[int | None] = mapped_column(Integer)
    error_code: Mapped[str | None] = mapped_column(String(64))
    error_message: Mapped[str | None] = mapped_column(Text)
    # Set when scheduled into a job, and once it ran: where its result row lives.
    job_id: Mapped[str | None] = mapped_column(ForeignKey("jobs.id", name="fk_requests_job_id"))
    result_key: Mapped[str | None] = mapped_column(Text)
    prompt_tokens: Mapped[int | None] = mapped_column(Integer)
    completion_tokens: Mapped[int | None] = mapped_column(Integer)
    cost_usd: Mapped[Decimal | None] = mapped_column(Numeric(16, 8))
    # Tokens it may take (prompt + completion), estimated at ingestion: the planner's
    # measure of pending work. Null means unknown (the planner assumes the model's context).
    est_tokens: Mapped[int | None] = mapped_column(Integer)
    # Carbon accounting, once its job has run (see offpeak/accounting.py).
    gco2e: Mapped[float | None] = mapped_column(Float)
    baseline_gco2e: Mapped[float | None] = mapped_column(Float)
    carbon_zone: Mapped[str | None] = mapped_column(String(64))
    ran_at: Mapped[int | None] = mapped_column(Integer)
    # The `carbon` object of the API (schemas.CarbonObject) as JSON text, made once.
    carbon: Mapped[str | None] = mapped_column(Text)
    # When retention removed its body and result (its status and metadata stay).
    purged_at: Mapped[int | None] = mapped_column(Integer)

    __table_args__ = (
        Index("ix_requests_key_id", "key_id", "id"),
        Index("ix_requests_job_id", "job_id"),
        Index("ix_requests_batch_id", "batch_id", "id"),  # a batch's requests in order
        # The scheduler's pending work, per model by deadline (offpeak.plan.pending, the
        # claims of offpeak.run.launch). Partial: a claimed request leaves it, so a claim
        # writes one index entry fewer than an index on (status, model) would.
        Index(
            "ix_requests_pending",
            "model",
            "expires_at",
            "id",
            sqlite_where=text("status = 'registered'"),
            postgresql_where=text("status = 'registered'"),
        ),
        # Retention's work (offpeak.retention): requests ended and not purged yet, and
        # which of those still live in a segment or a chunk file, in id order (its probe
        # for another holder walks from the segment's first id, never the whole table).
        Index(
            "ix_requests_ended",
            "id",
            sqlite_where=text("ended_at IS NOT NULL AND purged_at IS NULL"),
            postgresql_where=text("ended_at IS NOT NULL AND purged_at IS NULL"),
        ),
        Index(
            "ix_requests_segment",
            "segment",
            "id",
            sqlite_where=text("segment IS NOT NULL AND purged_at IS NULL"),
            postgresql_where=text("segment IS NOT NULL AND purged_at IS NULL"),
        ),
        Index(
            "ix_requests_result_key",
            "result_key",
            "id",
            sqlite_where=text("result_key IS NOT NULL AND purged_at IS NULL"),
            postgresql_where=text("result_key IS NOT NULL AND purged_at IS NULL"),
        ),
        # The writer's work queue: rows accepted but not yet in a Parquet segment.
        Index(
            "ix_requests_unsealed",
            "id",
            sqlite_where=text("segment IS NULL"),
            postgresql_where=text("segment IS NULL"),
        ),
    )


class Job(Base):
    """A run of one engine over a manifest of requests, on one inference deployment."""

    __tablename__ = "jobs"

    id: Mapped[str] = mapped_column(ID, primary_key=True)
    model: Mapped[str] = mapped_column(String(200))
    deployment: Mapped[str] = mapped_column(String(200))
    status: Mapped[str] = mapped_column(String(16))
    manifest_key: Mapped[str] = mapped_column(Text)
    request_count: Mapped[int] = mapped_column(Integer)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    flow_run_id: Mapped[str | None] = mapped_column(String(64))
    runner: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[int] = mapped_column(Integer)
    launched_at: Mapped[int | None] = mapped_column(Integer)
    started_at: Mapped[int | None] = mapped_column(Integer)
    ended_at: Mapped[int | None] = mapped_column(Integer)
    prompt_tokens: Mapped[int] = mapped_column(Integer, default=0)
    completion_tokens: Mapped[int] = mapped_column(Integer, default=0)
    wall_seconds: Mapped[float | None] = mapped_column(Float)
    # The engine's start-up within this job; 0 when the runner's engine was up already.
    startup_seconds: Mapped[float | None] = mapped_column(Float)
    # The run holding the job and until when (unix s): a run takes the job only when no
    # other run's lease is live, and renews it while it runs (offpeak.run.lease).
    lease_owner: Mapped[str | None] = mapped_column(String(64))
    lease_expires_at: Mapped[int | None] = mapped_column(Integer)
    error: Mapped[str | None] = mapped_column(Text)
    pool: Mapped[str | None] = mapped_column(String(200))
    zone: Mapped[str | None] = mapped_column(String(64))
    energy_kwh: Mapped[float | None] = mapped_column(Float)
    intensity: Mapped[float | None] = mapped_column(Float)
    gco2e: Mapped[float | None] = mapped_column(Float)

    __table_args__ = (Index("ix_jobs_status", "status"),)


class OpenAIFile(Base):
    """A file of the OpenAI-compatible API: an uploaded batch input, or a batch's output
    or error file. The bytes live in object storage at ``storage_key``."""

    __tablename__ = "openai_files"

    id: Mapped[str] = mapped_column(ID, primary_key=True)
    key_id: Mapped[str] = mapped_column(ForeignKey("api_keys.id"))
    purpose: Mapped[str] = mapped_column(String(32))
    filename: Mapped[str] = mapped_column(Text)
    bytes: Mapped[int] = mapped_column(BigInteger)
    storage_key: Mapped[str] = mapped_column(Text)
    created_at: Mapped[int] = mapped_column(Integer)
    # The caller's `expires_after` as a time; null: the retention setting decides.
    expires_at: Mapped[int | None] = mapped_column(Integer)
    # When retention removed its bytes (the row stays: its content is a 410).
    purged_at: Mapped[int | None] = mapped_column(Integer)

    __table_args__ = (Index("ix_openai_files_key_id", "key_id", "id"),)


class OpenAIView(Base):
    """What a batch made through the OpenAI API adds to it (same id): where its lines
    came from, and once the batch has ended and been published, its output and error
    files. Its status, timestamps and request counts are the batch's own."""

    __tablename__ = "openai_batches"

    id: Mapped[str] = mapped_column(ForeignKey("batches.id"), primary_key=True)
    key_id: Mapped[str] = mapped_column(ForeignKey("api_keys.id"))
    # No foreign key: deleting the input file keeps the batch (its bodies are in segments).
    input_file_id: Mapped[str] = mapped_column(ID)
    endpoint: Mapped[str] = mapped_column(String(64))
    model: Mapped[str] = mapped_column(String(200))
    completion_window: Mapped[str] = mapped_column(String(16))
    # Recorded with the files: the batch's final OpenAI status (completed, expired or
    # cancelled), as offpeak.publish.openai_objects.final_status derives it.
    status: Mapped[str | None] = mapped_column(String(16))
    output_file_id: Mapped[str | None] = mapped_column(ID)
    error_file_id: Mapped[str | None] = mapped_column(ID)
    cancelling_at: Mapped[int | None] = mapped_column(Integer)
    finalizing_at: Mapped[int | None] = mapped_column(Integer)
    # When the output and error files were recorded (OpenAI's `completed_at` and peers).
    ended_at: Mapped[int | None] = mapped_column(Integer)

    __table_args__ = (
        Index("ix_openai_batches_key_id", "key_id", "id"),
        # Publishing's work queue: OpenAI views whose files are not written yet.
        Index(
            "ix_openai_batches_open",
            "id",
            sqlite_where=text("ended_at IS NULL"),
            postgresql_where=text("ended_at IS NULL"),
        ),
    )


class IdempotencyKey(Base):
    """The first answer to a create sent with an ``Idempotency-Key`` header, per API key
    and route. The row is inserted before the work starts (the primary key makes a
    concurrent duplicate fail to claim it); status and response are set once it answers."""

    __tablename__ = "idempotency_keys"

    key_id: Mapped[str] = mapped_column(ForeignKey("api_keys.id"), primary_key=True)
    route: Mapped[str] = mapped_column(String(64), primary_key=True)  # "POST /v1/requests"
    idempotency_key: Mapped[str] = mapped_column(String(255), primary_key=True)
    body_sha256: Mapped[str] = mapped_column(String(64))
    # Null while the first request is still being answered.
    status: Mapped[int | None] = mapped_column(Integer)
    response: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[int] = mapped_column(Integer)
    # While unanswered: the claiming request (a random token, so a request whose claim
    # was taken over cannot store its answer) and the end of its lease, which it renews
    # while it works. A claim whose lease ran out belongs to a dead process.
    owner: Mapped[str | None] = mapped_column(String(32))
    lease_until: Mapped[int | None] = mapped_column(Integer)

    __table_args__ = (Index("ix_idempotency_keys_created_at", "created_at"),)


class WebhookSecret(Base):
    """A key's webhook signing secret (``whsec_`` + base64, Standard Webhooks). Kept in
    clear: signing needs it. A rotation sets the old one's ``retires_at``; until then
    events carry a signature under each live secret."""

    __tablename__ = "webhook_secrets"

    id: Mapped[str] = mapped_column(ID, primary_key=True)
    key_id: Mapped[str] = mapped_column(ForeignKey("api_keys.id"))
    secret: Mapped[str] = mapped_column(Text)
    created_at: Mapped[int] = mapped_column(Integer)
    retires_at: Mapped[int | None] = mapped_column(Integer)

    __table_args__ = (Index("ix_webhook_secrets_key_id", "key_id", "id"),)


class WebhookEvent(Base):
    """The outbox: one lifecycle event for one target URL, written in the transaction of
    the status change that causes it. Its id is the ``webhook-id`` of every attempt."""

    __tablename__ = "webhook_events"

    id: Mapped[str] = mapped_column(ID, primary_key=True)
    key_id: Mapped[str] = mapped_column(ForeignKey("api_keys.id"))
    type: Mapped[str] = mapped_column(String(32))  # "request.completed", ...
    object_id: Mapped[str] = mapped_column(ID)
    target: Mapped[str] = mapped_column(Text)
    payload: Mapped[str] = mapped_column(Text)  # the exact JSON body that is signed
    status: Mapped[str] = mapped_column(String(16))  # pending, delivered, failed
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[int] = mapped_column(Integer)
    next_attempt_at: Mapped[int | None] = mapped_column(Integer)
    ended_at: Mapped[int | None] = mapped_column(Integer)

    __table_args__ = (
        # The delivery queue: pending events per target, in id (creation) order.
        Index(
            "ix_webhook_events_pending",
            "target",
            "id",
            sqlite_where=text("status = 'pending'"),
            postgresql_where=text("status = 'pending'"),
        ),
        Index("ix_webhook_events_key_id", "key_id", "id"),
    )


class WebhookAttempt(Base):
    """One try at delivering an event: what `GET /v1/webhooks/deliveries` lists."""

    __tablename__ = "webhook_attempts"

    id: Mapped[str] = mapped_column(ID, primary_key=True)
    event_id: Mapped[str] = mapped_column(ForeignKey("webhook_events.id"))
    key_id: Mapped[str] = mapped_column(ForeignKey("api_keys.id"))
    attempted_at: Mapped[int] = mapped_column(Integer)
    status_code: Mapped[int | None] = mapped_column(Integer)
    error: Mapped[str | None] = mapped_column(Text)
    duration_ms: Mapped[int] = mapped_column(Integer)
    outcome: Mapped[str] = mapped_column(String(16))  # delivered, retry, failed

    __table_args__ = (Index("ix_webhook_attempts_key_id", "key_id", "id"),)


class WebhookEndpoint(Base):
    """A URL a key registers for all its events (OpenAI's project-level webhooks): each
    event of the key's requests made alone and of its batches goes there too."""

    __tablename__ = "webhook_endpoints"

    id: Mapped[str] = mapped_column(ID, primary_key=True)
    key_id: Mapped[str] = mapped_column(ForeignKey("api_keys.id"))
    url: Mapped[str] = mapped_column(Text)
    description: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[int] = mapped_column(Integer)

    __table_args__ = (Index("ix_webhook_endpoints_key_id", "key_id", "id"),)


class PlannedTime(Base):
    """When the scheduler's latest plan expects the pending requests of one model whose
    deadlines fall in one minute (the planner's unit of work) to start and complete."""

    __tablename__ = "planned_times"

    model: Mapped[str] = mapped_column(String(200), primary_key=True)
    expires_minute: Mapped[int] = mapped_column(Integer, primary_key=True)
    expected_start_at: Mapped[int] = mapped_column(Integer)
    # Null when the plan has no run length for it (the `immediate` policy).
    expected_completion_at: Mapped[int | None] = mapped_column(Integer)
    planned_at: Mapped[int] = mapped_column(Integer)
