"""Arrow types from pydantic models: scalars, enums, None, lists, nested models."""

from __future__ import annotations

import pyarrow as pa
import pytest
from pydantic import BaseModel

from offpeak.schemas import ErrorInfo, Status
from offpeak.schemas.arrow import arrow_schema, arrow_type


class Row(BaseModel):
    name: str
    status: Status
    count: int | None
    flag: bool
    score: float
    tags: list[str]
    error: ErrorInfo | None


def test_fields_become_columns_in_order_nullable_where_none_is_allowed() -> None:
    assert arrow_schema(Row) == pa.schema(
        [
            pa.field("name", pa.string(), nullable=False),
            pa.field("status", pa.string(), nullable=False),
            pa.field("count", pa.int64()),
            pa.field("flag", pa.bool_(), nullable=False),
            pa.field("score", pa.float64(), nullable=False),
            pa.field("tags", pa.list_(pa.string()), nullable=False),
            pa.field(
                "error",
                pa.struct(
                    [
                        pa.field("code", pa.string(), nullable=False),
                        pa.field("message", pa.string(), nullable=False),
                    ]
                ),
            ),
        ]
    )


def test_a_type_with_no_arrow_counterpart_is_refused_naming_the_field() -> None:
    class Loose(BaseModel):
        extra: dict[str, int]

    with pytest.raises(TypeError, match=r"Loose\.extra"):
        arrow_schema(Loose)
    with pytest.raises(TypeError):
        arrow_type(int | str)
