"""The embeddings request body, as OpenAI's `POST /v1/embeddings` takes it."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from offpeak.schemas import MAX_EMBEDDING_INPUTS, EmbeddingRequest

MODEL = "all-minilm-l6-v2"


def body(input: Any, **fields: Any) -> EmbeddingRequest:
    return EmbeddingRequest.model_validate({"model": MODEL, "input": input, **fields})


@pytest.mark.parametrize(
    ("input", "inputs"),
    [
        ("hello", ["hello"]),
        (["a", "b"], ["a", "b"]),
        ([101, 7592, 102], [[101, 7592, 102]]),
        ([[1, 2], [3]], [[1, 2], [3]]),
        (["x"] * MAX_EMBEDDING_INPUTS, ["x"] * MAX_EMBEDDING_INPUTS),
    ],
)
def test_every_input_form_becomes_a_list_of_inputs(input: Any, inputs: list[Any]) -> None:
    assert body(input).inputs() == inputs


def test_defaults_match_openai() -> None:
    request = body("hi")
    assert request.encoding_format == "float"
    assert request.dimensions is None and request.user is None


def test_json_round_trip_keeps_the_body() -> None:
    request = body([[1, 2]], encoding_format="base64", dimensions=384, user="u-1")
    again = EmbeddingRequest.model_validate_json(request.model_dump_json(exclude_none=True))
    assert again == request


@pytest.mark.parametrize(
    "input",
    [
        "",
        [],
        [""],
        [[]],
        ["a", 1],
        [1.5],
        [-1],
        [True],
        [["a"]],
        {"text": "a"},
        None,
        ["x"] * (MAX_EMBEDDING_INPUTS + 1),
    ],
)
def test_bad_input_gets_one_clear_error(input: Any) -> None:
    with pytest.raises(ValidationError) as caught:
        body(input)
    [error] = caught.value.errors()
    assert error["loc"] == ("input",)
    assert "input must be a non-empty string, a list of non-empty strings" in error["msg"]


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"encoding_format": "int8"}, "encoding_format"),
        ({"dimensions": 0}, "dimensions"),
        ({"truncate": True}, "truncate"),
    ],
)
def test_bad_or_unknown_fields_are_refused(fields: dict[str, Any], field: str) -> None:
    with pytest.raises(ValidationError) as caught:
        body("hi", **fields)
    assert [e["loc"] for e in caught.value.errors()] == [(field,)]


def test_model_is_required() -> None:
    with pytest.raises(ValidationError):
        EmbeddingRequest.model_validate({"input": "hi"})
