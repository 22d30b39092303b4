"""A Python client of the offpeak API (EXXA routes, datasets, results), over httpx.

    with OffpeakClient("http://127.0.0.1:8000", "op-...") as client:
        batch = client.submit_dataset("reviews.parquet", DatasetMapping(
            model="llama-3.1-8b-instruct-fp16", prompt_column="review", id_column="review_id"))
        client.wait(batch.id)
        client.download_results(batch.id, "results.parquet")

Every error the API answers becomes a :class:`~offpeak.errors.ClientError` carrying
the HTTP status and the API's ``code``; no answer at all is
:class:`~offpeak.errors.ApiUnreachable`.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, BinaryIO, Literal, TypeVar

import httpx
from pydantic import BaseModel

from offpeak.errors import ApiUnreachable, ClientError
from offpeak.schemas import (
    BatchObject,
    ChatCompletionRequest,
    DatasetMapping,
    RequestObject,
    StatusObject,
)
from offpeak.schemas.exxa import RequestProgress
from offpeak.schemas.webhooks import WebhookEndpoint, WebhookEndpointList

UPLOAD_CHUNK = 1 << 20
# Called with the bytes moved so far and the total when known.
Progress = Callable[[int, int | None], None]
ResultsFormat = Literal["jsonl", "parquet"]
M = TypeVar("M", bound=BaseModel)


def _message(body: Any, fallback: str) -> str:
    detail = body.get("detail") if isinstance(body, dict) else None
    if isinstance(detail, list):
        parts = []
        for item in detail:
            loc = ".".join(str(p) for p in item.get("loc", []) if p not in ("body", "query"))
            parts.append(f"{loc}: {item.get('msg')}" if loc else str(item.get("msg")))
        return "; ".join(parts) or fallback
    if isinstance(detail, str):
        return detail
    error = body.get("error") if isinstance(body, dict) else None  # the OpenAI shape
    if isinstance(error, dict) and error.get("message"):
        return str(error["message"])
    return fallback


def _code(body: Any) -> str | None:
    if isinstance(body, dict):
        if isinstance(body.get("code"), str):
            return str(body["code"])
        error = body.get("error")
        if isinstance(error, dict) and isinstance(error.get("code"), str):
            return str(error["code"])
    return None


def raise_for_error(response: httpx.Response) -> None:
    """Raise :class:`ClientError` for an error answer (the body read if streamed)."""
    if response.status_code < 400:
        return
    response.read()
    try:
        body = response.json()
    except ValueError:
        body = None
    fallback = f"HTTP {response.status_code}: {response.text[:200] or response.reason_phrase}"
    raise ClientError(_message(body, fallback), status=response.status_code, code=_code(body))


def results_format(path: str | Path) -> ResultsFormat:
    """The results format a file name asks for: .parquet, else JSONL."""
    return "parquet" if str(path).lower().endswith((".parquet", ".pq")) else "jsonl"


class OffpeakClient:
    """The offpeak HTTP API; defaults to OFFPEAK_API_URL and OFFPEAK_API_KEY."""

    def __init__(
        self,
        base_url: str | None = None,
        api_key: str | None = None,
        *,
        timeout: float = 60.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        if base_url is None or api_key is None:
            from offpeak.config import get_settings

            settings = get_settings()
            base_url = base_url or settings.api_url
            if api_key is None and settings.api_key is not None:
                api_key = settings.api_key.get_secret_value()
        if not api_key:
            raise ClientError(
                "no API key: set OFFPEAK_API_KEY or pass one", status=0, code="missing_api_key"
            )
        self.base_url = base_url.rstrip("/")
        self._http = httpx.Client(
            base_url=self.base_url,
            headers={"X-API-Key": api_key},
            timeout=httpx.Timeout(timeout, connect=10.0),
            transport=transport,
        )

    def __enter__(self) -> OffpeakClient:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    # --- plumbing ---------------------------------------------------------------------

    def _send(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.TransportError as exc:
            raise ApiUnreachable(f"cannot reach {self.base_url}: {exc}", status=0) from exc
        raise_for_error(response)
        return response

    def _one(self, model: type[M], method: str, path: str, **kwargs: Any) -> M:
        return model.model_validate_json(self._send(method, path, **kwargs).content)

    def _lines(self, model: type[M], path: str, **params: Any) -> Iterator[M]:
        try:
            with self._http.stream("GET", path, params=params) as response:
                raise_for_error(response)
                for line in response.iter_lines():
                    if line:
                        yield model.model_validate_json(line)
        except httpx.TransportError as exc:
            raise ApiUnreachable(f"cannot reach {self.base_url}: {exc}", status=0) from exc

    # --- requests ---------------------------------------------------------------------

    def create_request(
        self,
        body: ChatCompletionRequest | dict[str, Any],
        *,
        metadata: dict[str, Any] | None = None,
        completion_window: str = "24h",
        webhook: str | None = None,
    ) -> StatusObject:
        """Submit one chat request."""
        if isinstance(body, ChatCompletionRequest):
            body = body.model_dump(by_alias=True, exclude_none=True)
        payload = {
            "request_body": body,
            "metadata": metadata,
            "completion_window": completion_window,
            "webhook": webhook,
        }
        return self._one(StatusObject, "POST", "/v1/requests", json=payload)

    def list_requests(self, *, batch_id: str | None = None) -> Iterator[RequestObject]:
        """Your requests in full, oldest first."""
        params: dict[str, Any] = {"full": "true"}
        if batch_id:
            params["batch_id"] = batch_id
        return self._lines(RequestObject, "/v1/requests", **params)

    def get_request(self, request_id: str) -> RequestProgress:
        """A request in full, with its expected times while it waits."""
        return self._one(RequestProgress, "GET", f"/v1/requests/{request_id}")

    def request_status(self, request_id: str) -> StatusObject:
        return self._one(StatusObject, "GET", f"/v1/requests/{request_id}/status")

    def cancel_request(self, request_id: str) -> StatusObject:
        return self._one(StatusObject, "POST", f"/v1/requests/{request_id}/cancel")

    # --- batches ----------------------------------------------------------------------

    def create_batch(
        self, request_ids: list[str], *, metadata: dict[str, Any] | None = None
    ) -> BatchObject:
        """Group your requests into a batch."""
        payload = {"requests_ids": request_ids, "metadata": metadata}
        return self._one(BatchObject, "POST", "/v1/batches", json=payload)

    def list_batches(self) -> Iterator[BatchObject]:
        return self._lines(BatchObject, "/v1/batches")

    def get_batch(self, batch_id: str) -> BatchObject:
        return self._one(BatchObject, "GET", f"/v1/batches/{batch_id}")

    def batch_status(self, batch_id: str) -> StatusObject:
        return self._one(StatusObject, "GET", f"/v1/batches/{batch_id}/status")

    def cancel(self, object_id: str) -> BatchObject | StatusObject:
        """Cancel a batch (returns the batch) or a single request (returns its status)."""
        body = json.loads(self._send("POST", f"/v1/batches/{object_id}/cancel").content)
        if "request_counts" in body:
            return BatchObject.model_validate(body)
        return StatusObject.model_validate(body)

    def results(self, batch_id: str, *, partial: bool = False) -> Iterator[RequestObject]:
        """A completed batch's results, one request object each; with ``partial``, before
        then: those of its requests that have already ended."""
        params = {"partial": "true"} if partial else {}
        return self._lines(RequestObject, f"/v1/batches/{batch_id}/results", **params)

    def download_results(
        self,
        batch_id: str,
        path: str | Path,
        *,
        format: ResultsFormat | None = None,
        progress: Progress | None = None,
        partial: bool = False,
    ) -> Path:
        """Write a completed batch's results to ``path``: Parquet or JSONL (by default as
        the file name says), streamed; with ``partial`` (JSONL only), before the batch
        completes: the lines of its requests that have already ended."""
        path = Path(path)
        params: dict[str, str] = {"format": format or results_format(path)}
        if partial:
            params["partial"] = "true"
        tmp = path.with_name(f".{path.name}.part")
        try:
            with self._http.stream(
                "GET", f"/v1/batches/{batch_id}/results", params=params
            ) as response:
                raise_for_error(response)
                total = response.headers.get("content-length")
                received = 0
                with open(tmp, "wb") as out:
                    for chunk in response.iter_bytes(UPLOAD_CHUNK):
                        out.write(chunk)
                        received += len(chunk)
                        if progress:
                            progress(received, int(total) if total else None)
            tmp.replace(path)
        except httpx.TransportError as exc:
            raise ApiUnreachable(f"cannot reach {self.base_url}: {exc}", status=0) from exc
        finally:
            tmp.unlink(missing_ok=True)
        return path

    def wait(
        self,
        batch_id: str,
        *,
        poll_seconds: float = 2.0,
        timeout: float | None = None,
        on_update: Callable[[BatchObject], None] | None = None,
    ) -> BatchObject:
        """Poll a batch until it ends (completed, failed or cancelled)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            batch = self.get_batch(batch_id)
            if on_update:
                on_update(batch)
            if batch.status.is_final:
                return batch
            if deadline is not None and time.monotonic() > deadline:
                raise ClientError(
                    f"batch {batch_id} still {batch.status} after {timeout:g} s",
                    status=0,
                    code="wait_timeout",
                )
            time.sleep(poll_seconds)

    # --- datasets ---------------------------------------------------------------------

    def submit_dataset(
        self,
        source: str | Path,
        mapping: DatasetMapping,
        *,
        progress: Progress | None = None,
    ) -> BatchObject:
        """Submit a dataset as one batch: a local file (streamed up) or an ``s3://`` URI
        the service reads itself."""
        params = _query(mapping)
        if str(source).startswith("s3://"):
            params.append(("source", str(source)))
            return self._one(BatchObject, "POST", "/v1/datasets", params=params)
        path = Path(source)
        try:
            stream = path.open("rb")
        except OSError as exc:
            raise ClientError(f"cannot read {path}: {exc.strerror}", status=0) from exc
        with stream:
            size = os.fstat(stream.fileno()).st_size
            headers = {
                "Content-Type": "application/octet-stream",
                "Content-Length": str(size),
                "Content-Disposition": f'attachment; filename="{path.name}"',
            }
            return self._one(
                BatchObject,
                "POST",
                "/v1/datasets",
                params=params,
                content=_chunks(stream, size, progress),
                headers=headers,
                timeout=httpx.Timeout(None, connect=10.0),
            )

    # --- webhook endpoints ------------------------------------------------------------

    def add_webhook_endpoint(self, url: str, description: str | None = None) -> WebhookEndpoint:
        """Register a URL for all of this key's events."""
        payload = {"url": url, "description": description}
        return self._one(WebhookEndpoint, "POST", "/v1/webhooks/endpoints", json=payload)

    def list_webhook_endpoints(self) -> list[WebhookEndpoint]:
        return self._one(WebhookEndpointList, "GET", "/v1/webhooks/endpoints").data

    def remove_webhook_endpoint(self, endpoint_id: str) -> None:
        self._send("DELETE", f"/v1/webhooks/endpoints/{endpoint_id}")


def _query(mapping: DatasetMapping) -> list[tuple[str, str]]:
    """The mapping as query parameters (lists repeated)."""
    pairs: list[tuple[str, str]] = []
    for name, value in mapping.model_dump(exclude_none=True, exclude_defaults=True).items():
        values = value if isinstance(value, list) else [value]
        pairs.extend((name, str(v)) for v in values)
    if ("model", mapping.model) not in pairs:
        pairs.insert(0, ("model", mapping.model))
    return pairs


def _chunks(stream: BinaryIO, size: int, progress: Progress | None) -> Iterator[bytes]:
    sent = 0
    while chunk := stream.read(UPLOAD_CHUNK):
        sent += len(chunk)
        if progress:
            progress(sent, size)
        yield chunk
