"""Custom fields a workspace declares for its users (`/v1/fields`).

Values live in `users.custom` keyed by field name and are checked against the declared
type on every write. Deleting a field removes its values from every user in the same
transaction, so re-creating a field of that name later never resurfaces stale values.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Session

from spoke.core.clock import utcnow
from spoke.core.db import table_of
from spoke.core.errors import Conflict, InvalidInput, NotFound
from spoke.core.ids import new_id
from spoke.users import changes as feed
from spoke.users.changes import Origin, PendingChange
from spoke.users.models import STANDARD_FIELDS, CustomField, User
from spoke.users.validation import coerce_custom_value

# Standard fields and the other names CSV import columns use.
RESERVED_NAMES = frozenset({*STANDARD_FIELDS, "external_id", "tags", "custom", "lists", "id"})


class FieldNotFound(NotFound):
    code = "field_not_found"


class FieldExists(Conflict):
    code = "field_exists"


class OptionInUse(Conflict):
    code = "field_option_in_use"


@dataclass(frozen=True)
class Definition:
    name: str
    type: str
    options: list[str] | None

    def coerce(self, value: Any) -> Any:
        return coerce_custom_value(self.type, self.options, value)


def definitions(session: Session, workspace_id: str) -> dict[str, Definition]:
    return {
        name: Definition(name, type_, options)
        for name, type_, options in session.execute(
            sa.select(CustomField.name, CustomField.type, CustomField.options).where(
                CustomField.workspace_id == workspace_id
            )
        )
    }


def list_fields(session: Session, workspace_id: str) -> Sequence[CustomField]:
    return session.scalars(
        sa.select(CustomField)
        .where(CustomField.workspace_id == workspace_id)
        .order_by(CustomField.name)
    ).all()


def get_field(session: Session, workspace_id: str, name: str) -> CustomField:
    found = session.scalars(
        sa.select(CustomField).where(
            CustomField.workspace_id == workspace_id, CustomField.name == name
        )
    ).one_or_none()
    if found is None:
        raise FieldNotFound(f"No custom field named {name!r}.")
    return found


def create_field(
    session: Session,
    workspace_id: str,
    *,
    name: str,
    label: str,
    type_: str,
    options: list[str] | None,
) -> CustomField:
    if name in RESERVED_NAMES:
        raise InvalidInput(
            f"{name!r} is a standard field or reserved (it names a column in CSV imports); "
            "custom fields need another name."
        )
    if (
        session.scalar(
            sa.select(CustomField.id).where(
                CustomField.workspace_id == workspace_id, CustomField.name == name
            )
        )
        is not None
    ):
        raise FieldExists(f"A custom field named {name!r} already exists.")
    created = CustomField(
        id=new_id("fld"),
        workspace_id=workspace_id,
        name=name,
        label=label or name.replace("_", " ").capitalize(),
        type=type_,
        options=options,
        created_at=utcnow(),
    )
    session.add(created)
    session.flush()
    return created


def update_field(
    session: Session, found: CustomField, *, label: str | None, options: list[str] | None
) -> CustomField:
    if label is not None:
        found.label = label
    if options is not None:
        if found.type != "enumeration":
            raise InvalidInput("Only enumeration fields take options.")
        if len(set(options)) != len(options):
            raise InvalidInput("Options must be unique.")
        removed = set(found.options or []) - set(options)
        if removed and _option_in_use(session, found, removed):
            raise OptionInUse(
                "Some users still have a value you are removing; change them first.",
                options=sorted(removed),
            )
        found.options = list(options)
    session.flush()
    return found


def _option_in_use(session: Session, found: CustomField, removed: set[str]) -> bool:
    value = User.custom[found.name].as_string()
    return (
        session.scalar(
            sa.select(sa.func.count())
            .select_from(User)
            .where(User.workspace_id == found.workspace_id, value.in_(sorted(removed)))
        )
        != 0
    )


def delete_field(session: Session, origin: Origin, found: CustomField) -> None:
    """Delete the field and strip its value from every user that has one; each such user
    gets a change-feed row (`custom.<name>`: old → null) and a new version, like any edit."""
    postgres = session.get_bind().dialect.name == "postgresql"
    if postgres:
        as_jsonb = sa.cast(User.custom, JSONB)
        has_value: Any = as_jsonb.has_key(found.name)
        stripped: Any = as_jsonb.op("-")(found.name)
    else:
        path = f'$."{found.name}"'
        has_value = sa.func.json_type(User.custom, path).is_not(None)
        stripped = sa.func.json_remove(User.custom, path)
    holders = session.execute(
        sa.select(User.id, User.external_id, User.custom).where(
            User.workspace_id == found.workspace_id, has_value
        )
    ).all()
    now = utcnow()
    users = table_of(User)
    for start in range(0, len(holders), 1000):
        ids = [row.id for row in holders[start : start + 1000]]
        session.execute(
            users.update()
            .where(users.c.id.in_(ids))
            .values(custom=stripped, version=users.c.version + 1, updated_at=now)
        )
    feed.record(
        session,
        origin,
        [
            PendingChange(
                row.id,
                row.external_id,
                "updated",
                {f"custom.{found.name}": [row.custom.get(found.name), None]},
            )
            for row in holders
        ],
    )
    session.delete(found)
    session.flush()
