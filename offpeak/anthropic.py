"""Anthropic's Message Batches translated both ways, pure (no I/O).

In: each entry of a create call is checked (custom_id, the Messages params, the model,
the turns) and becomes the engine's chat request: `system` as a first system message,
text blocks as text parts, `stop_sequences` as `stop`, `temperature` (Anthropic's 0-1,
default 1), `top_p`, `top_k`, `metadata.user_id` as `user`. Every problem of every entry
is collected, named `requests.<index>.<field>`, before anything is registered.

Out: an ended request becomes a result line (a `message` with its text, `stop_reason`
and exact token usage; or `errored`, `canceled`, `expired`), and a batch with its tally
becomes a message batch object.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError

from offpeak.catalog.models import ModelRegistry
from offpeak.errors import BatchInputInvalid, LimitExceeded, UnknownModel, WrongModelKind
from offpeak.ingest.admit import admit, estimate
from offpeak.schemas import REQUEST_ERRORS, ChatCompletionRequest, ErrorCode, Status
from offpeak.schemas.anthropic import (
    UNSUPPORTED_PARAMS,
    BatchEntry,
    Canceled,
    ErrorDetail,
    Errored,
    ErrorResponse,
    Expired,
    MessageBatch,
    MessageBatchRequestCounts,
    MessageOut,
    MessageParams,
    OutputText,
    ResultLine,
    Succeeded,
    Usage,
)
from offpeak.state.batches import Tally
from offpeak.state.models import Batch

CUSTOM_ID = re.compile(r"[a-zA-Z0-9_-]{1,64}")
SHOWN_PROBLEMS = 20  # named in the message; the rest are counted
# Anthropic's default, where OpenAI's (and the engine's) is 0.7.
DEFAULT_TEMPERATURE = 1.0


# --- in: entries to chat requests --------------------------------------------------------


@dataclass(frozen=True)
class Entry:
    """A checked entry: its custom_id, model, the engine's request body (JSON text) and
    the tokens it may take."""

    custom_id: str
    model: str
    body: str
    est_tokens: int


def problem(index: int, field: str, message: str) -> str:
    return f"requests.{index}.{field}: {message}" if field else f"requests.{index}: {message}"


def _pydantic_problems(index: int, exc: ValidationError, prefix: str) -> list[str]:
    found = []
    for error in exc.errors(include_url=False):
        where = ".".join(str(p) for p in (prefix, *error["loc"]) if p != "")
        message = str(error["msg"]).removeprefix("Value error, ")
        found.append(problem(index, where, message))
    return found


def _feature_problems(index: int, params: dict[str, Any]) -> list[str]:
    """Tools, images and the like, named where they are (pydantic would only see a
    block that matches no model)."""
    found = [
        problem(
            index, f"params.{name}", f"{name} is not supported: this engine generates text only"
        )
        for name in UNSUPPORTED_PARAMS
        if name in params
    ]
    places: list[tuple[str, Any]] = [("params.system", params.get("system"))]
    messages = params.get("messages")
    if isinstance(messages, list):
        places += [
            (f"params.messages.{i}.content", m.get("content"))
            for i, m in enumerate(messages)
            if isinstance(m, dict)
        ]
    for where, content in places:
        if not isinstance(content, list):
            continue
        for j, block in enumerate(content):
            kind = block.get("type") if isinstance(block, dict) else None
            if isinstance(kind, str) and kind != "text":
                found.append(
                    problem(
                        index,
                        f"{where}.{j}.type",
                        f"{kind!r} blocks are not supported: this engine reads text only",
                    )
                )
    return found


def _turn_problems(index: int, params: MessageParams) -> list[str]:
    found = []
    for i, turn in enumerate(params.messages):
        if i == 0 and turn.role != "user":
            message_ = "the first message must be a user turn"
        elif i > 0 and turn.role == params.messages[i - 1].role:
            message_ = f"roles must alternate: messages {i - 1} and {i} are both {turn.role}"
        else:
            continue
        found.append(problem(index, f"params.messages.{i}.role", message_))
    if params.messages[-1].role == "assistant" and not found:
        found.append(
            problem(
                index,
                f"params.messages.{len(params.messages) - 1}.role",
                "a final assistant turn (prefill) is not supported: end with a user turn",
            )
        )
    return found


def chat_request(params: MessageParams) -> ChatCompletionRequest:
    """The engine's chat request for a Messages request."""
    messages: list[dict[str, Any]] = []
    if params.system:
        system = params.system
        text = system if isinstance(system, str) else "".join(b.text for b in system)
        messages.append({"role": "system", "content": text})
    for message in params.messages:
        parts = [{"type": "text", "text": b.text} for b in message.text_blocks()]
        messages.append({"role": message.role, "content": parts})
    body: dict[str, Any] = {
        "model": params.model,
        "messages": messages,
        "max_tokens": params.max_tokens,
        "temperature": DEFAULT_TEMPERATURE if params.temperature is None else params.temperature,
    }
    if params.top_p is not None:
        body["top_p"] = params.top_p
    if params.top_k is not None:
        body["top_k"] = params.top_k
    if params.stop_sequences:
        body["stop"] = params.stop_sequences
    if params.metadata and params.metadata.user_id:
        body["user"] = params.metadata.user_id
    return ChatCompletionRequest.model_validate(body)


def _entry(index: int, entry: BatchEntry, registry: ModelRegistry) -> Entry | list[str]:
    """The checked entry, or its problems."""
    raw = entry.params
    if not isinstance(raw, dict):
        return [problem(index, "params", "must be an object (a Messages API request)")]
    if found := _feature_problems(index, raw):
        return found
    try:
        params = MessageParams.model_validate(raw)
    except ValidationError as exc:
        return _pydantic_problems(index, exc, "params")
    if found := _turn_problems(index, params):
        return found
    try:
        spec = admit(registry, params.model, "chat", max_tokens=params.max_tokens)
    except (UnknownModel, WrongModelKind) as exc:
        return [problem(index, "params.model", exc.message)]
    except LimitExceeded as exc:
        return [problem(index, f"params.{exc.param}", exc.detail)]
    try:
        body = chat_request(params)
    except ValidationError as exc:  # a limit of the engine's request the params lack
        return _pydantic_problems(index, exc, "params")
    return Entry(
        entry.custom_id,
        params.model,
        body.model_dump_json(by_alias=True, exclude_none=True),
        estimate(spec, body),
    )


def check_entries(
    entries: Sequence[BatchEntry], registry: ModelRegistry, *, max_requests: int
) -> list[Entry]:
    """Every entry checked and translated, in order; :class:`BatchInputInvalid` naming
    each problem (`requests.<index>.<field>: ...`) if there is any."""
    problems: list[str] = []
    if len(entries) > max_requests:
        problems.append(
            f"requests: a batch holds at most {max_requests} requests, not {len(entries)}"
        )
    checked: list[Entry] = []
    seen: dict[str, int] = {}
    for index, entry in enumerate(entries):
        custom_id = entry.custom_id
        if not isinstance(custom_id, str) or not CUSTOM_ID.fullmatch(custom_id):
            problems.append(
                problem(index, "custom_id", "must be 1 to 64 characters of a-z, A-Z, 0-9, _ and -")
            )
        elif (first := seen.setdefault(custom_id, index)) != index:
            problems.append(
                problem(index, "custom_id", f"{custom_id!r} is already used by requests.{first}")
            )
        outcome = _entry(index, entry, registry)
        if isinstance(outcome, Entry):
            checked.append(outcome)
        else:
            problems += outcome
    if problems:
        shown = "; ".join(problems[:SHOWN_PROBLEMS])
        more = (
            f"; and {len(problems) - SHOWN_PROBLEMS} more" if len(problems) > SHOWN_PROBLEMS else ""
        )
        raise BatchInputInvalid(
            shown + more,
            [{"message": p} for p in problems],
            code="invalid_request",
        )
    return checked


# --- out: requests to result lines, batches to objects ------------------------------------


def message(request_id: str, completion: dict[str, Any]) -> MessageOut:
    """The Messages `message` of a chat completion (its first choice)."""
    choice = completion["choices"][0]
    stop = choice.get("stop_reason")
    if choice["finish_reason"] == "length":
        reason, sequence = "max_tokens", None
    elif isinstance(stop, str):  # the stop string matched (the engine names it)
        reason, sequence = "stop_sequence", stop
    else:
        reason, sequence = "end_turn", None
    usage = completion["usage"]
    return MessageOut(
        id=f"msg_{request_id}",
        model=completion["model"],
        content=[OutputText(text=choice["message"].get("content") or "")],
        stop_reason=reason,
        stop_sequence=sequence,
        usage=Usage(input_tokens=usage["prompt_tokens"], output_tokens=usage["completion_tokens"]),
    )


def result_line(
    request_id: str,
    custom_id: str | None,
    status: str,
    completion: dict[str, Any] | None,
    error_code: str | None,
    error_message: str | None,
) -> ResultLine:
    """The result line of one ended request."""
    custom_id = custom_id or request_id  # a request made elsewhere: its own id
    if status == Status.COMPLETED and completion:
        return ResultLine(
            custom_id=custom_id, result=Succeeded(message=message(request_id, completion))
        )
    if status == Status.CANCELLED:
        return ResultLine(custom_id=custom_id, result=Canceled())
    if error_code == ErrorCode.EXPIRED:
        return ResultLine(custom_id=custom_id, result=Expired())
    refused = error_code in REQUEST_ERRORS  # the engine refused the request itself
    detail = ErrorDetail(
        type="invalid_request_error" if refused else "api_error",
        message=error_message or "the request failed",
    )
    return ResultLine(custom_id=custom_id, result=Errored(error=ErrorResponse(error=detail)))


def rfc3339(at: int | None) -> str | None:
    if at is None:
        return None
    return datetime.fromtimestamp(at, UTC).isoformat().replace("+00:00", "Z")


def request_counts(tally: Tally) -> MessageBatchRequestCounts:
    c = tally.counts
    return MessageBatchRequestCounts(
        processing=tally.pending,
        succeeded=c.completed,
        errored=c.failed - tally.expired,
        canceled=c.cancelled,
        expired=tally.expired,
    )


def batch_object(batch: Batch, tally: Tally, *, settled: bool, results_url: str) -> MessageBatch:
    """The message batch object of ``batch``. It has ended once final (published or
    cancelled) and settled (no job of it still running); until then a cancelled one is
    `canceling`."""
    final = Status(batch.status).is_final
    ended = final and settled
    status = (
        "ended" if ended else "canceling" if batch.status == Status.CANCELLED else "in_progress"
    )
    cancelled = batch.status == Status.CANCELLED
    return MessageBatch(
        id=batch.id,
        processing_status=status,
        request_counts=request_counts(tally),
        created_at=rfc3339(batch.created_at) or "",
        expires_at=rfc3339(batch.expires_at) or "",
        ended_at=rfc3339(max(batch.ended_at or 0, tally.last_ended_at or 0)) if ended else None,
        cancel_initiated_at=rfc3339(batch.ended_at) if cancelled else None,
        results_url=results_url if ended else None,
    )
