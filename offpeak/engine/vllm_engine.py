"""ChatEngine: chat requests through vLLM's offline ``LLM``, started once per job.

:meth:`ChatEngine.submit` queues a chunk's requests in the engine and returns the call
that collects them: it steps the engine until they have all ended. A job submits the
next chunk before it collects the current one, so vLLM's batch stays full from one chunk
into the next instead of draining at the end of each (as one ``LLM.chat`` per chunk did).

A request vLLM refuses (a schema its grammar compiler rejects, a token id outside the
vocabulary, ...) becomes a failed result while the others complete: vLLM validates
every request as it adds it, before anything is generated, and aborts what it already
added when one is refused, so the adding is bisected until the refused requests stand
alone. Errors of the engine itself are not the request's fault: they propagate and
fail the job, which is retried.

vLLM is imported here only, when an engine starts.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, TypeVar

from offpeak.clock import now
from offpeak.engine import EngineRequest, EngineResult
from offpeak.engine.results import Choice, TokenLogprob, TopLogprob, chat_completion
from offpeak.engine.sampling import chat_messages, sampling_kwargs
from offpeak.errors import EngineRequestError
from offpeak.schemas import ChatCompletionRequest, ErrorCode, ErrorInfo

# Set before vLLM is imported; the environment wins when it says otherwise.
ENV_DEFAULTS = {
    # In-process engine core: starts in seconds instead of half a minute, and needs no
    # `if __name__ == "__main__"` guard in the calling script.
    "VLLM_ENABLE_V1_MULTIPROCESSING": "0",
    # GiB of KV cache on the CPU build (the GPU build sizes it from GPU memory).
    "VLLM_CPU_KVCACHE_SPACE": "1",
    # vLLM's loggers go to the process's own handlers. Configuring its own, vLLM runs
    # logging.config.dictConfig, which first shuts every existing handler down: in a
    # Prefect flow run that waited for all queued logs to reach the Prefect server (5 s
    # of a 15 s engine start), and closed the run's API log handler.
    "VLLM_CONFIGURE_LOGGING": "0",
}

# Engine arguments unless models.yaml says otherwise (see shared/reference/VLLM_CPU.md).
ENGINE_DEFAULTS: dict[str, Any] = {
    "dtype": "float32",  # 2-4x faster than bfloat16 on AVX2; GPU models set their own
    "enforce_eager": True,
    # A seeded request whose prompt is prefilled in chunks crashes vLLM 0.32's CPU engine.
    "enable_chunked_prefill": False,
    "distributed_executor_backend": "uni",
    "seed": 0,
}

ENGINE_ERROR = "engine_error"
# Words of vLLM's refusals of a structured-output spec ("Grammar error: ...", ...).
_FORMAT_WORDS = ("grammar", "schema", "json", "structured")


@dataclass(frozen=True)
class _Ready:
    """A request that passed our checks, waiting for vLLM."""

    index: int  # position in the run's input
    request: EngineRequest
    prompt: list[int]  # token ids: the conversation rendered by the chat template
    kwargs: dict[str, Any]  # SamplingParams arguments, plain data

    @property
    def prompt_tokens(self) -> int:
        return len(self.prompt)


class ChatEngine:
    """A vLLM engine serving one model's weights.

    ``weights`` is a local folder (or a hub id); ``engine_args`` are ``vllm.LLM``
    keyword arguments, laid over :data:`ENGINE_DEFAULTS`. Starting costs the vLLM import
    (6-20 s) plus a few seconds; start once per job and :meth:`submit` each chunk.
    """

    def __init__(self, weights: str, engine_args: Mapping[str, Any] | None = None) -> None:
        self._llm: Any = start_llm(weights, {**ENGINE_DEFAULTS, **(engine_args or {})})
        self._tokenizer: Any = self._llm.get_tokenizer()
        self.max_model_len: int = self._llm.model_config.max_model_len
        self._ended: dict[str, Any] = {}  # vLLM's outputs of ended requests, by its id

    def __enter__(self) -> ChatEngine:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def prompt_token_ids(self, messages: list[dict[str, str]]) -> list[int]:
        """A conversation as the engine runs it: rendered by the model's chat template (as
        ``LLM.chat`` renders it), then tokenized."""
        ids: list[int] = self._tokenizer.apply_chat_template(
            messages, add_generation_prompt=True, tokenize=True, return_dict=False
        )
        return ids

    def run(self, requests: Sequence[EngineRequest]) -> list[EngineResult]:
        """Run ``requests`` as one batch; one result per request, in input order."""
        return self.submit(requests)()

    def submit(self, requests: Sequence[EngineRequest]) -> Callable[[], list[EngineResult]]:
        """Queue ``requests`` behind those already queued. The call returned runs the
        engine until they have all ended and gives one result per request, in input
        order; call it once."""
        if self._llm is None:
            raise RuntimeError("the engine is closed")
        results, ready = prepare_all(requests, self._prepare)
        queued: dict[str, _Ready] = {}
        for item, outcome in self._enqueue(ready):
            if isinstance(outcome, EngineResult):
                results[item.index] = outcome
            else:
                queued[outcome] = item

        def collect() -> list[EngineResult]:
            for request_id, output in self._wait(queued):
                item = queued[request_id]
                results[item.index] = _result(item, output)
            return all_results(results)

        return collect

    def close(self) -> None:
        """Stop the engine and release its memory; the engine cannot run after this."""
        llm, self._llm = self._llm, None
        if llm is not None:
            stop_llm(llm)

    # --- one request ------------------------------------------------------------------

    def _prepare(self, index: int, request: EngineRequest) -> _Ready | EngineResult:
        from jinja2 import TemplateError

        body = request.body
        if not isinstance(body, ChatCompletionRequest):
            message = f"{request.model} is a chat model; it takes chat-completions requests"
            return _failed(request, ErrorCode.INVALID_REQUEST, message, 0)
        try:
            prompt = self.prompt_token_ids(chat_messages(body))
        except (TemplateError, ValueError, TypeError) as exc:
            # Chat templates refuse some conversations (roles that do not alternate, ...).
            return _failed(
                request, ErrorCode.INVALID_REQUEST, f"the chat template refused it: {exc}", 0
            )
        try:
            kwargs = sampling_kwargs(body, len(prompt), self.max_model_len)
            _sampling_params(kwargs)  # vLLM checks the values as it builds them
        except EngineRequestError as exc:
            return _failed(request, exc.code, exc.message, len(prompt))
        return _Ready(index, request, prompt, kwargs)

    def _enqueue(self, items: Sequence[_Ready]) -> list[tuple[_Ready, str | EngineResult]]:
        """Add ``items`` to the engine: vLLM's request id of each, or its refusal."""
        if not items:
            return []
        from vllm.exceptions import VLLMClientError
        from vllm.inputs import TokensPrompt

        try:
            # Token ids, rendered once: by _prepare, which counted them.
            request_ids = self._llm.enqueue(
                [TokensPrompt(prompt_token_ids=item.prompt) for item in items],
                # Fresh params per call: vLLM writes into them as it adds a request.
                [_sampling_params(item.kwargs) for item in items],
                use_tqdm=False,
            )
        except VLLMClientError as exc:
            # Refused while adding: what was added has been aborted.
            if len(items) == 1:
                item = items[0]
                code = _refusal_code(item, exc)
                return [(item, _failed(item.request, code, str(exc), item.prompt_tokens))]
            middle = len(items) // 2
            return self._enqueue(items[:middle]) + self._enqueue(items[middle:])
        assert len(request_ids) == len(items), "vLLM adds one request per conversation"
        # Its outputs carry the id ``LLM`` gave the request (a number); enqueueing returns
        # the engine's own, that number with "-" and a random suffix appended.
        return [(item, rid.split("-", 1)[0]) for item, rid in zip(items, request_ids, strict=True)]

    def _wait(self, request_ids: Collection[str]) -> Iterable[tuple[str, Any]]:
        """Step the engine until the requests ``request_ids`` have ended: each one's id and
        vLLM's ``RequestOutput``. Requests queued later run in the same steps; their
        outputs wait in ``self._ended`` for their own call."""
        missing = set(request_ids)
        engine = self._llm.llm_engine
        while True:
            for request_id in missing & self._ended.keys():
                missing.discard(request_id)
                yield request_id, self._ended.pop(request_id)
            if not missing:
                return
            if not engine.has_unfinished_requests():
                raise RuntimeError(f"vLLM lost {len(missing)} requests")
            for output in engine.step():
                if output.finished:
                    self._ended[output.request_id] = output


def start_llm(weights: str, engine_args: Mapping[str, Any]) -> Any:
    """A vLLM ``LLM`` on ``weights`` (a local folder or a hub id), environment set first."""
    for name, value in ENV_DEFAULTS.items():
        os.environ.setdefault(name, value)
    if Path(weights).is_dir():
        # Local weights: never ask a model hub for anything.
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from vllm import LLM

    return LLM(model=weights, **engine_args)


class Prepared(Protocol):
    """A request that passed an engine's checks."""

    @property
    def index(self) -> int:  # position in the run's input
        ...


P = TypeVar("P", bound=Prepared)


def run_in_order(
    requests: Sequence[EngineRequest],
    prepare: Callable[[int, EngineRequest], P | EngineResult],
    execute: Callable[[list[P]], Iterable[tuple[P, EngineResult]]],
) -> list[EngineResult]:
    """One result per request, in input order: ``prepare`` checks each (a result of its
    own when it cannot run), ``execute`` runs the ones that passed."""
    results, ready = prepare_all(requests, prepare)
    for item, result in execute(ready):
        results[item.index] = result
    return all_results(results)


def prepare_all(
    requests: Sequence[EngineRequest], prepare: Callable[[int, EngineRequest], P | EngineResult]
) -> tuple[list[EngineResult | None], list[P]]:
    """The result slots in input order, filled for the requests ``prepare`` refused, and
    the requests that passed."""
    results: list[EngineResult | None] = [None] * len(requests)
    ready: list[P] = []
    for index, request in enumerate(requests):
        item = prepare(index, request)
        if isinstance(item, EngineResult):
            results[index] = item
        else:
            ready.append(item)
    return results, ready


def all_results(results: list[EngineResult | None]) -> list[EngineResult]:
    """The slots, every one filled."""
    assert all(r is not None for r in results)
    return [r for r in results if r is not None]


def stop_llm(llm: Any) -> None:
    """Shut a vLLM ``LLM`` down and release what it holds."""
    from vllm.distributed.parallel_state import cleanup_dist_env_and_memory

    llm.llm_engine.engine_core.shutdown()
    del llm
    cleanup_dist_env_and_memory()


def _sampling_params(kwargs: dict[str, Any]) -> Any:
    from vllm import SamplingParams
    from vllm.exceptions import VLLMValidationError
    from vllm.sampling_params import StructuredOutputsParams

    args = dict(kwargs)
    if (spec := args.pop("structured_outputs", None)) is not None:
        args["structured_outputs"] = StructuredOutputsParams(**spec)
    try:
        return SamplingParams(**args)
    except VLLMValidationError as exc:
        raise EngineRequestError(str(exc), code=ErrorCode.INVALID_REQUEST) from exc


def _refusal_code(item: _Ready, exc: Exception) -> str:
    message = str(exc).lower()
    if "context length" in message:
        return ErrorCode.CONTEXT_LENGTH_EXCEEDED
    if "structured_outputs" in item.kwargs and any(w in message for w in _FORMAT_WORDS):
        return ErrorCode.INVALID_RESPONSE_FORMAT
    return ErrorCode.INVALID_REQUEST


def _failed(request: EngineRequest, code: str, message: str, prompt_tokens: int) -> EngineResult:
    return EngineResult(request.id, None, ErrorInfo(code=code, message=message), prompt_tokens, 0)


def _result(item: _Ready, output: Any) -> EngineResult:
    """The response to one request from vLLM's ``RequestOutput``."""
    top_k = item.kwargs.get("logprobs")
    choices = [
        Choice(
            text=c.text,
            token_ids=list(c.token_ids),
            finish_reason=c.finish_reason,
            # vLLM names the stop string that matched (an int is a stop token id).
            stop_reason=c.stop_reason if isinstance(c.stop_reason, str) else None,
            logprobs=None if top_k is None else _logprobs(c.token_ids, c.logprobs, top_k),
        )
        for c in sorted(output.outputs, key=lambda c: c.index)
    ]
    for choice in choices:
        if choice.finish_reason not in ("stop", "length"):
            message = f"generation ended with finish_reason {choice.finish_reason!r}"
            return _failed(item.request, ENGINE_ERROR, message, len(output.prompt_token_ids))
    body = chat_completion(
        request_id=item.request.id,
        model=item.request.model,
        created=now(),
        prompt_token_ids=output.prompt_token_ids,
        choices=choices,
    )
    usage = body["usage"]
    return EngineResult(
        item.request.id, body, None, usage["prompt_tokens"], usage["completion_tokens"]
    )


def _logprobs(
    token_ids: Sequence[int], positions: Sequence[Mapping[int, Any]], top_k: int
) -> list[TokenLogprob]:
    """vLLM's per-position {token id: Logprob} maps as plain data.

    Each map holds the sampled token and the ``top_k`` best (k or k+1 entries); the best
    are the entries ranked 1..k.
    """
    out = []
    for token_id, position in zip(token_ids, positions, strict=True):
        chosen = position[token_id]
        best = sorted(
            (lp for lp in position.values() if lp.rank is not None and lp.rank <= top_k),
            key=lambda lp: lp.rank,
        )
        out.append(
            TokenLogprob(
                token=chosen.decoded_token or "",
                logprob=chosen.logprob,
                top=[TopLogprob(lp.decoded_token or "", lp.logprob) for lp in best],
            )
        )
    return out
