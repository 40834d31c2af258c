"""`spoke sync run`: a manual contact sync (backfill) from the command line, with progress."""

from __future__ import annotations

import threading
import time
import uuid

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from sqlalchemy.orm import Session, sessionmaker

from spoke.cli.common import console, err_console, runtime, transaction
from spoke.core.db import session_scope
from spoke.sync import runs
from spoke.sync.models import ContactSyncRun
from spoke.workspaces import service as workspaces

app = typer.Typer(help="HubSpot contact sync.", no_args_is_help=True)


@app.command("run")
def run(
    workspace: str = typer.Option(..., "--workspace", "-w", help="Workspace slug."),
    direction: str = typer.Option("to_spoke", help="to_spoke (default) or to_hubspot."),
    source_app: str | None = typer.Option(
        None, help="spoke or hubspot: whose values win conflicts (default: the sender)."
    ),
    dry_run: bool = typer.Option(False, help="Count what would happen; write nothing."),
    follow: bool = typer.Option(True, help="Show progress until the run ends."),
    here: bool = typer.Option(
        False, help="Process the run in this process instead of leaving it to `spoke worker`."
    ),
) -> None:
    """Copy existing records between Spoke and HubSpot (one run at a time per workspace)."""
    if direction not in ("to_spoke", "to_hubspot"):
        raise typer.BadParameter("direction must be to_spoke or to_hubspot")
    if source_app not in (None, "spoke", "hubspot"):
        raise typer.BadParameter("source-app must be spoke or hubspot")
    rt = runtime()
    with transaction(rt) as session:
        ws = workspaces.get_workspace_by_slug(session, workspace)
        started = runs.start(
            session,
            ws.id,
            direction=direction,
            source_app=source_app,
            dry_run=dry_run,
            actor="cli",
        )
        run_id = started.id
        if not here:
            rt.jobs.enqueue_after_commit(session, runs.RUN_JOB, run_id=run_id)
    console.print(f"run {run_id} queued ({direction}{', dry run' if dry_run else ''})")
    worker: threading.Thread | None = None
    if here:
        owner = f"cli/{uuid.uuid4().hex[:8]}"
        worker = threading.Thread(
            target=runs.process,
            args=(rt.sessions, rt.settings, rt.encryptor, run_id),
            kwargs={"owner": owner, "lease_seconds": rt.settings.jobs.lease_seconds},
            daemon=True,
        )
        worker.start()
    if not follow and worker is None:
        return
    final = _follow(rt.read_sessions, run_id)
    if worker is not None:
        worker.join()
    console.print(
        f"{final.status}: {final.done} done, {final.created} created, {final.updated} updated, "
        f"{final.unchanged} unchanged, {final.duplicates} duplicates, "
        f"{final.conflicts} conflicts, {final.failed} failed"
    )
    for sample in (final.samples or {}).get("errors", [])[:5]:
        err_console.print(f"  {sample['record']}: {sample['reason']}")
    if final.status != "succeeded":
        raise typer.Exit(1)


def _follow(read_sessions: sessionmaker[Session], run_id: str) -> ContactSyncRun:
    progress = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=console,
    )
    with progress:
        task = progress.add_task("sync", total=None)
        while True:
            with session_scope(read_sessions) as session:
                current = session.get(ContactSyncRun, run_id)
                assert current is not None
                session.expunge(current)
            progress.update(task, completed=current.done, total=current.total)
            if current.status not in runs.ACTIVE:
                return current
            time.sleep(0.2)
