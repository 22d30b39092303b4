"""The lifecycle vocabularies: statuses of requests, batches and jobs, and the codes a
failed request carries. StrEnums, so the strings stored and answered stay as they are."""

from __future__ import annotations

from enum import StrEnum


class Status(StrEnum):
    """Lifecycle of requests and batches alike."""

    # A batch whose dataset is still being registered: its requests wait, unscheduled.
    VALIDATING = "validating"
    REGISTERED = "registered"
    IN_PROGRESS = "in_progress"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def is_final(self) -> bool:
        return self in FINAL_STATUSES


FINAL_STATUSES = frozenset({Status.COMPLETED, Status.FAILED, Status.CANCELLED})


class JobStatus(StrEnum):
    """Lifecycle of an inference job (a run of one engine over a manifest)."""

    CREATED = "created"  # manifest written, requests claimed, no flow run yet
    LAUNCHED = "launched"  # a flow run was asked for; it may not have started
    RUNNING = "running"  # the runner started the engine
    COMPLETED = "completed"
    FAILED = "failed"

    @property
    def is_active(self) -> bool:
        return self in ACTIVE_JOB_STATUSES


# Jobs that hold their requests and a place in their pool.
ACTIVE_JOB_STATUSES = frozenset({JobStatus.CREATED, JobStatus.LAUNCHED, JobStatus.RUNNING})


class ErrorCode(StrEnum):
    """Why a request failed: the ``error.code`` stored on it and shown in its results.

    Errors raised as exceptions carry their code on their class (offpeak.errors); these
    are the codes recorded as data, on requests that ran, or could not run, to the end.
    """

    # The request itself: the engine refused it (see offpeak.errors.EngineRequestError).
    CONTEXT_LENGTH_EXCEEDED = "context_length_exceeded"
    INVALID_RESPONSE_FORMAT = "invalid_response_format"
    INVALID_REQUEST = "invalid_request"
    # The service: it could not run the request in time, or at all.
    EXPIRED = "expired"  # its completion window ended before it could run
    JOB_FAILED = "job_failed"  # its job stopped more often than `job_max_attempts`
    SERVER_ERROR = "server_error"  # failed with no code recorded

    @property
    def is_request_error(self) -> bool:
        """Whether the request's own content caused it (a 400 in OpenAI's output file)."""
        return self in REQUEST_ERRORS


REQUEST_ERRORS = frozenset(
    {
        ErrorCode.CONTEXT_LENGTH_EXCEEDED,
        ErrorCode.INVALID_RESPONSE_FORMAT,
        ErrorCode.INVALID_REQUEST,
    }
)
