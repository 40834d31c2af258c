"""HTTP plumbing: request ids, logs and metrics per request, body limits, and the
transaction edge (`TransactionalRoute`) where a request's session is committed."""

from __future__ import annotations

import functools
import inspect
import re
import time
import uuid
from collections.abc import Callable, Coroutine
from typing import Any

import orjson
import structlog
from fastapi import Request
from fastapi.routing import APIRoute
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from spoke.core import idempotency
from spoke.core.errors import PROBLEM_JSON, problem_response
from spoke.core.metrics import Metrics
from spoke.core.request_slots import RequestSlots

log = structlog.get_logger("spoke.http")
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
# An escaped NUL (\u0000) not itself escaped: PostgreSQL text can't hold NUL characters.
_ESCAPED_NUL = re.compile(rb"(?<!\\)(?:\\\\)*\\u0000")


class RequestContextMiddleware:
    """Request id, access log, metrics and a hard cap on body size, as plain ASGI."""

    def __init__(self, app: ASGIApp, metrics: Metrics, max_body_bytes: int) -> None:
        self.app = app
        self.metrics = metrics
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        incoming = headers.get(b"x-request-id", b"").decode("latin-1")
        request_id = incoming if _REQUEST_ID.match(incoming) else uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = request_id
        structlog.contextvars.bind_contextvars(request_id=request_id)
        started = time.perf_counter()
        status = 500

        if "\x00" in scope.get("path", "") or b"%00" in scope.get("query_string", b"").lower():
            await _send_problem(
                send,
                400,
                "bad_request",
                "Bad request",
                "NUL characters are not allowed in URLs.",
                request_id,
            )
            structlog.contextvars.unbind_contextvars("request_id")
            return

        length = headers.get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > self.max_body_bytes):
            await _send_problem(
                send,
                413,
                "payload_too_large",
                "Payload too large",
                f"Request bodies are limited to {self.max_body_bytes} bytes.",
                request_id,
            )
            structlog.contextvars.unbind_contextvars("request_id")
            return

        received = 0

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body_bytes:
                    raise _BodyTooLarge
            return message

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message.setdefault("headers", [])
                message["headers"] = [*message["headers"], (b"x-request-id", request_id.encode())]
            await send(message)

        try:
            await self.app(scope, limited_receive, send_with_id)
        except _BodyTooLarge:
            status = 413
            await _send_problem(
                send,
                413,
                "payload_too_large",
                "Payload too large",
                f"Request bodies are limited to {self.max_body_bytes} bytes.",
                request_id,
            )
        finally:
            elapsed = time.perf_counter() - started
            route = scope.get("route")
            template = getattr(route, "path", "unmatched")
            method = scope.get("method", "")
            self.metrics.requests.labels(method, template, str(status)).inc()
            self.metrics.latency.labels(method, template).observe(elapsed)
            log.info(
                "http.request",
                method=method,
                path=scope.get("path"),
                route=template,
                status=status,
                ms=round(elapsed * 1000, 1),
            )
            structlog.contextvars.unbind_contextvars("request_id")


class _BodyTooLarge(Exception):
    pass


async def _send_problem(
    send: Send, status: int, code: str, title: str, detail: str, request_id: str
) -> None:
    body = orjson.dumps(
        {
            "type": f"/problems/{code}",
            "title": title,
            "status": status,
            "detail": detail,
            "code": code,
            "request_id": request_id,
        }
    )
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", PROBLEM_JSON.encode()),
                (b"content-length", str(len(body)).encode()),
                (b"x-request-id", request_id.encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


async def request_session(request: Request) -> Session:
    """The request's session, opened on first use; `TransactionalRoute` commits or rolls back.

    Async because it does no I/O (a session connects on its first query): a sync
    dependency costs a round trip through the threadpool, paid by the event loop."""
    session: Session | None = getattr(request.state, "db", None)
    if session is None:
        reading = request.method in ("GET", "HEAD")
        factory = request.app.state.read_sessions if reading else request.app.state.sessions
        session = factory()
        request.state.db = session
    return session


class TransactionalRoute(APIRoute):
    """Commits the request's session once the endpoint has produced its response.

    This is the one place a request commits: services only flush. An exception anywhere
    (an AppError included) rolls everything back, so a 4xx never leaves half a write.
    The stored `Idempotency-Key` response is added in the same transaction.

    A plain `def` endpoint still runs in the threadpool, but through an async wrapper: FastAPI
    checks the response model of a sync endpoint in a second threadpool trip of its own,
    and for an async one on the event loop, where a small answer costs less than the trip.
    """

    def __init__(self, path: str, endpoint: Callable[..., Any], **kwargs: Any) -> None:
        if not inspect.iscoroutinefunction(endpoint):
            endpoint = _in_threadpool(endpoint)
        super().__init__(path, endpoint, **kwargs)

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def run(request: Request) -> Response:
            refused = await _parse_json_body(request)
            if refused is not None:
                return refused
            await _read_small_body(request)
            slots: RequestSlots | None = getattr(request.app.state, "request_slots", None)
            if slots is None:
                return await transact(request)
            # See `request_slots`: bounding these to the pool is what keeps a burst of
            # requests from holding every connection while waiting for a thread to commit.
            async with slots.hold():
                return await transact(request)

        async def transact(request: Request) -> Response:
            try:
                response = await handler(request)
            except idempotency.IdempotentReplay as replay:
                await run_in_threadpool(_close, request, commit=False)
                return replay.response
            except BaseException:
                await run_in_threadpool(_close, request, commit=False)
                raise
            if getattr(request.state, "db", None) is None:
                return response
            return await run_in_threadpool(_finish, request, response)

        return run


def _in_threadpool(endpoint: Callable[..., Any]) -> Callable[..., Coroutine[Any, Any, Any]]:
    """`endpoint` as a coroutine function that runs it in the threadpool. FastAPI reads the
    parameters (and their module, for annotations) through `__wrapped__`."""

    @functools.wraps(endpoint)
    async def run(*args: Any, **kwargs: Any) -> Any:
        return await run_in_threadpool(endpoint, *args, **kwargs)

    return run


async def _read_small_body(request: Request) -> None:
    """Receive a (size-capped) body before taking a request slot, so a slow client sends
    it without holding one. Multipart uploads stream into FastAPI's spooled files instead."""
    if request.method not in ("POST", "PUT", "PATCH", "DELETE"):
        return
    if request.headers.get("content-type", "").startswith("multipart/"):
        return
    await request.body()


async def _parse_json_body(request: Request) -> Response | None:
    """Parse a JSON body once, strictly, before FastAPI sees it.

    orjson refuses what the standard parser lets through and the database would choke on
    later: lone UTF-16 surrogates, NaN and Infinity. Escaped NULs are refused here too.
    FastAPI then reuses the cached result (`request._json`), so nothing is parsed twice.
    """
    if request.method not in ("POST", "PUT", "PATCH", "DELETE"):
        return None
    content_type = request.headers.get("content-type", "")
    if "json" not in content_type.split(";")[0]:
        return None
    body = await request.body()
    if not body:
        return None
    detail = None
    # The byte search is a memchr-speed pre-check; the regex (which tells `\\u0000`, an
    # escaped backslash, from a real NUL escape) only runs when it might match.
    if b"\\u0000" in body and _ESCAPED_NUL.search(body):
        detail = "Strings may not contain NUL (\\u0000) characters."
    else:
        try:
            request._json = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            detail = f"The request body is not valid JSON: {exc}"
    if detail is None:
        return None
    return problem_response(400, "invalid_json", "Malformed JSON", detail, request)


def _close(request: Request, *, commit: bool) -> None:
    session: Session | None = getattr(request.state, "db", None)
    if session is None:
        return
    try:
        if commit:
            session.commit()
        else:
            session.rollback()
    finally:
        session.close()
        request.state.db = None


def _finish(request: Request, response: Response) -> Response:
    session: Session = request.state.db
    pending: idempotency.PendingKey | None = getattr(request.state, "idempotency", None)
    try:
        if pending is not None and response.status_code < 500:
            idempotency.store(session, pending, response)
        session.commit()
    except IntegrityError:
        session.rollback()
        if pending is None:
            session.close()
            request.state.db = None
            raise
        # Someone else finished a request with the same key first: answer with theirs.
        record = idempotency.find(session, pending.workspace_id, pending.key)
        session.close()
        request.state.db = None
        if record is None or record.request_hash != pending.request_hash:
            raise idempotency.IdempotencyKeyReused(
                "This Idempotency-Key is being used by another request."
            ) from None
        return idempotency.stored_response(record)
    except BaseException:
        session.rollback()
        session.close()
        request.state.db = None
        raise
    session.close()
    request.state.db = None
    return response
