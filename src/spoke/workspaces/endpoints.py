"""The caller's own workspace, its members and its API keys."""

from __future__ import annotations

from fastapi import APIRouter, status

from spoke.core.errors import responses
from spoke.core.http import TransactionalRoute
from spoke.deps import AppServices, Db
from spoke.workspaces import schemas, service
from spoke.workspaces.auth import AdminCaller, Idempotent, ServerCaller

router = APIRouter(prefix="/v1", tags=["workspace"], route_class=TransactionalRoute)


@router.get("/workspace", response_model=schemas.Workspace, responses=responses())
def get_workspace(caller: ServerCaller, session: Db) -> object:
    """The workspace the calling key belongs to."""
    return service.get_workspace(session, caller.workspace_id)


@router.patch(
    "/workspace",
    response_model=schemas.Workspace,
    responses=responses(service.RoleRequired),
    dependencies=[Idempotent],
)
def update_workspace(body: schemas.WorkspaceUpdate, caller: AdminCaller, session: Db) -> object:
    """Rename the workspace, switch identity verification for client calls, or set the
    time zone of users who have none."""
    workspace = service.get_workspace(session, caller.workspace_id)
    return service.update_workspace(
        session,
        workspace,
        name=body.name,
        identity_verification=body.identity_verification,
        timezone=body.timezone,
    )


@router.post(
    "/workspace/client-key/rotate",
    response_model=schemas.Workspace,
    responses=responses(service.RoleRequired),
    dependencies=[Idempotent],
)
def rotate_client_key(caller: AdminCaller, session: Db) -> object:
    """Issue a new public client key; the old one stops working at once."""
    return service.rotate_client_key(session, service.get_workspace(session, caller.workspace_id))


@router.get(
    "/workspace/identity-secret",
    response_model=schemas.IdentitySecret,
    responses=responses(service.RoleRequired),
)
def get_identity_secret(caller: AdminCaller, session: Db, services: AppServices) -> object:
    """The secret your backend uses to sign `X-Identity-Token` for client calls."""
    workspace = service.get_workspace(session, caller.workspace_id)
    return {"identity_secret": service.identity_secret(services.encryptor, workspace)}


@router.get("/members", response_model=list[schemas.Member], responses=responses())
def list_members(caller: ServerCaller, session: Db) -> object:
    """Everyone in the workspace, with their role."""
    return service.list_members(session, caller.workspace_id)


@router.post(
    "/members",
    response_model=schemas.Member,
    status_code=status.HTTP_201_CREATED,
    responses=responses(service.RoleRequired, service.MemberExists),
    dependencies=[Idempotent],
)
def add_member(body: schemas.MemberCreate, caller: AdminCaller, session: Db) -> object:
    """Add a member. Only owners may add owners."""
    if body.role == "owner" and caller.role != "owner":
        raise service.RoleRequired("Only owners may add owners.")
    return service.add_member(
        session, caller.workspace_id, email=body.email, name=body.name, role=body.role
    )


@router.patch(
    "/members/{member_id}",
    response_model=schemas.Member,
    responses=responses(service.RoleRequired, service.MemberNotFound, service.LastOwner),
    dependencies=[Idempotent],
)
def update_member(
    member_id: str, body: schemas.MemberUpdate, caller: AdminCaller, session: Db
) -> object:
    """Change a member's name or role."""
    member = service.get_member(session, caller.workspace_id, member_id)
    return service.update_member(session, caller, member, name=body.name, role=body.role)


@router.delete(
    "/members/{member_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=responses(service.RoleRequired, service.MemberNotFound, service.LastOwner),
    dependencies=[Idempotent],
)
def remove_member(member_id: str, caller: AdminCaller, session: Db) -> None:
    """Remove a member; their API keys go with them."""
    service.remove_member(
        session, caller, service.get_member(session, caller.workspace_id, member_id)
    )


@router.get("/api-keys", response_model=list[schemas.ApiKey], responses=responses())
def list_keys(caller: ServerCaller, session: Db) -> object:
    """Keys of the workspace (owners and managers) or your own keys (members)."""
    own_only = None if caller.role is not None and caller.role.can_administer else caller.member_id
    return service.list_keys(session, caller.workspace_id, member_id=own_only)


@router.post(
    "/api-keys",
    response_model=schemas.ApiKeyWithSecret,
    status_code=status.HTTP_201_CREATED,
    responses=responses(service.RoleRequired, service.MemberNotFound),
    dependencies=[Idempotent],
)
def create_key(body: schemas.ApiKeyCreate, caller: ServerCaller, session: Db) -> object:
    """Create a key pair. The secret is in this response only; store it now."""
    member_id = body.member_id or caller.member_id
    if member_id != caller.member_id:
        caller.require_admin()
    assert member_id is not None  # server keys always belong to a member
    service.get_member(session, caller.workspace_id, member_id)
    key, secret = service.create_key(
        session, caller.workspace_id, member_id=member_id, name=body.name
    )
    return {**schemas.ApiKey.model_validate(key).model_dump(), "secret": secret}


@router.delete(
    "/api-keys/{key_id}",
    response_model=schemas.ApiKey,
    responses=responses(service.RoleRequired, service.ApiKeyNotFound),
    dependencies=[Idempotent],
)
def revoke_key(key_id: str, caller: ServerCaller, session: Db) -> object:
    """Revoke a key; calls with it fail from now on. Members may revoke only their own."""
    key = service.get_key(session, caller.workspace_id, key_id)
    if key.member_id != caller.member_id:
        caller.require_admin()
    return service.revoke_key(session, key)
