"""The SMTP sink: an aiosmtpd server (STARTTLS with a certificate made at start, optional
AUTH, per-recipient rejections and injected faults) and an HTTP read API (`/_smtp/...`),
both on one event loop.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import orjson
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from spoke.sandbox.smtp.store import (
    RECIPIENT_STATES,
    REPLIES,
    STAGES,
    Fault,
    SmtpStore,
    parsed,
)
from spoke.sandbox.smtp.tls import self_signed

SERVER_NAME = "spoke-smtp-sink"


class SinkHandler:
    """aiosmtpd hooks: every command consults the store's faults and recipient states."""

    def __init__(self, store: SmtpStore) -> None:
        self.store = store

    async def _delay(self) -> None:
        if self.store.latency_ms:
            await asyncio.sleep(self.store.latency_ms / 1000)

    async def handle_MAIL(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        fault = self.store.take_fault("mail", None)
        if fault is not None:
            self.store.count(f"fault_mail_{fault.code}")
            return fault.reply()
        envelope.mail_from = address
        envelope.mail_options.extend(options)
        return "250 OK"

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        await self._delay()
        fault = self.store.take_fault("rcpt", address)
        if fault is not None:
            self.store.count(f"fault_rcpt_{fault.code}")
            return fault.reply()
        state = self.store.state_of(address)
        if state in REPLIES:
            self.store.count(f"rcpt_{state}")
            return REPLIES[state]
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(options)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        await self._delay()
        fault = self.store.take_fault("data", envelope.rcpt_tos[0] if envelope.rcpt_tos else None)
        if fault is not None:
            self.store.count(f"fault_data_{fault.code}")
            return fault.reply()
        content = envelope.original_content or envelope.content or b""
        data = content if isinstance(content, bytes) else content.encode()
        auth = (
            session.auth_data.login.decode()
            if session.authenticated and session.auth_data
            else None
        )
        received = self.store.record(
            envelope.mail_from or "",
            envelope.rcpt_tos,
            data,
            tls=session.ssl is not None,
            auth=auth,
            peer=str(session.peer),
        )
        return f"250 2.0.0 OK queued as {received.id}"


def _authenticator(store: SmtpStore) -> Any:
    def check(
        server: SMTP, session: Session, envelope: Envelope, mechanism: str, auth_data: Any
    ) -> AuthResult:
        ok = (
            isinstance(auth_data, LoginPassword)
            and store.username is not None
            and auth_data.login.decode() == store.username
            and auth_data.password.decode() == (store.password or "")
        )
        store.count("auth_ok" if ok else "auth_failed")
        return AuthResult(success=ok, handled=False, auth_data=auth_data if ok else None)

    return check


def _json(body: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(body), status, media_type="application/json")


async def _body(request: Request) -> dict[str, Any]:
    try:
        body = orjson.loads(await request.body() or b"{}")
    except orjson.JSONDecodeError:
        return {}
    return body if isinstance(body, dict) else {}


async def messages(request: Request) -> Response:
    """Accepted messages, oldest first, optionally for one recipient (`?to=`)."""
    store: SmtpStore = request.app.state.store
    found = store.find(request.query_params.get("to"))
    return _json({"count": len(found), "messages": [parsed(m) for m in found]})


async def message(request: Request) -> Response:
    store: SmtpStore = request.app.state.store
    wanted = request.path_params["id"]
    for received in store.messages:
        if received.id == wanted:
            return _json(parsed(received, raw=True))
    return _json({"error": "no such message"}, 404)


async def clear_messages(request: Request) -> Response:
    request.app.state.store.messages.clear()
    return Response(status_code=204)


async def set_recipient(request: Request) -> Response:
    store: SmtpStore = request.app.state.store
    state = (await _body(request)).get("state")
    if state not in RECIPIENT_STATES:
        return _json({"error": f"state must be one of {', '.join(RECIPIENT_STATES)}"}, 400)
    address = request.path_params["address"].lower()
    store.recipient_states[address] = state
    return _json({"address": address, "state": state})


async def add_fault(request: Request) -> Response:
    store: SmtpStore = request.app.state.store
    body = await _body(request)
    code, count, stage = body.get("code"), body.get("count", 1), body.get("stage", "rcpt")
    recipient, text = body.get("recipient"), body.get("message")
    if not isinstance(code, int) or not 400 <= code <= 599 or not isinstance(count, int):
        return _json({"error": "code (4xx/5xx) and count are required"}, 400)
    if stage not in STAGES:
        return _json({"error": f"stage must be one of {', '.join(STAGES)}"}, 400)
    if recipient is not None and not isinstance(recipient, str):
        return _json({"error": "recipient is an address"}, 400)
    if text is not None and not isinstance(text, str):
        return _json({"error": "message is text"}, 400)
    store.faults.append(Fault(code, count, stage, recipient.lower() if recipient else None, text))
    return _json({"faults": len(store.faults)}, 201)


async def config(request: Request) -> Response:
    store: SmtpStore = request.app.state.store
    body = await _body(request)
    if isinstance(body.get("latency_ms"), int | float):
        store.latency_ms = float(body["latency_ms"])
    if body.get("default_state") in RECIPIENT_STATES:
        store.default_state = body["default_state"]
    if isinstance(body.get("require_tls"), bool):
        store.require_tls = body["require_tls"]
    if "auth" in body:
        auth = body["auth"]
        if isinstance(auth, dict) and isinstance(auth.get("username"), str):
            store.username, store.password = auth["username"], str(auth.get("password", ""))
        else:
            store.username = store.password = None
    return _json(_config(request))


def _config(request: Request) -> dict[str, Any]:
    store: SmtpStore = request.app.state.store
    return {
        "smtp_host": request.app.state.smtp_host,
        "smtp_port": request.app.state.smtp_port,
        "starttls": True,
        "require_tls": store.require_tls,
        "auth": store.username is not None,
        "latency_ms": store.latency_ms,
        "default_state": store.default_state,
    }


async def info(request: Request) -> Response:
    return _json(_config(request))


async def certificate(request: Request) -> Response:
    return PlainTextResponse(request.app.state.store.certificate_pem)


async def stats(request: Request) -> Response:
    store: SmtpStore = request.app.state.store
    return _json({**store.counts, "stored_messages": len(store.messages)})


async def reset(request: Request) -> Response:
    request.app.state.store.reset()
    return Response(status_code=204)


def create_smtp_app(
    store: SmtpStore | None = None, *, smtp_host: str = "127.0.0.1", smtp_port: int = 2525
) -> Starlette:
    """The read API as an ASGI app; its lifespan runs the SMTP listener on the same loop."""
    # aiosmtpd's own auth flow trips its "login_data is deprecated" warning on every login.
    logging.getLogger("mail.log").setLevel(logging.ERROR)
    the_store = store if store is not None else SmtpStore()
    tls, the_store.certificate_pem = self_signed(smtp_host)
    handler = SinkHandler(the_store)
    authenticator = _authenticator(the_store)

    def protocol() -> SMTP:
        # Built per connection, so config changes apply to the next connection.
        return SMTP(
            handler,
            hostname=SERVER_NAME,
            ident="Spoke SMTP sink",
            tls_context=tls,
            require_starttls=the_store.require_tls or the_store.username is not None,
            auth_required=the_store.username is not None,
            authenticator=authenticator,
            data_size_limit=10 * 1024 * 1024,
        )

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        loop = asyncio.get_running_loop()
        server = await loop.create_server(protocol, smtp_host, smtp_port)
        try:
            yield
        finally:
            server.close()
            await server.wait_closed()

    app = Starlette(
        lifespan=lifespan,
        routes=[
            Route("/_smtp/messages", messages, methods=["GET"]),
            Route("/_smtp/messages", clear_messages, methods=["DELETE"]),
            Route("/_smtp/messages/{id:int}", message, methods=["GET"]),
            Route("/_smtp/recipients/{address}", set_recipient, methods=["PUT"]),
            Route("/_smtp/faults", add_fault, methods=["POST"]),
            Route("/_smtp/config", config, methods=["PUT"]),
            Route("/_smtp/config", info, methods=["GET"]),
            Route("/_smtp/certificate", certificate, methods=["GET"]),
            Route("/_smtp/stats", stats, methods=["GET"]),
            Route("/_smtp/reset", reset, methods=["POST"]),
        ],
    )
    app.state.store = the_store
    app.state.smtp_host = smtp_host
    app.state.smtp_port = smtp_port
    return app


def serve(
    host: str = "127.0.0.1",
    port: int = 8300,
    *,
    smtp_port: int = 2525,
    username: str | None = None,
    password: str | None = None,
    latency_ms: float = 0.0,
) -> None:
    """Run the sink with uvicorn until interrupted."""
    import uvicorn

    store = SmtpStore(latency_ms=latency_ms, username=username, password=password)
    app = create_smtp_app(store, smtp_host=host, smtp_port=smtp_port)
    auth = f", AUTH as {username}" if username else ""
    sys.stderr.write(
        f"SMTP sink on {host}:{smtp_port} (STARTTLS{auth}); read API on http://{host}:{port}\n"
        f"  received mail: http://{host}:{port}/_smtp/messages[?to=ADDRESS]\n"
        f"  its certificate (trust it as `ca_pem`): http://{host}:{port}/_smtp/certificate\n"
    )
    uvicorn.run(app, host=host, port=port, log_level="warning", access_log=False)
