"""Which id ranges of a concurrent backfill are done, kept in the run's checkpoint.

Pages are contiguous id intervals `(lo, hi]` processed several at a time, so they finish
out of order. The checkpoint keeps a *frontier* (every id ≤ it is done) and the finished
intervals past it; each page commits its interval together with its writes and counts. After
`kill -9` the run re-plans from the frontier and skips the finished intervals, so no page is
counted twice and none is lost.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class IdFrontier:
    frontier: int = 0
    done: list[tuple[int, int]] = field(default_factory=list)  # (lo, hi], sorted by lo

    @classmethod
    def from_checkpoint(cls, checkpoint: dict[str, Any]) -> IdFrontier:
        # `after_user_id` is the sequential format of earlier releases: a plain frontier.
        start = int(checkpoint.get("frontier", checkpoint.get("after_user_id", 0)))
        done = sorted((int(lo), int(hi)) for lo, hi in checkpoint.get("done", []))
        return cls(start, done)

    def to_checkpoint(self) -> dict[str, Any]:
        return {"frontier": self.frontier, "done": [[lo, hi] for lo, hi in self.done]}

    def complete(self, lo: int, hi: int) -> None:
        """Record `(lo, hi]` as done and advance the frontier over contiguous intervals."""
        if hi <= self.frontier or (lo, hi) in self.done:
            return
        self.done.append((lo, hi))
        self.done.sort()
        while self.done and self.done[0][0] <= self.frontier:
            self.frontier = max(self.frontier, self.done.pop(0)[1])

    def skip_done(self, cursor: int) -> tuple[int, int | None]:
        """Planning from `cursor`: the cursor moved past finished intervals, and the bound
        (the start of the next finished interval) a new page must not cross."""
        for lo, hi in self.done:
            if lo <= cursor < hi:
                cursor = hi
        bound = next((lo for lo, _ in self.done if lo > cursor), None)
        return cursor, bound


__all__ = ["IdFrontier"]
