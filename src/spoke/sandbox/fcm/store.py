"""The emulator's state: service accounts, access tokens, device tokens, faults, messages."""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass, field
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

TOKEN_STATES = ("valid", "unregistered", "invalid")


@dataclass
class Account:
    client_email: str
    project_id: str
    key_id: str
    public_key: rsa.RSAPublicKey


@dataclass
class Fault:
    """Answer the next `count` sends (to `token`, or to any token) with `status`."""

    status: int
    count: int = 1
    retry_after: float | None = None
    token: str | None = None
    error_code: str | None = None  # the FcmError `errorCode`; a sensible one per status if unset


@dataclass
class Report:
    """Act like the app: after a message arrives, tell Spoke it was delivered (and, for a
    `clicked` share of devices, opened) through its client API."""

    spoke_url: str
    client_key: str
    identity_secret: str | None = None
    delivered: float = 1.0
    clicked: float = 0.0


@dataclass
class FcmStore:
    latency_ms: float = 0.0
    default_token_state: str = "valid"  # noqa: S105 (a state name)
    token_lifetime: int = 3600
    accounts: dict[str, Account] = field(default_factory=dict)
    access_tokens: dict[str, tuple[str, float]] = field(default_factory=dict)
    token_states: dict[str, str] = field(default_factory=dict)
    faults: list[Fault] = field(default_factory=list)
    messages: list[dict[str, Any]] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)
    report: Report | None = None
    first_received_at: float | None = None
    last_received_at: float | None = None
    _sequence: int = 0

    def count(self, what: str) -> None:
        self.counts[what] = self.counts.get(what, 0) + 1

    def create_account(self, project_id: str, token_uri: str) -> dict[str, str]:
        """A new service account of `project_id`; returns its key file (private key included)."""
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        key_id = secrets.token_hex(20)
        email = f"fcm-{secrets.token_hex(4)}@{project_id}.iam.gserviceaccount.com"
        self.accounts[email] = Account(email, project_id, key_id, key.public_key())
        pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ).decode()
        return {
            "type": "service_account",
            "project_id": project_id,
            "private_key_id": key_id,
            "private_key": pem,
            "client_email": email,
            "client_id": str(secrets.randbelow(10**20)),
            "auth_uri": "https://accounts.google.com/o/oauth2/auth",
            "token_uri": token_uri,
        }

    def issue_token(self, client_email: str) -> str:
        token = f"ya29.emu-{secrets.token_urlsafe(24)}"
        self.access_tokens[token] = (client_email, time.monotonic() + self.token_lifetime)
        return token

    def account_for(self, access_token: str) -> Account | None:
        entry = self.access_tokens.get(access_token)
        if entry is None or entry[1] < time.monotonic():
            return None
        return self.accounts.get(entry[0])

    def state_of(self, token: str) -> str:
        return self.token_states.get(token, self.default_token_state)

    def take_fault(self, token: str) -> Fault | None:
        for fault in self.faults:
            if fault.token is None or fault.token == token:
                fault.count -= 1
                if fault.count <= 0:
                    self.faults.remove(fault)
                return fault
        return None

    def record(self, project_id: str, message: dict[str, Any]) -> str:
        self._sequence += 1
        name = f"projects/{project_id}/messages/0:{self._sequence}"
        now = time.time()
        self.first_received_at = self.first_received_at or now
        self.last_received_at = now
        self.messages.append(
            {"name": name, "project_id": project_id, "received_at": now, **message}
        )
        return name

    def shown(self, token: str) -> list[dict[str, Any]]:
        """What the device of `token` shows: one entry per notification message, where a
        later one with the same tag (Android, web) or collapse id (iOS) replaces the
        earlier. Data-only messages are the app's to show and are left out."""
        tray: dict[str, dict[str, Any]] = {}
        for message in self.messages:
            if message.get("token") != token or "notification" not in message:
                continue
            key = display_tag(message) or message["name"]
            tray.pop(key, None)  # a replaced notification moves to the newest place
            tray[key] = message
        return list(tray.values())

    def reset(self) -> None:
        self.token_states.clear()
        self.faults.clear()
        self.messages.clear()
        self.counts.clear()
        self.first_received_at = self.last_received_at = None
        self.latency_ms = 0.0
        self.report = None
        self.default_token_state = "valid"  # noqa: S105 (a state name)


def display_tag(message: dict[str, Any]) -> str | None:
    """The identifier a device collapses notifications on, if the message has one."""
    for platform, path in (
        ("android", ("notification", "tag")),
        ("webpush", ("notification", "tag")),
        ("apns", ("headers", "apns-collapse-id")),
    ):
        node: Any = message.get(platform)
        for key in path:
            node = node.get(key) if isinstance(node, dict) else None
        if isinstance(node, str) and node:
            return node
    return None
