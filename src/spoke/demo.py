"""Demo data for `spoke demo`: one workspace with fields, lists and a few dozen users."""

from __future__ import annotations

import random
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.orm import Session

from spoke.core.crypto import Encryptor
from spoke.users import fields, lists, service
from spoke.users.changes import Origin
from spoke.users.schemas import UserFields
from spoke.workspaces import service as workspaces
from spoke.workspaces.models import Role, Workspace

DEMO_SLUG = "demo"
_FIRST = ["Ji-woo", "Haruto", "Mei", "Ann", "Lucas", "Sofia", "Minjun", "Yui", "Wei", "Noah"]
_LAST = ["Kim", "Sato", "Chen", "Smith", "Garcia", "Lee", "Tanaka", "Wang", "Park", "Brown"]
_COUNTRIES = ["KR", "JP", "CN", "US", "DE", "FR", "BR", "GB"]
_TZ = {
    "KR": "Asia/Seoul",
    "JP": "Asia/Tokyo",
    "CN": "Asia/Shanghai",
    "US": "America/New_York",
    "DE": "Europe/Berlin",
    "FR": "Europe/Paris",
    "BR": "America/Sao_Paulo",
    "GB": "Europe/London",
}


@dataclass(frozen=True)
class DemoCredentials:
    workspace: Workspace
    key_id: str
    secret: str


def seed(session: Session, encryptor: Encryptor, *, users: int = 50) -> DemoCredentials:
    """Create the demo workspace once; every call issues a fresh key (secrets aren't kept)."""
    existing = session.scalars(sa.select(Workspace).where(Workspace.slug == DEMO_SLUG)).first()
    if existing is not None:
        owner = next(
            m for m in workspaces.list_members(session, existing.id) if m.role is Role.owner
        )
        key, secret = workspaces.create_key(
            session, existing.id, member_id=owner.id, name="demo key"
        )
        return DemoCredentials(existing, key.id, secret)
    created = workspaces.create_workspace(
        session, encryptor, name="Demo", slug=DEMO_SLUG, owner_email="owner@demo.example"
    )
    ws = created.workspace
    fields.create_field(
        session,
        ws.id,
        name="plan",
        label="Plan",
        type_="enumeration",
        options=["free", "pro", "enterprise"],
    )
    fields.create_field(
        session, ws.id, name="signup_date", label="Signup date", type_="date", options=None
    )
    newsletter = lists.create_list(
        session, ws.id, name="Newsletter", description="Users who asked for product news"
    )
    beta = lists.create_list(session, ws.id, name="Beta testers", description="Early access")
    rng = random.Random(7)  # the same demo every time
    origin = Origin(ws.id, "demo", "seed")
    items = []
    for n in range(1, users + 1):
        country = rng.choice(_COUNTRIES)
        first, last = rng.choice(_FIRST), rng.choice(_LAST)
        values = UserFields.model_validate(
            {
                "email": f"{first.lower().replace('-', '')}.{last.lower()}{n}@demo.example",
                "first_name": first,
                "last_name": last,
                "country": country,
                "timezone": _TZ[country],
                "language": {"KR": "ko", "JP": "ja", "CN": "zh"}.get(country, "en"),
                "custom": {
                    "plan": rng.choice(["free", "free", "pro", "enterprise"]),
                    "signup_date": f"2026-{rng.randint(1, 10):02d}-{rng.randint(1, 28):02d}",
                },
                "tags": {
                    "level": str(rng.randint(1, 30)),
                    "push_opt_in": rng.choice(["yes", "no"]),
                },
            }
        )
        items.append(service.WriteItem(f"user-{n:03d}", values))
    service.write_users(session, origin, items)
    lists.change_membership(
        session, origin, newsletter, [f"user-{n:03d}" for n in range(1, users + 1, 2)], add=True
    )
    lists.change_membership(
        session, origin, beta, [f"user-{n:03d}" for n in range(1, users + 1, 7)], add=True
    )
    return DemoCredentials(ws, created.key.id, created.secret)
