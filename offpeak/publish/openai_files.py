"""OpenAI batch output and error files, written once a batch's requests have all ended.

Lines follow the OpenAI Batch API, in input order: a completed request goes to the
output file with its result body spliced in as the JSON text its chunk file holds;
a request the engine refused goes to the error file as an HTTP-like failure
(`response.status_code` 400, `body.error` in OpenAI's shape); one that never ran goes
there with `response: null` and `error.code` `batch_expired` or `batch_cancelled`.
Both files are streamed through temporary files, page by page, never held in memory.
A file that would be empty is not written: its id stays null.
"""

from __future__ import annotations

import json
import logging
import tempfile
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from offpeak.clock import now
from offpeak.errors import OffpeakError
from offpeak.ids import new_id
from offpeak.run.chunk_files import read_results
from offpeak.schemas import Status
from offpeak.state import openai as state
from offpeak.state.db import Database
from offpeak.state.models import Batch, OpenAIBatch, OpenAIFile
from offpeak.state.requests import LINE_COLUMNS, batch_line_rows
from offpeak.storage import ObjectStore

log = logging.getLogger(__name__)
PAGE = 1000
# Failures of the request itself (the engine refused it): HTTP 400, as OpenAI answers.
REQUEST_ERRORS = frozenset(
    {"context_length_exceeded", "invalid_response_format", "invalid_request"}
)
_COLUMN = {name: index for index, name in enumerate(LINE_COLUMNS)}


def file_key(key_id: str, file_id: str) -> str:
    return f"openai/files/{key_id}/{file_id}.jsonl"


def _error_body(code: str, message: str) -> dict[str, Any]:
    kind = "invalid_request_error" if code in REQUEST_ERRORS else "server_error"
    return {"error": {"message": message, "type": kind, "param": None, "code": code}}


def output_line(
    request_id: str,
    custom_id: str | None,
    status: str,
    result_body: str | None,
    error_code: str | None,
    error_message: str | None,
) -> tuple[bool, str]:
    """(is an output line, the line) of one ended request (pure)."""
    head = f'{{"id":"batch_req_{request_id}","custom_id":{json.dumps(custom_id)},"response":'
    if status == Status.COMPLETED and result_body:
        if "\n" in result_body or "\r" in result_body:  # valid JSON, but not one JSONL line
            result_body = json.dumps(json.loads(result_body), separators=(",", ":"))
        return True, f'{head}{{"status_code":200,"request_id":"{request_id}",' + (
            f'"body":{result_body}}},"error":null}}'
        )
    if status == Status.CANCELLED:
        error = {"code": "batch_cancelled", "message": "the batch was cancelled before it ran"}
        return False, f'{head}null,"error":{json.dumps(error)}}}'
    code = error_code or "server_error"
    message = error_message or "the request failed"
    if code == state.EXPIRED_CODE:
        error = {"code": "batch_expired", "message": message}
        return False, f'{head}null,"error":{json.dumps(error)}}}'
    response = {
        "status_code": 400 if code in REQUEST_ERRORS else 500,
        "request_id": request_id,
        "body": _error_body(code, message),
    }
    return False, f'{head}{json.dumps(response)},"error":null}}'


class _Results:
    """Result bodies by request id, from chunk files; the last few files stay loaded, as
    requests walked in id order need each file over a run of rows."""

    def __init__(self, store: ObjectStore, capacity: int = 4) -> None:
        self.store, self.capacity = store, capacity
        self._files: OrderedDict[str, dict[str, str]] = OrderedDict()

    def body(self, key: str, request_id: str) -> str | None:
        if key not in self._files:
            self._files[key] = {r.id: r.result_body for r in read_results(self.store, key)}
            if len(self._files) > self.capacity:
                self._files.popitem(last=False)
        self._files.move_to_end(key)
        return self._files[key].get(request_id) or None


@dataclass
class _Sink:
    """One output file being written to a temporary file."""

    lines: int = 0
    bytes: int = 0

    def __post_init__(self) -> None:
        self.file = tempfile.NamedTemporaryFile("wb", suffix=".jsonl", delete=False)  # noqa: SIM115

    def write(self, line: str) -> None:
        data = line.encode() + b"\n"
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


def final_status(batch: Batch, extra: OpenAIBatch, tally: state.Tally) -> str:
    if extra.cancelling_at is not None or batch.status == Status.CANCELLED:
        return "cancelled"
    return "expired" if tally.expired else "completed"


def write_files(
    db: Database, store: ObjectStore, batch: Batch, extra: OpenAIBatch, tally: state.Tally
) -> bool:
    """Write the output and error files of a batch whose requests have all ended, and
    record them; False if another process recorded them first (ours are removed)."""
    assert tally.pending == 0, "only batches whose requests have all ended"
    results = _Results(store)
    output, errors = _Sink(), _Sink()
    files: list[OpenAIFile] = []
    try:
        with db.session() as session:
            for rows in batch_line_rows(session, batch.key_id, batch.id, PAGE):
                for row in rows:
                    rid, status = row[_COLUMN["id"]], row[_COLUMN["status"]]
                    result_key = row[_COLUMN["result_key"]]
                    body = (
                        results.body(result_key, rid)
                        if result_key and status == Status.COMPLETED
                        else None
                    )
                    meta = json.loads(row[_COLUMN["metadata"]] or "{}")
                    ok, line = output_line(
                        rid,
                        meta.get("custom_id"),
                        status,
                        body,
                        row[_COLUMN["error_code"]],
                        row[_COLUMN["error_message"]],
                    )
                    (output if ok else errors).write(line)
        at = now()
        name = f"batch_{batch.id}"
        output_file = output.upload(store, batch.key_id, f"{name}_output.jsonl", at)
        error_file = errors.upload(store, batch.key_id, f"{name}_errors.jsonl", at)
        files = [f for f in (output_file, error_file) if f is not None]
        recorded = state.finish_batch(
            db,
            batch.id,
            status=final_status(batch, extra, tally),
            finalizing_at=tally.last_ended_at or at,
            files=files,
            output_file_id=output_file.id if output_file else None,
            error_file_id=error_file.id if error_file else None,
            at=at,
        )
    finally:
        output.discard()
        errors.discard()
    if not recorded:
        for file in files:
            store.delete(file.storage_key)
    return recorded


def finalize_ready(db: Database, store: ObjectStore) -> list[str]:
    """Write the files of every OpenAI batch whose requests have all ended; returns the
    ids of the batches finished. A batch that fails is logged and retried next time."""
    open_rows = state.open_batches(db)
    counts = state.tallies(db, [b.id for b, _ in open_rows])
    finished = []
    for batch, extra in open_rows:
        tally = counts[batch.id]
        if tally.pending:
            continue
        try:
            if write_files(db, store, batch, extra, tally):
                finished.append(batch.id)
        except OffpeakError as exc:
            log.error("writing the files of batch %s failed, will retry: %s", batch.id, exc)
    return finished
