"""Service routes: served models and health."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from api_adapter.deps import KeyDep, ServicesDep
from offpeak.schemas import ModelCard

router = APIRouter(tags=["service"])


@router.get("/v1/models")
def list_models(_key: KeyDep, services: ServicesDep) -> dict[str, Any]:
    """The models served here, their limits and prices per million tokens; stand-ins flagged."""
    cards = [
        ModelCard(id=name, **spec.model_dump())
        for name, spec in sorted(services.registry.models.items())
    ]
    return {"object": "list", "data": [card.model_dump() for card in cards]}


@router.get("/healthz")
def healthz() -> dict[str, str]:
    """Liveness: the process answers (200 even while a dependency is down; see /readyz)."""
    return {"status": "ok"}
