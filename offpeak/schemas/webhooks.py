"""What `GET /v1/webhooks/deliveries` answers: the key's recent delivery attempts."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field


class WebhookDelivery(BaseModel):
    """One attempt at delivering one event to its webhook URL."""

    id: str = Field(description="The attempt's id.")
    event_id: str = Field(description="The event's id: the `webhook-id` header it was sent with.")
    type: str = Field(description="The event type, e.g. `request.completed`.")
    object_id: str = Field(description="The request or batch the event is about.")
    url: str = Field(description="Where it was sent.")
    attempted_at: int = Field(description="When, in unix seconds.")
    status_code: int | None = Field(description="The receiver's HTTP status; null if none came.")
    error: str | None = Field(description="Why no answer came (timeout, refused address, ...).")
    duration_ms: int = Field(description="How long the attempt took.")
    outcome: Literal["delivered", "retry", "failed"] = Field(
        description="`delivered`; `retry` (a later attempt follows); `failed` (given up)."
    )
    event_status: Literal["pending", "delivered", "failed"] = Field(
        description="Where the event stands now."
    )


class WebhookDeliveryList(BaseModel):
    """The key's latest delivery attempts, newest first."""

    object: Literal["list"] = "list"
    data: list[WebhookDelivery]
