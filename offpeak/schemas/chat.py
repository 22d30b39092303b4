"""The engine's request bodies: chat completions and embeddings, as OpenAI defines them."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import (
    Field,
    ValidationError,
    ValidatorFunctionWrapHandler,
    field_validator,
    model_validator,
)

from offpeak.schemas.common import Strict

MAX_COMPLETION_TOKENS = 16_384
DEFAULT_MAX_TOKENS = 4_096


class TextPart(Strict):
    """One text part of a message's content (the only kind a text model can honour)."""

    type: Literal["text"]
    text: str


class ChatMessage(Strict):
    """One message of the conversation."""

    role: Literal["system", "developer", "user", "assistant"]
    content: str | list[TextPart] = Field(description="Plain text, or a list of text parts.")
    name: str | None = Field(None, description="Optional name of the participant.")


class JsonSchemaSpec(Strict):
    """The `json_schema` member of a structured-output response format."""

    name: Annotated[str, Field(min_length=1, max_length=64)]
    description: str | None = None
    schema_: dict[str, Any] = Field(alias="schema", description="The JSON Schema to follow.")
    strict: bool | None = None


class TextFormat(Strict):
    type: Literal["text"]


class JsonObjectFormat(Strict):
    type: Literal["json_object"]


class JsonSchemaFormat(Strict):
    type: Literal["json_schema"]
    json_schema: JsonSchemaSpec


ResponseFormat = Annotated[
    TextFormat | JsonObjectFormat | JsonSchemaFormat, Field(discriminator="type")
]


class ChatCompletionRequest(Strict):
    """An OpenAI chat-completions request, as far as a batch engine can honour it."""

    model: Annotated[str, Field(min_length=1, description="Name of a served model.")]
    messages: Annotated[list[ChatMessage], Field(min_length=1, description="The conversation.")]
    temperature: Annotated[float, Field(ge=0, le=2)] = 0.7
    top_p: Annotated[float, Field(gt=0, le=1)] = 1.0
    # Not OpenAI's, but vLLM's server takes it too; Anthropic's Messages params need it.
    top_k: Annotated[int | None, Field(ge=1, description="Sample from the k likeliest.")] = None
    n: Annotated[int, Field(ge=1, le=128, description="Number of choices to generate.")] = 1
    max_tokens: Annotated[int | None, Field(ge=1, le=MAX_COMPLETION_TOKENS)] = None
    max_completion_tokens: Annotated[int | None, Field(ge=1, le=MAX_COMPLETION_TOKENS)] = None
    stop: str | Annotated[list[str], Field(max_length=4)] | None = None
    seed: int | None = None
    presence_penalty: Annotated[float, Field(ge=-2, le=2)] = 0.0
    frequency_penalty: Annotated[float, Field(ge=-2, le=2)] = 0.0
    logprobs: bool = False
    top_logprobs: Annotated[int | None, Field(ge=0, le=20)] = None
    logit_bias: dict[str, Annotated[float, Field(ge=-100, le=100)]] | None = None
    response_format: ResponseFormat | None = None
    stream: bool = Field(False, description="Must be false: results are collected, not streamed.")
    user: str | None = Field(None, description="End-user identifier, kept for the caller.")

    @field_validator("stream")
    @classmethod
    def _no_streaming(cls, value: bool) -> bool:
        if value:
            raise ValueError("stream=true is not supported by a batch API; results are collected")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> ChatCompletionRequest:
        if self.top_logprobs is not None and not self.logprobs:
            raise ValueError("top_logprobs requires logprobs=true")
        if (
            self.max_tokens is not None
            and self.max_completion_tokens is not None
            and self.max_tokens != self.max_completion_tokens
        ):
            raise ValueError("max_tokens and max_completion_tokens disagree; send one of them")
        return self


MAX_EMBEDDING_INPUTS = 2_048  # OpenAI's limit on the items of one request

_Text = Annotated[str, Field(strict=True, min_length=1)]
_TokenIds = Annotated[list[Annotated[int, Field(strict=True, ge=0)]], Field(min_length=1)]
_Many = Field(min_length=1, max_length=MAX_EMBEDDING_INPUTS)
EmbeddingInput = (
    _Text | Annotated[list[_Text], _Many] | _TokenIds | Annotated[list[_TokenIds], _Many]
)


class EmbeddingRequest(Strict):
    """An OpenAI embeddings request (`POST /v1/embeddings`).

    Unknown fields are refused, as OpenAI refuses them ("Unrecognized request argument").
    """

    model: Annotated[str, Field(min_length=1, description="Name of a served embedding model.")]
    input: EmbeddingInput = Field(
        description="A text, a list of texts, a list of token ids, or a list of such lists; "
        "nothing empty, at most 2048 items."
    )
    encoding_format: Literal["float", "base64"] = Field(
        "float", description="float: lists of numbers; base64: little-endian float32 bytes."
    )
    dimensions: Annotated[
        int | None,
        Field(
            ge=1,
            description="Length of the vectors; other than the model's own only for models "
            "trained to be shortened (matryoshka).",
        ),
    ] = None
    user: str | None = Field(None, description="End-user identifier, kept for the caller.")

    @field_validator("input", mode="wrap")
    @classmethod
    def _one_clear_error(cls, value: Any, handler: ValidatorFunctionWrapHandler) -> Any:
        # One message instead of one per member of the union.
        try:
            return handler(value)
        except ValidationError:
            raise ValueError(
                "input must be a non-empty string, a list of non-empty strings, a list of "
                "token ids (integers >= 0), or a list of such lists, with 1 to "
                f"{MAX_EMBEDDING_INPUTS} items"
            ) from None

    def inputs(self) -> list[str] | list[list[int]]:
        """The inputs as a list, one item per vector to return."""
        value = self.input
        if isinstance(value, str):
            return [value]
        if value and isinstance(value[0], int):
            return [value]
        return value  # type: ignore[return-value]
