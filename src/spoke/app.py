"""`create_app(runtime)`: the HTTP API, from a runtime built by `spoke.runtime`."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import sqlalchemy as sa
from fastapi import FastAPI, Request
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from spoke import __version__
from spoke.config import get_settings
from spoke.connections import endpoints as connection_endpoints
from spoke.core.db import kept_connections
from spoke.core.errors import ServiceUnavailable, install_handlers, responses
from spoke.core.http import RequestContextMiddleware
from spoke.core.jobs import EmbeddedWorker
from spoke.core.logging import configure_logging
from spoke.core.migrate import ensure_migrated
from spoke.core.openapi import install_openapi
from spoke.core.request_slots import RequestSlots
from spoke.deps import Services
from spoke.events import endpoints as event_endpoints
from spoke.events import export_endpoints as event_export_endpoints
from spoke.messaging import (
    channel_endpoints,
    segment_endpoints,
    sms_status_endpoints,
    template_endpoints,
    tracking_endpoints,
)
from spoke.messaging import endpoints as messaging_endpoints
from spoke.runtime import Runtime, build_runtime
from spoke.sync import endpoints as sync_endpoints
from spoke.sync import hooks as sync_hooks
from spoke.users import endpoints as users_endpoints
from spoke.users import field_endpoints, import_endpoints, list_endpoints
from spoke.workspaces import endpoints as workspace_endpoints

DESCRIPTION = """
Spoke connects your product's users to HubSpot and to their devices.

**Authentication.** Server calls send a key pair as `X-Api-Key` + `X-Secret-Key` headers,
or as HTTP Basic (key id as user name, secret as password). App calls (`/v1/client/...`)
send the workspace's public `X-Client-Key`.

**Errors** are `application/problem+json` documents (RFC 9457) with a stable `code`.
**Writes** accept an `Idempotency-Key` header; a retry with the same key is applied once.
**Lists** are cursor-paginated: pass `next_cursor` back as `cursor`.
"""


def create_app(
    runtime: Runtime, *, embedded_worker: bool = False, check_migrations: bool = True
) -> FastAPI:
    settings = runtime.settings

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if check_migrations:
            await run_in_threadpool(ensure_migrated, runtime.engine)
        worker = EmbeddedWorker(runtime.jobs) if embedded_worker else None
        if worker is not None:
            worker.start()
        try:
            yield
        finally:
            if worker is not None:
                await run_in_threadpool(worker.stop)

    app = FastAPI(
        title="Spoke",
        version=__version__,
        description=DESCRIPTION,
        lifespan=lifespan,
    )
    app.state.sessions = runtime.sessions
    app.state.read_sessions = runtime.read_sessions
    app.state.request_slots = RequestSlots(kept_connections(runtime.engine))
    app.state.services = Services(settings, runtime.encryptor, runtime.jobs, runtime.metrics)
    install_handlers(app)
    install_openapi(app)
    app.add_middleware(
        RequestContextMiddleware,
        metrics=runtime.metrics,
        max_body_bytes=settings.api.max_body_bytes,
    )
    for router in (
        workspace_endpoints.router,
        users_endpoints.router,
        users_endpoints.client_router,
        field_endpoints.router,
        list_endpoints.router,
        import_endpoints.router,
        event_endpoints.router,
        event_endpoints.client_router,
        event_export_endpoints.router,
        messaging_endpoints.router,
        messaging_endpoints.client_router,
        template_endpoints.router,
        segment_endpoints.router,
        channel_endpoints.router,
        tracking_endpoints.router,
        sms_status_endpoints.router,
        connection_endpoints.router,
        connection_endpoints.oauth_router,
        sync_endpoints.router,
        sync_hooks.router,
    ):
        app.include_router(router)

    @app.get("/healthz", tags=["operations"])
    def healthz() -> dict[str, str]:
        """The process is up."""
        return {"status": "ok"}

    @app.get("/readyz", tags=["operations"], responses=responses(ServiceUnavailable))
    def readyz() -> dict[str, str]:
        """The database and the job queue answer."""
        try:
            with runtime.engine.connect() as conn:
                conn.execute(sa.text("SELECT 1"))
        except Exception as exc:
            raise ServiceUnavailable("The database is unreachable.") from exc
        try:
            runtime.jobs.ping()
        except Exception as exc:
            raise ServiceUnavailable("The job queue is unreachable.") from exc
        return {"status": "ready", "database": "ok", "queue": "ok"}

    @app.get(
        "/metrics",
        tags=["operations"],
        response_class=Response,
        responses={200: {"content": {"text/plain": {}}}},
    )
    def metrics(request: Request) -> Response:
        """Prometheus metrics."""
        return Response(generate_latest(runtime.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    return app


def from_environment() -> FastAPI:
    """The app of one of several HTTP processes (`spoke serve --processes N`): each process
    builds its own runtime from the environment. Jobs go through Redis, so no process runs
    an embedded worker."""
    settings = get_settings()
    configure_logging(settings.log)
    return create_app(build_runtime(settings), embedded_worker=False, check_migrations=True)
