"""The FastAPI application: services opened at start-up, routes, error handlers."""

from __future__ import annotations

import gc
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import Depends, FastAPI

from api_adapter import errors, exxa, metrics, openai, service
from api_adapter.anthropic import routes as anthropic
from api_adapter.deps import Services
from api_adapter.limits import BodyLimits, path_ids
from offpeak import __version__
from offpeak.config import Settings, get_settings
from offpeak.ingest.sealing import SealWriter
from offpeak.services import services
from offpeak.state.committer import GroupCommitter

log = logging.getLogger("offpeak.api")


def open_services(settings: Settings) -> Services:
    """The core's services (the one wiring), plus the API's own: seal writer, committer."""
    core = services(settings)
    writer = SealWriter(
        core.db,
        core.store,
        interval=settings.seal_interval,
        rows=settings.seal_rows,
        max_buffer=settings.seal_buffer_rows,
    )
    committer = GroupCommitter(core.db, on_commit=writer.accepted)
    return Services(settings, core.db, core.store, core.registry, writer, committer)


def create_app(settings: Settings | None = None) -> FastAPI:
    """The API app; settings default to the environment's."""
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        services = open_services(settings)
        services.writer.start()
        services.nudge.start()
        app.state.services = services
        log.info("offpeak API: database %s, storage %s", services.db.dialect, services.store.url)
        for name, target in services.registry.stand_ins().items():
            log.warning("model %s is a stand-in, served by %s's weights", name, target)
        # What exists now (modules, schemas, services: some 200,000 objects) lives as
        # long as the process: out of the collector's sight, a full collection walks
        # only what requests made, in tens of ms instead of ~200 ms each.
        gc.freeze()
        try:
            yield
        finally:
            gc.unfreeze()  # several apps in one process (the tests): collectable again
            # Commit what is queued before the writer's last seal picks it up.
            await services.committer.close()
            services.writer.stop()
            services.nudge.stop()
            services.db.dispose()

    app = FastAPI(
        title="offpeak",
        version=__version__,
        description="Asynchronous LLM inference that runs when and where the grid is cleanest. "
        "Speaks the EXXA batch API, the OpenAI Batch API under /openai/v1, and Anthropic's "
        "Message Batches API under /anthropic/v1.",
        lifespan=lifespan,
        # Ids in paths are checked once here, for every route, before any query.
        dependencies=[Depends(path_ids)],
    )
    # The routes whose bodies are not small JSON declare their limits (limits.body_limit).
    app.add_middleware(BodyLimits, settings=settings)
    errors.install(app)
    # One router per API family, each answering errors in its own dialect (registered
    # by its package); the service routes (models, health) speak the EXXA one.
    for router in (exxa.router, service.router, openai.router, anthropic.router):
        app.include_router(router)
    metrics.install(app)  # GET /metrics, request ids, HTTP metrics
    return app
