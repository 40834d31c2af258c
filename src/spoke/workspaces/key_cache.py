"""API keys this process has checked against the database in the last few seconds.

Every server-key request needs its key's workspace, member and role. Reading them is a
query and, for the event loop, a trip through the threadpool: on the per-user send path
that was a tenth of the CPU an accepted call costs. A key seen within `max_age` seconds is
answered from here instead. The presented secret is still checked on every request
(against the SHA-256 the database holds, in constant time); failures are never cached.

What a stale entry could let through: a key revoked, or a member demoted or removed, by
*another* process keeps working here for at most `max_age` seconds (`api.key_cache_seconds`,
5 by default; 0 turns the cache off). Changes made by this process drop every entry once
they commit (`forget_after_commit`).
"""

from __future__ import annotations

import hmac
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from sqlalchemy.orm import Session

from spoke.core.crypto import hash_secret
from spoke.core.db import after_commit

if TYPE_CHECKING:  # the service drops entries through this module
    from spoke.workspaces.service import Caller

_MAX_ENTRIES = 10_000


@dataclass(frozen=True)
class _Entry:
    secret_hash: str
    caller: Caller
    checked_at: float  # time.monotonic()


class KeyCache:
    def __init__(self) -> None:
        self._entries: dict[str, _Entry] = {}
        self._lock = threading.Lock()

    def get(self, key_id: str, secret: str, *, max_age: float) -> Caller | None:
        """The caller behind a key checked within `max_age` seconds whose secret this is;
        None sends the request to the database."""
        entry = self._entries.get(key_id)
        if entry is None or time.monotonic() - entry.checked_at > max_age:
            return None
        if not hmac.compare_digest(hash_secret(secret), entry.secret_hash):
            return None
        return entry.caller

    def remember(self, key_id: str, secret: str, caller: Caller) -> None:
        """`caller` was just authenticated with this key and secret."""
        entry = _Entry(hash_secret(secret), caller, time.monotonic())
        with self._lock:
            if len(self._entries) >= _MAX_ENTRIES:
                self._entries.clear()  # bounded; refilled by the keys in use
            self._entries[key_id] = entry

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()


API_KEYS = KeyCache()


def forget_after_commit(session: Session) -> None:
    """Drop every cached key once this transaction commits (it changed keys or members)."""
    after_commit(session, API_KEYS.clear)
