"""The SMTP sink's state: what it accepted, per-recipient behaviour, injected faults."""

from __future__ import annotations

import itertools
import time
from collections import deque
from dataclasses import dataclass, field
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from typing import Any

RECIPIENT_STATES = ("accept", "reject", "defer")
STAGES = ("mail", "rcpt", "data")
REPLIES = {
    "reject": "550 5.1.1 Recipient address rejected: User unknown in local recipient table",
    "defer": "450 4.2.1 Mailbox temporarily unavailable, try again later",
}


@dataclass
class Fault:
    """Answer the next `count` commands of `stage` (for `recipient`, or any) with `code`."""

    code: int
    count: int = 1
    stage: str = "rcpt"
    recipient: str | None = None
    message: str | None = None

    def reply(self) -> str:
        if self.message:
            return f"{self.code} {self.message}"
        if self.code >= 500:
            return f"{self.code} 5.0.0 Injected permanent failure"
        return f"{self.code} 4.0.0 Injected temporary failure"


@dataclass
class Received:
    id: int
    mail_from: str
    rcpt_tos: list[str]
    data: bytes
    received_at: float
    tls: bool
    auth_user: str | None
    peer: str


@dataclass
class SmtpStore:
    latency_ms: float = 0.0
    default_state: str = "accept"
    recipient_states: dict[str, str] = field(default_factory=dict)
    faults: list[Fault] = field(default_factory=list)
    # Set: AUTH is required with exactly these credentials (after STARTTLS).
    username: str | None = None
    password: str | None = None
    require_tls: bool = False
    max_messages: int = 50_000
    messages: deque[Received] = field(default_factory=deque)
    counts: dict[str, int] = field(default_factory=dict)
    certificate_pem: str = ""
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    def count(self, what: str, by: int = 1) -> None:
        self.counts[what] = self.counts.get(what, 0) + by

    def state_of(self, address: str) -> str:
        return self.recipient_states.get(address.lower(), self.default_state)

    def take_fault(self, stage: str, recipient: str | None) -> Fault | None:
        for fault in self.faults:
            if fault.stage != stage:
                continue
            if fault.recipient is not None and fault.recipient != (recipient or "").lower():
                continue
            fault.count -= 1
            if fault.count <= 0:
                self.faults.remove(fault)
            return fault
        return None

    def record(
        self,
        mail_from: str,
        rcpt_tos: list[str],
        data: bytes,
        *,
        tls: bool,
        auth: str | None,
        peer: str,
    ) -> Received:
        received = Received(
            next(self._ids), mail_from, list(rcpt_tos), data, time.time(), tls, auth, peer
        )
        self.messages.append(received)
        while len(self.messages) > self.max_messages:
            self.messages.popleft()
        self.count("accepted")
        self.count("recipients", len(rcpt_tos))
        return received

    def find(self, recipient: str | None) -> list[Received]:
        wanted = recipient.lower() if recipient else None
        return [
            m for m in self.messages if wanted is None or wanted in (r.lower() for r in m.rcpt_tos)
        ]

    def reset(self) -> None:
        self.latency_ms = 0.0
        self.default_state = "accept"
        self.recipient_states.clear()
        self.faults.clear()
        self.messages.clear()
        self.counts.clear()
        self.username = self.password = None
        self.require_tls = False


def _part(message: EmailMessage, subtype: str) -> str | None:
    body = message.get_body(preferencelist=(subtype,))
    if body is None or body.get_content_type() != f"text/{subtype}":
        return None
    content = body.get_content()
    return content.replace("\r\n", "\n") if isinstance(content, str) else None


def parsed(received: Received, *, raw: bool = False) -> dict[str, Any]:
    """A received message as the read API shows it: envelope, headers, subject, bodies."""
    message = BytesParser(policy=policy.default).parsebytes(received.data)
    assert isinstance(message, EmailMessage)
    out: dict[str, Any] = {
        "id": received.id,
        "mail_from": received.mail_from,
        "rcpt_tos": received.rcpt_tos,
        "received_at": received.received_at,
        "tls": received.tls,
        "auth_user": received.auth_user,
        "subject": str(message.get("Subject", "")),
        "from": str(message.get("From", "")),
        "to": str(message.get("To", "")),
        "message_id": str(message.get("Message-ID", "")),
        "headers": [[name, str(value)] for name, value in message.items()],
        "text": _part(message, "plain"),
        "html": _part(message, "html"),
    }
    if raw:
        out["raw"] = received.data.decode("ascii", "replace")
    return out
