"""Signed links in emails: the per-recipient unsubscribe link and click tracking.

A token is `base64url(JSON payload) "." base64url(HMAC-SHA256(key, payload)[:16])`; the key
is derived from the instance's secret key (the newest signs, every configured one verifies,
so rotating `SPOKE_SECRET_KEY` keeps old emails' links working). The payload names its
kind, so a click token can't be replayed as an unsubscribe token:

- `["u", delivery_id, address]` — unsubscribe `address` (`/u/{token}`);
- `["c", delivery_id, url]` — record a click on the delivery, then redirect to `url`
  (`/c/{token}`). Only `http`/`https` URLs are ever signed or followed, and nobody without
  the key can sign one, so the redirect is never an open redirect.

Nothing here commits.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import html
import re
from collections.abc import Callable, Sequence
from typing import Any
from urllib.parse import urlsplit

import orjson
import sqlalchemy as sa
from sqlalchemy.orm import Session

from spoke.config import Settings
from spoke.core.clock import utcnow
from spoke.core.errors import NotFound
from spoke.messaging import addresses
from spoke.messaging.models import Delivery

UNSUBSCRIBE_PLACEHOLDER = "[unsubscribe_url]"
_MAC_BYTES = 16
_CONTROL = re.compile(r"[\x00-\x20\x7f]")
# `<a ... href="...">` / `href='...'`: the attribute value is group 3.
_HREF = re.compile(r"""(<a\b[^>]*?\bhref\s*=\s*)(["'])(.*?)\2""", re.IGNORECASE | re.DOTALL)


class LinkNotFound(NotFound):
    code = "link_not_found"
    title = "Unknown or expired link"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class LinkSigner:
    def __init__(self, secret_keys: Sequence[str]) -> None:
        if not secret_keys:
            raise ValueError("at least one secret key is needed")
        self._keys = [hashlib.sha256(b"spoke-links\x00" + k.encode()).digest() for k in secret_keys]

    def _mac(self, key: bytes, body: str) -> bytes:
        return hmac.new(key, body.encode(), hashlib.sha256).digest()[:_MAC_BYTES]

    def sign(self, payload: list[Any]) -> str:
        body = _b64(orjson.dumps(payload))
        return f"{body}.{_b64(self._mac(self._keys[0], body))}"

    def verify(self, token: str) -> list[Any] | None:
        body, _, mac = token.partition(".")
        try:
            given = _unb64(mac)
        except (binascii.Error, ValueError):
            return None
        if not any(hmac.compare_digest(given, self._mac(key, body)) for key in self._keys):
            return None
        try:
            payload = orjson.loads(_unb64(body))
        except (binascii.Error, ValueError, orjson.JSONDecodeError):
            return None
        return payload if isinstance(payload, list) and payload else None


_signers: dict[int, tuple[Settings, LinkSigner]] = {}


def signer_for(settings: Settings) -> LinkSigner:
    """One signer per settings object (reading the keys may touch the key file)."""
    cached = _signers.get(id(settings))
    if cached is None or cached[0] is not settings:
        cached = (settings, LinkSigner(settings.secret_keys()))
        _signers[id(settings)] = cached
    return cached[1]


def links_base_url(settings: Settings, configured: str | None) -> str:
    base = configured or settings.http.public_url
    return (base or f"http://{settings.http.host}:{settings.http.port}").rstrip("/")


def is_trackable(url: str) -> bool:
    """Only plain http(s) links to a host, nothing that hides whitespace or controls."""
    if _CONTROL.search(url):
        return False
    try:
        parts = urlsplit(url)
    except ValueError:
        return False
    return parts.scheme in ("http", "https") and bool(parts.hostname)


def unsubscribe_url(signer: LinkSigner, base: str, delivery_id: int, address: str) -> str:
    return f"{base}/u/{signer.sign(['u', delivery_id, address])}"


def click_url(signer: LinkSigner, base: str, delivery_id: int, url: str) -> str:
    return f"{base}/c/{signer.sign(['c', delivery_id, url])}"


def rewrite_links(markup: str, replace: Callable[[str], str | None]) -> str:
    """Every `<a href>` whose target `replace` maps to a new URL gets that URL instead."""

    def swap(match: re.Match[str]) -> str:
        target = html.unescape(match.group(3)).strip()
        new = replace(target)
        if new is None:
            return match.group(0)
        quote = match.group(2)
        return f"{match.group(1)}{quote}{html.escape(new, quote=True)}{quote}"

    return _HREF.sub(swap, markup)


def read_click(signer: LinkSigner, token: str) -> tuple[int, str]:
    payload = signer.verify(token)
    if (
        payload is None
        or len(payload) != 3
        or payload[0] != "c"
        or not isinstance(payload[1], int)
        or not isinstance(payload[2], str)
        or not is_trackable(payload[2])
    ):
        raise LinkNotFound("This link is not one Spoke issued.")
    return payload[1], payload[2]


def read_unsubscribe(signer: LinkSigner, token: str) -> tuple[int, str]:
    payload = signer.verify(token)
    if (
        payload is None
        or len(payload) != 3
        or payload[0] != "u"
        or not isinstance(payload[1], int)
        or not isinstance(payload[2], str)
    ):
        raise LinkNotFound("This unsubscribe link is not one Spoke issued.")
    return payload[1], payload[2]


def record_click(session: Session, delivery_id: int) -> None:
    """The recipient followed a link: `clicked` (which implies delivered); first time kept.
    A delivery deleted since (its user was erased) is no reason to break the link."""
    now = utcnow()
    session.execute(
        sa.update(Delivery)
        .where(Delivery.id == delivery_id, Delivery.clicked_at.is_(None))
        .values(clicked_at=now, delivered_at=sa.func.coalesce(Delivery.delivered_at, now))
    )


def delivery(session: Session, delivery_id: int) -> Delivery:
    found = session.get(Delivery, delivery_id)
    if found is None:
        raise LinkNotFound("This unsubscribe link belongs to a message that no longer exists.")
    return found


def unsubscribe(session: Session, delivery_id: int, address: str, reason: str) -> Delivery:
    """Flip the address the message went to to `unsubscribed`."""
    sent = delivery(session, delivery_id)
    addresses.mark(
        session,
        sent.workspace_id,
        sent.channel,
        address,
        user_id=sent.user_id,
        status="unsubscribed",
        reason=reason,
    )
    return sent


def mask(address: str) -> str:
    """`a***@example.com`: enough to recognise, not enough to harvest."""
    local, at, domain = address.partition("@")
    if not at:
        return address[:3] + "***" + address[-2:]
    return f"{local[:1]}***@{domain}"
