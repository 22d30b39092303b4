"""Arrow types derived from the pydantic models of this package: a Parquet file's
columns follow a model's fields, so the file and the model cannot drift."""

from __future__ import annotations

import types
from typing import Any, Union, get_args, get_origin

import pyarrow as pa
from pydantic import BaseModel

# Checked in order: bool before int (a bool is an int); str covers StrEnums.
_SCALARS: list[tuple[type, pa.DataType]] = [
    (bool, pa.bool_()),
    (str, pa.string()),
    (int, pa.int64()),
    (float, pa.float64()),
]


def non_null(annotation: Any) -> tuple[Any, bool]:
    """``X`` of an ``X | None`` annotation and True; any other annotation and False."""
    args = get_args(annotation)
    if get_origin(annotation) in (Union, types.UnionType) and type(None) in args:
        rest = [a for a in args if a is not type(None)]
        if len(rest) == 1:
            return rest[0], True
    return annotation, False


def arrow_type(annotation: Any) -> pa.DataType:
    """The Arrow type of a field's annotation: scalars, StrEnums, lists and nested
    models (as structs); None allowed or not, the type is the same."""
    annotation, _ = non_null(annotation)
    if get_origin(annotation) is list:
        return pa.list_(arrow_type(get_args(annotation)[0]))
    if isinstance(annotation, type):
        if issubclass(annotation, BaseModel):
            return pa.struct(arrow_schema(annotation))
        for scalar, arrow in _SCALARS:
            if issubclass(annotation, scalar):
                return arrow
    raise TypeError(f"no Arrow type for {annotation!r}")


def arrow_schema(model: type[BaseModel]) -> pa.Schema:
    """One column per field of ``model``, in order; nullable where the field allows None."""
    fields = []
    for name, info in model.model_fields.items():
        try:
            kind = arrow_type(info.annotation)
        except TypeError as exc:
            raise TypeError(f"{model.__name__}.{name}: {exc}") from None
        fields.append(pa.field(name, kind, nullable=non_null(info.annotation)[1]))
    return pa.schema(fields)
