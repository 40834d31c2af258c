"""The SMS emulator's state: accounts, per-number behaviour, faults, what was sent."""

from __future__ import annotations

import random
import secrets
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

NUMBER_STATES = (
    "valid",
    "invalid",
    "stopped",
    "landline",
    "unreachable",
    "undeliverable",
    "carrier_failed",
)
# Twilio's error code and message for each number state that refuses a message.
STATE_ERRORS = {
    "invalid": (21211, "The 'To' number {to} is not a valid phone number."),
    "stopped": (21610, "Attempt to send to unsubscribed recipient"),
    "landline": (21614, "'To' number is not a valid mobile number"),
    "unreachable": (21612, "The 'To' phone number is not currently reachable via SMS."),
}
# Number states that take a message but never deliver it: the final status the status
# callback reports, with Twilio's error code (30003 unreachable handset, 30008 unknown error).
DELIVERY_FAILURES = {
    "undeliverable": ("undelivered", 30003),
    "carrier_failed": ("failed", 30008),
}
STATUS_ERRORS = {
    400: (21601, "Invalid request"),
    401: (20003, "Authenticate"),
    404: (20404, "The requested resource was not found"),
    429: (20429, "Too Many Requests"),
    500: (20500, "Internal Server Error"),
    503: (20503, "Service Unavailable"),
}


@dataclass
class Fault:
    """Answer the next `count` sends (to `to`, or to any number) with `status`; one queued
    for a number also answers a look-up of that number's messages."""

    status: int
    count: int = 1
    retry_after: float | None = None
    to: str | None = None
    code: int | None = None  # Twilio error code; a fitting one per status when unset


@dataclass
class SmsStore:
    latency_ms: float = 0.0
    default_state: str = "valid"
    accounts: dict[str, str] = field(default_factory=dict)  # sid -> auth token
    number_states: dict[str, str] = field(default_factory=dict)
    faults: list[Fault] = field(default_factory=list)
    # Random failures: status -> share of sends (e.g. {429: 0.1}), drawn from a seeded RNG.
    fault_rates: dict[int, float] = field(default_factory=dict)
    rate_retry_after: float | None = None
    rng: random.Random = field(default_factory=lambda: random.Random(0))
    max_messages: int = 50_000
    messages: deque[dict[str, Any]] = field(default_factory=deque)
    counts: dict[str, int] = field(default_factory=dict)
    # Status callbacks (Twilio's StatusCallback): off unless switched on, like FCM's reports.
    report_status: bool = False
    callback_delay_ms: float = 50.0
    callbacks: list[dict[str, Any]] = field(default_factory=list)  # what was posted, answers

    def count(self, what: str) -> None:
        self.counts[what] = self.counts.get(what, 0) + 1

    def create_account(self, sid: str | None = None, token: str | None = None) -> dict[str, str]:
        sid = sid or "AC" + secrets.token_hex(16)
        token = token or secrets.token_hex(16)
        self.accounts[sid] = token
        return {"account_sid": sid, "auth_token": token}

    def state_of(self, number: str) -> str:
        return self.number_states.get(number, self.default_state)

    def take_fault(self, to: str, *, lookup: bool = False) -> Fault | None:
        """The fault to answer a send to `to` with, if any; a `lookup` (the message list
        filtered by `to`) takes only faults queued for that very number."""
        for fault in self.faults:
            if fault.to == to or (fault.to is None and not lookup):
                fault.count -= 1
                if fault.count <= 0:
                    self.faults.remove(fault)
                return fault
        if lookup:
            return None
        for status, share in sorted(self.fault_rates.items()):
            if self.rng.random() < share:
                return Fault(status, retry_after=self.rate_retry_after)
        return None

    def record(self, message: dict[str, Any]) -> dict[str, Any]:
        stored = {**message, "received_at": time.time()}
        self.messages.append(stored)
        while len(self.messages) > self.max_messages:
            self.messages.popleft()
        self.count("accepted")
        return stored

    def find(self, sid: str) -> dict[str, Any] | None:
        return next((m for m in self.messages if m["sid"] == sid), None)

    def reset(self) -> None:
        self.latency_ms = 0.0
        self.default_state = "valid"
        self.number_states.clear()
        self.faults.clear()
        self.fault_rates.clear()
        self.rate_retry_after = None
        self.rng = random.Random(0)
        self.messages.clear()
        self.counts.clear()
        self.report_status = False
        self.callback_delay_ms = 50.0
        self.callbacks.clear()
