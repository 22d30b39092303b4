"""The one exception tree of offpeak.

Every error the core raises derives from :class:`OffpeakError` and carries a
machine-readable ``code``. The edges (HTTP routes, CLI) translate these classes to
status codes or exit messages; the core never knows about HTTP.
"""

from __future__ import annotations


class OffpeakError(Exception):
    """Base class of every offpeak error."""

    code = "offpeak_error"

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code


class ConfigError(OffpeakError, ValueError):
    """A setting or configuration file is invalid."""

    code = "config_error"


class SchemaNotCurrent(ConfigError):
    """The state database's schema is not the one this code needs (`offpeak db upgrade`)."""

    code = "schema_not_current"


class InvalidInput(OffpeakError, ValueError):
    """The caller sent something that cannot be accepted as it is."""

    code = "invalid_input"


class UnsafeJson(InvalidInput):
    """A JSON body holds a value the stores cannot keep or every reader cannot read back.

    ``loc`` is the value's path from the document's root (keys and list indexes). Codes:
    ``json_invalid`` (not JSON), ``invalid_utf8``, ``non_finite_number`` (NaN, Infinity),
    ``number_out_of_range`` (a float past double range, an integer past 64 bits),
    ``nul_character``, ``lone_surrogate``, ``json_too_deep``, ``json_too_many_items``.
    """

    code = "json_invalid"

    def __init__(
        self, message: str, loc: tuple[str | int, ...] = (), *, code: str | None = None
    ) -> None:
        super().__init__(message, code=code)
        self.loc = loc


class WebhookUrlForbidden(InvalidInput):
    """A webhook URL offpeak refuses to call: one that resolves to a loopback, private,
    link-local or metadata address (``webhook_url_forbidden``), plain http where https is
    required (``webhook_url_insecure``), a host that does not resolve
    (``webhook_url_unresolvable``), or no http(s) URL at all (``webhook_url_invalid``)."""

    code = "webhook_url_forbidden"


class UnknownModel(InvalidInput):
    """The requested model is not served here."""

    code = "model_not_found"


class WrongModelKind(InvalidInput):
    """The model is served here, but for the other kind of request (chat, embeddings)
    than the endpoint it was sent to. ``kind`` is the model's, ``wanted`` the endpoint's."""

    code = "model_wrong_kind"

    def __init__(self, message: str, *, model: str, kind: str, wanted: str, code: str) -> None:
        super().__init__(message, code=code)
        self.model, self.kind, self.wanted = model, kind, wanted


class LimitExceeded(InvalidInput):
    """A request asks for more than its model allows. ``param`` names the field and
    ``detail`` says by how much (the message is ``f"{param} {detail}"``)."""

    code = "invalid_input"

    def __init__(self, param: str, detail: str) -> None:
        super().__init__(f"{param} {detail}")
        self.param, self.detail = param, detail


class DatasetError(InvalidInput):
    """A submitted dataset, or its column mapping, cannot become a batch as it is.

    The message names the column or the row (counted from 0). Codes:
    ``dataset_unreadable``, ``dataset_empty``, ``dataset_column_missing``,
    ``dataset_column_type``, ``dataset_invalid_row``, ``dataset_duplicate_id``,
    ``dataset_invalid_mapping``, ``dataset_not_utf8``, ``json_too_deep`` (a JSON line
    nests deeper than the readers can bear).
    """

    code = "dataset_invalid"


class TooLarge(InvalidInput):
    """An input is larger than a configured limit allows."""

    code = "payload_too_large"


class DatasetTooLarge(DatasetError, TooLarge):
    """A dataset expands past its size limit once decompressed, whatever its size as sent."""

    code = "dataset_too_large"


class Forbidden(OffpeakError, PermissionError):
    """The API key is valid but not allowed to do this."""

    code = "forbidden"


class DatasetSourceForbidden(Forbidden):
    """A dataset ``source`` names a location the key may not read: outside the key's
    allowed prefixes, or inside the service's own storage."""

    code = "dataset_source_forbidden"


class BatchInputInvalid(InvalidInput):
    """An OpenAI batch input file cannot become a batch as it is.

    ``problems`` lists each problem as ``{code, message, param, line}`` (line numbers
    from 1); ``code`` is the first problem's: ``invalid_json_line``, ``invalid_line``,
    ``duplicate_custom_id``, ``mismatched_url``, ``mismatched_model``,
    ``model_not_found``, ``model_endpoint_mismatch``, ``invalid_body``,
    ``too_many_lines``, ``line_too_long``, ``empty_file``.
    """

    code = "invalid_batch_input"

    def __init__(
        self, message: str, problems: list[dict[str, object]], *, code: str | None = None
    ) -> None:
        super().__init__(message, code=code)
        self.problems = problems


class EngineRequestError(InvalidInput):
    """The engine cannot run one request as it is; the request fails, the job goes on.

    Codes: ``context_length_exceeded`` (the prompt leaves no room to answer, or an
    embedding input is longer than the context),
    ``invalid_response_format`` (the structured-output schema is refused),
    ``invalid_request`` (any other parameter the engine refuses).
    """

    code = "invalid_request"


class AuthenticationError(OffpeakError, PermissionError):
    """The API key is missing, unknown or revoked."""

    code = "invalid_api_key"


class InsufficientCredits(OffpeakError):
    """The API key's balance is below the minimum needed to process requests."""

    code = "insufficient_credits"


class NotFound(OffpeakError, LookupError):
    """An object does not exist, or belongs to another API key."""

    code = "not_found"


class Conflict(OffpeakError):
    """The object is in a state that does not allow the operation."""

    code = "conflict"


class JobLeaseLost(Conflict):
    """Another run holds the job (its lease is live, or took over after ours expired):
    this run stops, leaving the job to that one."""

    code = "job_lease_lost"


class IdempotencyKeyInProgress(Conflict):
    """Another request holds this `Idempotency-Key` and is still answering it (its lease
    is live), or took it over from this one: retry after ``retry_after`` seconds."""

    code = "idempotency_key_in_progress"

    def __init__(self, message: str, *, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = max(1, retry_after)


class ResultExpired(OffpeakError, LookupError):
    """What was asked for existed but retention removed it (``result_expired``): a
    batch's results, a file's content. The object's status and metadata stay."""

    code = "result_expired"


class StorageError(OffpeakError, OSError):
    """Object storage failed or refused an operation."""

    code = "storage_error"


class DependencyUnavailable(OffpeakError, ConnectionError):
    """A service offpeak depends on cannot be reached now; retrying later may succeed."""

    code = "dependency_unavailable"


class DatabaseUnavailable(DependencyUnavailable):
    """The state database refuses connections, dropped one, or does not answer in time."""

    code = "database_unavailable"


class StorageUnavailable(StorageError, DependencyUnavailable):
    """The object store cannot be reached (connection refused or closed, timeout)."""

    code = "storage_unavailable"


class ObjectExists(StorageError, FileExistsError):
    """A conditional create found the object already there."""

    code = "object_exists"


class ObjectNotFound(StorageError, FileNotFoundError):
    """The object is not in storage."""

    code = "object_not_found"


class CarbonSignalError(OffpeakError, ConnectionError):
    """A carbon-intensity provider gave no usable answer.

    The fallback chain (:mod:`offpeak.carbon.fallback`) catches this family: the
    scheduler never stops because the grid signal is missing. Raised as such, with code
    ``carbon_bad_request``, when the provider rejects the request itself (a 400).
    """

    code = "carbon_signal_error"


class CarbonNotInPlan(CarbonSignalError):
    """The provider refuses this data to our token: not in the plan, forbidden, or not
    offered by this provider at all. Retrying does not help."""

    code = "carbon_not_in_plan"


class CarbonUnavailable(CarbonSignalError):
    """The provider is down, throttling or unreachable (5xx, 429, timeouts, network),
    still after the retries."""

    code = "carbon_unavailable"


class CarbonMalformed(CarbonSignalError):
    """The provider answered with a body that is not the documented payload."""

    code = "carbon_malformed"


class CarbonUnknownZone(CarbonSignalError, LookupError):
    """The provider knows no such zone or region, or has no data for it."""

    code = "carbon_unknown_zone"


class ClientError(OffpeakError):
    """The offpeak API answered a client call with an error, or could not be reached.

    ``status`` is the HTTP status (0 when no answer came), ``code`` the API's
    machine-readable code.
    """

    code = "client_error"

    def __init__(self, message: str, *, status: int, code: str | None = None) -> None:
        super().__init__(message, code=code)
        self.status = status


class ApiUnreachable(ClientError, ConnectionError):
    """No answer from the offpeak API (connection refused, timeout, DNS)."""

    code = "api_unreachable"
