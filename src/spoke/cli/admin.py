"""`spoke workspaces …` and `spoke keys …`: tenants and their API keys."""

from __future__ import annotations

import typer
from rich.table import Table

from spoke.cli.common import console, runtime, transaction
from spoke.users.validation import normalise_email
from spoke.workspaces import service
from spoke.workspaces.models import Role

workspaces = typer.Typer(help="Workspaces (tenants).", no_args_is_help=True)
keys = typer.Typer(help="Server API keys of a workspace.", no_args_is_help=True)


@workspaces.command("create")
def create_workspace(
    name: str = typer.Argument(..., help="Display name."),
    slug: str = typer.Option(..., help="Short unique id, e.g. `acme`."),
    owner_email: str = typer.Option(..., help="Email of the first owner."),
) -> None:
    """Create a workspace, its owner and the owner's first API key (printed once)."""
    rt = runtime()
    with transaction(rt) as session:
        created = service.create_workspace(
            session, rt.encryptor, name=name, slug=slug, owner_email=normalise_email(owner_email)
        )
    console.print(f"Workspace [bold]{created.workspace.slug}[/bold] ({created.workspace.id})")
    console.print(f"  X-Api-Key:    {created.key.id}")
    console.print(f"  X-Secret-Key: {created.secret}   [dim](shown once)[/dim]")
    console.print(f"  X-Client-Key: {created.workspace.client_key}")


@workspaces.command("list")
def list_workspaces() -> None:
    """All workspaces of this deployment."""
    rt = runtime()
    table = Table("slug", "id", "name", "created")
    with transaction(rt) as session:
        for ws in service.list_workspaces(session):
            table.add_row(ws.slug, ws.id, ws.name, ws.created_at.isoformat(timespec="seconds"))
    console.print(table)


@keys.command("create")
def create_key(
    workspace: str = typer.Option(..., "--workspace", "-w", help="Workspace slug."),
    name: str = typer.Option("CLI key", help="What the key is for."),
    member_email: str | None = typer.Option(
        None, help="Member the key acts as (default: the first owner)."
    ),
) -> None:
    """Create a key pair; the secret is printed once and stored only as a hash."""
    rt = runtime()
    with transaction(rt) as session:
        ws = service.get_workspace_by_slug(session, workspace)
        members = service.list_members(session, ws.id)
        if member_email:
            email = normalise_email(member_email)
            chosen = next((m for m in members if m.email == email), None)
            if chosen is None:
                raise service.MemberNotFound(f"{email} is not a member of {workspace}.")
        else:
            chosen = next(m for m in members if m.role is Role.owner)
        key, secret = service.create_key(session, ws.id, member_id=chosen.id, name=name)
    console.print(f"X-Api-Key:    {key.id}")
    console.print(f"X-Secret-Key: {secret}   [dim](shown once)[/dim]")


@keys.command("list")
def list_keys(workspace: str = typer.Option(..., "--workspace", "-w")) -> None:
    """Keys of a workspace (secrets are never shown again)."""
    rt = runtime()
    table = Table("key id", "name", "member", "hint", "created", "last used", "revoked")
    with transaction(rt) as session:
        ws = service.get_workspace_by_slug(session, workspace)
        for key in service.list_keys(session, ws.id):
            table.add_row(
                key.id,
                key.name,
                key.member_id,
                f"…{key.secret_hint}",
                key.created_at.isoformat(timespec="seconds"),
                key.last_used_at.isoformat(timespec="seconds") if key.last_used_at else "",
                key.revoked_at.isoformat(timespec="seconds") if key.revoked_at else "",
            )
    console.print(table)


@keys.command("revoke")
def revoke_key(key_id: str, workspace: str = typer.Option(..., "--workspace", "-w")) -> None:
    """Revoke a key at once."""
    rt = runtime()
    with transaction(rt) as session:
        ws = service.get_workspace_by_slug(session, workspace)
        service.revoke_key(session, service.get_key(session, ws.id, key_id))
    console.print(f"Revoked {key_id}.")
