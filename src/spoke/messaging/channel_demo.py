"""Email and SMS for `spoke demo`: the demo workspace sends email through the local SMTP
sink and SMS through the local Twilio emulator, and every demo user has a phone number."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.orm import Session

from spoke.core.crypto import Encryptor
from spoke.messaging import channel_providers
from spoke.users import service as users
from spoke.users.changes import Origin
from spoke.users.models import User
from spoke.users.schemas import UserFields


def connect_email(
    session: Session,
    encryptor: Encryptor,
    workspace_id: str,
    *,
    smtp_port: int,
    certificate_pem: str,
    links_base_url: str,
) -> None:
    """STARTTLS to the sink, trusting exactly the certificate it made at start."""
    channel_providers.set_smtp(
        session,
        encryptor,
        workspace_id,
        {
            "host": "127.0.0.1",
            "port": smtp_port,
            "security": "starttls",
            "from_address": "hello@demo.example",
            "from_name": "Spoke demo",
            "ca_pem": certificate_pem,
            "links_base_url": links_base_url,
        },
    )


def connect_sms(
    session: Session, encryptor: Encryptor, workspace_id: str, *, account: dict[str, str], url: str
) -> int:
    """Point the workspace's SMS at the emulator; give every demo user without a phone a
    (fictional) Korean mobile number. Returns how many numbers were given."""
    channel_providers.set_twilio(
        session,
        encryptor,
        workspace_id,
        {**account, "from_number": "+15005550006", "base_url": url, "concurrency": 16},
    )
    missing = session.scalars(
        sa.select(User.external_id)
        .where(User.workspace_id == workspace_id, User.deleted_at.is_(None), User.phone.is_(None))
        .order_by(User.id)
    ).all()
    items = [
        users.WriteItem(external_id, UserFields.model_validate({"phone": f"+8210555{n:05d}"}))
        for n, external_id in enumerate(missing, start=1)
    ]
    users.write_users(session, Origin(workspace_id, "demo", "seed"), items)
    return len(items)
