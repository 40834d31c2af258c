"""Helpers shared by the HubSpot client tests (a uniquely named module, not a conftest)."""

from __future__ import annotations


class VirtualClock:
    """Stands in for `anyio.sleep` and a clock: waits are recorded and advance virtual time.

    Pass it as the client's or limiter's `sleep`, and `clock.time` as an in-memory bucket
    store's clock, so retry and pacing waits are observed without being waited out.
    """

    def __init__(self, start: float = 1_000.0) -> None:
        self.now = start
        self.calls: list[float] = []

    def time(self) -> float:
        return self.now

    async def __call__(self, seconds: float) -> None:
        self.calls.append(seconds)
        self.now += seconds
