"""The sandbox ASGI app and its runner.

`create_sandbox_app()` builds a Starlette app (HubSpot's routes plus the `/_sandbox/` admin API)
over a `SandboxStore`. `serve()` runs it with uvicorn; with a state file the store is loaded at
start-up and saved at shutdown.
"""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute

from spoke.sandbox.hubspot import (
    admin,
    associations,
    automation,
    batch,
    events,
    lists,
    oauth,
    objects,
    properties,
    search,
    webhook_api,
    webhooks,
)
from spoke.sandbox.hubspot.config import SandboxConfig
from spoke.sandbox.hubspot.errors import SandboxError
from spoke.sandbox.hubspot.http import error_response
from spoke.sandbox.hubspot.store import SandboxStore


def _routes() -> list[BaseRoute]:
    # Batch and search before the single-object routes: `{objectId}` must not swallow "batch".
    return [
        *admin.routes,
        *oauth.routes,
        *batch.routes,
        *search.routes,
        *objects.routes,
        *properties.routes,
        *associations.routes,
        *lists.routes,
        *events.routes,
        *webhook_api.routes,
        *automation.routes,
    ]


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    if exc.status_code == 405:
        err = SandboxError(405, "HTTP method not allowed for this path", "METHOD_NOT_ALLOWED")
    else:
        err = SandboxError(
            exc.status_code,
            f"No route for {request.method} {request.url.path}",
            "OBJECT_NOT_FOUND" if exc.status_code == 404 else "VALIDATION_ERROR",
        )
    return error_response(err)


def create_sandbox_app(
    store: SandboxStore | None = None, *, config: SandboxConfig | None = None
) -> Starlette:
    """Build the sandbox app.

    Args:
        store: the state to serve; a fresh in-memory store when omitted.
        config: settings for the fresh store (ignored when `store` is given).

    Returns:
        A Starlette app. If the store has a `state_file`, the app loads it on start-up (when it
        exists) and saves to it on shutdown.
    """
    the_store = store if store is not None else SandboxStore(config)
    hub = webhooks.WebhookHub(the_store)
    runner = automation.ActionRunner(the_store)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        if the_store.state_file is not None and not the_store.loaded:
            the_store.load()
        hub.start()
        runner.start()
        try:
            yield
        finally:
            runner.stop()
            hub.stop()
            if the_store.state_file is not None:
                the_store.save()

    app = Starlette(
        routes=_routes(),
        lifespan=lifespan,
        exception_handlers={HTTPException: _http_error},
    )
    app.state.store = the_store
    app.state.webhooks = hub
    app.state.actions = runner
    app.router.redirect_slashes = False
    return app


def serve(host: str = "127.0.0.1", port: int = 8100, state_file: Path | None = None) -> None:
    """Run the sandbox with uvicorn until interrupted.

    With `state_file`, state is loaded from it at start-up and written back at shutdown (and on
    `POST /_sandbox/save`). When the store has no portal yet, one is created and its credentials
    are printed, so `curl` works straight away.
    """
    import uvicorn

    config = SandboxConfig(public_base_url=f"http://{host}:{port}")
    store = SandboxStore(config, state_file=state_file)
    store.load()
    if not store.portals:
        portal = store.create_portal(name="Default sandbox portal")
        app_info = store.apps[portal.oauth_app_id]
        sys.stderr.write(
            f"HubSpot sandbox on http://{host}:{port}\n"
            f"  portal id          {portal.id}\n"
            f"  private app token  {portal.private_token}\n"
            f"  oauth client id    {app_info.client_id}\n"
            f"  oauth secret       {app_info.client_secret}\n"
            f"  admin API          http://{host}:{port}/_sandbox/portals\n"
        )
    else:
        sys.stderr.write(
            f"HubSpot sandbox on http://{host}:{port}: {len(store.portals)} portal(s) from "
            f"{state_file}; list them at http://{host}:{port}/_sandbox/portals\n"
        )
    app = create_sandbox_app(store)  # saves to state_file at shutdown
    uvicorn.run(app, host=host, port=port, log_level="warning", access_log=False)
