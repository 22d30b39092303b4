"""The EXXA batch API under /v1: requests, batches, datasets and webhook deliveries, in
the EXXA error dialect."""

from __future__ import annotations

from fastapi import APIRouter

from api_adapter.exxa import batches, datasets, errors, requests, webhooks

router = APIRouter()
for _part in (requests, batches, datasets, webhooks):
    router.include_router(_part.router)

__all__ = ["errors", "router"]
