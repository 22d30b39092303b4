"""A stand-in for vLLM in tests of the job machinery (never used by the product).

It answers every request with a deterministic completion, fails requests whose last
message contains FAIL, and can be told to crash after some chunks, like a killed job.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from offpeak.engine import EngineRequest, EngineResult
from offpeak.schemas import ErrorInfo


class Crash(Exception):
    """The job's process died."""


class FakeEngine:
    def __init__(self, crash_after_chunks: int | None = None) -> None:
        self.crash_after_chunks = crash_after_chunks
        self.calls: list[list[str]] = []
        self.closed = False

    def run(self, requests: Sequence[EngineRequest]) -> list[EngineResult]:
        if self.crash_after_chunks is not None and len(self.calls) >= self.crash_after_chunks:
            raise Crash
        self.calls.append([r.id for r in requests])
        return [self._answer(r) for r in requests]

    def submit(self, requests: Sequence[EngineRequest]) -> Callable[[], list[EngineResult]]:
        return lambda: self.run(requests)

    def close(self) -> None:
        self.closed = True

    @staticmethod
    def _answer(request: EngineRequest) -> EngineResult:
        content = request.body.messages[-1].content
        text = content if isinstance(content, str) else " ".join(p.text for p in content)
        prompt_tokens = len(text.split()) + 3
        if "FAIL" in text:
            error = ErrorInfo(code="context_length_exceeded", message="prompt too long")
            return EngineResult(request.id, None, error, prompt_tokens, 0)
        body = {
            "id": f"chatcmpl-{request.id}",
            "object": "chat.completion",
            "created": 0,
            "model": request.model,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": text.upper()},
                    "finish_reason": "stop",
                    "logprobs": None,
                }
            ],
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": 2,
                "total_tokens": prompt_tokens + 2,
            },
        }
        return EngineResult(request.id, body, None, prompt_tokens, 2)
