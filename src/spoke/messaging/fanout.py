"""The fan-out of one notification, resumable after a crash at any point.

Under the notification's lease, in two phases, each step one transaction that also
renews the lease:

1. Plan: the stored recipients are resolved `PLAN_CHUNK` at a time into `Delivery` rows
   (`queued`, or `failed` with `no_subscription`); `planned` is the checkpoint, committed
   with the rows, so a resumed run neither skips nor repeats a recipient. Ids matching no
   user go to `not_found`.
2. Send: a batch of queued deliveries is marked `sending` and committed, sent to every
   subscribed device of each recipient, and the results are committed (`sent`, or
   `failed` with the reason; refused tokens become `invalid`). A recipient marked `sent`
   is never sent to again (the delivery key is per notification, user and channel).
   Planning is interleaved with sending (the first send leaves after the first chunk is
   planned), and the next batch is claimed while the current one is in flight.

The one ambiguous window is what was `sending` when the worker died (at most the batch in
flight and the one claimed after it): the provider may or may not have accepted it. A
resumed run sends those again first, with the same collapse key (the delivery id), so a
device that got the first copy replaces it instead of showing two. FCM offers no way to
ask whether a message was accepted, so this is as close to exactly-once as a sender gets.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
import structlog
from jinja2 import TemplateError
from sqlalchemy.orm import Session, sessionmaker

from spoke.core import bulk, leases
from spoke.core.clock import utcnow
from spoke.core.crypto import Encryptor
from spoke.core.db import session_scope, table_of
from spoke.messaging import addresses, local_delivery, personalise, providers_config
from spoke.messaging.channel_send import ChannelSender, Sendable
from spoke.messaging.models import Delivery, Notification, Subscription
from spoke.messaging.providers.base import (
    ProviderConfigError,
    PushMessage,
    PushProvider,
    SendResult,
)
from spoke.messaging.providers.fcm import FcmProvider, RetryPolicy
from spoke.messaging.service import NO_SUBSCRIPTION, TOKEN_INVALID, audience_filter
from spoke.users.models import STANDARD_FIELDS, User, UserTag

log = structlog.get_logger("spoke.fanout")
PLAN_CHUNK = 1000
# The first chunk and batch are small so the first message leaves quickly.
FIRST_CHUNK = 100
_CONTENT_KEYS = ("title", "body", "image_url", "link_url", "data")


@dataclass(frozen=True)
class FanoutOptions:
    lease_seconds: float = 60.0
    batch_size: int = 500
    concurrency: int = 64
    retry: RetryPolicy = field(default_factory=RetryPolicy)


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
        )

    return build


def run(
    sessions: sessionmaker[Session],
    notification_id: str,
    *,
    provider_factory: ProviderFactory,
    options: FanoutOptions,
    owner: str | None = None,
    on_finished: Callable[[str], None] | None = None,
) -> bool:
    """Take the lease and finish the notification. False if another worker holds it.

    `on_finished(notification_id)` is called once the notification completed or failed."""
    owner = owner or f"fanout/{uuid.uuid4().hex[:12]}"
    with session_scope(sessions) as session:
        pending = session.get(Notification, notification_id)
        if pending is None:
            return True
        if pending.send_at is not None and pending.send_at > utcnow():
            return True  # not due: the sweeper offers it again every minute
        if not leases.claim(session, Notification, notification_id, owner, options.lease_seconds):
            return False
        notification = session.get(Notification, notification_id)
        assert notification is not None
        notification.started_at = notification.started_at or utcnow()
    try:
        with session_scope(sessions) as session:
            notification = session.get(Notification, notification_id)
            assert notification is not None
            try:
                provider: Sendable | None = provider_factory(session, notification)
            except (ProviderConfigError, providers_config.ProviderNotConfigured) as exc:
                provider, error = None, str(exc)
        if provider is None:
            _fail(sessions, notification_id, owner, options, error)
            if on_finished is not None:
                on_finished(notification_id)
            return True
        try:
            asyncio.run(_send_all(sessions, notification_id, owner, provider, options))
        except ProviderConfigError as exc:
            _fail(sessions, notification_id, owner, options, str(exc))
            if on_finished is not None:
                on_finished(notification_id)
            return True
        with session_scope(sessions) as session:
            resume_at = local_delivery.park(session, notification_id, owner)
            if resume_at is None:
                leases.release(session, Notification, notification_id, owner, "completed")
                notification = session.get(Notification, notification_id)
                assert notification is not None
                notification.finished_at = utcnow()
        if resume_at is not None:  # the rest wait for their local time
            log.info("fanout.parked", notification_id=notification_id, resume_at=resume_at)
            return True
        log.info("fanout.completed", notification_id=notification_id)
        if on_finished is not None:
            on_finished(notification_id)
        return True
    except leases.LeaseLost:
        log.warning("fanout.lease_lost", notification_id=notification_id, owner=owner)
        return False


def _fail(
    sessions: sessionmaker[Session],
    notification_id: str,
    owner: str,
    options: FanoutOptions,
    error: str,
) -> None:
    """The provider can't be used at all: every unsent recipient fails with the reason
    (recipients not planned yet are planned first, so the report names them all)."""
    while _plan_chunk(sessions, notification_id, owner, options):
        pass
    with session_scope(sessions) as session:
        session.execute(
            sa.update(Delivery)
            .where(
                Delivery.notification_id == notification_id,
                Delivery.status.in_(("queued", "sending")),
            )
            .values(status="failed", reason=f"provider: {error}"[:300])
        )
        leases.release(session, Notification, notification_id, owner, "failed")
        notification = session.get(Notification, notification_id)
        assert notification is not None
        notification.error = error
        notification.finished_at = utcnow()
    log.warning("fanout.failed", notification_id=notification_id, error=error)


# -- plan ----------------------------------------------------------------------------------


def _plan_chunk(
    sessions: sessionmaker[Session], notification_id: str, owner: str, options: FanoutOptions
) -> bool:
    """Resolve the next chunk of recipients; False once all are planned."""
    with session_scope(sessions) as session:
        notification = session.get(Notification, notification_id, with_for_update=True)
        assert notification is not None
        size = FIRST_CHUNK if notification.planned == 0 else PLAN_CHUNK
        if notification.source == "segment":
            planned = _plan_segment_chunk(session, notification, size)
            leases.renew(session, Notification, notification_id, owner, options.lease_seconds)
            return planned
        if notification.planned >= notification.total:
            return False
        chunk = notification.recipients[notification.planned : notification.planned + size]
        per_user: dict[str, dict[str, Any]] = {}
        if notification.source == "messages":
            for item in chunk:
                per_user.setdefault(
                    item["user_id"], {k: item[k] for k in _CONTENT_KEYS if item.get(k)}
                )
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
        already = set(
            session.scalars(
                sa.select(Delivery.user_id).where(
                    Delivery.notification_id == notification.id,
                    Delivery.user_id.in_(list(users.values())),
                )
            )
        )
        fresh = {e: u for e, u in users.items() if u not in already}  # first chunk wins
        _insert_deliveries(session, notification, fresh, reachable, per_user)
        missing = [e for e in wanted if e not in users]
        if missing:
            notification.not_found = [*notification.not_found, *missing]
        notification.planned += len(chunk)
        leases.renew(session, Notification, notification_id, owner, options.lease_seconds)
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


def _claim_batch(
    sessions: sessionmaker[Session],
    notification_id: str,
    owner: str,
    options: FanoutOptions,
    state: str = "queued",
    limit: int | None = None,
) -> tuple[dict[str, Any], list[_Recipient]]:
    """Mark the next batch of `state` deliveries `sending` and commit.

    `state="sending"` picks up what a dead run had in flight (they are re-sent)."""
    with session_scope(sessions) as session:
        notification = session.get(Notification, notification_id)
        assert notification is not None
        rows = session.execute(
            sa.select(Delivery.id, Delivery.user_id, Delivery.external_id, Delivery.content)
            .where(Delivery.notification_id == notification_id, Delivery.status == state)
            .where(local_delivery.due())
            .order_by(Delivery.id)
            .limit(limit or options.batch_size)
        ).all()
        if not rows:
            return notification.content, []
        devices: dict[int, list[tuple[int, str]]] = {}
        for sub_id, user_id, token in session.execute(
            sa.select(Subscription.id, Subscription.user_id, Subscription.address)
            .where(
                Subscription.user_id.in_([r.user_id for r in rows]),
                Subscription.channel == notification.channel,
                Subscription.status == "subscribed",
            )
            .order_by(Subscription.id)
        ):
            devices.setdefault(user_id, []).append((sub_id, token))
        session.execute(
            sa.update(Delivery)
            .where(Delivery.id.in_([r.id for r in rows]), Delivery.status == "queued")
            .values(status="sending")
        )
        leases.renew(session, Notification, notification_id, owner, options.lease_seconds)
        batch = [
            _Recipient(
                r.id,
                {"external_id": r.external_id, **(r.content or {})},
                devices.get(r.user_id, []),
            )
            for r in rows
        ]
        templated = personalise.needs_rendering(notification.content) or any(
            personalise.needs_rendering(r.content or {}) for r in rows
        )
        if templated:
            _personalise(session, notification.content, batch, [r.user_id for r in rows])
        if notification.content.get("ad"):
            _night_rule(session, batch, [r.user_id for r in rows])
        return notification.content, batch


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


def _message(
    notification_id: str, base: dict[str, Any], recipient: _Recipient, token: str
) -> PushMessage:
    content = {**base, **recipient.content}
    data = {str(k): str(v) for k, v in (content.get("data") or {}).items()}
    # What the app's SDK needs to report `delivered` / `clicked` back to Spoke.
    data["spoke_notification_id"] = notification_id
    data["spoke_user_id"] = str(content["external_id"])
    return PushMessage(
        token=token,
        title=content.get("title"),
        body=content.get("body"),
        image_url=content.get("image_url"),
        link_url=content.get("link_url"),
        data=data,
        collapse_key=f"spoke-{recipient.delivery_id}",
    )


def _record(
    sessions: sessionmaker[Session],
    notification_id: str,
    owner: str,
    options: FanoutOptions,
    batch: Sequence[_Recipient],
    results: Sequence[Sequence[SendResult]],
) -> None:
    now = utcnow()
    updates: list[dict[str, Any]] = []
    gone: list[dict[str, Any]] = []
    for recipient, answers in zip(batch, results, strict=True):
        sent = [a for a in answers if a.outcome == "sent"]
        for (sub_id, _token), answer in zip(recipient.devices, answers, strict=True):
            if answer.outcome == "token_gone":
                gone.append(
                    {
                        "id": sub_id,
                        "status": answer.address_status or "invalid",
                        "status_reason": (answer.reason or "")[:200],
                        "updated_at": now,
                    }
                )
        if sent:
            status, reason = "sent", None
        elif not answers:
            status, reason = "failed", NO_SUBSCRIPTION
        elif all(a.outcome == "token_gone" for a in answers):
            status, reason = "failed", f"{TOKEN_INVALID}: {answers[0].reason}"
        else:
            failure = next(a for a in answers if a.outcome == "failed")
            status, reason = "failed", failure.reason or "failed"
        updates.append(
            {
                "id": recipient.delivery_id,
                "status": status,
                "reason": reason[:300] if reason else None,
                "devices_sent": len(sent),
                "provider_message_id": sent[0].message_id if sent else None,
                "sent_at": now if sent else None,
            }
        )
    with session_scope(sessions) as session:
        # Renew first: if the lease is gone, nothing of this batch is written by us.
        leases.renew(session, Notification, notification_id, owner, options.lease_seconds)
        bulk.update(session, table_of(Delivery), ["id"], updates)
        bulk.update(session, table_of(Subscription), ["id"], gone)


def _next_batch(
    sessions: sessionmaker[Session],
    notification_id: str,
    owner: str,
    options: FanoutOptions,
    limit: int | None = None,
) -> tuple[dict[str, Any], list[_Recipient]]:
    """The next queued batch, planning more recipients when none is queued."""
    while True:
        base, batch = _claim_batch(sessions, notification_id, owner, options, "queued", limit)
        if batch or not _plan_chunk(sessions, notification_id, owner, options):
            return base, batch


def _renew(
    sessions: sessionmaker[Session], notification_id: str, owner: str, options: FanoutOptions
) -> None:
    with session_scope(sessions) as session:
        leases.renew(session, Notification, notification_id, owner, options.lease_seconds)


async def _heartbeat(
    sessions: sessionmaker[Session], notification_id: str, owner: str, options: FanoutOptions
) -> None:
    """Keep the lease while a batch waits on the provider (backoff can outlast a lease)."""
    while True:
        await asyncio.sleep(options.lease_seconds / 3)
        await asyncio.to_thread(_renew, sessions, notification_id, owner, options)


async def _send_batch(
    notification_id: str, provider: Sendable, base: dict[str, Any], batch: list[_Recipient]
) -> list[list[SendResult]]:
    if isinstance(provider, ChannelSender):  # email, SMS: the channel builds its messages
        return await provider.send_batch(notification_id, base, batch)
    messages = [
        _message(notification_id, base, recipient, token)
        for recipient in batch
        if recipient.error is None
        for _sub, token in recipient.devices
    ]
    flat = await provider.send_many(messages) if messages else []
    results: list[list[SendResult]] = []
    position = 0
    for recipient in batch:
        if recipient.error is not None:
            failed = SendResult("failed", reason=recipient.error)
            results.append([failed] * len(recipient.devices))
            continue
        results.append(flat[position : position + len(recipient.devices)])
        position += len(recipient.devices)
    return results


async def _send_all(
    sessions: sessionmaker[Session],
    notification_id: str,
    owner: str,
    provider: Sendable,
    options: FanoutOptions,
) -> None:
    """Send everything, keeping the provider busy: while one batch is in flight the next is
    claimed (and, if needed, planned) and the previous one recorded, each in a thread."""
    to_thread = asyncio.to_thread
    heartbeat = asyncio.create_task(_heartbeat(sessions, notification_id, owner, options))
    try:
        # First what a dead run left in flight, one batch at a time.
        while True:
            base, batch = await to_thread(
                _claim_batch, sessions, notification_id, owner, options, "sending"
            )
            if not batch:
                break
            results = await _sending(heartbeat, notification_id, provider, base, batch)
            await to_thread(_record, sessions, notification_id, owner, options, batch, results)
        recording: asyncio.Task[None] | None = None
        claiming = asyncio.create_task(
            to_thread(_next_batch, sessions, notification_id, owner, options, FIRST_CHUNK)
        )
        try:
            while True:
                base, batch = await claiming
                if not batch:
                    break
                claiming = asyncio.create_task(
                    to_thread(_next_batch, sessions, notification_id, owner, options)
                )
                results = await _sending(heartbeat, notification_id, provider, base, batch)
                if recording is not None:
                    await recording
                recording = asyncio.create_task(
                    to_thread(_record, sessions, notification_id, owner, options, batch, results)
                )
            if recording is not None:
                await recording
        finally:
            for task in (claiming, recording):
                if task is not None and not task.done():
                    task.cancel()
    finally:
        heartbeat.cancel()
        await provider.aclose()


async def _sending(
    heartbeat: asyncio.Task[None],
    notification_id: str,
    provider: Sendable,
    base: dict[str, Any],
    batch: list[_Recipient],
) -> list[list[SendResult]]:
    """Send one batch, stopping at once if the heartbeat lost the lease."""
    sending = asyncio.create_task(_send_batch(notification_id, provider, base, batch))
    done, _ = await asyncio.wait({sending, heartbeat}, return_when=asyncio.FIRST_COMPLETED)
    if sending not in done:
        sending.cancel()
        heartbeat.result()  # raises LeaseLost (or whatever stopped the heartbeat)
        raise leases.LeaseLost("the heartbeat stopped")
    return sending.result()
