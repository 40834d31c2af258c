"""One recipient's email, ready for SMTP: personalised content plus what Spoke adds.

- The unsubscribe link replaces `[unsubscribe_url]` in the HTML and text bodies (a footer
  with the link is appended to a body that lacks it), and goes in the `List-Unsubscribe`
  header with `List-Unsubscribe-Post: List-Unsubscribe=One-Click` (RFC 8058), so mail
  clients show their own unsubscribe button.
- With click tracking on, every `http(s)` link of the HTML body points at Spoke's signed
  `/c/{token}` redirect (the unsubscribe link is left alone).
- `Message-ID` is derived from the delivery, so a message re-sent after a crash carries
  the same id (receivers that de-duplicate on it show one).
"""

from __future__ import annotations

import html
from dataclasses import dataclass
from email import policy
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import formataddr, formatdate
from typing import Any

from spoke.messaging import tracking
from spoke.messaging.providers.smtp import OutgoingEmail


@dataclass(frozen=True)
class Sender:
    """Who the workspace's emails come from, and where their links point."""

    from_address: str
    from_name: str | None
    reply_to: str | None
    links_base_url: str
    signer: tracking.LinkSigner


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _with_unsubscribe_html(body: str, url: str) -> str:
    escaped = html.escape(url, quote=True)
    if tracking.UNSUBSCRIBE_PLACEHOLDER in body:
        return body.replace(tracking.UNSUBSCRIBE_PLACEHOLDER, escaped)
    footer = (
        '<p style="font-size:12px;color:#666">'
        f'<a href="{escaped}">Unsubscribe</a> from these emails.</p>'
    )
    closing = body.lower().rfind("</body>")
    if closing >= 0:
        return body[:closing] + footer + body[closing:]
    return body + footer


def _with_unsubscribe_text(body: str, url: str) -> str:
    if tracking.UNSUBSCRIBE_PLACEHOLDER in body:
        return body.replace(tracking.UNSUBSCRIBE_PLACEHOLDER, url)
    return f"{body.rstrip()}\n\n--\nUnsubscribe: {url}\n"


def compose(
    sender: Sender,
    *,
    notification_id: str,
    delivery_id: int,
    to: str,
    content: dict[str, Any],
) -> OutgoingEmail:
    """The message for one recipient.

    Raises:
        ValueError: the content can't make a valid message (e.g. an address that needs
            SMTPUTF8 in a header, or a from name that is not text).
    """
    unsubscribe = tracking.unsubscribe_url(sender.signer, sender.links_base_url, delivery_id, to)
    track = content.get("track_clicks", True)

    def tracked(url: str) -> str | None:
        if url == unsubscribe or not tracking.is_trackable(url):
            return None
        return tracking.click_url(sender.signer, sender.links_base_url, delivery_id, url)

    message = EmailMessage(policy=policy.SMTP if to.isascii() else policy.SMTPUTF8)
    name = content.get("from_name") or sender.from_name
    message["From"] = (
        formataddr((_one_line(name), sender.from_address)) if name else sender.from_address
    )
    message["To"] = to
    if sender.reply_to:
        message["Reply-To"] = sender.reply_to
    message["Subject"] = _one_line(str(content.get("subject") or ""))
    message["Date"] = formatdate(localtime=False, usegmt=True)
    domain = Address(addr_spec=sender.from_address).domain or "spoke.invalid"
    message_id = f"<{delivery_id}.{notification_id}@{domain}>"
    message["Message-ID"] = message_id
    message["List-Unsubscribe"] = f"<{unsubscribe}>"
    message["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    message["X-Spoke-Notification-Id"] = notification_id
    text, markup = content.get("text"), content.get("html")
    if markup:
        markup = _with_unsubscribe_html(str(markup), unsubscribe)
        if track:
            markup = tracking.rewrite_links(markup, tracked)
    if text or not markup:
        message.set_content(_with_unsubscribe_text(str(text or ""), unsubscribe))
        if markup:
            message.add_alternative(markup, subtype="html")
    else:
        message.set_content(markup, subtype="html")
    return OutgoingEmail(
        sender=sender.from_address,
        recipient=to,
        data=message.as_bytes(),
        message_id=message_id,
    )
