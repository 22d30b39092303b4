"""How much work pending requests are: tokens estimated at ingestion, GPU-seconds for the
planner. Pure functions."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from offpeak.planner import Work, WorkGroup, work_gpu_seconds
from offpeak.registry import ModelRegistry
from offpeak.schemas import ChatCompletionRequest

# Completion tokens assumed when a request sets no max_tokens: a typical answer, not
# the worst case (that would make every 24 h job look hundreds of times its size).
DEFAULT_COMPLETION_TOKENS = 256
CHARS_PER_TOKEN = 4  # English text with Llama-style tokenizers; an estimate, not a count
TOKENS_PER_MESSAGE = 4  # the chat template's role markers


def estimate_tokens(body: ChatCompletionRequest) -> int:
    """Prompt plus completion tokens the request may take (the prompt from its length in
    characters, the completion from max_tokens, times n)."""
    chars = 0
    for message in body.messages:
        content = message.content
        chars += len(content) if isinstance(content, str) else sum(len(p.text) for p in content)
    prompt = chars // CHARS_PER_TOKEN + TOKENS_PER_MESSAGE * len(body.messages)
    completion = body.max_completion_tokens or body.max_tokens or DEFAULT_COMPLETION_TOKENS
    return prompt + completion * body.n


@dataclass(frozen=True)
class PendingUnit:
    """Pending requests of one model whose deadlines fall in the same minute."""

    first_expires_at: int  # the earliest expires_at among them (unix seconds)
    last_expires_at: int
    count: int
    tokens: int  # estimated (`estimate_tokens`), capped per request by the context


@dataclass(frozen=True)
class PendingGroup:
    """Requests waiting for the same engine (a model and its stand-ins), in units by
    deadline, earliest first."""

    engine_model: str
    models: tuple[str, ...]
    units: tuple[PendingUnit, ...]

    @property
    def count(self) -> int:
        return sum(u.count for u in self.units)


def work_groups(groups: Sequence[PendingGroup], registry: ModelRegistry) -> list[WorkGroup]:
    """The planner's view of the pending groups: per unit, its deadline and GPU-seconds."""
    return [
        WorkGroup(
            g.engine_model,
            [
                Work(u.first_expires_at, work_gpu_seconds(u.tokens, registry.get(g.engine_model)))
                for u in g.units
            ],
        )
        for g in groups
    ]
