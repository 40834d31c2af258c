"""Jobs of the users domain: running CSV imports (resumable, see `users.imports`)."""

from __future__ import annotations

import uuid

from spoke.core.jobs import JobContext, job
from spoke.core.leases import register_sweepable
from spoke.users import imports
from spoke.users.models import UserImport

register_sweepable(UserImport, "users.run_import", "import_id")


@job("users.run_import", retries=5, retry_delay=10)
def run_import(ctx: JobContext, import_id: str) -> None:
    # One owner per run, not per process: two threads of one worker must not share a lease.
    owner = f"{ctx.worker_id}/{uuid.uuid4().hex[:8]}"
    imports.process(
        ctx.sessions, import_id, owner=owner, lease_seconds=ctx.settings.jobs.lease_seconds
    )
