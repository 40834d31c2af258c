"""CSV imports of users, resumable at every step.

Upload: the file is cut into chunks of rows, stored in the database a few chunks per
transaction; `uploaded_chunks` says how far an interrupted upload got, so sending the same
file again (same SHA-256) continues where it stopped.

Processing: a job holding the import's lease applies one chunk per transaction, with the
chunk's user writes, its row errors, the counters and `next_chunk` committed together.
A killed process therefore leaves the import at a chunk boundary; whoever takes the lease
next (the sweeper re-enqueues it) continues from `next_chunk`, and no row is applied twice.
"""

from __future__ import annotations

import csv
import hashlib
import io
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
import structlog
from pydantic import ValidationError
from sqlalchemy.orm import Session, sessionmaker

from spoke.core import leases
from spoke.core.clock import utcnow
from spoke.core.db import session_scope
from spoke.core.errors import InvalidInput, NotFound, validation_errors
from spoke.core.ids import new_id
from spoke.users import fields as custom_fields
from spoke.users import service
from spoke.users.changes import Origin
from spoke.users.models import STANDARD_FIELDS, UserImport, UserImportChunk, UserImportError
from spoke.users.schemas import UserBatchItem

log = structlog.get_logger("spoke.imports")
CHUNK_ROWS = 500
UPLOAD_CHUNKS_PER_TRANSACTION = 20
MAX_ERRORS_KEPT = 10_000


class ImportNotFound(NotFound):
    code = "import_not_found"


class InvalidCsv(InvalidInput):
    code = "invalid_csv"
    title = "Invalid CSV"


@dataclass(frozen=True)
class Chunk:
    seq: int
    first_row: int  # 1-based data row number (the header is row 0)
    rows: list[list[str]]


def read_header(text_head: str) -> list[str]:
    reader = csv.reader(io.StringIO(text_head))
    try:
        header = next(reader)
    except (StopIteration, csv.Error) as exc:
        raise InvalidCsv("The file has no header row.") from exc
    return [h.strip() for h in header]


def check_header(session: Session, workspace_id: str, header: Sequence[str]) -> None:
    """Refuse unknown columns up front rather than failing every row."""
    if "external_id" not in header:
        raise InvalidCsv("The header needs an `external_id` column.")
    if len(set(header)) != len(header):
        raise InvalidCsv("The header names a column twice.")
    known = custom_fields.definitions(session, workspace_id)
    unknown = [
        h
        for h in header
        if not (
            h == "external_id"
            or h in STANDARD_FIELDS
            or (h.startswith("tags.") and len(h) > 5)
            or h.removeprefix("custom.") in known
        )
    ]
    if unknown:
        raise InvalidCsv(
            f"Unknown columns: {', '.join(unknown)}. Use standard fields, "
            "declared custom fields (optionally `custom.<name>`), or `tags.<key>`.",
            columns=unknown,
        )


def chunk_rows(lines: Iterable[str], chunk_rows: int = CHUNK_ROWS) -> Iterator[Chunk]:
    """Split CSV data rows (after the header) into chunks; quoted newlines are respected."""
    reader = csv.reader(lines)
    batch: list[list[str]] = []
    seq, row_number, first = 0, 0, 1
    for row in reader:
        if not any(cell.strip() for cell in row):
            continue
        row_number += 1
        batch.append(row)
        if len(batch) >= chunk_rows:
            yield Chunk(seq, first, batch)
            seq, first, batch = seq + 1, row_number + 1, []
    if batch:
        yield Chunk(seq, first, batch)


def _encode(rows: list[list[str]]) -> str:
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerows(rows)
    return out.getvalue()


def file_digest(path_or_bytes: bytes) -> str:
    return hashlib.sha256(path_or_bytes).hexdigest()


def find_resumable(session: Session, workspace_id: str, sha256: str) -> UserImport | None:
    """An unfinished import of the same file, to continue rather than start over."""
    return session.scalars(
        sa.select(UserImport)
        .where(
            UserImport.workspace_id == workspace_id,
            UserImport.sha256 == sha256,
            UserImport.status.in_(("uploading", "queued", "running")),
        )
        .order_by(UserImport.created_at.desc())
    ).first()


def begin(
    session: Session,
    workspace_id: str,
    *,
    filename: str,
    sha256: str,
    header: list[str],
    total_rows: int,
    chunk_count: int,
) -> UserImport:
    check_header(session, workspace_id, header)
    created = UserImport(
        id=new_id("imp"),
        workspace_id=workspace_id,
        filename=filename[:255],
        sha256=sha256,
        header=header,
        total_rows=total_rows,
        chunk_count=chunk_count,
        uploaded_chunks=0,
        status="uploading",
        created_at=utcnow(),
    )
    session.add(created)
    session.flush()
    return created


def store_chunks(session: Session, imp: UserImport, chunks: Sequence[Chunk]) -> None:
    """Store the next chunks; chunks already stored (a resumed upload) are skipped."""
    fresh = [c for c in chunks if c.seq >= imp.uploaded_chunks]
    if fresh:
        session.execute(
            sa.insert(UserImportChunk),
            [
                {
                    "import_id": imp.id,
                    "seq": c.seq,
                    "first_row": c.first_row,
                    "row_count": len(c.rows),
                    "content": _encode(c.rows),
                }
                for c in fresh
            ],
        )
        imp.uploaded_chunks = max(c.seq for c in fresh) + 1
    if imp.uploaded_chunks >= imp.chunk_count:
        imp.status = "queued"
    session.flush()


def create_from_text(
    session: Session,
    workspace_id: str,
    filename: str,
    data: bytes,
    *,
    rows_per_chunk: int = CHUNK_ROWS,
) -> UserImport:
    """Whole-file path for the HTTP API: store every chunk in this one transaction."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InvalidCsv("The file is not UTF-8 text.") from exc
    lines = io.StringIO(text)
    header = read_header(lines.readline())
    try:
        chunks = list(chunk_rows(lines, rows_per_chunk))
    except csv.Error as exc:
        raise InvalidCsv(f"The CSV can't be parsed: {exc}") from exc
    imp = begin(
        session,
        workspace_id,
        filename=filename,
        sha256=file_digest(data),
        header=header,
        total_rows=sum(len(c.rows) for c in chunks),
        chunk_count=len(chunks),
    )
    store_chunks(session, imp, chunks)
    return imp


def get_import(session: Session, workspace_id: str, import_id: str) -> UserImport:
    found = session.get(UserImport, import_id)
    if found is None or found.workspace_id != workspace_id:
        raise ImportNotFound(f"No import with id {import_id!r}.")
    return found


def list_errors(
    session: Session, import_id: str, *, after_row: int, limit: int
) -> Sequence[UserImportError]:
    return session.scalars(
        sa.select(UserImportError)
        .where(UserImportError.import_id == import_id, UserImportError.row_number > after_row)
        .order_by(UserImportError.row_number)
        .limit(limit)
    ).all()


# -- processing ---------------------------------------------------------------------------


def _row_to_item(
    header: Sequence[str], row: Sequence[str], definitions: dict[str, custom_fields.Definition]
) -> dict[str, Any]:
    item: dict[str, Any] = {}
    for column, cell in zip(header, row, strict=False):
        value = cell.strip()
        if not value:
            continue  # an empty cell leaves the field alone, it does not clear it
        if column == "external_id" or column in STANDARD_FIELDS:
            item[column] = value
        elif column.startswith("tags."):
            item.setdefault("tags", {})[column[5:]] = value
        else:
            name = column.removeprefix("custom.")
            item.setdefault("custom", {})[name] = _from_text(definitions[name].type, value)
    return item


def _from_text(field_type: str, value: str) -> Any:
    """CSV cells are text; turn them into the JSON type the field expects."""
    if field_type == "number":
        try:
            return int(value)
        except ValueError:
            try:
                return float(value)
            except ValueError:
                return value  # let validation report it
    if field_type == "boolean":
        lowered = value.lower()
        if lowered in ("true", "yes", "1", "y"):
            return True
        if lowered in ("false", "no", "0", "n"):
            return False
    return value


def apply_chunk(session: Session, imp: UserImport, chunk: UserImportChunk) -> None:
    definitions = custom_fields.definitions(session, imp.workspace_id)
    rows = list(csv.reader(io.StringIO(chunk.content)))
    origin = Origin(imp.workspace_id, "import", imp.id)
    items: list[service.WriteItem] = []
    row_numbers: list[int] = []
    errors: list[dict[str, Any]] = []
    for offset, row in enumerate(rows):
        row_number = chunk.first_row + offset
        raw = _row_to_item(imp.header, row, definitions)
        try:
            parsed = UserBatchItem.model_validate(raw)
        except ValidationError as exc:
            errors.append(
                {
                    "import_id": imp.id,
                    "row_number": row_number,
                    "external_id": raw.get("external_id"),
                    "code": "invalid_input",
                    "message": "; ".join(
                        f"{e.field}: {e.message}" for e in validation_errors(exc.errors())
                    ),
                }
            )
            continue
        items.append(service.WriteItem(parsed.external_id, parsed))
        row_numbers.append(row_number)
    counts = {"created": 0, "updated": 0, "unchanged": 0}
    for row_number, outcome in zip(
        row_numbers, service.write_users(session, origin, items), strict=True
    ):
        if outcome.error is not None:
            errors.append(
                {
                    "import_id": imp.id,
                    "row_number": row_number,
                    "external_id": outcome.external_id,
                    "code": outcome.error.code,
                    "message": outcome.error.detail,
                }
            )
        else:
            counts[outcome.status] += 1
    if errors:
        room = MAX_ERRORS_KEPT - (imp.failed_count or 0)
        if room > 0:
            session.execute(sa.insert(UserImportError), errors[:room])
    imp.created_count += counts["created"]
    imp.updated_count += counts["updated"]
    imp.unchanged_count += counts["unchanged"]
    imp.failed_count += len(errors)
    imp.processed_rows += len(rows)
    imp.next_chunk = chunk.seq + 1


Progress = Callable[[UserImport], None]


def process(
    sessions: sessionmaker[Session],
    import_id: str,
    *,
    owner: str,
    lease_seconds: float,
    on_progress: Progress | None = None,
) -> bool:
    """Work through an import under its lease. Returns False if someone else holds it."""
    with session_scope(sessions) as session:
        if not leases.claim(session, UserImport, import_id, owner, lease_seconds):
            return False
    while True:
        try:
            with session_scope(sessions) as session:
                # Row lock on PostgreSQL: the chunk, its counters and the lease renewal are
                # one atomic step even if another worker wrongly holds the same id.
                imp = session.get(UserImport, import_id, with_for_update=True)
                if imp is None:
                    return True
                if imp.next_chunk >= imp.chunk_count:
                    _finish(session, imp, owner)
                    if on_progress:
                        on_progress(imp)
                    return True
                chunk = session.get(UserImportChunk, (imp.id, imp.next_chunk))
                if chunk is None:
                    raise RuntimeError(f"import {imp.id} is missing chunk {imp.next_chunk}")
                apply_chunk(session, imp, chunk)
                leases.renew(session, UserImport, imp.id, owner, lease_seconds)
        except leases.LeaseLost:
            log.warning("import.lease_lost", import_id=import_id, owner=owner)
            return False
        if on_progress:
            on_progress(imp)


def _finish(session: Session, imp: UserImport, owner: str) -> None:
    leases.release(session, UserImport, imp.id, owner, "completed")
    imp.status = "completed"
    imp.finished_at = utcnow()
    # The rows now live in `users`; the raw chunks only cost space.
    session.execute(sa.delete(UserImportChunk).where(UserImportChunk.import_id == imp.id))
    log.info(
        "import.completed",
        import_id=imp.id,
        rows=imp.processed_rows,
        created=imp.created_count,
        updated=imp.updated_count,
        failed=imp.failed_count,
    )
