"""The demo's webhook receiver: a small HTTP server on loopback that verifies every event
it gets with `standardwebhooks` (as a user's receiver would) and keeps it for the demo's
output. The stack runs with OFFPEAK_WEBHOOK_ALLOW_PRIVATE=true so it may call it."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from offpeak.demo.display import DemoError, header, note
from offpeak.demo.stack import HOST, Stack, cli

MAX_BODY = 1 << 20


@dataclass(frozen=True)
class Event:
    path: str  # which URL it came to: an object's own webhook, or the key's endpoint
    webhook_id: str
    body: dict[str, Any]


@dataclass
class Receiver:
    port: int
    events: list[Event] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)  # why a delivery failed verification
    lock: threading.Lock = field(default_factory=threading.Lock)

    def url(self, path: str) -> str:
        return f"http://{HOST}:{self.port}{path}"

    def unique(self) -> list[Event]:
        """The events received, a redelivery (same `webhook-id`) counted once."""
        with self.lock:
            return list({e.webhook_id: e for e in self.events}.values())


@contextmanager
def webhook_receiver(secret: str) -> Iterator[Receiver]:
    """A receiver that accepts the events signed with ``secret`` (200) and refuses any
    other (400), until the block ends."""
    verifier = Webhook(secret)
    holder: list[Receiver] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            receiver = holder[0]
            length = min(int(self.headers.get("content-length") or 0), MAX_BODY)
            raw = self.rfile.read(length)
            headers = {k.lower(): v for k, v in self.headers.items()}
            try:
                body = verifier.verify(raw, headers)
            except WebhookVerificationError as exc:
                with receiver.lock:
                    receiver.refused.append(f"{self.path}: {exc}")
                self.send_response(400)
            else:
                event = Event(self.path, headers.get("webhook-id", ""), body)
                with receiver.lock:
                    receiver.events.append(event)
                self.send_response(200)
            self.send_header("content-length", "0")
            self.end_headers()

        def log_message(self, *_: object) -> None:
            pass  # the demo prints what it received itself

    server = ThreadingHTTPServer((HOST, 0), Handler)
    holder.append(Receiver(int(server.server_address[1])))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield holder[0]
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def show_events(receiver: Receiver, expected: set[tuple[str, str]], timeout: float = 60.0) -> None:
    """Wait until an event about each (path, object id) of ``expected`` has come (the
    scheduler's tick delivers them), then print every event, verified; fail if one came
    with a bad signature or some never came."""
    deadline = time.monotonic() + timeout

    def missing() -> set[tuple[str, str]]:
        return expected - {(e.path, e.body["data"]["id"]) for e in receiver.unique()}

    while missing() and time.monotonic() < deadline:
        time.sleep(0.5)
    for event in sorted(receiver.unique(), key=lambda e: (e.path, e.webhook_id)):
        data = event.body["data"]
        note(f"POST {event.path:<5} {event.body['type']:<18} {data['id']} "
             f"({data['status']}, webhook-id {event.webhook_id}): signature verified")  # fmt: skip
    if receiver.refused:
        raise DemoError(f"events with a bad signature: {receiver.refused}")
    if left := missing():
        raise DemoError(f"no webhook event came for {sorted(left)}")


def register_endpoint(env: dict[str, str], stack: Stack, receiver: Receiver) -> None:
    """`offpeak webhooks add`: the receiver's /all gets every event of the demo's key."""
    api = {"OFFPEAK_API_URL": f"http://{HOST}:{stack.api_port}"}
    endpoint = cli({**env, **api, "OFFPEAK_API_KEY": os.environ["EXXA_API_KEY"]},
                   "webhooks", "add", receiver.url("/all"), "--description", "demo")  # fmt: skip
    note(f"webhook endpoint {endpoint}: every event of this key goes there too")


def show_webhooks(receiver: Receiver, object_ids: list[str]) -> None:
    """The events of the single requests and batches ``object_ids``, each once per
    target (a batch's event reports its requests)."""
    header("8. Webhooks: signed events, verified with standardwebhooks")
    note(f"receiver {receiver.url('/')}: /own is the objects' `webhook`, /all the key's "
         "endpoint; each target gets its own delivery")  # fmt: skip
    show_events(receiver, {(path, i) for path in ("/own", "/all") for i in object_ids})
