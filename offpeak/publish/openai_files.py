"""OpenAI batch output and error files, written by publishing once a batch has ended.

Lines follow the OpenAI Batch API, in input order, each a
:class:`~offpeak.schemas.openai.BatchOutputLine` encoded by pydantic: a completed
request goes to the output file with its result body; a request the engine refused
goes to the error file as an HTTP-like failure (`response.status_code` 400, `body.error`
in OpenAI's shape); one that never ran goes there with `response: null` and
`error.code` `batch_expired` or `batch_cancelled`. Both files are streamed through
temporary files, page by page, never held in memory. A file that would be empty is not
written: its id stays null.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from pydantic_core import from_json, to_json

from offpeak.clock import now
from offpeak.ids import new_id
from offpeak.publish.ended import ended_pages
from offpeak.publish.openai_objects import final_status
from offpeak.schemas import (
    REQUEST_ERRORS,
    BatchLineError,
    BatchLineResponse,
    BatchOutputLine,
    ErrorCode,
    OpenAIErrorBody,
    OpenAIErrorDetail,
    Status,
)
from offpeak.state import batches
from offpeak.state import openai as state
from offpeak.state.db import Database
from offpeak.state.models import Batch, OpenAIFile
from offpeak.storage import ObjectStore

log = logging.getLogger(__name__)


def file_key(key_id: str, file_id: str) -> str:
    return f"openai/files/{key_id}/{file_id}.jsonl"


def output_line(
    request_id: str,
    custom_id: str | None,
    status: str,
    result_body: str | None,
    error_code: str | None,
    error_message: str | None,
) -> BatchOutputLine:
    """The line of one ended request (pure); it belongs in the output file when its
    response has status 200, else in the error file."""
    line_id = f"batch_req_{request_id}"
    if status == Status.COMPLETED and result_body:
        response = BatchLineResponse(
            status_code=200, request_id=request_id, body=from_json(result_body)
        )
        return BatchOutputLine(id=line_id, custom_id=custom_id, response=response, error=None)
    if status == Status.CANCELLED:
        error = BatchLineError(
            code="batch_cancelled", message="the batch was cancelled before it ran"
        )
        return BatchOutputLine(id=line_id, custom_id=custom_id, response=None, error=error)
    code = error_code or "server_error"
    message = error_message or "the request failed"
    if code == ErrorCode.EXPIRED:
        error = BatchLineError(code="batch_expired", message=message)
        return BatchOutputLine(id=line_id, custom_id=custom_id, response=None, error=error)
    refused = code in REQUEST_ERRORS  # the engine refused it: 400, as OpenAI answers
    detail = OpenAIErrorDetail(
        message=message,
        type="invalid_request_error" if refused else "server_error",
        code=code,
    )
    response = BatchLineResponse(
        status_code=400 if refused else 500,
        request_id=request_id,
        body=OpenAIErrorBody(error=detail),
    )
    return BatchOutputLine(id=line_id, custom_id=custom_id, response=response, error=None)


def is_output(line: BatchOutputLine) -> bool:
    return line.response is not None and line.response.status_code == 200


@dataclass
class _Sink:
    """One output file being written to a temporary file."""

    lines: int = 0
    bytes: int = 0

    def __post_init__(self) -> None:
        self.file = tempfile.NamedTemporaryFile("wb", suffix=".jsonl", delete=False)  # noqa: SIM115

    def write(self, line: BatchOutputLine) -> None:
        data = to_json(line) + b"\n"
        self.file.write(data)
        self.lines += 1
        self.bytes += len(data)

    def upload(self, store: ObjectStore, key_id: str, name: str, at: int) -> OpenAIFile | None:
        self.file.close()
        if not self.lines:
            return None
        file_id = new_id()
        key = file_key(key_id, file_id)
        store.put_file(key, Path(self.file.name))
        return OpenAIFile(
            id=file_id,
            key_id=key_id,
            purpose="batch_output",
            filename=name,
            bytes=self.bytes,
            storage_key=key,
            created_at=at,
        )

    def discard(self) -> None:
        self.file.close()
        Path(self.file.name).unlink(missing_ok=True)


def write_files(db: Database, store: ObjectStore, batch: Batch, tally: batches.Tally) -> bool:
    """Write the output and error files of an ended batch with an OpenAI view, and
    record them; False if another process recorded them first (ours are removed)."""
    assert batch.openai is not None and tally.pending == 0, "an ended OpenAI batch"
    output, errors = _Sink(), _Sink()
    files: list[OpenAIFile] = []
    try:
        for page in ended_pages(db, store, batch):
            for r in page:
                line = output_line(
                    r.id, r.custom_id, r.status, r.result_body, r.error_code, r.error_message
                )
                (output if is_output(line) else errors).write(line)
        at = now()
        name = f"batch_{batch.id}"
        output_file = output.upload(store, batch.key_id, f"{name}_output.jsonl", at)
        error_file = errors.upload(store, batch.key_id, f"{name}_errors.jsonl", at)
        files = [f for f in (output_file, error_file) if f is not None]
        recorded = state.record_files(
            db,
            batch.id,
            status=final_status(batch, tally),
            finalizing_at=tally.last_ended_at or at,
            files=files,
            output_file_id=output_file.id if output_file else None,
            error_file_id=error_file.id if error_file else None,
            tally=tally,
            at=at,
        )
    finally:
        output.discard()
        errors.discard()
    if not recorded:
        for file in files:
            store.delete(file.storage_key)
    return recorded


def finalize_ready(
    db: Database, store: ObjectStore, batch_ids: Sequence[str] | None = None
) -> list[str]:
    """Write the files of every OpenAI batch that has ended (published or cancelled) and
    has none yet, only among ``batch_ids`` when given; returns the ids of the batches
    whose files were recorded. A batch that fails does not stop the others: it is
    logged and tried again next time."""
    due = batches.openai_files_due(db, batch_ids)
    counts = batches.tallies(db, [b.id for b in due])
    recorded = []
    for batch in due:
        try:
            if write_files(db, store, batch, counts[batch.id]):
                recorded.append(batch.id)
        except Exception as exc:  # one batch's failure, whatever it is, is that batch's
            log.error("writing the files of batch %s failed, will retry: %s", batch.id, exc)
    return recorded
