"""Email and SMS through the fan-out's claim → send → record cycle.

The fan-out (`fanout`) plans deliveries, claims a batch, personalises it and records the
outcome; what differs per channel is only the send step. A `ChannelSender` does that step
for a whole claimed batch — `send_batch(notification_id, base, batch)` answers one list of
`SendResult`s per recipient, one per address, exactly like the push path — so whatever
the fan-out does around a send (leases, the send journal's mark → send → record, crash
settlement) covers email and SMS the same way it covers push: `gate_for(delivery_id)` is
the delivery's `SendGate`, through which every attempt of its messages passes.

After a crash, `confirm` asks the provider which of a dead run's `sending` deliveries it
took, where the provider can answer: Twilio lists the messages it took (so an SMS is sent
again only if it never arrived); an SMTP server can't be asked (`None`: outcome unknown).

Per-address outcomes: `sent`; `token_gone` with `address_status` (`bounced` for an SMTP 5xx
to the recipient, `invalid` for a number Twilio calls invalid, `unsubscribed` for one that
texted STOP) — the fan-out moves the subscription to that status; `failed` with a reason.
"""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any, Protocol

from sqlalchemy.orm import Session

from spoke.config import Settings
from spoke.core.crypto import Encryptor
from spoke.messaging import channel_providers, sms_status, tracking
from spoke.messaging.email_compose import Sender, compose
from spoke.messaging.models import Notification
from spoke.messaging.providers.base import (
    ProviderConfigError,
    PushProvider,
    SendGate,
    SendResult,
)
from spoke.messaging.providers.fcm import RetryPolicy
from spoke.messaging.providers.sms import LookupFailed, SmsMessage, TwilioProvider
from spoke.messaging.providers.smtp import OutgoingEmail, SmtpProvider
from spoke.messaging.send_journal import AfterCrash


class Recipient(Protocol):
    """What the fan-out hands over per claimed delivery (its `_Recipient`)."""

    @property
    def delivery_id(self) -> int: ...

    @property
    def content(self) -> dict[str, Any]: ...  # personalised; carries `external_id`

    @property
    def devices(self) -> list[tuple[int, str]]: ...  # (subscription id, address)

    @property
    def error(self) -> str | None: ...  # set: nothing may be sent (template, night rule)


GateFor = Callable[[int], SendGate]
# Per recipient: one result per address (`sent` with the provider's id, or `failed` with
# `NOT_RECEIVED`), or None when the provider can't tell.
Confirmations = list[list[SendResult] | None]
NOT_RECEIVED = "not_received_by_provider"


class ChannelSender(ABC):
    """Sends a claimed batch on one channel; never raises for one message's failure."""

    # What a resumed run does with a dead run's `sending` deliveries (`confirm` asks the
    # provider; see `send_journal.AfterCrash`).
    after_crash: AfterCrash = "settle"

    async def connect(self) -> None:
        """Nothing to prepare: credentials are checked before the first message."""
        return

    @abstractmethod
    async def send_batch(
        self,
        notification_id: str,
        base: Mapping[str, Any],
        batch: Sequence[Recipient],
        gate_for: GateFor | None = None,
    ) -> list[list[SendResult]]:
        """One list per recipient, one result per address of `recipient.devices`.

        Every attempt of a recipient's messages passes through `gate_for(delivery_id)`.

        Raises:
            ProviderConfigError: the provider can't be used at all (e.g. refused credentials).
            Whatever a gate's `write` raises (the caller's reason to stop sending).
        """

    async def confirm(
        self, base: Mapping[str, Any], batch: Sequence[Recipient], since: datetime
    ) -> Confirmations:
        """Which of `batch` (a dead run's `sending` deliveries, run started at `since`)
        the provider took. The default: it can't be asked."""
        return [None] * len(batch)

    @abstractmethod
    async def aclose(self) -> None: ...


Sendable = PushProvider | ChannelSender
ProviderFactory = Callable[[Session, Notification], Sendable]


def _slots(batch: Sequence[Recipient]) -> list[list[SendResult | None]]:
    """A result slot per address; recipients that may not be sent to are filled already."""
    return [
        [SendResult("failed", reason=r.error)] * len(r.devices)
        if r.error is not None
        else [None] * len(r.devices)
        for r in batch
    ]


def _filled(slots: list[list[SendResult | None]]) -> list[list[SendResult]]:
    return [[s or SendResult("failed", reason="not sent") for s in row] for row in slots]


class EmailSender(ChannelSender):
    def __init__(self, provider: SmtpProvider, sender: Sender) -> None:
        self._provider = provider
        self._sender = sender

    async def send_batch(
        self,
        notification_id: str,
        base: Mapping[str, Any],
        batch: Sequence[Recipient],
        gate_for: GateFor | None = None,
    ) -> list[list[SendResult]]:
        slots = _slots(batch)
        messages: list[OutgoingEmail] = []
        places: list[tuple[int, int]] = []
        gates: list[SendGate | None] = []
        for i, recipient in enumerate(batch):
            if recipient.error is not None:
                continue
            content = {**base, **recipient.content}
            for k, (_sub, address) in enumerate(recipient.devices):
                try:
                    messages.append(
                        compose(
                            self._sender,
                            notification_id=notification_id,
                            delivery_id=recipient.delivery_id,
                            to=address,
                            content=content,
                        )
                    )
                    places.append((i, k))
                    gates.append(gate_for(recipient.delivery_id) if gate_for else None)
                except (ValueError, TypeError) as exc:
                    slots[i][k] = SendResult("failed", reason=f"message: {exc}"[:300])
        results = await self._provider.send_many(messages, gates) if messages else []
        for (i, k), result in zip(places, results, strict=True):
            slots[i][k] = result
        return _filled(slots)

    async def aclose(self) -> None:
        await self._provider.aclose()


class SmsSender(ChannelSender):
    after_crash: AfterCrash = "confirm"

    def __init__(self, provider: TwilioProvider, status_callback: str | None = None) -> None:
        self._provider = provider
        # Twilio reports each message's delivery there (`sms_status`).
        self._status_callback = status_callback

    async def send_batch(
        self,
        notification_id: str,
        base: Mapping[str, Any],
        batch: Sequence[Recipient],
        gate_for: GateFor | None = None,
    ) -> list[list[SendResult]]:
        slots = _slots(batch)
        messages: list[SmsMessage] = []
        places: list[tuple[int, int]] = []
        gates: list[SendGate | None] = []
        for i, recipient in enumerate(batch):
            if recipient.error is not None:
                continue
            body = str({**base, **recipient.content}.get("body") or "")
            for k, (_sub, number) in enumerate(recipient.devices):
                if not body:
                    slots[i][k] = SendResult("failed", reason="empty_body: the text rendered empty")
                    continue
                messages.append(SmsMessage(number, body, self._status_callback))
                places.append((i, k))
                gates.append(gate_for(recipient.delivery_id) if gate_for else None)
        results = await self._provider.send_many(messages, gates) if messages else []
        for (i, k), result in zip(places, results, strict=True):
            slots[i][k] = result
        return _filled(slots)

    async def confirm(
        self, base: Mapping[str, Any], batch: Sequence[Recipient], since: datetime
    ) -> Confirmations:
        """Asks Twilio per number; recipients that share a number are matched one message
        each, in order, so two deliveries are never confirmed by the same message."""
        missing = SendResult("failed", reason=NOT_RECEIVED)
        confirmations: Confirmations = [[missing] * len(r.devices) for r in batch]
        by_number: dict[str, list[tuple[int, int, str]]] = {}
        for i, recipient in enumerate(batch):
            body = str({**base, **recipient.content}.get("body") or "")
            if recipient.error is not None or not body:
                confirmations[i] = None  # its text no longer renders as it did: can't tell
                continue
            for k, (_sub, number) in enumerate(recipient.devices):
                by_number.setdefault(number, []).append((i, k, body))

        async def look_up(number: str, wanted: list[tuple[int, int, str]]) -> None:
            taken: set[str] = set()
            for i, k, body in wanted:
                results = confirmations[i]
                if results is None:
                    continue
                try:
                    sid = await self._provider.find_sent(SmsMessage(number, body), since, taken)
                except LookupFailed:
                    confirmations[i] = None
                    continue
                if sid is not None:
                    taken.add(sid)
                    results[k] = SendResult("sent", sid)

        await asyncio.gather(*(look_up(n, wanted) for n, wanted in by_number.items()))
        return confirmations

    async def aclose(self) -> None:
        await self._provider.aclose()


def factory(
    push: ProviderFactory,
    encryptor: Encryptor,
    settings: Settings,
    retry: RetryPolicy,
) -> ProviderFactory:
    """The sender of a notification's channel: `push` for push, SMTP or Twilio otherwise.

    Raises (from the returned function):
        ProviderNotConfigured: the workspace has no provider for the channel.
        ProviderConfigError: the stored settings are unusable.
    """

    def build(session: Session, notification: Notification) -> Sendable:
        if notification.channel == "push":
            return push(session, notification)
        config = channel_providers.get(session, notification.workspace_id, notification.channel)
        try:
            if notification.channel == "email":
                email = channel_providers.email_provider(encryptor, config)
                sender = Sender(
                    email.from_address,
                    email.from_name,
                    email.reply_to,
                    tracking.links_base_url(settings, email.links_base_url),
                    tracking.signer_for(settings),
                )
                return EmailSender(SmtpProvider(email.server, retry=retry), sender)
            if notification.channel == "sms":
                account, concurrency = channel_providers.sms_account(encryptor, config)
                callback = sms_status.callback_url(
                    settings,
                    config.settings.get("status_callback_base_url"),
                    notification.workspace_id,
                )
                return SmsSender(
                    TwilioProvider(account, concurrency=concurrency, retry=retry), callback
                )
        except (ValueError, KeyError) as exc:
            raise ProviderConfigError(
                f"stored {notification.channel} settings are unusable: {exc}"
            ) from exc
        raise ProviderConfigError(f"no sender for channel {notification.channel!r}")

    return build
