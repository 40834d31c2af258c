"""Jobs of the users domain: running CSV imports (resumable, see `users.imports`)."""

from __future__ import annotations

from spoke.core.jobs import JobContext, job
from spoke.core.leases import register_sweepable
from spoke.users import imports
from spoke.users.models import UserImport

register_sweepable(UserImport, "users.run_import", "import_id")


@job("users.run_import", retries=5, retry_delay=10)
def run_import(ctx: JobContext, import_id: str) -> None:
    imports.process(
        ctx.sessions,
        import_id,
        owner=ctx.lease_owner(),
        lease_seconds=ctx.settings.jobs.lease_seconds,
    )
