"""Send batches of completions, several in flight, and say exactly which ones landed.

For each batch (≤ 500 completions):

- 204: all sent.
- 400/404 (HubSpot validates a batch as a whole and records none of it): split in halves and
  send each, down to single completions; a single one refused is rejected with HubSpot's
  message, or — when its contact no longer exists — put back to wait for a new match.
- 429 for the day or month: the completions wait (the client already waited out and resent
  the short-window 429s, which HubSpot refuses before doing anything).
- 5xx, a timeout or a lost connection: the outcome is unknown. The batch's uuids are read
  back (`GET /events/v3/events?id=…`), the ones found count as sent, and only the others are
  sent again, after a backoff. HubSpot's own de-duplication by uuid is never relied on.
- Still unknown after the attempts: `UnknownOutcome`. The batch's row stays in the database
  and the next run resolves it the same way before it sends anything.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import anyio

from spoke.hubspot import (
    BadRequest,
    Forbidden,
    HubSpotClient,
    HubSpotError,
    HubSpotResponseError,
    ObjectNotFound,
    RateLimited,
    Unauthorized,
)

QUERY_IDS = 100  # ids per read-back request (they travel in the URL)


class UnknownOutcome(Exception):
    """HubSpot could not be asked whether a batch landed; it stays recorded for the next run."""


@dataclass(frozen=True)
class Wire:
    item_id: int
    uuid: str
    identity_key: str
    body: dict[str, Any]


@dataclass
class Outcome:
    sent: list[int] = field(default_factory=list)
    rejected: dict[int, tuple[str, str]] = field(default_factory=dict)
    waiting: dict[int, tuple[str, str]] = field(default_factory=dict)
    resolved: int = 0  # completions found already in HubSpot after an unknown outcome
    gone_contacts: set[str] = field(default_factory=set)  # identity keys to look up again

    def merge(self, other: Outcome) -> None:
        self.sent.extend(other.sent)
        self.rejected.update(other.rejected)
        self.waiting.update(other.waiting)
        self.resolved += other.resolved
        self.gone_contacts |= other.gone_contacts


@dataclass(frozen=True)
class Policy:
    attempts: int = 5
    backoff_base: float = 0.5
    backoff_max: float = 20.0

    def backoff(self, attempt: int) -> float:
        ceiling = min(self.backoff_max, self.backoff_base * 2 ** (attempt - 1))
        return float(ceiling / 2 + random.random() * ceiling / 2)


async def landed(client: HubSpotClient, uuids: Sequence[str]) -> set[str]:
    """Which of `uuids` HubSpot has as event instances."""
    found: set[str] = set()
    for start in range(0, len(uuids), QUERY_IDS):
        part = uuids[start : start + QUERY_IDS]
        after: str | None = None
        while True:
            page = await client.events.query(ids=part, limit=1000, after=after)
            found.update(o.id for o in page.results)
            after = page.next_after
            if after is None:
                break
    return found & set(uuids)


def _refusal(exc: HubSpotResponseError) -> tuple[str, str]:
    message = str(exc)[:1000]
    # The sandbox and HubSpot say "… does not exist" for an objectId that is gone.
    if "does not exist" in message and "contact" in message.lower():
        return "contact_missing", message
    return "hubspot_rejected", message


async def _split(client: HubSpotClient, wires: Sequence[Wire], policy: Policy) -> Outcome:
    out = Outcome()
    for half in (wires[: len(wires) // 2], wires[len(wires) // 2 :]):
        out.merge(await deliver(client, half, policy))
    return out


async def deliver(client: HubSpotClient, wires: Sequence[Wire], policy: Policy) -> Outcome:
    """Send one batch to the end; see the module docstring."""
    out = Outcome()
    pending = list(wires)
    attempt = 0
    unknown = False
    while pending:
        attempt += 1
        if unknown:
            try:
                found = await landed(client, [w.uuid for w in pending])
            except HubSpotError:
                if attempt >= policy.attempts:
                    raise UnknownOutcome("HubSpot could not be asked what landed") from None
                await anyio.sleep(policy.backoff(attempt))
                continue
            out.sent.extend(w.item_id for w in pending if w.uuid in found)
            out.resolved += len(found)
            pending = [w for w in pending if w.uuid not in found]
            unknown = False
            if not pending:
                break
        try:
            await client.events.send_wire_batch([w.body for w in pending])
        except (BadRequest, ObjectNotFound) as exc:
            if len(pending) > 1:
                out.merge(await _split(client, pending, policy))
                return out
            reason, detail = _refusal(exc)
            if reason == "contact_missing":
                out.waiting[pending[0].item_id] = (reason, detail)
                out.gone_contacts.add(pending[0].identity_key)
            else:
                out.rejected[pending[0].item_id] = (reason, detail)
            return out
        except (Unauthorized, Forbidden):
            raise  # refused before anything happened; the run stops and says why
        except RateLimited as exc:  # a daily or monthly limit: not retried by the client
            for w in pending:
                out.waiting[w.item_id] = ("cap", f"HubSpot: {exc}"[:500])
            return out
        except HubSpotError:
            if attempt >= policy.attempts:
                raise UnknownOutcome("the batch's outcome stayed unknown") from None
            unknown = True
            await anyio.sleep(policy.backoff(attempt))
            continue
        out.sent.extend(w.item_id for w in pending)
        pending = []
    return out


async def deliver_all(
    client: HubSpotClient, batches: Sequence[Sequence[Wire]], concurrency: int, policy: Policy
) -> list[Outcome]:
    """Every batch, at most `concurrency` requests in flight; outcomes in batch order."""
    results: list[Outcome | None] = [None] * len(batches)
    failures: list[BaseException] = []
    limiter = anyio.Semaphore(concurrency)

    async def one(index: int) -> None:
        async with limiter:
            try:
                results[index] = await deliver(client, batches[index], policy)
            except Exception as exc:  # the others finish; their outcomes are still wanted
                failures.append(exc)

    async with anyio.create_task_group() as group:
        for index in range(len(batches)):
            group.start_soon(one, index)
    if failures:
        raise failures[0]
    return [r for r in results if r is not None]
