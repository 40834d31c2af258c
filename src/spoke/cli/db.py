"""`spoke db …`: migrations."""

from __future__ import annotations

import typer

from spoke.cli.common import console, settings
from spoke.core import migrate
from spoke.core.db import make_engine

app = typer.Typer(help="Database migrations.", no_args_is_help=True)


@app.command()
def upgrade(revision: str = typer.Argument("head", help="Target revision.")) -> None:
    """Migrate the database to the newest schema (safe to run repeatedly)."""
    url = settings().database_url
    migrate.upgrade(url, revision)
    console.print(f"Database at revision [bold]{migrate.head_revision(url)}[/bold].")


@app.command()
def current() -> None:
    """Show the database's revision and the newest one this Spoke knows."""
    url = settings().database_url
    engine = make_engine(url)
    try:
        console.print(f"database: {migrate.current_revision(engine) or 'none'}")
        console.print(f"newest:   {migrate.head_revision(url)}")
    finally:
        engine.dispose()
