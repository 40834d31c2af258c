"""What every push adapter offers, and what it answers per message."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol

Outcome = Literal["sent", "token_gone", "failed"]


@dataclass(frozen=True)
class PushMessage:
    token: str
    title: str | None = None
    body: str | None = None
    image_url: str | None = None
    link_url: str | None = None
    data: dict[str, str] = field(default_factory=dict)
    # Devices show one notification per collapse key (one per delivery).
    collapse_key: str | None = None


@dataclass(frozen=True)
class SendResult:
    outcome: Outcome
    message_id: str | None = None
    reason: str | None = None
    attempts: int = 1
    # With `token_gone`: what the address becomes (`invalid` when unset). Email and SMS
    # say more: `bounced` (SMTP 5xx), `unsubscribed` (the number texted STOP), `invalid`.
    address_status: str | None = None


class SendGate(Protocol):
    """Lets the caller record that a message is going out before its request leaves.

    An adapter calls `write` once per attempt with a callable that puts the request on the
    wire; the gate calls it as soon as the attempt is recorded, without yielding in
    between, so whatever the caller recorded as "sending" was (up to that instant) sent.
    """

    async def write(self, send: Callable[[], None]) -> None: ...

    def refused(self) -> None:
        """The provider answered the last attempt and did not accept it (a retry follows)."""


class ProviderConfigError(Exception):
    """The workspace's credentials or provider settings are unusable."""


class PushProvider(Protocol):
    async def connect(self) -> None:
        """Get ready to send (an access token), so the first message doesn't wait.

        Raises:
            ProviderConfigError: the credentials can't get an access token at all.
        """
        ...

    async def send_many(
        self, messages: Sequence[PushMessage], gate: SendGate | None = None
    ) -> list[SendResult]:
        """Send every message, concurrently; never raises for a per-message failure.

        Every attempt passes through `gate` when one is given (see `SendGate`).

        Returns:
            One result per message, in input order: `sent` (with the provider's message id),
            `token_gone` (the token is dead: stop sending to it), or `failed` with a reason.
            Temporary failures are retried inside, with backoff, before they count as failed.

        Raises:
            ProviderConfigError: the credentials can't get an access token at all.
            Whatever `gate.write` raises (the caller's reason to stop sending).
        """
        ...

    async def aclose(self) -> None: ...
