"""Service routes: served models and health."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from api_adapter import responses
from api_adapter.deps import KeyDep, ServicesDep
from api_adapter.readiness import Readiness, readiness
from offpeak.schemas import ModelCard

router = APIRouter(tags=["service"], responses=responses.SERVICE)


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


@router.get(
    "/readyz",
    response_model=Readiness,
    responses={503: {"model": Readiness, "description": "Something is down: see `down`."}},
)
async def readyz(services: ServicesDep) -> JSONResponse:
    """Readiness: the database, the object store and the seal writer; 503 names what is down."""
    report = await readiness(services)
    return JSONResponse(
        report.model_dump(mode="json"),
        status_code=503 if report.down else 200,
        headers={"Retry-After": "5"} if report.down else None,
    )
