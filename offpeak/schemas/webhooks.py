"""The webhook objects of the API: the key's endpoints and its recent delivery attempts."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


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


class WebhookEndpointCreate(BaseModel):
    """`POST /v1/webhooks/endpoints`: a URL for all of the key's events."""

    model_config = ConfigDict(extra="forbid")

    url: str = Field(
        max_length=2048,
        description="Where to POST the events: https, resolving to a public address "
        "(OFFPEAK_WEBHOOK_ALLOW_PRIVATE=true lifts this for local receivers).",
    )
    description: str | None = Field(None, max_length=500, description="A note for you.")


class WebhookEndpoint(BaseModel):
    """A URL that receives every event of the key's requests made alone and batches."""

    id: str = Field(description="The endpoint's id.")
    object: Literal["webhook_endpoint"] = "webhook_endpoint"
    url: str = Field(description="Where the events are sent.")
    description: str | None = Field(None, description="Your note.")
    created_at: int = Field(description="When it was registered, in unix seconds.")


class WebhookEndpointList(BaseModel):
    """The key's webhook endpoints, oldest first."""

    object: Literal["list"] = "list"
    data: list[WebhookEndpoint]


class WebhookEndpointDeleted(BaseModel):
    """What removing an endpoint answers."""

    id: str
    object: Literal["webhook_endpoint"] = "webhook_endpoint"
    deleted: Literal[True] = True
