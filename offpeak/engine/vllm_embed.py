"""EmbedEngine: embeddings requests through vLLM's offline ``LLM`` as a pooling model.

Texts are tokenized here, so each input's length is checked and counted before vLLM
sees it: an input longer than the context fails its request with
``context_length_exceeded`` and the other requests of the chunk go on. vLLM gets token
ids and returns the vectors the model's own pooling config asks for (mean pooling and
normalisation for sentence-transformers models, read from their ``modules.json``), so
they match what sentence-transformers computes. Like :class:`ChatEngine`, a request
vLLM still refuses fails alone: the call is bisected until it stands alone.

vLLM is imported here only, when an engine starts.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from offpeak.engine import EngineRequest, EngineResult
from offpeak.engine.embeddings import (
    EmbeddingModel,
    check_inputs,
    embedding_response,
    pooling_dimensions,
)
from offpeak.engine.vllm_engine import run_in_order, start_llm, stop_llm
from offpeak.errors import EngineRequestError
from offpeak.schemas import EmbeddingRequest, ErrorCode, ErrorInfo

# Engine arguments unless models.yaml says otherwise (see shared/reference/VLLM_CPU.md).
ENGINE_DEFAULTS: dict[str, Any] = {
    "runner": "pooling",
    "dtype": "float32",  # the vectors sentence-transformers gives; fast on AVX2
    "enforce_eager": True,
    "distributed_executor_backend": "uni",
    "seed": 0,
}

# Inputs per vLLM call: bounds the vectors held at once before they become responses.
MAX_INPUTS_PER_CALL = 2048


@dataclass(frozen=True)
class _Ready:
    """A request that passed our checks, waiting for vLLM."""

    index: int  # position in the run's input
    request: EngineRequest
    body: EmbeddingRequest
    token_ids: list[list[int]]  # one list per input
    dimensions: int | None  # for vLLM's PoolingParams; None: the model's own
    prompt_tokens: int


class EmbedEngine:
    """A vLLM engine serving one embedding model's weights.

    ``weights`` is a local folder (or a hub id); ``engine_args`` are ``vllm.LLM``
    keyword arguments, laid over :data:`ENGINE_DEFAULTS`. Start once per job and call
    :meth:`run` per chunk.
    """

    def __init__(self, weights: str, engine_args: Mapping[str, Any] | None = None) -> None:
        self._llm: Any = start_llm(weights, {**ENGINE_DEFAULTS, **(engine_args or {})})
        self._tokenizer: Any = self._llm.get_tokenizer()
        config = self._llm.model_config
        self.model = EmbeddingModel(
            max_model_len=config.max_model_len,
            vocab_size=config.get_vocab_size(),
            dimensions=config.embedding_size,
            matryoshka=bool(config.is_matryoshka),
            matryoshka_dimensions=tuple(config.matryoshka_dimensions or ()) or None,
        )

    def __enter__(self) -> EmbedEngine:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def tokenize(self, text: str) -> list[int]:
        """The token ids the model sees for ``text``, special tokens included."""
        ids: list[int] = self._tokenizer.encode(text)
        return ids

    def run(self, requests: Sequence[EngineRequest]) -> list[EngineResult]:
        """Run ``requests`` as one batch; one result per request, in input order."""
        if self._llm is None:
            raise RuntimeError("the engine is closed")
        return run_in_order(requests, self._prepare, self._embed_all)

    def submit(self, requests: Sequence[EngineRequest]) -> Callable[[], list[EngineResult]]:
        """The call that runs ``requests`` (an embedding batch has no decode steps whose
        batch could drain: nothing gains from queueing it early)."""
        return lambda: self.run(requests)

    def _embed_all(self, ready: list[_Ready]) -> Iterator[tuple[_Ready, EngineResult]]:
        for group in _calls(ready, MAX_INPUTS_PER_CALL):
            yield from self._embed(group)

    def close(self) -> None:
        """Stop the engine and release its memory; the engine cannot run after this."""
        llm, self._llm = self._llm, None
        if llm is not None:
            stop_llm(llm)

    # --- one request ------------------------------------------------------------------

    def _prepare(self, index: int, request: EngineRequest) -> _Ready | EngineResult:
        body = request.body
        if not isinstance(body, EmbeddingRequest):
            message = f"{request.model} is an embedding model; it takes embeddings requests"
            return _failed(request, ErrorCode.INVALID_REQUEST, message, 0)
        inputs = body.inputs()
        token_ids = [self.tokenize(i) if isinstance(i, str) else list(i) for i in inputs]
        prompt_tokens = sum(len(ids) for ids in token_ids)
        try:
            check_inputs(token_ids, self.model)
            dimensions = pooling_dimensions(body.dimensions, self.model)
        except EngineRequestError as exc:
            return _failed(request, exc.code, exc.message, prompt_tokens)
        return _Ready(index, request, body, token_ids, dimensions, prompt_tokens)

    def _embed(self, items: Sequence[_Ready]) -> list[tuple[_Ready, EngineResult]]:
        if not items:
            return []
        from vllm import PoolingParams
        from vllm.exceptions import VLLMClientError
        from vllm.inputs import TokensPrompt

        try:
            outputs = self._llm.embed(
                [TokensPrompt(prompt_token_ids=ids) for item in items for ids in item.token_ids],
                # Fresh params per prompt: vLLM writes into them as it adds a request.
                pooling_params=[
                    PoolingParams(dimensions=item.dimensions)
                    for item in items
                    for _ in item.token_ids
                ],
                use_tqdm=False,
            )
        except VLLMClientError as exc:
            # Refused while adding: nothing ran, and what was added has been aborted.
            if len(items) == 1:
                item = items[0]
                failed = _failed(
                    item.request, ErrorCode.INVALID_REQUEST, str(exc), item.prompt_tokens
                )
                return [(item, failed)]
            middle = len(items) // 2
            return self._embed(items[:middle]) + self._embed(items[middle:])
        done = []
        start = 0
        for item in items:
            end = start + len(item.token_ids)
            vectors = [
                np.asarray(o.outputs.embedding, dtype=np.float32) for o in outputs[start:end]
            ]
            done.append((item, _result(item, vectors)))
            start = end
        assert start == len(outputs), "vLLM returns one output per prompt"
        return done


def _calls(items: Sequence[_Ready], max_inputs: int) -> Iterator[Sequence[_Ready]]:
    """Consecutive groups of requests with at most ``max_inputs`` inputs each (a larger
    request goes alone)."""
    group: list[_Ready] = []
    inputs = 0
    for item in items:
        if group and inputs + len(item.token_ids) > max_inputs:
            yield group
            group, inputs = [], 0
        group.append(item)
        inputs += len(item.token_ids)
    if group:
        yield group


def _failed(request: EngineRequest, code: str, message: str, prompt_tokens: int) -> EngineResult:
    return EngineResult(request.id, None, ErrorInfo(code=code, message=message), prompt_tokens, 0)


def _result(item: _Ready, vectors: list[np.ndarray]) -> EngineResult:
    body = embedding_response(
        model=item.request.model,
        vectors=vectors,
        prompt_tokens=item.prompt_tokens,
        encoding_format=item.body.encoding_format,
    )
    return EngineResult(item.request.id, body, None, item.prompt_tokens, 0)
