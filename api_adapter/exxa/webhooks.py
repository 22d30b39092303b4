"""Webhook routes: the key's endpoints (for all its events) and its recent delivery
attempts."""

from __future__ import annotations

from typing import Annotated

from anyio import to_thread
from fastapi import APIRouter, Query

from api_adapter import responses
from api_adapter.deps import KeyDep, ServicesDep
from offpeak.clock import now
from offpeak.events import endpoints
from offpeak.events.delivery import recent_attempts
from offpeak.events.guard import Guard
from offpeak.schemas.webhooks import (
    WebhookDelivery,
    WebhookDeliveryList,
    WebhookEndpoint,
    WebhookEndpointCreate,
    WebhookEndpointDeleted,
    WebhookEndpointList,
)
from offpeak.state import models

router = APIRouter(prefix="/v1/webhooks", tags=["webhooks"], responses=responses.EXXA)


def _endpoint(row: models.WebhookEndpoint) -> WebhookEndpoint:
    return WebhookEndpoint(
        id=row.id, url=row.url, description=row.description, created_at=row.created_at
    )


@router.post("/endpoints", status_code=201, response_model=WebhookEndpoint)
async def create_endpoint(
    create: WebhookEndpointCreate, key: KeyDep, services: ServicesDep
) -> WebhookEndpoint:
    """Register a URL for all your events (422 when the SSRF guard refuses it)."""
    guard = Guard(allow_private=services.settings.webhook_allow_private)
    # Checking the URL resolves its name: off the event loop.
    row = await to_thread.run_sync(
        lambda: endpoints.add(
            services.db,
            key.id,
            create.url,
            now(),
            guard=guard,
            description=create.description,
        )
    )
    return _endpoint(row)


@router.get("/endpoints", response_model=WebhookEndpointList)
def list_endpoints(key: KeyDep, services: ServicesDep) -> WebhookEndpointList:
    """Your webhook endpoints, oldest first."""
    return WebhookEndpointList(
        data=[_endpoint(row) for row in endpoints.list_endpoints(services.db, key.id)]
    )


@router.delete("/endpoints/{endpoint_id}", response_model=WebhookEndpointDeleted)
def delete_endpoint(endpoint_id: str, key: KeyDep, services: ServicesDep) -> WebhookEndpointDeleted:
    """Remove one of your webhook endpoints: no new events go there."""
    row = endpoints.remove(services.db, key.id, endpoint_id)
    return WebhookEndpointDeleted(id=row.id)


@router.get("/deliveries", response_model=WebhookDeliveryList)
def list_deliveries(
    key: KeyDep,
    services: ServicesDep,
    limit: Annotated[int, Query(ge=1, le=1000, description="How many attempts.")] = 100,
    event_id: Annotated[str | None, Query(description="Only this event's attempts.")] = None,
) -> WebhookDeliveryList:
    """Your latest webhook delivery attempts, newest first."""
    rows = recent_attempts(services.db, key.id, limit, event_id)
    return WebhookDeliveryList(
        data=[
            WebhookDelivery(
                id=a.id,
                event_id=e.id,
                type=e.type,
                object_id=e.object_id,
                url=e.target,
                attempted_at=a.attempted_at,
                status_code=a.status_code,
                error=a.error,
                duration_ms=a.duration_ms,
                outcome=a.outcome,
                event_status=e.status,
            )
            for a, e in rows
        ]
    )
