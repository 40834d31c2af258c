"""CSV imports over HTTP: upload a file, then follow its progress and row errors."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Path, Query, Request, status
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool

from spoke.core.errors import AppError, responses
from spoke.core.http import TransactionalRoute
from spoke.deps import AppServices, Db
from spoke.users import imports
from spoke.workspaces.auth import Idempotent, ServerCaller

_EXAMPLE_CSV = "external_id,email,first_name,tags.plan\nu1,ann@example.com,Ann,pro\n"

router = APIRouter(prefix="/v1/imports", tags=["imports"], route_class=TransactionalRoute)


class UnsupportedMediaType(AppError):
    code = "unsupported_media_type"
    status_code = 415
    title = "Unsupported media type"


class Import(BaseModel):
    id: str
    status: str
    filename: str
    total_rows: int
    processed_rows: int
    created_count: int
    updated_count: int
    unchanged_count: int
    failed_count: int
    created_at: datetime
    finished_at: datetime | None


class ImportRowError(BaseModel):
    row_number: int
    external_id: str | None
    code: str
    message: str


ImportIdPath = Annotated[str, Path(min_length=1, max_length=40)]


@router.post(
    "",
    response_model=Import,
    status_code=status.HTTP_202_ACCEPTED,
    responses=responses(imports.InvalidCsv, UnsupportedMediaType),
    dependencies=[Idempotent],
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "text/csv": {
                    "schema": {"type": "string"},
                    "example": _EXAMPLE_CSV,
                }
            },
        }
    },
)
async def create_import(
    request: Request,
    caller: ServerCaller,
    session: Db,
    services: AppServices,
    filename: Annotated[str, Query(max_length=255)] = "upload.csv",
) -> object:
    """Upload a CSV (`text/csv`, UTF-8, header row with `external_id`, standard fields,
    custom field names and `tags.<key>` columns). Rows are upserted in the background;
    empty cells leave fields alone. Poll the returned import for progress."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type not in ("text/csv", "application/csv", "text/plain"):
        raise UnsupportedMediaType("Send the file as text/csv.")
    data = await request.body()

    def store() -> object:
        imp = imports.create_from_text(session, caller.workspace_id, filename, data)
        services.jobs.enqueue_after_commit(session, "users.run_import", import_id=imp.id)
        return imp

    return await run_in_threadpool(store)


@router.get("/{import_id}", response_model=Import, responses=responses(imports.ImportNotFound))
def get_import(import_id: ImportIdPath, caller: ServerCaller, session: Db) -> object:
    """Progress and counts of one import."""
    return imports.get_import(session, caller.workspace_id, import_id)


@router.get(
    "/{import_id}/errors",
    response_model=list[ImportRowError],
    responses=responses(imports.ImportNotFound),
)
def import_errors(
    import_id: ImportIdPath,
    caller: ServerCaller,
    session: Db,
    after_row: Annotated[int, Query(ge=0, le=2**31 - 1)] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> object:
    """Rows that were not imported, with the reason."""
    imp = imports.get_import(session, caller.workspace_id, import_id)
    return imports.list_errors(session, imp.id, after_row=after_row, limit=limit)
