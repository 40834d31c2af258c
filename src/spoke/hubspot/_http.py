"""The one place where httpx exceptions become `HubSpotTransportError`."""

from __future__ import annotations

import httpx

from spoke.hubspot.errors import HubSpotTransportError

# Failures that happen before any byte of the request reached HubSpot: retrying cannot repeat a
# write, whatever the method.
NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)


class SendFailed(HubSpotTransportError):
    """A transport error that also records whether the request may have reached HubSpot."""

    def __init__(self, message: str, *, method: str, url: str, sent: bool) -> None:
        super().__init__(message, method=method, url=url)
        self.sent = sent


async def send(http: httpx.AsyncClient, request: httpx.Request) -> httpx.Response:
    """Send a request and read the whole body.

    Args:
        http: the client to send with.
        request: the request.

    Returns:
        The response, body read.

    Raises:
        SendFailed: a network error or timeout (a `HubSpotTransportError`), chained to the
            httpx exception.
    """
    try:
        return await http.send(request)
    except httpx.TransportError as exc:
        sent = not isinstance(exc, NOT_SENT)
        detail = str(exc) or type(exc).__name__
        raise SendFailed(
            f"{request.method} {request.url} failed: {detail}",
            method=request.method,
            url=str(request.url),
            sent=sent,
        ) from exc
