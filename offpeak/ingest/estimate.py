"""How much work a request is: tokens estimated at ingestion, from its body alone. Pure."""

from __future__ import annotations

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
