"""The emulators' HTTP protocol: a request that arrived whole is handled, client gone or not.

uvicorn answers an app's read of the body with `http.disconnect` once the connection has
closed, even when every byte of the request had arrived. A real provider (FCM, Twilio) acts
on a request it received whole; an emulator that dropped it would lose messages a killed
worker had truly sent, and the kill -9 tests would count a loss that production wouldn't
have. So when the connection closes after a complete request, the app still gets its body;
the answer then goes nowhere.
"""

from __future__ import annotations

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol


class WholeRequestsProtocol(HttpToolsProtocol):
    def connection_lost(self, exc: Exception | None) -> None:
        cycle = self.cycle
        whole = cycle is not None and not cycle.response_complete and not cycle.more_body
        super().connection_lost(exc)
        if whole:
            cycle.disconnected = False  # receive() hands over the body already received


__all__ = ["WholeRequestsProtocol"]
