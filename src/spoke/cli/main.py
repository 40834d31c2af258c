"""Entry point of the `spoke` command."""

from __future__ import annotations

import typer

from spoke.cli import admin, config_cmd, db, jobs, sandbox, serve, sync, users

app = typer.Typer(
    help="Spoke: your product's users, HubSpot, and their devices.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
)
app.command()(serve.serve)
app.command()(serve.worker)
app.command()(serve.demo)
app.add_typer(db.app, name="db")
app.add_typer(config_cmd.app, name="config")
app.add_typer(admin.workspaces, name="workspaces")
app.add_typer(admin.keys, name="keys")
app.add_typer(users.app, name="users")
app.add_typer(jobs.app, name="jobs")
app.add_typer(sandbox.app, name="sandbox")
app.add_typer(sync.app, name="sync")


def main() -> None:
    app()
