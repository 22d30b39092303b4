"""Anthropic's Message Batches API under /anthropic/v1, for the official SDK."""

from api_adapter.anthropic import dialect  # its error dialect answers under /anthropic/

__all__ = ["dialect"]
