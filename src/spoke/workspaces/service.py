"""Workspaces, members and keys. Takes a session, never commits (the edge does).

Invariants: a workspace always keeps at least one owner; a key acts with the role of the
member it belongs to, read at request time, so demoting a member demotes their keys.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta

import sqlalchemy as sa
from sqlalchemy.orm import Session

from spoke.core.clock import utcnow
from spoke.core.crypto import Encryptor, hash_secret, new_secret, secret_matches
from spoke.core.db import is_read_only
from spoke.core.errors import Conflict, Forbidden, InvalidInput, NotFound, Unauthenticated
from spoke.core.ids import new_id
from spoke.workspaces import key_cache
from spoke.workspaces.models import ApiKey, Member, Role, Workspace

_SLUG = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,62}[a-z0-9])?$")
# Writing last_used_at on every request would turn every read into a write.
_LAST_USED_RESOLUTION = timedelta(minutes=1)


class WorkspaceNotFound(NotFound):
    code = "workspace_not_found"


class MemberNotFound(NotFound):
    code = "member_not_found"


class ApiKeyNotFound(NotFound):
    code = "api_key_not_found"


class MemberExists(Conflict):
    code = "member_exists"


class SlugTaken(Conflict):
    code = "workspace_slug_taken"


class LastOwner(Conflict):
    code = "last_owner"
    title = "A workspace needs an owner"


class RoleRequired(Forbidden):
    code = "role_required"
    title = "Role not allowed"


class InvalidCredentials(Unauthenticated):
    code = "invalid_credentials"


@dataclass(frozen=True)
class Caller:
    """Who is calling: the workspace, and for server keys the member and its role."""

    workspace_id: str
    member_id: str | None
    role: Role | None
    key_id: str

    def require_admin(self) -> None:
        if self.role is None or not self.role.can_administer:
            raise RoleRequired("Only owners and managers may do this.")

    @property
    def actor(self) -> str:
        return self.key_id


@dataclass(frozen=True)
class CreatedWorkspace:
    workspace: Workspace
    owner: Member
    key: ApiKey
    secret: str


def create_workspace(
    session: Session,
    encryptor: Encryptor,
    *,
    name: str,
    slug: str,
    owner_email: str,
    owner_name: str = "",
) -> CreatedWorkspace:
    if not _SLUG.match(slug):
        raise InvalidInput("A slug is 1-64 lower-case letters, digits and inner dashes.")
    if session.scalar(sa.select(Workspace.id).where(Workspace.slug == slug)) is not None:
        raise SlugTaken(f"A workspace with slug {slug!r} already exists.")
    workspace = Workspace(
        id=new_id("ws"),
        slug=slug,
        name=name,
        client_key=new_secret("pk")[:46],
        identity_secret_encrypted=encryptor.encrypt(new_secret("ids")),
        change_seq=0,
        identity_verification=False,
        created_at=utcnow(),
    )
    session.add(workspace)
    session.flush()
    owner = add_member(session, workspace.id, email=owner_email, name=owner_name, role=Role.owner)
    key, secret = create_key(session, workspace.id, member_id=owner.id, name="Owner key")
    return CreatedWorkspace(workspace, owner, key, secret)


def get_workspace(session: Session, workspace_id: str) -> Workspace:
    workspace = session.get(Workspace, workspace_id)
    if workspace is None:
        raise WorkspaceNotFound("No such workspace.")
    return workspace


def get_workspace_by_slug(session: Session, slug: str) -> Workspace:
    workspace = session.scalars(sa.select(Workspace).where(Workspace.slug == slug)).one_or_none()
    if workspace is None:
        raise WorkspaceNotFound(f"No workspace with slug {slug!r}.")
    return workspace


def list_workspaces(session: Session) -> Sequence[Workspace]:
    return session.scalars(sa.select(Workspace).order_by(Workspace.created_at)).all()


def update_workspace(
    session: Session,
    workspace: Workspace,
    *,
    name: str | None,
    identity_verification: bool | None,
    timezone: str | None = None,
) -> Workspace:
    if name is not None:
        workspace.name = name
    if identity_verification is not None:
        workspace.identity_verification = identity_verification
    if timezone is not None:
        workspace.timezone = timezone or None
    session.flush()
    return workspace


def rotate_client_key(session: Session, workspace: Workspace) -> Workspace:
    workspace.client_key = new_secret("pk")[:46]
    session.flush()
    return workspace


def identity_secret(encryptor: Encryptor, workspace: Workspace) -> str:
    return encryptor.decrypt(workspace.identity_secret_encrypted)


# -- members ---------------------------------------------------------------------------


def add_member(session: Session, workspace_id: str, *, email: str, name: str, role: Role) -> Member:
    exists = session.scalar(
        sa.select(Member.id).where(Member.workspace_id == workspace_id, Member.email == email)
    )
    if exists is not None:
        raise MemberExists(f"{email} is already a member of this workspace.")
    member = Member(
        id=new_id("mem"),
        workspace_id=workspace_id,
        email=email,
        name=name,
        role=role,
        created_at=utcnow(),
    )
    session.add(member)
    session.flush()
    return member


def list_members(session: Session, workspace_id: str) -> Sequence[Member]:
    return session.scalars(
        sa.select(Member)
        .where(Member.workspace_id == workspace_id)
        .order_by(Member.created_at, Member.id)
    ).all()


def get_member(session: Session, workspace_id: str, member_id: str) -> Member:
    member = session.get(Member, member_id)
    if member is None or member.workspace_id != workspace_id:
        raise MemberNotFound("No such member in this workspace.")
    return member


def _owner_count(session: Session, workspace_id: str) -> int:
    return (
        session.scalar(
            sa.select(sa.func.count())
            .select_from(Member)
            .where(Member.workspace_id == workspace_id, Member.role == Role.owner)
        )
        or 0
    )


def update_member(
    session: Session, caller: Caller, member: Member, *, name: str | None, role: Role | None
) -> Member:
    if role is not None and role != member.role:
        # Only an owner can make or unmake owners; a manager can't promote past itself.
        if Role.owner in (role, member.role) and caller.role is not Role.owner:
            raise RoleRequired("Only owners may grant or remove the owner role.")
        if member.role is Role.owner and _owner_count(session, member.workspace_id) <= 1:
            raise LastOwner("The last owner can't be demoted; make someone else owner first.")
        member.role = role
        key_cache.forget_after_commit(session)
    if name is not None:
        member.name = name
    session.flush()
    return member


def remove_member(session: Session, caller: Caller, member: Member) -> None:
    if member.role is Role.owner:
        if caller.role is not Role.owner:
            raise RoleRequired("Only owners may remove an owner.")
        if _owner_count(session, member.workspace_id) <= 1:
            raise LastOwner("The last owner can't be removed.")
    session.delete(member)
    session.flush()
    key_cache.forget_after_commit(session)


# -- keys ------------------------------------------------------------------------------


def create_key(
    session: Session, workspace_id: str, *, member_id: str, name: str
) -> tuple[ApiKey, str]:
    """Create a key pair; the secret is returned once and only its hash is kept."""
    secret = new_secret("sk")
    key = ApiKey(
        id=new_id("key"),
        workspace_id=workspace_id,
        member_id=member_id,
        name=name,
        secret_hash=hash_secret(secret),
        secret_hint=secret[-4:],
        created_at=utcnow(),
    )
    session.add(key)
    session.flush()
    return key, secret


def list_keys(
    session: Session, workspace_id: str, *, member_id: str | None = None
) -> Sequence[ApiKey]:
    stmt = sa.select(ApiKey).where(ApiKey.workspace_id == workspace_id)
    if member_id is not None:
        stmt = stmt.where(ApiKey.member_id == member_id)
    return session.scalars(stmt.order_by(ApiKey.created_at, ApiKey.id)).all()


def get_key(session: Session, workspace_id: str, key_id: str) -> ApiKey:
    key = session.get(ApiKey, key_id)
    if key is None or key.workspace_id != workspace_id:
        raise ApiKeyNotFound("No such API key in this workspace.")
    return key


def revoke_key(session: Session, key: ApiKey) -> ApiKey:
    if key.revoked_at is None:
        key.revoked_at = utcnow()
        session.flush()
        key_cache.forget_after_commit(session)
    return key


# Built once: every server-key request runs it, and a statement built per call is hashed
# into SQLAlchemy's compiled cache per call. Columns, not the ORM entity: loading an
# `ApiKey` into the identity map cost more than the lookup.
_KEY_LOOKUP = (
    sa.select(
        ApiKey.workspace_id,
        ApiKey.member_id,
        ApiKey.secret_hash,
        ApiKey.revoked_at,
        ApiKey.last_used_at,
        Member.role,
    )
    .join(Member, Member.id == ApiKey.member_id)
    .where(ApiKey.id == sa.bindparam("key_id"))
)


def authenticate(session: Session, key_id: str, secret: str) -> Caller:
    key = session.execute(_KEY_LOOKUP, {"key_id": key_id}).one_or_none()
    # Same answer for an unknown id, a wrong secret and a revoked key: no oracle.
    if key is None or key.revoked_at is not None or not secret_matches(secret, key.secret_hash):
        raise InvalidCredentials("The API key or secret is wrong, or the key was revoked.")
    if key.last_used_at is None or utcnow() - key.last_used_at > _LAST_USED_RESOLUTION:
        if is_read_only(session):
            # A reading transaction must not write; the caller notes the use separately.
            session.info["spoke.key_used"] = key_id
        else:
            touch_key(session, key_id)
    return Caller(
        workspace_id=key.workspace_id, member_id=key.member_id, role=key.role, key_id=key_id
    )


def touch_key(session: Session, key_id: str) -> None:
    """Record that a key was used (for reads, done after their read-only transaction)."""
    session.execute(sa.update(ApiKey).where(ApiKey.id == key_id).values(last_used_at=utcnow()))


def authenticate_client(session: Session, client_key: str) -> Workspace:
    workspace = session.scalars(
        sa.select(Workspace).where(Workspace.client_key == client_key)
    ).one_or_none()
    if workspace is None:
        raise InvalidCredentials("Unknown client key.")
    return workspace
