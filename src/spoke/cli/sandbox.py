"""`spoke sandbox …`: local emulators of the vendors Spoke talks to."""

from __future__ import annotations

from pathlib import Path

import typer

app = typer.Typer(
    help="Local emulators (HubSpot, …) for offline development and tests.", no_args_is_help=True
)


@app.command()
def hubspot(
    port: int = typer.Option(8100, help="Port to listen on (127.0.0.1)."),
    state: Path | None = typer.Option(None, help="File to load state from and save it to."),
    host: str = typer.Option("127.0.0.1", help="Interface to bind."),
) -> None:
    """A local HubSpot API that the official SDK can't tell apart (see docs/sandbox.md)."""
    from spoke.sandbox.hubspot.app import serve

    serve(host=host, port=port, state_file=state)
