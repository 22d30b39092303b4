"""OpenAI batch input files: every line checked, then turned into our requests.

A batch is created all or nothing: the file is read once, as a stream, line by line;
every problem is collected with its line number (malformed JSON, a duplicate
`custom_id`, a `url` other than the batch's endpoint, several models, an unknown model
or one of the wrong kind, an invalid body) and the create call is refused with all of
them. While no problem has been found, the valid lines are written straight to Parquet
segments page by page, so the file never sits in memory; the requests' rows then go
into the database in one transaction with the batch.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, BinaryIO

from pydantic import ValidationError

from offpeak.catalog.models import ModelRegistry, ModelSpec
from offpeak.errors import (
    BatchInputInvalid,
    LimitExceeded,
    UnknownModel,
    UnsafeJson,
    WrongModelKind,
)
from offpeak.ids import new_ids
from offpeak.ingest.admit import admit, asked_tokens, estimate
from offpeak.ingest.segments import encode_segment, segment_key
from offpeak.schemas import (
    OPENAI_ENDPOINTS,
    BatchInputLine,
    ChatCompletionRequest,
    EmbeddingRequest,
    strict_json,
)
from offpeak.state.requests import UnsealedRow
from offpeak.storage import ObjectStore

PAGE = 5000  # lines per segment
MAX_ERRORS = 100  # reading stops after this many problems
READ_SIZE = 1 << 16

BODIES: dict[str, type[ChatCompletionRequest] | type[EmbeddingRequest]] = {
    "/v1/chat/completions": ChatCompletionRequest,
    "/v1/embeddings": EmbeddingRequest,
}


@dataclass(frozen=True)
class LineError:
    """One problem of an input file, as listed in the 400 answer."""

    code: str
    message: str
    line: int | None = None
    param: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"code": self.code, "message": self.message, "param": self.param, "line": self.line}


@dataclass(frozen=True)
class InputLine:
    """A valid line: its custom_id, model and body (JSON text, as the engine reads it)."""

    number: int
    custom_id: str
    model: str
    body: str
    est_tokens: int


def iter_lines(stream: BinaryIO, max_line_bytes: int) -> Iterator[tuple[int, bytes]]:
    """(1-based number, bytes) of each line of ``stream``, read in blocks; a line longer
    than ``max_line_bytes`` comes back truncated there (it cannot be a valid line)."""
    number, pending = 0, b""
    while block := stream.read(READ_SIZE):
        *complete, pending = (pending + block).split(b"\n")
        for line in complete:
            number += 1
            yield number, line
        if len(pending) > max_line_bytes:
            # Keep the head only: enough to report the line, never the whole of it.
            pending = pending[: max_line_bytes + 1]
    if pending:
        yield number + 1, pending


def _first_problem(exc: ValidationError, prefix: str) -> str:
    errors = exc.errors(include_url=False)
    first = errors[0]
    where = ".".join(str(p) for p in (prefix, *first["loc"]) if p != "")
    more = f" (and {len(errors) - 1} more problems)" if len(errors) > 1 else ""
    return f"{where}: {first['msg']}{more}" if where else f"{first['msg']}{more}"


@dataclass
class LineChecker:
    """Checks the lines of one file for one endpoint; pure (no I/O).

    ``check`` returns the line when it is valid, else records why in ``errors``.
    """

    endpoint: str
    registry: ModelRegistry
    max_lines: int
    max_line_bytes: int
    errors: list[LineError] = field(default_factory=list)
    lines: int = 0
    model: str | None = None
    _model_line: int = 0
    _seen: dict[str, int] = field(default_factory=dict)

    @property
    def full(self) -> bool:
        """Whether enough problems were found to stop reading."""
        return len(self.errors) >= MAX_ERRORS

    def _fail(self, number: int, code: str, message: str, param: str | None = None) -> None:
        self.errors.append(LineError(code, f"line {number}: {message}", number, param))

    def check(self, number: int, raw: bytes) -> InputLine | None:
        if not raw.strip():
            return None  # blank lines (a trailing newline, say) carry no request
        self.lines += 1
        if self.lines > self.max_lines:
            if self.lines == self.max_lines + 1:
                self._fail(
                    number,
                    "too_many_lines",
                    f"a batch holds at most {self.max_lines} requests; split the file",
                )
            return None
        if len(raw) > self.max_line_bytes:
            self._fail(
                number, "line_too_long", f"a line may hold at most {self.max_line_bytes} bytes"
            )
            return None
        try:
            envelope = BatchInputLine.model_validate_json(raw)
        except ValidationError as exc:
            if exc.errors()[0]["type"] == "json_invalid":
                self._fail(number, "invalid_json_line", "not a valid JSON object")
            else:
                self._fail(number, "invalid_line", _first_problem(exc, ""))
            return None
        try:  # what pydantic lets through and no store can keep: NaN, NUL, 1e999...
            strict_json.loads(raw)
        except UnsafeJson as exc:
            self._fail(number, exc.code, exc.message, strict_json.dotted(exc.loc) or None)
            return None
        valid = self._unique(number, envelope.custom_id)
        if envelope.url != self.endpoint:
            self._fail(
                number,
                "mismatched_url",
                f"url {envelope.url!r} differs from the batch's endpoint {self.endpoint!r}",
                "url",
            )
            valid = False
        body = self._body(number, envelope.body)
        if body is None or not valid or (spec := self._admitted(number, body)) is None:
            return None
        return InputLine(
            number,
            envelope.custom_id,
            body.model,
            body.model_dump_json(by_alias=True, exclude_none=True),
            estimate(spec, body),
        )

    def _unique(self, number: int, custom_id: str) -> bool:
        first = self._seen.setdefault(custom_id, number)
        if first != number:
            self._fail(
                number,
                "duplicate_custom_id",
                f"custom_id {custom_id!r} is already used on line {first}",
                "custom_id",
            )
            return False
        return True

    def _body(
        self, number: int, body: dict[str, Any]
    ) -> ChatCompletionRequest | EmbeddingRequest | None:
        try:
            return BODIES[self.endpoint].model_validate(body)
        except ValidationError as exc:
            self._fail(number, "invalid_body", _first_problem(exc, "body"), "body")
            return None

    def _admitted(
        self, number: int, body: ChatCompletionRequest | EmbeddingRequest
    ) -> ModelSpec | None:
        """The model's spec if the line's model is the file's one and admitted (see
        offpeak.ingest.admit), else None with the problem recorded."""
        model = body.model
        if self.model is None:
            self.model, self._model_line = model, number
        elif model != self.model:
            self._fail(
                number,
                "mismatched_model",
                f"model {model!r} differs from {self.model!r} (line {self._model_line}); "
                "a batch runs one model",
                "body.model",
            )
            return None
        try:
            spec = admit(
                self.registry,
                model,
                OPENAI_ENDPOINTS[self.endpoint],
                max_tokens=asked_tokens(body) if isinstance(body, ChatCompletionRequest) else None,
            )
        except UnknownModel as exc:
            self._fail(number, "model_not_found", exc.message, "body.model")
            return None
        except WrongModelKind as exc:
            served_at = next(e for e, k in OPENAI_ENDPOINTS.items() if k == exc.kind)
            self._fail(
                number,
                "model_endpoint_mismatch",
                f"model {model!r} is served at {served_at}, not {self.endpoint}",
                "body.model",
            )
            return None
        except LimitExceeded as exc:
            self._fail(
                number, "invalid_body", f"body.{exc.param}: {exc.detail}", f"body.{exc.param}"
            )
            return None
        return spec


@dataclass(frozen=True)
class Ingested:
    """What a checked file became: segments written, and (request id, custom_id,
    segment, estimated tokens) per line in input order."""

    model: str
    requests: list[tuple[str, str, str, int]]
    segments: list[str]


def _pages(lines: Iterable[InputLine], size: int) -> Iterator[list[InputLine]]:
    page: list[InputLine] = []
    for line in lines:
        page.append(line)
        if len(page) == size:
            yield page
            page = []
    if page:
        yield page


def ingest_file(
    store: ObjectStore,
    stream: BinaryIO,
    checker: LineChecker,
    *,
    key_id: str,
    created_at: int,
    expires_at: int,
) -> Ingested:
    """Check every line of ``stream`` and write the valid ones to segments.

    Raises :class:`BatchInputInvalid` listing every problem found (up to MAX_ERRORS);
    segments written before the first problem are removed again.
    """
    requests: list[tuple[str, str, str, int]] = []
    segments: list[str] = []

    def valid_lines() -> Iterator[InputLine]:
        for number, raw in iter_lines(stream, checker.max_line_bytes):
            line = checker.check(number, raw)
            if line is not None and not checker.errors:
                yield line
            if checker.full:
                return

    try:
        for page in _pages(valid_lines(), PAGE):
            if checker.errors:
                continue  # keep reading to list every problem, but write nothing more
            rows = [
                UnsealedRow(
                    rid,
                    key_id,
                    line.model,
                    created_at,
                    expires_at,
                    line.body,
                    {"custom_id": line.custom_id},
                )
                # Ascending, so id order is input order (see offpeak.ids.new_ids).
                for rid, line in zip(new_ids(len(page)).to_pylist(), page, strict=True)
            ]
            segment = segment_key(created_at)
            store.create(segment, encode_segment(rows))
            segments.append(segment)
            requests += [
                (row.id, line.custom_id, segment, line.est_tokens)
                for row, line in zip(rows, page, strict=True)
            ]
        if not checker.errors and not checker.lines:
            checker.errors.append(LineError("empty_file", "the input file holds no requests"))
        if checker.errors:
            raise BatchInputInvalid(
                problems_message(checker.errors),
                [e.as_dict() for e in checker.errors],
                code=checker.errors[0].code,
            )
    except BaseException:
        for segment in segments:
            store.delete(segment)
        raise
    assert checker.model is not None
    return Ingested(checker.model, requests, segments)


def problems_message(errors: list[LineError]) -> str:
    """One message naming the first problems of a file."""
    shown = "; ".join(e.message for e in errors[:10])
    more = f"; and {len(errors) - 10} more" if len(errors) > 10 else ""
    capped = " (reading stopped there)" if len(errors) >= MAX_ERRORS else ""
    return f"the input file is invalid: {shown}{more}{capped}"
