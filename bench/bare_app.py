"""The baseline for bench/ingest.py: FastAPI validating the same body, persisting nothing.

Its one route is declared like the real one (async, `RequestCreate` body, 201 with a
`StatusObject`), so the difference between the two servers is what offpeak adds:
the key check, the body limits, the model registry and the durable commit.
"""

from __future__ import annotations

from fastapi import FastAPI

from offpeak.clock import now
from offpeak.ids import new_id
from offpeak.schemas import RequestCreate, Status, StatusObject, window_seconds

app = FastAPI(title="bare")


@app.post("/v1/requests", status_code=201, response_model=StatusObject)
async def create_request(create: RequestCreate) -> StatusObject:
    """Validate the body and answer like the real route, storing nothing."""
    created_at = now()
    return StatusObject(
        id=new_id(),
        status=Status.REGISTERED,
        created_at=created_at,
        expires_at=created_at + window_seconds(create.completion_window),
    )
