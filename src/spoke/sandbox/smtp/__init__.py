"""A local SMTP server that keeps what it receives: STARTTLS with a certificate made at
start, optional AUTH, per-recipient rejections (bounces) and injected 4xx/5xx faults, and
an HTTP read API (`/_smtp/...`) listing the parsed messages per recipient.
"""

from spoke.sandbox.smtp.app import create_smtp_app, serve
from spoke.sandbox.smtp.store import Fault, SmtpStore

__all__ = ["Fault", "SmtpStore", "create_smtp_app", "serve"]
