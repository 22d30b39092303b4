"""Dataset rows to requests, column-wise and without I/O.

A dataset's mapping is checked once against its schema (:func:`plan`), then each
Arrow record batch is checked (:func:`check`, naming the first bad row) and turned
into request bodies and metadata as JSON text (:func:`build`) by polars expressions,
never row by row in Python.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, cast

import annotated_types
import numpy as np
import polars as pl
import pyarrow as pa
from pydantic import ValidationError

from offpeak.catalog.models import ModelSpec
from offpeak.errors import DatasetError, LimitExceeded
from offpeak.ingest.admit import check_limits
from offpeak.ingest.estimate import CHARS_PER_TOKEN, DEFAULT_COMPLETION_TOKENS, TOKENS_PER_MESSAGE
from offpeak.schemas import ChatCompletionRequest, DatasetMapping

ROLES = ("system", "developer", "user", "assistant")
# The chat-completions fields a column can set per row, and the type of their values.
PARAMETER_TYPES: dict[str, type] = {
    "temperature": float,
    "top_p": float,
    "max_tokens": int,
    "max_completion_tokens": int,
    "seed": int,
    "presence_penalty": float,
    "frequency_penalty": float,
}
MESSAGES = pl.List(pl.Struct({"role": pl.String(), "content": pl.String()}))


@dataclass(frozen=True)
class Plan:
    """What to read of a dataset and how its rows become requests."""

    mapping: DatasetMapping
    columns: list[str]  # the columns to read, each once
    text_column: str  # the prompt or the messages column
    messages_as_json: bool  # the messages column holds JSON text
    parameters: dict[str, str]  # per-row field -> column
    template: dict[str, Any]  # body fields other than model and messages, in order
    max_completion_tokens: int
    context_length: int  # estimates stop at it, as offpeak.ingest.admit.context_cap


def _is_text(kind: pa.DataType) -> bool:
    if pa.types.is_dictionary(kind):
        return _is_text(kind.value_type)
    return bool(
        pa.types.is_string(kind) or pa.types.is_large_string(kind) or pa.types.is_string_view(kind)
    )


def _is_messages(kind: pa.DataType) -> bool:
    if not (pa.types.is_list(kind) or pa.types.is_large_list(kind)):
        return False
    item = kind.value_type
    if not pa.types.is_struct(item):
        return False
    names = {item.field(i).name: item.field(i).type for i in range(item.num_fields)}
    return all(name in names and _is_text(names[name]) for name in ("role", "content"))


def _is_number(kind: pa.DataType) -> bool:
    return bool(pa.types.is_integer(kind) or pa.types.is_floating(kind))


def _column(schema: pa.Schema, column: str, role: str) -> pa.DataType:
    if column not in schema.names:
        shown = ", ".join(schema.names[:20]) + (" ..." if len(schema.names) > 20 else "")
        raise DatasetError(
            f"column {column!r} ({role}) is not in the dataset; its columns: {shown}",
            code="dataset_column_missing",
        )
    return schema.field(column).type


def _type_error(column: str, role: str, kind: pa.DataType, wanted: str) -> DatasetError:
    return DatasetError(
        f"column {column!r} ({role}) is {kind}, expected {wanted}", code="dataset_column_type"
    )


def plan(mapping: DatasetMapping, schema: pa.Schema, spec: ModelSpec) -> Plan:
    """Check the mapping against the dataset's schema and the model's limits (``spec``:
    the model's, admitted by offpeak.ingest.admit)."""
    parameters = mapping.parameters()
    unknown = sorted(set(parameters) - set(PARAMETER_TYPES))
    if unknown:
        raise DatasetError(
            f"parameter_columns: {', '.join(unknown)} cannot be set per row; "
            f"allowed: {', '.join(PARAMETER_TYPES)}",
            code="dataset_invalid_mapping",
        )
    try:
        example = ChatCompletionRequest.model_validate(
            {
                "model": mapping.model,
                "messages": [{"role": "user", "content": "-"}],
                **mapping.global_parameters(),
            }
        )
    except ValidationError as exc:
        raise DatasetError(
            f"invalid global parameters: {exc.errors()[0]['msg']}", code="dataset_invalid_mapping"
        ) from None
    try:
        check_limits(spec, mapping.model, mapping.max_tokens)
    except LimitExceeded as exc:
        raise DatasetError(exc.message, code="dataset_invalid_mapping") from None
    template = example.model_dump(by_alias=True, exclude_none=True)
    del template["model"], template["messages"]

    columns: list[str] = []
    messages_as_json = False
    if mapping.prompt_column is not None:
        text_column = mapping.prompt_column
        kind = _column(schema, text_column, "prompt_column")
        if not _is_text(kind):
            raise _type_error(text_column, "prompt_column", kind, "text")
    else:
        text_column = cast(str, mapping.messages_column)
        kind = _column(schema, text_column, "messages_column")
        messages_as_json = _is_text(kind)
        if not (messages_as_json or _is_messages(kind)):
            raise _type_error(
                text_column,
                "messages_column",
                kind,
                "a list of {role, content} structs, or their JSON text",
            )
    columns.append(text_column)
    if mapping.id_column is not None:
        kind = _column(schema, mapping.id_column, "id_column")
        if not (_is_text(kind) or pa.types.is_integer(kind)):
            raise _type_error(mapping.id_column, "id_column", kind, "text or integers")
        columns.append(mapping.id_column)
    for field, column in parameters.items():
        kind = _column(schema, column, f"parameter {field}")
        if not _is_number(kind):
            raise _type_error(column, f"parameter {field}", kind, "numbers")
        columns.append(column)
    return Plan(
        mapping=mapping,
        columns=list(dict.fromkeys(columns)),
        text_column=text_column,
        messages_as_json=messages_as_json,
        parameters=parameters,
        template=template,
        max_completion_tokens=spec.max_completion_tokens,
        context_length=spec.context_length,
    )


# --- checking rows ------------------------------------------------------------------------


def _first(mask: pl.Series) -> int | None:
    """Index of the first true value of a boolean series (nulls count as false)."""
    hits = mask.fill_null(False).arg_true()
    return int(hits[0]) if len(hits) else None


def _bad_row(offset: int, index: int, message: str) -> DatasetError:
    return DatasetError(f"row {offset + index}: {message}", code="dataset_invalid_row")


def _frame(batch: pa.RecordBatch | pa.Table) -> pl.DataFrame:
    frame = pl.from_arrow(batch)
    assert isinstance(frame, pl.DataFrame)
    return frame


def messages_series(frame: pl.DataFrame, plan: Plan, offset: int) -> pl.Series:
    """The messages column as a list of {role, content}, decoding JSON text."""
    column = frame[plan.text_column]
    if not plan.messages_as_json:
        return column.cast(MESSAGES)
    try:
        return column.str.json_decode(MESSAGES)
    except pl.exceptions.PolarsError:
        # Find the culprit the slow way; this only runs on the way to an error.
        for index, text in enumerate(column.to_list()):
            try:
                json.loads(text) if text is not None else None
            except ValueError as exc:
                raise _bad_row(
                    offset, index, f"messages column {plan.text_column!r} is not JSON: {exc}"
                ) from None
        raise _bad_row(
            offset, 0, f"messages column {plan.text_column!r} is not a list of messages"
        ) from None


def check(
    batch: pa.RecordBatch | pa.Table, plan: Plan, offset: int, *, text: bool = True
) -> pl.Series:
    """Refuse the first bad row of ``batch`` (its rows number from ``offset``); returns
    the rows' custom ids. ``text=False``: the prompt column is known to be filled and
    is not in ``batch``."""
    frame = _frame(batch)
    if text and plan.mapping.prompt_column is not None:
        prompt = frame[plan.text_column].cast(pl.String)
        if (row := _first(prompt.is_null() | (prompt.str.len_bytes() == 0))) is not None:
            raise _bad_row(offset, row, f"prompt column {plan.text_column!r} is empty")
    elif text:
        _check_messages(messages_series(frame, plan, offset), plan.text_column, offset)
    for field, column in plan.parameters.items():
        _check_parameter(frame[column], field, column, plan, offset)
    ids = custom_ids(frame, plan, offset)
    if (row := _first(ids.is_null() | (ids.str.len_bytes() == 0))) is not None:
        raise _bad_row(offset, row, f"id column {plan.mapping.id_column!r} is empty")
    return ids


def _check_messages(messages: pl.Series, column: str, offset: int) -> None:
    if (row := _first(messages.is_null() | (messages.list.len() == 0))) is not None:
        raise _bad_row(offset, row, f"messages column {column!r} holds no message")
    role = pl.element().struct.field("role")
    content = pl.element().struct.field("content")
    bad = messages.to_frame("m").select(
        pl.col("m").list.eval(role.is_in(ROLES).not_() | role.is_null()).list.any().alias("role"),
        pl.col("m").list.eval(content.is_null()).list.any().alias("content"),
    )
    if (row := _first(bad["role"])) is not None:
        raise _bad_row(offset, row, f"a message has a role other than {', '.join(ROLES)}")
    if (row := _first(bad["content"])) is not None:
        raise _bad_row(offset, row, "a message has no content")


def _bounds(field: str) -> list[tuple[str, float]]:
    """The numeric constraints pydantic enforces on a request field, e.g. [('ge', 0)]."""
    bounds = []
    for rule in ChatCompletionRequest.model_fields[field].metadata:
        for name in ("gt", "ge", "lt", "le"):
            if isinstance(rule, annotated_types.BaseMetadata) and hasattr(rule, name):
                bounds.append((name, float(getattr(rule, name))))
    return bounds


_OUTSIDE = {
    "gt": lambda s, v: s <= v,
    "ge": lambda s, v: s < v,
    "lt": lambda s, v: s >= v,
    "le": lambda s, v: s > v,
}
_SAYS = {"gt": "greater than", "ge": "at least", "lt": "less than", "le": "at most"}


def _check_parameter(values: pl.Series, field: str, column: str, plan: Plan, offset: int) -> None:
    numbers = values.cast(pl.Float64)
    if PARAMETER_TYPES[field] is int and (row := _first(numbers != numbers.floor())) is not None:
        raise _bad_row(offset, row, f"{field} (column {column!r}) must be a whole number")
    bounds = _bounds(field)
    if field in ("max_tokens", "max_completion_tokens"):
        bounds.append(("le", float(plan.max_completion_tokens)))
    for name, limit in bounds:
        if (row := _first(_OUTSIDE[name](numbers, limit))) is not None:
            raise _bad_row(
                offset,
                row,
                f"{field} (column {column!r}) is {numbers[row]:g}, must be {_SAYS[name]} {limit:g}",
            )


def custom_ids(frame: pl.DataFrame, plan: Plan, offset: int) -> pl.Series:
    """Each row's custom_id: its id column as text, else its row number."""
    if plan.mapping.id_column is not None:
        return frame[plan.mapping.id_column].cast(pl.String)
    return pl.int_range(offset, offset + frame.height, eager=True).cast(pl.String)


def id_hashes(ids: pl.Series) -> np.ndarray:
    """64-bit hashes of custom ids: what the uniqueness check keeps of each row."""
    return ids.hash(seed=0).to_numpy()


def colliding(hashes: np.ndarray) -> np.ndarray:
    """The hash values that occur more than once."""
    ordered = np.sort(hashes)
    return np.unique(ordered[1:][ordered[1:] == ordered[:-1]])


def first_duplicate(ids: pl.Series, rows: pl.Series | None = None) -> DatasetError | None:
    """An error naming the first custom id seen twice, and its rows, if any. ``rows``
    numbers the ids when they are not all the dataset's ids in order."""
    rows = pl.int_range(0, len(ids), eager=True) if rows is None else rows
    duplicated = ids.is_duplicated()
    first = _first(duplicated)
    if first is None:
        return None
    value = ids[first]
    where = rows.filter(ids == value).head(5).to_list()
    return DatasetError(
        f"id {value!r} appears more than once (rows {', '.join(map(str, where))}); "
        "the id column must be unique",
        code="dataset_duplicate_id",
    )


# --- building requests --------------------------------------------------------------------


def json_text(value: pl.Expr) -> pl.Expr:
    """A text column as JSON string literals (quoted, escaped; null as ``null``)."""
    # Polars escapes strings only inside a struct's JSON: encode {"s": value}, keep value.
    return pl.struct(value.alias("s")).struct.json_encode().str.slice(5).str.head(-1)


def _messages_json(plan: Plan, frame: pl.DataFrame, offset: int) -> pl.Expr:
    if plan.mapping.prompt_column is None:
        return json_text_of_messages(messages_series(frame, plan, offset))
    system = plan.mapping.system_prompt
    head = "[" if system is None else f'[{{"role":"system","content":{json.dumps(system)}}},'
    return pl.concat_str(
        pl.lit(head + '{"role":"user","content":'),
        json_text(pl.col(plan.text_column).cast(pl.String)),
        pl.lit("}]"),
    )


def json_text_of_messages(messages: pl.Series) -> pl.Expr:
    return pl.struct(pl.lit(messages).alias("s")).struct.json_encode().str.slice(5).str.head(-1)


def _parameter_json(field: str, column: str, default: Any) -> pl.Expr:
    kind = pl.Int64 if PARAMETER_TYPES[field] is int else pl.Float64
    return pl.col(column).cast(kind).cast(pl.String).fill_null(pl.lit(json.dumps(default)))


def _estimate(plan: Plan, frame: pl.DataFrame, offset: int) -> pl.Expr:
    """Tokens each request may take, as :func:`offpeak.ingest.admit.estimate` counts."""
    if plan.mapping.prompt_column is not None:
        system = plan.mapping.system_prompt
        chars = pl.col(plan.text_column).cast(pl.String).str.len_chars() + len(system or "")
        messages: pl.Expr = pl.lit(1 if system is None else 2)
    else:
        series = messages_series(frame, plan, offset)
        content = pl.element().struct.field("content").str.len_chars()
        chars = pl.lit(series.list.eval(content).list.sum())
        messages = pl.lit(series.list.len())
    completion = [
        pl.col(plan.parameters[name]).cast(pl.Int64)
        for name in ("max_completion_tokens", "max_tokens")
        if name in plan.parameters
    ]
    fallback = plan.template.get("max_tokens") or DEFAULT_COMPLETION_TOKENS
    completion_tokens = pl.coalesce([*completion, pl.lit(fallback, pl.Int64)])
    prompt_tokens = chars // CHARS_PER_TOKEN + TOKENS_PER_MESSAGE * messages
    n = int(plan.template.get("n", 1))
    return ((prompt_tokens + completion_tokens * n).clip(upper_bound=plan.context_length * n)).cast(
        pl.Int64
    )


def build(batch: pa.RecordBatch | pa.Table, plan: Plan, offset: int) -> pl.DataFrame:
    """Columns ``request_body``, ``est_tokens`` and ``metadata`` (JSON text) of the rows
    of ``batch``.

    The body is concatenated from JSON pieces: the constant ones encoded once here, the
    per-row ones by polars; the fields are those of the request a client would send.
    """
    frame = _frame(batch)
    pieces = [
        pl.lit(f'{{"model":{json.dumps(plan.mapping.model)},"messages":'),
        _messages_json(plan, frame, offset),
    ]
    fields = dict(plan.template)
    for name in plan.parameters:
        fields.setdefault(name, None)
    for name, value in fields.items():
        pieces.append(pl.lit(f",{json.dumps(name)}:"))
        if name in plan.parameters:
            pieces.append(_parameter_json(name, plan.parameters[name], value))
        else:
            pieces.append(pl.lit(json.dumps(value, separators=(",", ":"))))
    pieces.append(pl.lit("}"))
    ids = custom_ids(frame, plan, offset)
    return frame.select(
        pl.concat_str(pieces).alias("request_body"),
        _estimate(plan, frame, offset).alias("est_tokens"),
        pl.concat_str(pl.lit('{"custom_id":'), json_text(pl.lit(ids)), pl.lit("}")).alias(
            "metadata"
        ),
    )
