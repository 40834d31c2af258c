"""App users: create, replace, patch, batch upsert, delete/restore, tags, reads.

Every write goes through `write_users`, one code path for a single PUT and a batch of a
thousand: it loads the current rows once, applies the items in order (so two items for
the same user in one batch behave like two calls), and writes users, tags and change rows
with a handful of bulk statements. Each change to a user adds one row to the change feed
in the same transaction. Nothing here commits.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import Session

from spoke.core import bulk
from spoke.core.clock import utcnow
from spoke.core.db import table_of
from spoke.core.errors import Conflict, NotFound
from spoke.core.pagination import InvalidCursor, decode_cursor, encode_cursor
from spoke.users import changes as feed
from spoke.users import fields as custom_fields
from spoke.users.changes import Origin, PendingChange
from spoke.users.models import STANDARD_FIELDS, ListMembership, User, UserTag
from spoke.users.schemas import ItemError, UserFields
from spoke.users.validation import normalise_phone

_USER_COLUMNS = [
    getattr(User, name)
    for name in ("id", "external_id", *STANDARD_FIELDS, "custom", "version", "deleted_at")
]
_WRITE_ATTEMPTS = 3


class UserNotFound(NotFound):
    code = "user_not_found"


class UserDeleted(Conflict):
    code = "user_deleted"
    title = "User is deleted"


@dataclass
class WriteItem:
    external_id: str
    values: UserFields
    replace: bool = False


@dataclass
class Outcome:
    index: int
    external_id: str | None
    status: str  # created, updated, unchanged, error
    version: int | None = None
    error: ItemError | None = None


@dataclass
class _State:
    id: int | None
    profile: dict[str, Any]
    custom: dict[str, Any]
    tags: dict[str, str]
    version: int
    deleted: bool
    original_tags: dict[str, str] = field(default_factory=dict)
    dirty: bool = False


def write_users(
    session: Session, origin: Origin, items: Sequence[WriteItem], *, first_index: int = 0
) -> list[Outcome]:
    """Apply `items` in order; per-item problems become error outcomes, not exceptions.

    A concurrent writer creating the same user (unique violation) or a lock cycle between
    two batches (PostgreSQL deadlock) rolls back to a savepoint and retries from fresh
    state, so callers never see a 500 for a race.
    """
    for attempt in range(_WRITE_ATTEMPTS):
        savepoint = session.begin_nested()
        try:
            outcomes = _write_users_once(session, origin, items, first_index)
            savepoint.commit()
            return outcomes
        except (IntegrityError, OperationalError) as exc:
            savepoint.rollback()
            if attempt == _WRITE_ATTEMPTS - 1 or not _is_race(exc):
                raise
    raise AssertionError("unreachable")


def _is_race(exc: Exception) -> bool:
    if isinstance(exc, IntegrityError):
        return True
    name = type(getattr(exc, "orig", None)).__name__
    return name in {"DeadlockDetected", "SerializationFailure", "LockNotAvailable"}


def _write_users_once(
    session: Session, origin: Origin, items: Sequence[WriteItem], first_index: int
) -> list[Outcome]:
    definitions = custom_fields.definitions(session, origin.workspace_id)
    states = _load_states(session, origin.workspace_id, {item.external_id for item in items})
    pending: list[PendingChange] = []
    outcomes: list[Outcome] = []
    for offset, item in enumerate(items):
        index = first_index + offset
        state = states.get(item.external_id)
        if state is not None and state.deleted:
            outcomes.append(
                Outcome(
                    index,
                    item.external_id,
                    "error",
                    error=ItemError(
                        code=UserDeleted.code, detail="The user is deleted; restore it first."
                    ),
                )
            )
            continue
        try:
            item = _resolve_national_phone(state, item)
            new_custom = _next_custom(definitions, state, item)
        except _ItemProblem as problem:
            outcomes.append(
                Outcome(
                    index,
                    item.external_id,
                    "error",
                    error=ItemError(
                        code=problem.code, detail=problem.detail, errors=[problem.field_error]
                    ),
                )
            )
            continue
        outcome, change = _apply(states, item, new_custom, index)
        outcomes.append(outcome)
        if change is not None:
            pending.append(change)
    _flush_states(session, origin, states, pending)
    return outcomes


class _ItemProblem(Exception):
    """One item can't be applied; it becomes that item's error outcome."""

    def __init__(self, code: str, field: str, detail: str) -> None:
        self.code = code
        self.detail = detail
        self.field_error = {"field": field, "message": detail, "type": code}


def _resolve_national_phone(state: _State | None, item: WriteItem) -> WriteItem:
    """Read a national phone number (no +country code) with the user's country: the one
    this write sets, else the stored one."""
    values = item.values
    if values.phone is None or values.phone.startswith("+"):
        return item
    given = "country" in values.model_fields_set or item.replace
    country = values.country if given else (state.profile["country"] if state else None)
    try:
        phone = normalise_phone(values.phone, country)
    except ValueError as exc:
        raise _ItemProblem("invalid_input", "phone", f"phone: {exc}") from None
    return WriteItem(item.external_id, values.model_copy(update={"phone": phone}), item.replace)


def _next_custom(
    definitions: dict[str, custom_fields.Definition], state: _State | None, item: WriteItem
) -> dict[str, Any]:
    current = {} if state is None or item.replace else dict(state.custom)
    for name, value in (item.values.custom or {}).items():
        definition = definitions.get(name)
        if definition is None:
            raise _ItemProblem(
                "unknown_custom_field",
                f"custom.{name}",
                f"No custom field named {name!r}; declare it in /v1/fields.",
            )
        if value is None:
            current.pop(name, None)
            continue
        try:
            current[name] = definition.coerce(value)
        except ValueError as exc:
            raise _ItemProblem("invalid_custom_field", f"custom.{name}", f"{name}: {exc}") from None
    return current


def _apply(
    states: dict[str, _State], item: WriteItem, new_custom: dict[str, Any], index: int
) -> tuple[Outcome, PendingChange | None]:
    values = item.values
    given = values.model_fields_set
    state = states.get(item.external_id)
    creating = state is None
    if state is None:
        state = _State(
            id=None,
            profile=dict.fromkeys(STANDARD_FIELDS),
            custom={},
            tags={},
            version=0,
            deleted=False,
        )
        states[item.external_id] = state
    diff: dict[str, list[Any]] = {}
    for name in STANDARD_FIELDS:
        if item.replace or name in given:
            new = getattr(values, name)
            if state.profile[name] != new:
                diff[name] = [state.profile[name], new]
                state.profile[name] = new
    for name in state.custom.keys() | new_custom.keys():
        old, new = state.custom.get(name), new_custom.get(name)
        if old != new:
            diff[f"custom.{name}"] = [old, new]
    state.custom = new_custom
    if values.tags is not None:
        new_tags = {} if item.replace else dict(state.tags)
        for key, value in values.tags.items():
            if value == "":
                new_tags.pop(key, None)
            else:
                new_tags[key] = value
        diff.update(_tag_diff(state.tags, new_tags))
        state.tags = new_tags
    if not creating and not diff:
        return Outcome(index, item.external_id, "unchanged", state.version), None
    state.version += 1
    state.dirty = True
    kind = "created" if creating else "updated"
    return (
        Outcome(index, item.external_id, kind, state.version),
        PendingChange(state.id, item.external_id, kind, diff),
    )


def _tag_diff(old: dict[str, str], new: dict[str, str]) -> dict[str, list[Any]]:
    return {
        f"tags.{key}": [old.get(key), new.get(key)]
        for key in old.keys() | new.keys()
        if old.get(key) != new.get(key)
    }


def _load_states(
    session: Session, workspace_id: str, external_ids: Iterable[str]
) -> dict[str, _State]:
    ids = sorted(external_ids)
    if not ids:
        return {}
    # No ORDER BY: sorting by id tempts PostgreSQL into walking the whole primary key
    # (slower with every user added); the unique-index scan returns rows in external_id
    # order anyway, which keeps the row-lock order the same for every writer.
    stmt = sa.select(*_USER_COLUMNS).where(
        User.workspace_id == workspace_id, User.external_id.in_(ids)
    )
    if session.get_bind().dialect.name == "postgresql":
        # Lock the rows we are about to rewrite so concurrent writers queue instead of
        # silently overwriting each other's changes (and each other's feed entries).
        stmt = stmt.with_for_update()
    states: dict[str, _State] = {}
    by_id: dict[int, _State] = {}
    for row in session.execute(stmt):
        state = _State(
            id=row.id,
            profile={name: getattr(row, name) for name in STANDARD_FIELDS},
            custom=dict(row.custom or {}),
            tags={},
            version=row.version,
            deleted=row.deleted_at is not None,
        )
        states[row.external_id] = state
        by_id[row.id] = state
    if by_id:
        for user_id, key, value in session.execute(
            sa.select(UserTag.user_id, UserTag.key, UserTag.value).where(
                UserTag.user_id.in_(list(by_id))
            )
        ):
            by_id[user_id].tags[key] = value
        for state in by_id.values():
            state.original_tags = dict(state.tags)
    return states


def _flush_states(
    session: Session, origin: Origin, states: dict[str, _State], pending: list[PendingChange]
) -> None:
    now = utcnow()
    new = [(ext, s) for ext, s in states.items() if s.dirty and s.id is None]
    changed = [s for s in states.values() if s.dirty and s.id is not None]
    users = table_of(User)
    if new:
        rows = bulk.insert(
            session,
            users,
            [
                {
                    "workspace_id": origin.workspace_id,
                    "external_id": ext,
                    **s.profile,
                    "custom": s.custom,
                    "version": s.version,
                    "created_at": now,
                    "updated_at": now,
                }
                for ext, s in new
            ],
            returning=("id", "external_id"),
        )
        for (ext, state), row in zip(new, rows, strict=True):
            assert row["external_id"] == ext
            state.id = row["id"]
    bulk.update(
        session,
        users,
        ["id"],
        [
            {"id": s.id, **s.profile, "custom": s.custom, "version": s.version, "updated_at": now}
            for s in changed
        ],
    )
    _flush_tags(session, origin.workspace_id, [s for _, s in new] + changed)
    for change in pending:
        if change.user_id is None:
            change.user_id = states[change.external_id].id
    feed.record(session, origin, pending)


def _flush_tags(session: Session, workspace_id: str, states: Sequence[_State]) -> None:
    inserts: list[dict[str, Any]] = []
    updates: list[dict[str, Any]] = []
    deletes: list[dict[str, Any]] = []
    for state in states:
        old, new = state.original_tags, state.tags
        for key, value in new.items():
            if key not in old:
                inserts.append(
                    {"user_id": state.id, "key": key, "workspace_id": workspace_id, "value": value}
                )
            elif old[key] != value:
                updates.append({"user_id": state.id, "key": key, "value": value})
        deletes.extend({"user_id": state.id, "key": key} for key in old.keys() - new.keys())
        state.original_tags = dict(new)
    table = table_of(UserTag)
    bulk.delete(session, table, ["user_id", "key"], deletes)
    bulk.update(session, table, ["user_id", "key"], updates)
    bulk.insert(session, table, inserts)


# -- single-user operations ---------------------------------------------------------------


def get_user(
    session: Session, workspace_id: str, external_id: str, *, include_deleted: bool = False
) -> User:
    """The user, scoped to the workspace; a foreign or missing user is the same 404."""
    user = session.scalars(
        sa.select(User).where(User.workspace_id == workspace_id, User.external_id == external_id)
    ).one_or_none()
    if user is None or (user.deleted_at is not None and not include_deleted):
        raise UserNotFound(f"No user with external id {external_id!r}.")
    return user


def delete_user(session: Session, origin: Origin, external_id: str) -> User:
    """Soft delete: the row stays (restorable), reads and writes treat it as gone."""
    user = get_user(session, origin.workspace_id, external_id)
    user.deleted_at = utcnow()
    user.updated_at = user.deleted_at
    user.version += 1
    session.flush()
    feed.record(
        session,
        origin,
        [
            PendingChange(
                user.id,
                user.external_id,
                "deleted",
                {"deleted_at": [None, user.deleted_at.isoformat()]},
            )
        ],
    )
    return user


def restore_user(session: Session, origin: Origin, external_id: str) -> User:
    user = get_user(session, origin.workspace_id, external_id, include_deleted=True)
    if user.deleted_at is None:
        return user
    previous = user.deleted_at
    user.deleted_at = None
    user.updated_at = utcnow()
    user.version += 1
    session.flush()
    feed.record(
        session,
        origin,
        [
            PendingChange(
                user.id, user.external_id, "restored", {"deleted_at": [previous.isoformat(), None]}
            )
        ],
    )
    return user


def patch_tags(session: Session, origin: Origin, external_id: str, tags: dict[str, str]) -> Outcome:
    # 404 before anything is written; a deleted user comes back as a `user_deleted` outcome.
    get_user(session, origin.workspace_id, external_id, include_deleted=True)
    values = UserFields.model_validate({"tags": tags})
    outcome = write_users(session, origin, [WriteItem(external_id, values)])[0]
    if outcome.error is not None:
        raise UserDeleted(outcome.error.detail)
    return outcome


# -- reads --------------------------------------------------------------------------------


@dataclass(frozen=True)
class UserFilter:
    email: str | None = None
    list_id: str | None = None
    tag_key: str | None = None
    tag_value: str | None = None
    updated_since: datetime | None = None
    include_deleted: bool = False


def list_users(
    session: Session, workspace_id: str, flt: UserFilter, *, limit: int, cursor: str | None
) -> tuple[Sequence[User], str | None]:
    """A page of users. Ordered by id, or by (updated_at, id) when `updated_since` is given
    so a poller can resume where it stopped."""
    stmt = sa.select(User).where(User.workspace_id == workspace_id)
    if not flt.include_deleted:
        stmt = stmt.where(User.deleted_at.is_(None))
    if flt.email is not None:
        stmt = stmt.where(User.email == flt.email)
    if flt.list_id is not None:
        stmt = stmt.where(
            User.id.in_(
                sa.select(ListMembership.user_id).where(ListMembership.list_id == flt.list_id)
            )
        )
    if flt.tag_key is not None:
        tag = sa.select(UserTag.user_id).where(
            UserTag.workspace_id == workspace_id, UserTag.key == flt.tag_key
        )
        if flt.tag_value is not None:
            tag = tag.where(UserTag.value == flt.tag_value)
        stmt = stmt.where(User.id.in_(tag))
    by_time = flt.updated_since is not None
    if by_time:
        stmt = stmt.where(User.updated_at >= flt.updated_since)
    if cursor is not None:
        if by_time:
            after_time, raw_id = decode_cursor(cursor, 2)
            stamp, after_id = _cursor_time(after_time), _cursor_id(raw_id)
            stmt = stmt.where(
                sa.or_(
                    User.updated_at > stamp, sa.and_(User.updated_at == stamp, User.id > after_id)
                )
            )
        else:
            (raw_id,) = decode_cursor(cursor, 1)
            stmt = stmt.where(User.id > _cursor_id(raw_id))
    order = (User.updated_at, User.id) if by_time else (User.id,)
    rows = session.scalars(stmt.order_by(*order).limit(limit + 1)).all()
    next_cursor = None
    if len(rows) > limit:
        rows = rows[:limit]
        last = rows[-1]
        next_cursor = encode_cursor(
            [last.updated_at.isoformat(), last.id] if by_time else [last.id]
        )
    return rows, next_cursor


def _cursor_time(value: Any) -> datetime:
    # A well-formed but forged cursor must answer 400, never reach the database as a
    # value it rejects (a naive time, a string id, an id beyond BIGINT) and become a 500.
    try:
        stamp = datetime.fromisoformat(value) if isinstance(value, str) else None
    except ValueError:
        stamp = None
    if stamp is None or stamp.tzinfo is None:
        raise InvalidCursor("The cursor is not one this API issued.")
    return stamp


def _cursor_id(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 2**63:
        raise InvalidCursor("The cursor is not one this API issued.")
    return value


def render(session: Session, users: Sequence[User]) -> list[dict[str, Any]]:
    """Users as API objects, with tags and list ids loaded in two queries for the page."""
    ids = [u.id for u in users]
    tags: dict[int, dict[str, str]] = {i: {} for i in ids}
    lists: dict[int, list[str]] = {i: [] for i in ids}
    if ids:
        for user_id, key, value in session.execute(
            sa.select(UserTag.user_id, UserTag.key, UserTag.value).where(UserTag.user_id.in_(ids))
        ):
            tags[user_id][key] = value
        for user_id, list_id in session.execute(
            sa.select(ListMembership.user_id, ListMembership.list_id)
            .where(ListMembership.user_id.in_(ids))
            .order_by(ListMembership.list_id)
        ):
            lists[user_id].append(list_id)
    return [
        {
            "external_id": u.external_id,
            **{name: getattr(u, name) for name in STANDARD_FIELDS},
            "custom": u.custom or {},
            "tags": tags[u.id],
            "lists": lists[u.id],
            "version": u.version,
            "created_at": u.created_at,
            "updated_at": u.updated_at,
            "deleted_at": u.deleted_at,
            "last_seen_at": u.last_seen_at,
        }
        for u in users
    ]
