"""Embeddings requests' checks and OpenAI response bodies: pure, no vLLM."""

from __future__ import annotations

import base64
import struct

import numpy as np
import pytest

from offpeak.engine.embeddings import (
    EmbeddingModel,
    check_inputs,
    decode_base64,
    embedding_response,
    encode_vector,
    pooling_dimensions,
)
from offpeak.errors import EngineRequestError

MINILM = EmbeddingModel(max_model_len=256, vocab_size=30522, dimensions=384)
MATRYOSHKA = EmbeddingModel(
    max_model_len=8192,
    vocab_size=1000,
    dimensions=768,
    matryoshka=True,
    matryoshka_dimensions=(64, 128, 256, 512, 768),
)


def test_inputs_within_the_context_pass() -> None:
    check_inputs([[101, 7592, 102], list(range(256))], MINILM)


def test_an_input_over_the_context_is_named_with_its_length() -> None:
    with pytest.raises(EngineRequestError, match="input 1 has 257 tokens") as caught:
        check_inputs([[1, 2], list(range(257))], MINILM)
    assert caught.value.code == "context_length_exceeded"


def test_a_token_id_outside_the_vocabulary_is_refused() -> None:
    with pytest.raises(EngineRequestError, match="token id 30522") as caught:
        check_inputs([[101, 30522, 102]], MINILM)
    assert caught.value.code == "invalid_request"


@pytest.mark.parametrize("asked", [None, 384])
def test_the_models_own_dimensions_need_nothing_from_vllm(asked: int | None) -> None:
    assert pooling_dimensions(asked, MINILM) is None


def test_shorter_vectors_are_refused_for_a_model_not_trained_for_them() -> None:
    with pytest.raises(EngineRequestError, match="cannot shorten") as caught:
        pooling_dimensions(128, MINILM)
    assert caught.value.code == "invalid_request"


def test_matryoshka_models_shorten_to_their_listed_lengths() -> None:
    assert pooling_dimensions(256, MATRYOSHKA) == 256
    for bad in (100, 1024):
        with pytest.raises(EngineRequestError, match="one of 64, 128, 256, 512, 768"):
            pooling_dimensions(bad, MATRYOSHKA)


def test_float_encoding_keeps_the_float32_values() -> None:
    vector = np.array([0.1, -0.5, 1 / 3], dtype=np.float32)
    encoded = encode_vector(vector, "float")
    assert isinstance(encoded, list) and all(isinstance(x, float) for x in encoded)
    np.testing.assert_array_equal(np.array(encoded, dtype=np.float32), vector)


def test_base64_is_little_endian_float32_as_openai_sends_it() -> None:
    vector = np.array([1.0, -2.5, 0.125], dtype=np.float32)
    encoded = encode_vector(vector, "base64")
    assert isinstance(encoded, str)
    assert base64.b64decode(encoded) == struct.pack("<3f", 1.0, -2.5, 0.125)
    np.testing.assert_array_equal(decode_base64(encoded), vector)


def test_response_body_lists_vectors_in_input_order_with_usage() -> None:
    vectors = [np.array([1.0, 0.0], np.float32), np.array([0.0, 1.0], np.float32)]
    body = embedding_response(
        model="all-minilm-l6-v2", vectors=vectors, prompt_tokens=9, encoding_format="float"
    )
    assert body == {
        "object": "list",
        "data": [
            {"object": "embedding", "index": 0, "embedding": [1.0, 0.0]},
            {"object": "embedding", "index": 1, "embedding": [0.0, 1.0]},
        ],
        "model": "all-minilm-l6-v2",
        "usage": {"prompt_tokens": 9, "total_tokens": 9},
    }
