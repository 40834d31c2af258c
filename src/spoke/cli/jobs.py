"""`spoke jobs …`: look at and nudge the job queue."""

from __future__ import annotations

import typer

from spoke.cli.common import console, runtime, transaction
from spoke.core import leases

app = typer.Typer(help="Background jobs.", no_args_is_help=True)


@app.command()
def sweep() -> None:
    """Re-enqueue work whose job was lost or whose worker died (the periodic sweeper, now)."""
    rt = runtime()
    with transaction(rt) as session:
        count = leases.sweep(session, rt.jobs.enqueue, rt.settings.jobs.sweep_grace_seconds)
    console.print(f"Re-enqueued {count} job(s).")


@app.command()
def pending() -> None:
    """How many jobs wait in the queue."""
    console.print(str(runtime().jobs.pending_count()))
