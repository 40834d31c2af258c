"""The keep-alive HTTP/1.1 client under the FCM adapter, against uvicorn on loopback:
fixed-length, chunked and read-to-close bodies, reuse, and failures as TransportError."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route
from tests.support.server import LiveServer, free_port

from spoke.messaging.providers.http1 import Http1Pool, TransportError


async def echo(request: Request) -> Response:
    body = await request.body()
    return Response(body, headers={"x-path": request.url.path})


async def chunked(request: Request) -> StreamingResponse:
    async def parts() -> AsyncIterator[bytes]:
        for part in (b"alpha-", b"beta-", b"gamma"):
            yield part

    return StreamingResponse(parts())


async def closing(request: Request) -> Response:
    return Response(b"bye", headers={"connection": "close"})


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    app = Starlette(
        routes=[
            Route("/prefix/echo", echo, methods=["POST"]),
            Route("/prefix/chunked", chunked, methods=["GET"]),
            Route("/prefix/close", closing, methods=["GET"]),
        ]
    )
    live = LiveServer(app).start()
    yield live.url
    live.stop()


def test_bodies_of_every_framing_and_connection_reuse(server: str) -> None:
    async def go() -> list[tuple[int, bytes]]:
        pool = Http1Pool(f"{server}/prefix", size=4)
        try:
            answers = await asyncio.gather(
                *(
                    pool.request("POST", "/echo", headers={"X-N": str(i)}, body=b"x" * i)
                    for i in range(40)
                )
            )
            out = [(a.status, a.body) for a in answers]
            streamed = await pool.request("GET", "/chunked", headers={})
            closed = await pool.request("GET", "/close", headers={})
            again = await pool.request("POST", "/echo", headers={}, body=b"after close")
            return [
                *out,
                (streamed.status, streamed.body),
                (closed.status, closed.body),
                (again.status, again.body),
            ]
        finally:
            await pool.aclose()

    results = asyncio.run(go())
    assert results[:40] == [(200, b"x" * i) for i in range(40)]
    assert results[40:] == [(200, b"alpha-beta-gamma"), (200, b"bye"), (200, b"after close")]


def test_an_unreachable_origin_is_a_transport_error() -> None:
    async def go() -> None:
        pool = Http1Pool(f"http://127.0.0.1:{free_port()}", size=1, timeout=2)
        try:
            await pool.request("POST", "/x", headers={}, body=b"{}")
        finally:
            await pool.aclose()

    with pytest.raises(TransportError):
        asyncio.run(go())


def test_only_http_urls_are_accepted() -> None:
    with pytest.raises(ValueError, match="not an http"):
        Http1Pool("ftp://example.com")


def test_connections_the_server_dropped_while_idle_are_replaced() -> None:
    # A server that answers once per connection, then closes it without saying so: every
    # idle connection in the pool goes stale, as keep-alive timeouts make them.
    async def go() -> list[int]:
        async def answer_once(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await reader.readuntil(b"\r\n\r\n")
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
            await writer.drain()
            writer.close()

        server = await asyncio.start_server(answer_once, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        pool = Http1Pool(f"http://127.0.0.1:{port}", size=8)
        try:
            first = await asyncio.gather(*(pool.request("GET", "/", headers={}) for _ in range(4)))
            await asyncio.sleep(0.1)  # the server has closed all four by now
            second = await asyncio.gather(*(pool.request("GET", "/", headers={}) for _ in range(4)))
            return [a.status for a in (*first, *second)]
        finally:
            await pool.aclose()
            server.close()
            await server.wait_closed()

    assert asyncio.run(go()) == [200] * 8
