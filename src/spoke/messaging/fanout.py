"""The fan-out of one notification, resumable after a crash at any point.

Under the notification's lease, in two interleaved phases:

1. Plan: the stored recipients are resolved `PLAN_CHUNK` at a time into `Delivery` rows
   (`queued`, or `failed` with `no_subscription`); `planned` is the checkpoint, committed
   with the rows, so a resumed run neither skips nor repeats a recipient. Ids matching no
   user go to `not_found`.
2. Send: batches of queued deliveries are read (and personalised) ahead of the sender and
   sent to every subscribed device of each recipient, two batches in flight. What is sent
   and what came back goes through the `SendJournal`: a delivery is marked `sending` in a
   commit made the instant before its requests are written, and its outcome (`sent`, or
   `failed` with the reason; refused tokens become `invalid`) is committed within a few
   milliseconds of the answer. A recipient is never sent to by two runs: the delivery key
   is per notification, user and channel, and only `queued` rows are sent. Email and SMS
   (`channel_send.ChannelSender`) pass each delivery's gate to the channel, so they go
   through the same journal. Only deliveries that are due (`local_delivery.due`) are read;
   when the rest wait for their local time, the run parks instead of completing.

After `kill -9` the sweeper re-enqueues the notification once the lease runs out. The new
run deals with what the dead one left `sending` before it sends anything: where the
provider can say which messages it took (`ChannelSender.confirm`: Twilio), what it took is
`sent` and the rest is sent again; push is sent again (each delivery has its own collapse
identifier, so a device that got the first copy shows one notification); email is settled
as sent (`send_journal.resolve_unknown`: it was written to the server). Then it carries on
with what is still queued.
"""

from __future__ import annotations

import asyncio
import contextvars
import threading
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import sqlalchemy as sa
import structlog
import uvloop
from jinja2 import TemplateError
from sqlalchemy.orm import Session, sessionmaker

from spoke.core import bulk, leases
from spoke.core.clock import utcnow
from spoke.core.crypto import Encryptor
from spoke.core.db import make_session_factory, session_scope, table_of
from spoke.messaging import addresses, local_delivery, personalise, providers_config
from spoke.messaging.channel_send import ChannelSender, Confirmations, Sendable
from spoke.messaging.models import Delivery, Notification, Subscription
from spoke.messaging.providers.base import (
    ProviderConfigError,
    PushMessage,
    PushProvider,
    SendResult,
)
from spoke.messaging.providers.fcm import WARM_CONNECTIONS, FcmProvider, RetryPolicy
from spoke.messaging.send_journal import (
    OUTCOME_CONFIRMED,
    AfterCrash,
    DeliveryGate,
    SendJournal,
    resolve_unknown,
    settle_stale,
)
from spoke.messaging.service import NO_SUBSCRIPTION, TOKEN_INVALID, audience_filter
from spoke.users.models import STANDARD_FIELDS, User, UserTag

log = structlog.get_logger("spoke.fanout")
PLAN_CHUNK = 1000
# The first chunk and batch are small so the first message leaves quickly.
FIRST_CHUNK = 100
FIRST_BATCH = 50
_CONTENT_KEYS = ("title", "body", "image_url", "link_url", "data")


@dataclass(frozen=True)
class FanoutOptions:
    lease_seconds: float = 60.0
    batch_size: int = 500
    concurrency: int = 64
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    # The least time marks and outcomes wait to share a transaction (see `SendJournal`).
    journal_interval: float = 0.002


ProviderFactory = Callable[[Session, Notification], Sendable]


def fcm_factory(encryptor: Encryptor, options: FanoutOptions) -> ProviderFactory:
    def build(session: Session, notification: Notification) -> PushProvider:
        config = providers_config.get_push(session, notification.workspace_id)
        try:
            creds = providers_config.fcm_credentials(encryptor, config)
        except ValueError as exc:
            raise ProviderConfigError(f"stored FCM credentials are unusable: {exc}") from exc
        return FcmProvider(
            creds.account,
            base_url=creds.base_url,
            concurrency=options.concurrency,
            retry=options.retry,
            # A send to one user must not open 32 connections: warm only what can be used.
            warm=min(WARM_CONNECTIONS, max(1, notification.total)),
        )

    return build


def run(
    sessions: sessionmaker[Session],
    notification_id: str,
    *,
    provider_factory: ProviderFactory,
    options: FanoutOptions,
    owner: str | None = None,
    on_finished: Callable[[Session, str], None] | None = None,
) -> bool:
    """Take the lease and finish the notification. False if another worker holds it.

    `on_finished(session, notification_id)` is called in the transaction that marks the
    notification completed or failed (to enqueue follow-ups after its commit)."""
    owner = owner or f"fanout/{uuid.uuid4().hex[:12]}"
    with session_scope(sessions) as session:
        pending = session.get(Notification, notification_id)
        if pending is None:
            return True
        if pending.send_at is not None and pending.send_at > utcnow():
            return True  # not due: the sweeper offers it again every minute
        if not leases.claim(session, Notification, notification_id, owner, options.lease_seconds):
            return False
        # Only an earlier run (an earlier claim: `attempts` was read before ours) can have
        # left deliveries `sending`; a first run skips the look.
        earlier_run = pending.attempts > 0
        pending.started_at = pending.started_at or utcnow()
        try:
            provider: Sendable | None = provider_factory(session, pending)
        except (ProviderConfigError, providers_config.ProviderNotConfigured) as exc:
            provider, error = None, str(exc)
        # A provider that can say what it took is asked (in `_send_all`) before anything is
        # sent; the others' in-flight rows are dealt with here.
        after_crash = _after_crash(provider)
        confirming = after_crash == "confirm"
        stale = (
            resolve_unknown(session, notification_id, owner, then=after_crash) if earlier_run else 0
        )
        stale_since = pending.started_at if confirming and stale else None
        walk = _Walk(planned_all=_plan_if_small(session, pending)) if provider else _Walk()
        first = (
            _first_batch(session, pending, walk)
            if provider and walk.planned_all and stale_since is None
            else None
        )
        local_time = pending.delivery_time_of_day is not None  # else nothing can wait
    if stale and after_crash == "settle":
        log.warning("fanout.outcome_unknown", notification_id=notification_id, count=stale)
    elif stale and after_crash == "resend":
        log.warning("fanout.resent_after_crash", notification_id=notification_id, count=stale)
    parked: list[datetime | None] = []

    def finish(session: Session) -> None:
        """In the journal's last transaction: complete the notification, or park it while
        deliveries wait for their local time."""
        resume_at = local_delivery.park(session, notification_id, owner) if local_time else None
        if resume_at is None:
            leases.release(
                session,
                Notification,
                notification_id,
                owner,
                "completed",
                also={"finished_at": utcnow()},
            )
            if on_finished is not None:
                on_finished(session, notification_id)
        parked.append(resume_at)

    try:
        if provider is None:
            _fail(sessions, notification_id, owner, options, error, on_finished)
            return True
        try:
            _thread_runner().run(
                _send_all(
                    sessions,
                    notification_id,
                    owner,
                    provider,
                    options,
                    _Start(walk, first, stale_since),
                    finish,
                ),
                # this job's log context, as a loop made for it would have copied
                context=contextvars.copy_context(),
            )
        except ProviderConfigError as exc:
            _fail(sessions, notification_id, owner, options, str(exc), on_finished)
            return True
        resume_at = parked[0]
        if resume_at is not None:  # the rest wait for their local time
            log.info("fanout.parked", notification_id=notification_id, resume_at=resume_at)
            return True
        log.info("fanout.completed", notification_id=notification_id)
        return True
    except leases.LeaseLost:
        log.warning("fanout.lease_lost", notification_id=notification_id, owner=owner)
        return False


_threads = threading.local()


def _thread_runner() -> asyncio.Runner:
    """This worker thread's event loop, kept from one send to the next: a new loop (and the
    thread pool behind its `to_thread`) per send cost more than a one-user send itself.

    uvloop: the sending loop is the fan-out's bottleneck, and its transports and callbacks
    cost a fraction of the pure-Python loop's."""
    runner: asyncio.Runner | None = getattr(_threads, "runner", None)
    if runner is None:
        runner = _threads.runner = asyncio.Runner(loop_factory=uvloop.new_event_loop)
    return runner


def _first_batch(session: Session, notification: Notification, walk: _Walk) -> _Read:
    """A small send's recipients, read in the transaction that planned them."""
    content = dict(notification.content or {})
    batch = _read_batch(session, notification.id, notification.channel, content, 0, FIRST_BATCH)
    walk.exhausted = len(batch) < FIRST_BATCH
    return content, batch


def _after_crash(provider: Sendable | None) -> AfterCrash:
    if isinstance(provider, ChannelSender):
        return provider.after_crash
    return "resend"  # push: one collapse identifier per delivery (`_messages`)


def _fail(
    sessions: sessionmaker[Session],
    notification_id: str,
    owner: str,
    options: FanoutOptions,
    error: str,
    on_finished: Callable[[Session, str], None] | None,
) -> None:
    """The provider can't be used at all: every unsent recipient fails with the reason
    (recipients not planned yet are planned first, so the report names them all)."""
    while _plan_chunk(sessions, notification_id, owner, options):
        pass
    with session_scope(sessions) as session:
        # What this run had already written stays as written (outcome unknown).
        resolve_unknown(session, notification_id, owner="", then="settle")
        session.execute(
            sa.update(Delivery)
            .where(Delivery.notification_id == notification_id, Delivery.status == "queued")
            .values(status="failed", reason=f"provider: {error}"[:300])
        )
        leases.release(session, Notification, notification_id, owner, "failed")
        notification = session.get(Notification, notification_id)
        assert notification is not None
        notification.error = error
        notification.finished_at = utcnow()
        if on_finished is not None:
            on_finished(session, notification_id)
    log.warning("fanout.failed", notification_id=notification_id, error=error)


# -- plan ----------------------------------------------------------------------------------


def _plan_chunk(
    sessions: sessionmaker[Session], notification_id: str, owner: str, options: FanoutOptions
) -> bool:
    """Resolve the next chunk of recipients; False once all are planned."""
    with session_scope(sessions) as session:
        notification = session.get(Notification, notification_id, with_for_update=True)
        assert notification is not None
        planned = _plan_next(session, notification)
        if planned:
            leases.renew(session, Notification, notification_id, owner, options.lease_seconds)
        return planned


@dataclass
class _Walk:
    """What the sending loop knows of the plan, to skip reads that can only come back empty.

    `planned_all`: every recipient has a delivery row; `exhausted`: besides, the last read
    came back short, so no queued (and due) delivery lies beyond it."""

    planned_all: bool = False
    exhausted: bool = False


@dataclass
class _Start:
    """Where the sending loop starts: the plan as far as known, the first batch if it was
    read already, and when the run began if a dead run's `sending` rows are to be confirmed
    with the provider first."""

    walk: _Walk
    first: _Read | None = None
    stale_since: datetime | None = None


def _plan_if_small(session: Session, notification: Notification) -> bool:
    """Plan a small list of recipients right away (in the transaction that took the lease):
    a send to a few users then costs no planning transaction of its own. Whether every
    recipient is planned now."""
    if notification.source == "segment":
        return notification.plan_cursor < 0
    if notification.planned == 0 and notification.total <= FIRST_CHUNK:
        _plan_next(session, notification)
    return notification.planned >= notification.total


def _plan_next(session: Session, notification: Notification) -> bool:
    """Plan the next chunk of `notification` (locked by the caller); False if none was left."""
    size = FIRST_CHUNK if notification.planned == 0 else PLAN_CHUNK
    if notification.source == "segment":
        return _plan_segment_chunk(session, notification, size)
    if notification.planned >= notification.total:
        return False
    chunk = notification.recipients[notification.planned : notification.planned + size]
    per_user: dict[str, dict[str, Any]] = {}
    if notification.source == "messages":
        for item in chunk:
            per_user.setdefault(item["user_id"], {k: item[k] for k in _CONTENT_KEYS if item.get(k)})
        wanted = list(per_user)
    else:
        wanted = list(dict.fromkeys(chunk))
    users: dict[str, int] = dict(
        session.execute(
            sa.select(User.external_id, User.id).where(
                User.workspace_id == notification.workspace_id,
                User.external_id.in_(wanted),
                User.deleted_at.is_(None),
            )
        ).all()
    )
    reachable = _reachable(session, notification, list(users.values()))
    # `planned` commits with the rows: before the first chunk there are none to look for.
    already = (
        set(
            session.scalars(
                sa.select(Delivery.user_id).where(
                    Delivery.notification_id == notification.id,
                    Delivery.user_id.in_(list(users.values())),
                )
            )
        )
        if notification.planned
        else set()
    )
    fresh = {e: u for e, u in users.items() if u not in already}  # first chunk wins
    _insert_deliveries(session, notification, fresh, reachable, per_user)
    missing = [e for e in wanted if e not in users]
    if missing:
        notification.not_found = [*notification.not_found, *missing]
    notification.planned += len(chunk)
    return True


def _reachable(session: Session, notification: Notification, user_ids: list[int]) -> set[int]:
    if notification.channel in addresses.ADDRESS_CHANNELS:  # email/SMS follow users' fields
        addresses.reconcile(session, notification.workspace_id, notification.channel, user_ids)
    return set(
        session.scalars(
            sa.select(Subscription.user_id)
            .where(
                Subscription.user_id.in_(user_ids),
                Subscription.channel == notification.channel,
                Subscription.status == "subscribed",
            )
            .distinct()
        )
    )


def _insert_deliveries(
    session: Session,
    notification: Notification,
    users: dict[str, int],
    reachable: set[int],
    per_user: dict[str, dict[str, Any]],
) -> None:
    now = utcnow()
    rows = [
        {
            "notification_id": notification.id,
            "workspace_id": notification.workspace_id,
            "user_id": user_id,
            "external_id": external_id,
            "channel": notification.channel,
            "status": "queued" if user_id in reachable else "failed",
            "reason": None if user_id in reachable else NO_SUBSCRIPTION,
            "content": per_user.get(external_id),
            "devices_sent": 0,
            "provider_message_id": None,
            "created_at": now,
            "sent_at": None,
            "delivered_at": None,
            "clicked_at": None,
        }
        for external_id, user_id in users.items()
    ]
    local_delivery.stamp(session, notification, rows)
    bulk.insert(session, table_of(Delivery), rows)


def _plan_segment_chunk(session: Session, notification: Notification, size: int) -> bool:
    """The next users of a segment, in id order after `plan_cursor`; -1 marks the end.

    The segment is evaluated as the fan-out walks it: a user who joins it before the walk
    reaches them is sent to, one who leaves it first is not."""
    if notification.plan_cursor < 0:
        return False
    audience = notification.audience or {}
    users: dict[str, int] = {}
    last = notification.plan_cursor
    for external_id, user_id in session.execute(
        sa.select(User.external_id, User.id)
        .where(audience_filter(notification.workspace_id, audience), User.id > last)
        .order_by(User.id)
        .limit(size)
    ).all():
        users[external_id] = user_id
        last = user_id
    if not users:
        notification.plan_cursor = -1
        notification.total = notification.planned  # the final count, not the estimate
        return False
    _insert_deliveries(
        session, notification, users, _reachable(session, notification, list(users.values())), {}
    )
    notification.planned += len(users)
    notification.plan_cursor = last
    return True


# -- send ----------------------------------------------------------------------------------


@dataclass
class _Recipient:
    delivery_id: int
    content: dict[str, Any]
    devices: list[tuple[int, str]]  # (subscription id, token)
    error: str | None = None  # personalisation failed: nothing is sent


_Read = tuple[dict[str, Any], list[_Recipient]]  # a batch's base content and recipients


def _claim_batch(
    readers: sessionmaker[Session], notification_id: str, after: int, limit: int
) -> _Read:
    """Read the next `limit` queued deliveries after id `after`, with their devices and
    content. Nothing is written: only this run (the lease holder) sends, and a delivery
    becomes `sending` when its request leaves (`SendJournal`)."""
    with session_scope(readers) as session:
        channel, content = session.execute(
            sa.select(Notification.channel, Notification.content).where(
                Notification.id == notification_id
            )
        ).one()
        return content, _read_batch(session, notification_id, channel, content, after, limit)


def _read_batch(
    session: Session,
    notification_id: str,
    channel: str,
    content: dict[str, Any],
    after: int,
    limit: int | None,
    *,
    stale_of: str | None = None,
) -> list[_Recipient]:
    """The next `limit` queued and due deliveries after id `after`, with their devices and
    their content, personalised; with `stale_of`, the `sending` ones of runs other than
    that one instead."""
    wanted = (
        [Delivery.status == "queued", local_delivery.due()]
        if stale_of is None
        else [Delivery.status == "sending", Delivery.send_attempt != stale_of]
    )
    rows = session.execute(
        sa.select(Delivery.id, Delivery.user_id, Delivery.external_id, Delivery.content)
        .where(Delivery.notification_id == notification_id, Delivery.id > after, *wanted)
        .order_by(Delivery.id)
        .limit(limit)
    ).all()
    if not rows:
        return []
    devices: dict[int, list[tuple[int, str]]] = {}
    for sub_id, user_id, token in session.execute(
        sa.select(Subscription.id, Subscription.user_id, Subscription.address)
        .where(
            Subscription.user_id.in_([r.user_id for r in rows]),
            Subscription.channel == channel,
            Subscription.status == "subscribed",
        )
        .order_by(Subscription.id)
    ):
        devices.setdefault(user_id, []).append((sub_id, token))
    batch = [
        _Recipient(
            r.id,
            {"external_id": r.external_id, **(r.content or {})},
            devices.get(r.user_id, []),
        )
        for r in rows
    ]
    templated = personalise.needs_rendering(content) or any(
        personalise.needs_rendering(r.content or {}) for r in rows
    )
    if templated:
        _personalise(session, content, batch, [r.user_id for r in rows])
    if content.get("ad"):
        _night_rule(session, batch, [r.user_id for r in rows])
    return batch


def _personalise(
    session: Session, base: dict[str, Any], batch: list[_Recipient], user_ids: list[int]
) -> None:
    """Render each recipient's content with its profile and tags (in place)."""
    columns = [User.id, User.external_id, *(getattr(User, f) for f in STANDARD_FIELDS)]
    profiles = {
        row.id: dict(row._mapping)
        for row in session.execute(
            sa.select(*columns, User.custom).where(User.id.in_(user_ids))
        ).all()
    }
    tags: dict[int, dict[str, str]] = {}
    for user_id, key, value in session.execute(
        sa.select(UserTag.user_id, UserTag.key, UserTag.value).where(UserTag.user_id.in_(user_ids))
    ).all():
        tags.setdefault(user_id, {})[key] = value
    for recipient, user_id in zip(batch, user_ids, strict=True):
        profile = dict(profiles.get(user_id, {}))
        profile.pop("id", None)
        values = personalise.context(profile, tags.get(user_id, {}))
        try:
            recipient.content = personalise.render({**base, **recipient.content}, values)
        except TemplateError as exc:
            recipient.error = f"template_error: {exc}"[:300]


NIGHT_CONSENT_TAG = "marketing_night"
_YES = frozenset({"yes", "y", "true", "1"})


def _night_rule(session: Session, batch: list[_Recipient], user_ids: list[int]) -> None:
    """No advertising push 21:00-08:00 in the user's time zone (else the workspace's, else
    UTC) without the user's separate night-time consent (Korean Network Act art. 50;
    messaging.md §4)."""
    zones = local_delivery.zones_for(session, user_ids)
    consenting = set(
        session.scalars(
            sa.select(UserTag.user_id).where(
                UserTag.user_id.in_(user_ids),
                UserTag.key == NIGHT_CONSENT_TAG,
                sa.func.lower(UserTag.value).in_(_YES),
            )
        )
    )
    now = utcnow()
    for recipient, user_id in zip(batch, user_ids, strict=True):
        if user_id in consenting or recipient.error is not None:
            continue
        local = now.astimezone(zones.get(user_id, local_delivery.UTC_ZONE))
        if local.hour >= 21 or local.hour < 8:
            recipient.error = (
                f"night_time_rule: {local:%H:%M} local time, no `{NIGHT_CONSENT_TAG}` consent"
            )


def _messages(
    notification_id: str, base: dict[str, Any], recipient: _Recipient
) -> list[PushMessage]:
    """One message per device of the recipient (the content is worked out once)."""
    content = {**base, **recipient.content}
    data = {str(k): str(v) for k, v in (content.get("data") or {}).items()}
    # What the app's SDK needs to report `delivered` / `clicked` back to Spoke.
    data["spoke_notification_id"] = notification_id
    data["spoke_user_id"] = str(content["external_id"])
    title, body = content.get("title"), content.get("body")
    image_url, link_url = content.get("image_url"), content.get("link_url")
    collapse_key = f"spoke-{recipient.delivery_id}"
    return [
        PushMessage(
            token=token,
            title=title,
            body=body,
            image_url=image_url,
            link_url=link_url,
            data=data,
            collapse_key=collapse_key,
        )
        for _sub, token in recipient.devices
    ]


def _outcome(
    recipient: _Recipient, answers: list[SendResult]
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The delivery's row update and the subscriptions its answers showed to be dead."""
    now = utcnow()
    sent = [a for a in answers if a.outcome == "sent"]
    gone = [
        {
            "id": sub_id,
            "status": answer.address_status or "invalid",
            "status_reason": (answer.reason or "")[:200],
            "updated_at": now,
        }
        for (sub_id, _token), answer in zip(recipient.devices, answers, strict=True)
        if answer.outcome == "token_gone"
    ]
    if sent:
        status, reason = "sent", None
    elif not answers:
        status, reason = "failed", NO_SUBSCRIPTION
    elif all(a.outcome == "token_gone" for a in answers):
        status, reason = "failed", f"{TOKEN_INVALID}: {answers[0].reason}"
    else:
        failure = next(a for a in answers if a.outcome == "failed")
        status, reason = "failed", failure.reason or "failed"
    row = {
        "id": recipient.delivery_id,
        "status": status,
        "reason": reason[:300] if reason else None,
        "devices_sent": len(sent),
        "provider_message_id": sent[0].message_id if sent else None,
        "sent_at": now if sent else None,
    }
    return row, gone


def _next_batch(
    sessions: sessionmaker[Session],
    readers: sessionmaker[Session],
    notification_id: str,
    owner: str,
    options: FanoutOptions,
    after: int,
    limit: int,
    walk: _Walk,
) -> _Read:
    """The next queued batch, planning more recipients when none is queued."""
    while not walk.exhausted:
        base, batch = _claim_batch(readers, notification_id, after, limit)
        walk.exhausted = walk.planned_all and len(batch) < limit
        if batch:
            return base, batch
        if walk.planned_all or not _plan_chunk(sessions, notification_id, owner, options):
            walk.planned_all = walk.exhausted = True
            return base, batch
    return {}, []


def _renew(
    sessions: sessionmaker[Session], notification_id: str, owner: str, options: FanoutOptions
) -> None:
    with session_scope(sessions) as session:
        leases.renew(session, Notification, notification_id, owner, options.lease_seconds)


async def _heartbeat(
    sessions: sessionmaker[Session], notification_id: str, owner: str, options: FanoutOptions
) -> None:
    """Keep the lease while batches wait on the provider (backoff can outlast a lease)."""
    while True:
        await asyncio.sleep(options.lease_seconds / 3)
        await asyncio.to_thread(_renew, sessions, notification_id, owner, options)


async def _send_batch(
    journal: SendJournal,
    notification_id: str,
    provider: Sendable,
    base: dict[str, Any],
    batch: list[_Recipient],
) -> None:
    if isinstance(provider, ChannelSender):
        # Email, SMS: the channel builds its messages; each attempt passes through its
        # delivery's gate like a push request, so the journal covers every channel.
        gates = {r.delivery_id: DeliveryGate(journal, r.delivery_id) for r in batch}
        results = await provider.send_batch(notification_id, base, batch, gates.__getitem__)
        for recipient, answers in zip(batch, results, strict=True):
            journal.outcome(recipient.delivery_id, *_outcome(recipient, answers))
        return

    async def deliver(recipient: _Recipient) -> None:
        if recipient.error is not None:
            failed = SendResult("failed", reason=recipient.error)
            answers = [failed] * len(recipient.devices)
        elif recipient.devices:
            messages = _messages(notification_id, base, recipient)
            answers = await provider.send_many(
                messages, DeliveryGate(journal, recipient.delivery_id)
            )
        else:
            answers = []  # unsubscribed since it was planned
        journal.outcome(recipient.delivery_id, *_outcome(recipient, answers))

    await asyncio.gather(*(deliver(recipient) for recipient in batch))


async def _send_all(
    sessions: sessionmaker[Session],
    notification_id: str,
    owner: str,
    provider: Sendable,
    options: FanoutOptions,
    start: _Start,
    finish: Callable[[Session], None],
) -> None:
    """Send everything, keeping the provider busy: two batches in flight while the next
    one is read (and, if needed, planned) in a thread. `finish(session)` runs in the
    journal's last transaction."""
    to_thread = asyncio.to_thread
    readers = make_session_factory(sessions.kw["bind"], read_only=True)
    walk = start.walk
    journal = SendJournal(
        sessions,
        notification_id,
        owner,
        lease_seconds=options.lease_seconds,
        interval=options.journal_interval,
    )
    heartbeat = asyncio.create_task(_heartbeat(sessions, notification_id, owner, options))

    def read_next(after: int, limit: int) -> asyncio.Future[_Read]:
        return asyncio.create_task(
            to_thread(
                _next_batch, sessions, readers, notification_id, owner, options, after, limit, walk
            )
        )

    claiming: asyncio.Future[_Read] = asyncio.get_running_loop().create_future()
    if start.first is not None:
        claiming.set_result(start.first)
    elif start.stale_since is None:  # else after the provider had its say
        claiming = read_next(0, FIRST_BATCH)
    sending: deque[asyncio.Task[None]] = deque()
    try:
        await _guarded(heartbeat, asyncio.create_task(provider.connect()))
        if start.stale_since is not None:
            assert isinstance(provider, ChannelSender)
            confirming = _confirm_stale(
                sessions, readers, notification_id, owner, options, provider, start.stale_since
            )
            await _guarded(heartbeat, asyncio.create_task(confirming))
            claiming = read_next(0, FIRST_BATCH)
        while True:
            base, batch = await claiming
            if not batch:
                break
            after = batch[-1].delivery_id
            sending.append(
                asyncio.create_task(_send_batch(journal, notification_id, provider, base, batch))
            )
            if len(sending) == 1:
                # Planning the next chunk takes the write lock (SQLite) or the notification
                # row (PostgreSQL) that the journal's commit needs: let the first marks go
                # first, so the first message isn't queued behind a plan of 1,000.
                first = asyncio.create_task(journal.first_commit.wait())
                await asyncio.wait({first, sending[0]}, return_when=asyncio.FIRST_COMPLETED)
                first.cancel()
            claiming = read_next(after, options.batch_size)
            if len(sending) == 2:
                await _guarded(heartbeat, sending.popleft())
        while sending:
            await _guarded(heartbeat, sending.popleft())
        await journal.close(finish)
    finally:
        pending: list[asyncio.Future[Any]] = [claiming, *sending]
        for task in pending:
            if not task.done():
                task.cancel()
        heartbeat.cancel()
        await provider.aclose()


async def _confirm_stale(
    sessions: sessionmaker[Session],
    readers: sessionmaker[Session],
    notification_id: str,
    owner: str,
    options: FanoutOptions,
    provider: ChannelSender,
    since: datetime,
) -> None:
    """Ask the provider which of a dead run's `sending` deliveries it took, and record it:
    those `sent`, the others `queued` (to be sent by this run), unanswered ones unknown."""

    def read() -> _Read:
        with session_scope(readers) as session:
            channel, content = session.execute(
                sa.select(Notification.channel, Notification.content).where(
                    Notification.id == notification_id
                )
            ).one()
            stale = _read_batch(session, notification_id, channel, content, 0, None, stale_of=owner)
            return content, stale

    base, stale = await asyncio.to_thread(read)
    answers = await provider.confirm(base, stale, since)
    confirmed, not_received, unknown = _sort_confirmations(stale, answers)

    def record() -> None:
        with session_scope(sessions) as session:
            leases.renew(session, Notification, notification_id, owner, options.lease_seconds)
            settle_stale(session, notification_id, confirmed, not_received, unknown)

    await asyncio.to_thread(record)
    log.warning(
        "fanout.confirmed_after_crash",
        notification_id=notification_id,
        arrived=len(confirmed),
        sent_again=len(not_received),
        unknown=len(unknown),
    )


def _sort_confirmations(
    stale: list[_Recipient], answers: Confirmations
) -> tuple[list[dict[str, Any]], list[int], list[int]]:
    """(outcome rows of what arrived, ids of what didn't, ids the provider couldn't tell)."""
    confirmed: list[dict[str, Any]] = []
    not_received: list[int] = []
    unknown: list[int] = []
    for recipient, results in zip(stale, answers, strict=True):
        if results is None:
            unknown.append(recipient.delivery_id)
        elif any(r.outcome == "sent" for r in results):
            row, _gone = _outcome(recipient, results)
            confirmed.append({**row, "reason": OUTCOME_CONFIRMED})
        else:
            not_received.append(recipient.delivery_id)
    return confirmed, not_received, unknown


async def _guarded(heartbeat: asyncio.Task[None], work: asyncio.Task[None]) -> None:
    """Wait for `work`, stopping at once if the heartbeat lost the lease."""
    done, _ = await asyncio.wait({work, heartbeat}, return_when=asyncio.FIRST_COMPLETED)
    if work not in done:
        work.cancel()
        heartbeat.result()  # raises LeaseLost (or whatever stopped the heartbeat)
        raise leases.LeaseLost("the heartbeat stopped")
    work.result()
