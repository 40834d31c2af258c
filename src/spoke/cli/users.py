"""`spoke users import FILE.csv`: upload with a progress bar, then apply, resumably.

Run it again after an interruption (Ctrl-C, a killed process, a lost connection): the
same file is recognised by its SHA-256, the upload continues at the first missing chunk
and processing at the first unapplied one.
"""

from __future__ import annotations

import hashlib
import time
import uuid
from pathlib import Path

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from spoke.cli.common import console, runtime, transaction
from spoke.core.db import session_scope
from spoke.core.jobs import new_worker_id
from spoke.runtime import Runtime
from spoke.users import imports, lists
from spoke.users.changes import Origin
from spoke.users.models import UserImport
from spoke.workspaces import service as workspaces

app = typer.Typer(help="App users.", no_args_is_help=True)


def _digest(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _progress() -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=console,
    )


@app.command("import")
def import_users(
    file: Path = typer.Argument(..., exists=True, dir_okay=False, readable=True),
    workspace: str = typer.Option(..., "--workspace", "-w", help="Workspace slug."),
    detach: bool = typer.Option(False, help="Only upload; let `spoke worker` apply it."),
) -> None:
    """Upsert users from a CSV file (header: external_id, standard fields, custom field
    names, tags.<key>). Empty cells leave fields as they are."""
    rt = runtime()
    sha = _digest(file)
    with transaction(rt) as session:
        ws = workspaces.get_workspace_by_slug(session, workspace)
        existing = imports.find_resumable(session, ws.id, sha)
        import_id = existing.id if existing else None
        if existing:
            console.print(f"Resuming import {existing.id} ({existing.status}).")
    if import_id is None:
        import_id = _start_upload(rt, ws.id, file, sha)
    _upload(rt, import_id, file)
    if detach:
        rt.jobs.enqueue("users.run_import", import_id=import_id)
        console.print(f"Import {import_id} queued; follow it with GET /v1/imports/{import_id}.")
        return
    _apply(rt, import_id)


def _start_upload(rt: Runtime, workspace_id: str, file: Path, sha: str) -> str:
    with file.open(encoding="utf-8-sig", newline="") as fh:
        header = imports.read_header(fh.readline())
        total = chunks = 0
        for chunk in imports.chunk_rows(fh):
            chunks += 1
            total += len(chunk.rows)
    with transaction(rt) as session:
        imp = imports.begin(
            session,
            workspace_id,
            filename=file.name,
            sha256=sha,
            header=header,
            total_rows=total,
            chunk_count=chunks,
        )
        if chunks == 0:
            imports.store_chunks(session, imp, [])
        return imp.id


def _upload(rt: Runtime, import_id: str, file: Path) -> None:
    with transaction(rt) as session:
        imp = session.get(UserImport, import_id)
        assert imp is not None
        done, total = imp.uploaded_chunks, imp.chunk_count
    if done >= total:
        return
    with file.open(encoding="utf-8-sig", newline="") as fh, _progress() as bar:
        task = bar.add_task("uploading", total=total, completed=done)
        fh.readline()
        pending: list[imports.Chunk] = []
        for chunk in imports.chunk_rows(fh):
            if chunk.seq < done:
                continue
            pending.append(chunk)
            if len(pending) >= imports.UPLOAD_CHUNKS_PER_TRANSACTION:
                _store(rt, import_id, pending)
                bar.update(task, advance=len(pending))
                pending = []
        if pending:
            _store(rt, import_id, pending)
            bar.update(task, advance=len(pending))


def _store(rt: Runtime, import_id: str, chunks: list[imports.Chunk]) -> None:
    with transaction(rt) as session:
        imp = session.get(UserImport, import_id, with_for_update=True)
        assert imp is not None
        imports.store_chunks(session, imp, chunks)


def _apply(rt: Runtime, import_id: str) -> None:
    """Apply the import here, or follow whoever holds its lease until it is done."""
    owner = f"{new_worker_id()}/{uuid.uuid4().hex[:8]}"
    with _progress() as bar:
        with session_scope(rt.sessions) as session:
            imp = session.get(UserImport, import_id)
            assert imp is not None
            task = bar.add_task("importing", total=imp.total_rows, completed=imp.processed_rows)

        def show(current: UserImport) -> None:
            bar.update(task, completed=current.processed_rows)

        while True:
            finished = imports.process(
                rt.sessions,
                import_id,
                owner=owner,
                lease_seconds=rt.settings.jobs.lease_seconds,
                on_progress=show,
            )
            with session_scope(rt.sessions) as session:
                imp = session.get(UserImport, import_id)
                assert imp is not None
                show(imp)
                if imp.status == "completed":
                    break
            if not finished:
                time.sleep(1.0)  # someone else holds the lease: watch, and take over if it lapses
    console.print(
        f"Import {imp.id}: {imp.created_count} created, {imp.updated_count} updated, "
        f"{imp.unchanged_count} unchanged, {imp.failed_count} failed."
    )
    if imp.failed_count:
        console.print(f"Row errors: GET /v1/imports/{imp.id}/errors")


@app.command("list-add")
def list_add(
    list_id: str = typer.Argument(..., help="The list's id (lst_…)."),
    external_ids: list[str] = typer.Argument(..., help="External ids of the users to add."),
    workspace: str = typer.Option(..., "--workspace", "-w", help="Workspace slug."),
) -> None:
    """Add users to a list by hand. Such memberships are recorded with origin `cli`: the
    contact sync does not send users who are in its selected lists only by hand."""
    rt = runtime()
    with transaction(rt) as session:
        ws = workspaces.get_workspace_by_slug(session, workspace)
        found = lists.get_list(session, ws.id, list_id)
        changed, unchanged, missing = lists.change_membership(
            session, Origin(ws.id, "cli", "cli"), found, external_ids, add=True
        )
    console.print(f"Added {changed}, already members {unchanged}.")
    if missing:
        console.print(f"No such users: {', '.join(missing)}")
        raise typer.Exit(1)
