"""How a dataset's columns become chat requests (`POST /v1/datasets`)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, field_validator, model_validator

from offpeak.schemas.chat import MAX_COMPLETION_TOKENS
from offpeak.schemas.common import Strict, window_seconds

DatasetFormat = Literal["parquet", "csv", "jsonl"]


class DatasetMapping(Strict):
    """How the columns of a dataset become chat requests (`POST /v1/datasets`, query string).

    Each row becomes one request of one new batch: the prompt column as the user message
    (after an optional system prompt), or a messages column holding whole conversations.
    """

    model: Annotated[str, Field(min_length=1, description="Model every row is sent to.")]
    prompt_column: str | None = Field(
        None, description="Column holding each row's user message (text)."
    )
    messages_column: str | None = Field(
        None,
        description="Instead of prompt_column: a column holding each row's conversation, "
        "a list of {role, content} objects (or its JSON text).",
    )
    system_prompt: str | None = Field(
        None, description="System message put before each row's prompt (prompt_column only)."
    )
    id_column: str | None = Field(
        None,
        description="Column identifying each row, kept as metadata.custom_id and joined back "
        "in the results; unique. Without it, custom_id is the row number (from 0).",
    )
    parameter_columns: list[str] = Field(
        default_factory=list,
        description="Per-row sampling parameters: `field=column` (e.g. `temperature=temp`) or "
        "just `field` for a column of that name; a null cell takes the global value.",
    )
    max_tokens: Annotated[int | None, Field(ge=1, le=MAX_COMPLETION_TOKENS)] = None
    temperature: Annotated[float | None, Field(ge=0, le=2)] = None
    top_p: Annotated[float | None, Field(gt=0, le=1)] = None
    seed: int | None = None
    completion_window: str = Field("24h", description="Deadline after submission, e.g. 24h.")
    name: str | None = Field(None, description="Name of the batch (in its metadata).")
    format: DatasetFormat | None = Field(
        None, description="parquet, csv or jsonl; guessed from the file name or its bytes."
    )

    @field_validator("completion_window")
    @classmethod
    def _valid_window(cls, value: str) -> str:
        window_seconds(value)
        return value

    @model_validator(mode="after")
    def _one_text_source(self) -> DatasetMapping:
        if (self.prompt_column is None) == (self.messages_column is None):
            raise ValueError("give exactly one of prompt_column or messages_column")
        if self.messages_column is not None and self.system_prompt is not None:
            raise ValueError("system_prompt goes with prompt_column; put it in the messages")
        return self

    def parameters(self) -> dict[str, str]:
        """Per-row parameter field -> the column holding it."""
        pairs = (entry.partition("=") for entry in self.parameter_columns)
        return {field.strip(): (column.strip() or field.strip()) for field, _, column in pairs}

    def global_parameters(self) -> dict[str, Any]:
        """The sampling parameters given for every row."""
        values = {
            "max_tokens": self.max_tokens,
            "temperature": self.temperature,
            "top_p": self.top_p,
            "seed": self.seed,
        }
        return {name: value for name, value in values.items() if value is not None}
