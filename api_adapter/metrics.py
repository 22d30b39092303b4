"""Prometheus metrics of the API, served at `GET /metrics`, and the request-id middleware.

Three sources: this process's HTTP traffic and group commits (counted as they happen),
the seal writer's own report (read at scrape time), and the state DB (read by
:class:`StateCollector`, cached a few seconds so that many scrapers, or many replicas
scraped at once, cost the database one set of aggregates per interval). Each app gets
its own registry: tests build many apps in one process.
"""

from __future__ import annotations

import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from contextlib import asynccontextmanager
from typing import Any

from cachetools import TTLCache, cached
from fastapi import FastAPI, Request
from fastapi.responses import Response
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.registry import Collector
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api_adapter.deps import Services
from api_adapter.request_ids import request_scope, with_request_id
from offpeak.heartbeats import SCHEDULER, last_beat
from offpeak.schemas.status import JobStatus, Status
from offpeak.state.metrics import StateMetrics, read_state_metrics

PATH = "/metrics"
STATE_CACHE_SECONDS = 2.0  # how stale the state gauges may be; scrapes come every 15 s or so
UNMATCHED = "<unmatched>"  # the route label of paths no route serves: the label set stays bounded
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
JOULES_PER_KWH = 3.6e6  # the jobs table keeps kWh; Prometheus wants base units
# Every outcome is exported from the start, so a rate over it exists before the first failure.
WEBHOOK_OUTCOMES = ("delivered", "retry", "failed")
COMMIT_BUCKETS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000)


class HttpMetrics:
    """Requests, latency and in-flight per method and route template."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.requests = Counter(
            "offpeak_http_requests",
            "HTTP requests answered, by method, route template and status code.",
            ["method", "route", "status"],
            registry=registry,
        )
        self.duration = Histogram(
            "offpeak_http_request_duration_seconds",
            "Time to answer an HTTP request (to the end of its body), by route template.",
            ["method", "route"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.in_flight = Gauge(
            "offpeak_http_requests_in_flight",
            "HTTP requests being answered now, by route template.",
            ["method", "route"],
            registry=registry,
        )


def route_of(app: ASGIApp, scope: Scope) -> tuple[str, dict[str, Any]]:
    """The template of the route that will serve ``scope`` and its path parameters."""
    from starlette.routing import Match

    for route in getattr(app, "routes", ()):
        match, child = route.matches(scope)
        if match == Match.FULL:
            return getattr(route, "path", UNMATCHED), child.get("path_params", {})
    return UNMATCHED, {}


ROUTE_CACHE_ENTRIES = 4096  # (method, path) pairs remembered; ids in paths make them many


class Instrument:
    """ASGI middleware: counts each HTTP request under its route template (not its raw
    path, whose ids would make the label set unbounded), and binds the log ids."""

    def __init__(self, app: ASGIApp, *, metrics: HttpMetrics, router: ASGIApp) -> None:
        self.app, self.metrics, self.router = app, metrics, router
        # Matching scans every route; the hot paths repeat, so each pair is matched once.
        self._routes: dict[tuple[str, str, str], tuple[str, dict[str, Any]]] = {}
        # Label children by (method, route) and (method, route, status): `labels()` locks
        # and validates on every call.
        self._children: dict[tuple[str, ...], tuple[Any, Any]] = {}
        self._counts: dict[tuple[str, str, int], Any] = {}

    def _route(self, scope: Scope) -> tuple[str, dict[str, Any]]:
        key = (scope["method"], scope.get("root_path", ""), scope["path"])
        found = self._routes.get(key)
        if found is None:
            if len(self._routes) >= ROUTE_CACHE_ENTRIES:
                self._routes.clear()
            found = self._routes[key] = route_of(self.router, scope)
        return found

    def _series(self, method: str, route: str) -> tuple[Any, Any]:
        series = self._children.get((method, route))
        if series is None:
            series = self._children[(method, route)] = (
                self.metrics.in_flight.labels(method, route),
                self.metrics.duration.labels(method, route),
            )
        return series

    def _count(self, method: str, route: str, status: int) -> Any:
        counter = self._counts.get((method, route, status))
        if counter is None:
            counter = self._counts[(method, route, status)] = self.metrics.requests.labels(
                method, route, str(status)
            )
        return counter

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        method = scope["method"]
        route, params = self._route(scope)
        status = 500  # unless a response starts: an exception escaped every handler
        started = time.perf_counter()
        rid = ""

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message = with_request_id(message, rid)
            await send(message)

        in_flight, duration = self._series(method, route)
        in_flight.inc()
        try:
            with request_scope(scope, params) as rid:
                await self.app(scope, receive, send_with_id)
        finally:
            in_flight.dec()
            duration.observe(time.perf_counter() - started)
            self._count(method, route, status).inc()


def _gauge(name: str, doc: str, labels: list[str], values: Mapping[Any, float]) -> Any:
    family = GaugeMetricFamily(name, doc, labels=labels)
    for key, value in sorted(values.items()):
        family.add_metric(list(key) if isinstance(key, tuple) else [key], value)
    return family


def _counter(name: str, doc: str, labels: list[str], values: Mapping[Any, float]) -> Any:
    family = CounterMetricFamily(name, doc, labels=labels)
    for key, value in sorted(values.items()):
        family.add_metric(list(key) if isinstance(key, tuple) else [key], value)
    return family


def _grid(counts: dict[tuple[str, str], int], statuses: list[str]) -> dict[tuple[str, str], int]:
    """``counts`` by (status, other label), with a zero for every status of each label."""
    others = {other for _, other in counts}
    return {(st, o): counts.get((st, o), 0) for st in statuses for o in others}


def state_families(state: StateMetrics, at: float, last_tick: float | None) -> Iterator[Any]:
    """The state DB's figures as metric families (pure: the tests check it alone too)."""
    # Every status of each model or pool seen, zeros included: a series that vanishes
    # at zero would leave gaps in graphs and in the alerts' `increase()`.
    yield _gauge(
        "offpeak_requests",
        "Requests by status and model.",
        ["status", "model"],
        _grid(state.requests, [s.value for s in Status]),
    )
    yield _gauge(
        "offpeak_pending_tokens",
        "Estimated tokens (prompt + completion) of the requests waiting to be scheduled.",
        ["model"],
        state.pending_tokens,
    )
    oldest, deadline = state.oldest_pending_created_at, state.earliest_pending_deadline
    yield _gauge(
        "offpeak_oldest_pending_age_seconds",
        "Age of the oldest request waiting to be scheduled (0 when none waits).",
        [],
        {(): max(0.0, at - oldest) if oldest is not None else 0.0},
    )
    if deadline is not None:  # absent when nothing waits: no slack to speak of
        yield _gauge(
            "offpeak_deadline_slack_seconds",
            "Least time left before a waiting request's deadline (negative once passed).",
            [],
            {(): deadline - at},
        )
    yield _gauge(
        "offpeak_jobs",
        "Inference jobs by status and pool (pool empty until placed).",
        ["status", "pool"],
        _grid(state.jobs, [s.value for s in JobStatus]),
    )
    yield _gauge(
        "offpeak_batches",
        "Batches by status.",
        ["status"],
        {**{s.value: 0 for s in Status}, **state.batches},
    )
    yield _counter(
        "offpeak_credits_spent_usd",
        "Credits charged for requests that ran, in US dollars.",
        [],
        {(): state.credits_spent_usd},
    )
    yield _counter(
        "offpeak_carbon_emitted_grams",
        "gCO2e emitted by requests that ran.",
        [],
        {(): state.carbon_emitted_grams},
    )
    yield _counter(
        "offpeak_carbon_saved_grams",
        "gCO2e saved against running each request at once where it was sent.",
        [],
        {(): state.carbon_saved_grams},
    )
    totals = state.job_totals
    labels = ["model", "pool"]
    yield _counter(
        "offpeak_job_runs",
        "Completed inference jobs, by model and pool.",
        labels,
        {k: t.jobs for k, t in totals.items()},
    )
    yield _counter(
        "offpeak_job_completion_tokens",
        "Tokens generated by completed jobs (over offpeak_job_wall_seconds_total: tokens/s).",
        labels,
        {k: t.completion_tokens for k, t in totals.items()},
    )
    yield _counter(
        "offpeak_job_wall_seconds",
        "Wall time of completed jobs, from engine start to the last chunk.",
        labels,
        {k: t.wall_seconds for k, t in totals.items()},
    )
    yield _counter(
        "offpeak_job_engine_startup_seconds",
        "Engine start-up time of completed jobs (over offpeak_job_runs_total: mean start-up).",
        labels,
        {k: t.startup_seconds for k, t in totals.items()},
    )
    yield _counter(
        "offpeak_job_energy_joules",
        "Energy of completed jobs, from their pool's power draw and wall time.",
        labels,
        {k: t.energy_kwh * JOULES_PER_KWH for k, t in totals.items()},
    )
    yield _counter(
        "offpeak_webhook_deliveries",
        "Webhook delivery attempts by outcome (delivered, retry, failed: given up).",
        ["outcome"],
        {**{o: 0 for o in WEBHOOK_OUTCOMES}, **state.webhook_attempts},
    )
    yield _gauge(
        "offpeak_webhook_events_pending",
        "Webhook events waiting for their first delivery or a retry.",
        [],
        {(): state.webhook_events_pending},
    )
    if last_tick is not None:
        yield _gauge(
            "offpeak_scheduler_last_tick_timestamp_seconds",
            "Unix time the scheduler flow last finished a tick.",
            [],
            {(): last_tick},
        )


class StateCollector(Collector):
    """The state DB's gauges and counters, and the seal writer's report, at scrape time."""

    def __init__(self, services: Callable[[], Services | None]) -> None:
        self.services = services
        # One entry (this app's services); the lock makes concurrent scrapes share a read.
        self._read = cached(
            TTLCache(maxsize=1, ttl=STATE_CACHE_SECONDS),
            key=lambda services: id(services),
            lock=threading.Lock(),
        )(self._read_state)

    @staticmethod
    def _read_state(services: Services) -> tuple[StateMetrics, float | None]:
        return read_state_metrics(services.db), last_beat(services.store, SCHEDULER)

    def collect(self) -> Iterator[Any]:
        services = self.services()
        if services is None:  # before start-up: nothing to read yet
            return
        status = services.writer.status()
        now = time.time()
        yield _gauge(
            "offpeak_sealing_lag_seconds",
            "Seconds since the seal writer's last successful pass.",
            [],
            {(): status.lag(now)},
        )
        yield _gauge(
            "offpeak_sealing_buffered_requests",
            "Accepted requests waiting in the seal writer's memory.",
            [],
            {(): status.buffered},
        )
        yield _gauge(
            "offpeak_sealing_failures",
            "The seal writer's failed passes in a row.",
            [],
            {(): status.failures},
        )
        state, tick = self._read(services)
        yield from state_families(state, now, tick)


def install(app: FastAPI) -> None:
    """Instrument ``app`` and serve `GET /metrics` from its own registry."""
    # `_created` samples would show in the text format as families of their own, one per
    # series, for a start time Prometheus tracks itself (a process-wide switch).
    disable_created_metrics()
    registry = CollectorRegistry()
    http = HttpMetrics(registry)
    commits = Histogram(
        "offpeak_group_commit_rows",
        "Requests committed per group-commit transaction.",
        buckets=COMMIT_BUCKETS,
        registry=registry,
    )
    registry.register(StateCollector(lambda: getattr(app.state, "services", None)))
    app.add_middleware(Instrument, metrics=http, router=app.router)
    _observe_commits(app, lambda rows: commits.observe(len(rows)))

    @app.get(PATH, include_in_schema=False, response_class=Response)
    def metrics(request: Request) -> Response:
        """Prometheus metrics: HTTP traffic, group commits, sealing, and the state DB's."""
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)


def _observe_commits(app: FastAPI, observe: Callable[[list[Any]], None]) -> None:
    """Chain ``observe`` onto the committer's `on_commit` once the lifespan opened it
    (the services exist only then; wrapping the lifespan keeps app.py untouched)."""
    inner = app.router.lifespan_context

    @asynccontextmanager
    async def lifespan(a: FastAPI) -> AsyncIterator[Any]:
        async with inner(a) as state:
            committer = a.state.services.committer
            first = committer.on_commit

            def on_commit(rows: list[Any]) -> None:
                if first:
                    first(rows)
                observe(rows)

            committer.on_commit = on_commit
            yield state

    app.router.lifespan_context = lifespan
