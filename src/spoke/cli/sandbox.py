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


@app.command()
def fcm(
    port: int = typer.Option(8200, help="Port to listen on (127.0.0.1)."),
    host: str = typer.Option("127.0.0.1", help="Interface to bind."),
    latency_ms: float = typer.Option(0.0, help="Delay added to every send, in milliseconds."),
) -> None:
    """A local Firebase Cloud Messaging (HTTP v1 + OAuth token endpoint); prints a key file."""
    from spoke.sandbox.fcm.app import serve

    serve(host=host, port=port, latency_ms=latency_ms)
