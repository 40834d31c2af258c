"""Which job consumer processes are alive, so that long work can be spread over them.

Each consumer (`spoke worker`, or the worker inside `spoke serve`) stamps its row every
`BEAT_SECONDS` while it runs and deletes it when it stops. A row not stamped for
`STALE_SECONDS` belongs to a process that died (`kill -9`, a lost machine) and is not
counted; one stale for much longer is deleted by the next beat of any live process. The rows
are a hint, never a lock: nothing waits on them, and a wrong count only spreads work less
evenly.
"""

from __future__ import annotations

import threading
from datetime import datetime, timedelta

import sqlalchemy as sa
import structlog
from sqlalchemy.orm import Mapped, Session, mapped_column, sessionmaker

from spoke.core.clock import utcnow
from spoke.core.db import Base, session_scope

log = structlog.get_logger("spoke.workers")

BEAT_SECONDS = 5.0
STALE_SECONDS = 15.0
_FORGET_SECONDS = 3600.0


class JobWorker(Base):
    __tablename__ = "job_workers"

    id: Mapped[str] = mapped_column(sa.String(120), primary_key=True)
    seen_at: Mapped[datetime] = mapped_column()


def live_workers(session: Session) -> int:
    """How many consumer processes stamped their row recently."""
    since = utcnow() - timedelta(seconds=STALE_SECONDS)
    count = session.scalar(
        sa.select(sa.func.count()).select_from(JobWorker).where(JobWorker.seen_at >= since)
    )
    return int(count or 0)


def beat(session: Session, worker_id: str) -> None:
    """Stamp `worker_id` as alive now; forget processes gone for long."""
    now = utcnow()
    row = session.get(JobWorker, worker_id)
    if row is None:
        session.add(JobWorker(id=worker_id, seen_at=now))
    else:
        row.seen_at = now
    session.execute(
        sa.delete(JobWorker).where(JobWorker.seen_at < now - timedelta(seconds=_FORGET_SECONDS))
    )


def leave(session: Session, worker_id: str) -> None:
    session.execute(sa.delete(JobWorker).where(JobWorker.id == worker_id))


class Heartbeat:
    """Stamps one consumer's row on a thread of its own from `start()` until `stop()`."""

    def __init__(
        self, sessions: sessionmaker[Session], worker_id: str, interval: float = BEAT_SECONDS
    ) -> None:
        self._sessions = sessions
        self._worker_id = worker_id
        self._interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="spoke-heartbeat", daemon=True)

    def start(self) -> None:
        self._beat()  # counted before the consumer takes its first job
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(self._interval + 5)
        try:
            with session_scope(self._sessions) as session:
                leave(session, self._worker_id)
        except Exception:  # the row goes stale and stops counting anyway
            log.warning("workers.leave_failed", worker_id=self._worker_id, exc_info=True)

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            self._beat()

    def _beat(self) -> None:
        try:
            with session_scope(self._sessions) as session:
                beat(session, self._worker_id)
        except Exception:  # a database blip: the next beat tries again
            log.warning("workers.beat_failed", worker_id=self._worker_id, exc_info=True)


__all__ = ["BEAT_SECONDS", "STALE_SECONDS", "Heartbeat", "JobWorker", "beat", "live_workers"]
