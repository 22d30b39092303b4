"""Webhook routes: the key's recent delivery attempts."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from api_adapter import responses
from api_adapter.deps import KeyDep, ServicesDep
from offpeak.events.delivery import recent_attempts
from offpeak.schemas.webhooks import WebhookDelivery, WebhookDeliveryList

router = APIRouter(prefix="/v1/webhooks", tags=["webhooks"], responses=responses.EXXA)


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
