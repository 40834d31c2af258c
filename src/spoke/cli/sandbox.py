"""`spoke sandbox …`: local emulators of the vendors Spoke talks to."""

from __future__ import annotations

from pathlib import Path

import typer

app = typer.Typer(
    help="Local emulators (HubSpot, FCM, SMTP, SMS) for offline development and tests.",
    no_args_is_help=True,
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


@app.command()
def smtp(
    port: int = typer.Option(8300, help="Port of the HTTP read API (127.0.0.1)."),
    smtp_port: int = typer.Option(2525, help="Port the SMTP server listens on."),
    host: str = typer.Option("127.0.0.1", help="Interface to bind."),
    username: str | None = typer.Option(None, help="Require AUTH with this user name."),
    password: str | None = typer.Option(None, help="…and this password."),
    latency_ms: float = typer.Option(0.0, help="Delay added to every RCPT and DATA, in ms."),
) -> None:
    """A local SMTP sink (STARTTLS, optional AUTH, bounces and faults) with a read API."""
    from spoke.sandbox.smtp.app import serve

    serve(
        host=host,
        port=port,
        smtp_port=smtp_port,
        username=username,
        password=password,
        latency_ms=latency_ms,
    )


@app.command()
def sms(
    port: int = typer.Option(8400, help="Port to listen on (127.0.0.1)."),
    host: str = typer.Option("127.0.0.1", help="Interface to bind."),
    latency_ms: float = typer.Option(0.0, help="Delay added to every send, in milliseconds."),
) -> None:
    """A local Twilio Messages API (errors, STOP'd and invalid numbers, faults); prints an
    account SID and auth token."""
    from spoke.sandbox.sms.app import serve

    serve(host=host, port=port, latency_ms=latency_ms)
