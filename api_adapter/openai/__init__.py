"""The OpenAI Batch API under /openai/v1: files and batches, in OpenAI's error dialect."""

from __future__ import annotations

from api_adapter.openai import errors
from api_adapter.openai.routes import router

__all__ = ["errors", "router"]
