"""Background jobs on Huey: a SQLite queue by default, Redis when configured.

Jobs are declared with `@job("domain.verb")` and take a `JobContext` plus JSON-able
keyword arguments (ids, never ORM objects). A `JobRuntime` binds the declared jobs to one
Huey instance; producers call `runtime.enqueue(...)`, or `enqueue_after_commit(...)` from
inside a transaction so the message leaves only if the rows it refers to were committed.

The queue is a hint, the database is the truth: every job must be safe to run twice and
must find its work in rows (see `core.leases` and the sweeper), so a lost message or a
killed worker only delays work.
"""

from __future__ import annotations

import os
import socket
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import structlog
from huey import RedisHuey, SqliteHuey, crontab
from huey.api import Huey
from huey.consumer import Consumer, Worker
from sqlalchemy.orm import Session, sessionmaker

from spoke.config import Settings
from spoke.core.crypto import Encryptor
from spoke.core.db import after_commit
from spoke.core.workers import Heartbeat

log = structlog.get_logger("spoke.jobs")


@dataclass(frozen=True)
class JobContext:
    """What a running job may use; built once per process."""

    settings: Settings
    sessions: sessionmaker[Session]
    runtime: JobRuntime
    encryptor: Encryptor
    worker_id: str

    def lease_owner(self) -> str:
        """A lease owner for one attempt of a job: two threads of one process must not
        share a lease, and the worker id in front tells which process holds it."""
        return f"{self.worker_id}/{uuid.uuid4().hex[:8]}"


# A job takes the context first, then JSON-able keyword arguments.
JobFunction = Callable[..., None]


@dataclass(frozen=True)
class JobSpec:
    name: str
    func: JobFunction
    retries: int = 3
    retry_delay: int = 5
    schedule: dict[str, str] | None = None  # crontab fields, for periodic jobs


_REGISTRY: dict[str, JobSpec] = {}


def job(
    name: str, *, retries: int = 3, retry_delay: int = 5
) -> Callable[[JobFunction], JobFunction]:
    """Declare a job. `name` is `domain.verb` and is the message name on the queue."""

    def register(func: JobFunction) -> JobFunction:
        _REGISTRY[name] = JobSpec(name, func, retries, retry_delay)
        return func

    return register


def periodic_job(name: str, **cron: str) -> Callable[[JobFunction], JobFunction]:
    """Declare a cron-like job, e.g. `@periodic_job("core.sweep", minute="*")`."""

    def register(func: JobFunction) -> JobFunction:
        _REGISTRY[name] = JobSpec(name, func, retries=0, retry_delay=0, schedule=cron or {})
        return func

    return register


def registered_jobs() -> dict[str, JobSpec]:
    return dict(_REGISTRY)


def new_worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def build_huey(settings: Settings, *, name: str = "spoke") -> Huey:
    if settings.redis_url:
        return RedisHuey(name=name, url=settings.redis_url, results=False)
    settings.huey_file.parent.mkdir(parents=True, exist_ok=True)
    return SqliteHuey(name=name, filename=str(settings.huey_file), results=False)


class Doorbell:
    """Wakes this process's idle workers when this process enqueues a job.

    Redis hands a job to a blocked worker at once; the SQLite queue is polled, and an idle
    worker polls only once a second. When the API and the worker share a process (`spoke
    serve`, `spoke demo`), a ring ends that wait, so a push starts within milliseconds of
    its request. Workers in other processes still find the job at their next poll."""

    def __init__(self) -> None:
        self._condition = threading.Condition()

    def ring(self) -> None:
        with self._condition:
            self._condition.notify_all()

    def wait(self, timeout: float) -> None:
        with self._condition:
            self._condition.wait(timeout)


class _DoorbellWorker(Worker):  # type: ignore[misc]
    doorbell = Doorbell()  # replaced per consumer
    # Set by Huey's (untyped) constructor.
    delay: float
    max_delay: float
    backoff: float

    def sleep(self) -> None:
        # Huey's own sleep, waiting on the doorbell instead of the stop flag (a stop is
        # seen at the next wake-up, at most `max_delay` later, or at once: stop rings too).
        delay = min(self.delay, self.max_delay)
        if not self.stop_flag.is_set():
            self.doorbell.wait(delay)
        self.delay = delay * self.backoff


@dataclass
class JobRuntime:
    """The declared jobs bound to one Huey instance, plus what they run with."""

    settings: Settings
    sessions: sessionmaker[Session]
    huey: Huey
    encryptor: Encryptor
    worker_id: str = field(default_factory=new_worker_id)
    doorbell: Doorbell = field(default_factory=Doorbell)
    _tasks: dict[str, Any] = field(default_factory=dict, init=False)

    def __post_init__(self) -> None:
        ctx = JobContext(self.settings, self.sessions, self, self.encryptor, self.worker_id)
        for spec in _REGISTRY.values():
            self._tasks[spec.name] = self._bind(spec, ctx)

    def _bind(self, spec: JobSpec, ctx: JobContext) -> Any:
        def run(**kwargs: Any) -> None:
            structlog.contextvars.bind_contextvars(job=spec.name)
            try:
                spec.func(ctx, **kwargs)
            except Exception:
                log.exception("job.failed", job=spec.name, args=kwargs)
                raise
            finally:
                structlog.contextvars.unbind_contextvars("job")

        run.__name__ = spec.name.replace(".", "_")
        if spec.schedule is not None:
            return self.huey.periodic_task(crontab(**spec.schedule), name=spec.name)(run)
        return self.huey.task(
            retries=spec.retries, retry_delay=spec.retry_delay, retry_backoff=2, name=spec.name
        )(run)

    def enqueue(self, name: str, **kwargs: Any) -> None:
        if name not in self._tasks:
            raise KeyError(f"unknown job {name!r}")
        self._tasks[name](**kwargs)
        self.doorbell.ring()

    def enqueue_later(self, seconds: float, name: str, **kwargs: Any) -> None:
        """Enqueue once `seconds` have passed (a consumer's scheduler moves it to the queue)."""
        if name not in self._tasks:
            raise KeyError(f"unknown job {name!r}")
        self._tasks[name].schedule(kwargs=kwargs, delay=seconds)

    def enqueue_after_commit(self, session: Session, name: str, **kwargs: Any) -> None:
        if name not in self._tasks:
            raise KeyError(f"unknown job {name!r}")

        def send() -> None:
            try:
                self.enqueue(name, **kwargs)
            except Exception:
                # The rows are committed; the sweeper will find them. Losing the hint is fine.
                log.warning("job.enqueue_failed", job=name, exc_info=True)

        after_commit(session, send)

    def run_now(self, name: str, **kwargs: Any) -> None:
        """Run a job synchronously in this thread (CLI paths and tests of the job body)."""
        _REGISTRY[name].func(
            JobContext(self.settings, self.sessions, self, self.encryptor, self.worker_id),
            **kwargs,
        )

    def pending_count(self) -> int:
        return int(self.huey.pending_count())

    def ping(self) -> None:
        """Raise if the queue's storage is unreachable."""
        self.huey.pending_count()

    def consumer(self, *, workers: int | None = None, embedded: bool = False) -> Consumer:
        cls = EmbeddedConsumer if embedded else SpokeConsumer
        return cls(
            self.huey,
            doorbell=self.doorbell,
            heartbeat=Heartbeat(self.sessions, self.worker_id),
            workers=workers or self.settings.jobs.workers,
            worker_type="thread",
            periodic=True,
            check_worker_health=True,
            shutdown_timeout=30,
            max_delay=1.0,
        )


class SpokeConsumer(Consumer):  # type: ignore[misc]
    """Huey's consumer whose idle workers also wake when this process enqueues a job, and
    whose process counts as live (`core.workers`) while it runs."""

    worker_class = _DoorbellWorker

    def __init__(
        self, huey: Huey, *, doorbell: Doorbell, heartbeat: Heartbeat, **options: Any
    ) -> None:
        self.doorbell = doorbell  # before Huey's constructor, which creates the workers
        self.heartbeat = heartbeat
        super().__init__(huey, **options)

    def run(self) -> None:
        self.heartbeat.start()
        try:
            super().run()
        finally:
            self.heartbeat.stop()

    def _create_worker(self) -> Worker:
        worker = super()._create_worker()
        worker.doorbell = self.doorbell
        return worker

    def stop(self, graceful: bool = False) -> None:
        self.stop_flag.set()
        self.doorbell.ring()  # idle workers see the flag now, not at their next poll
        super().stop(graceful=graceful)


class EmbeddedConsumer(SpokeConsumer):
    """A consumer that runs inside `spoke serve`: the host process owns the signals."""

    def _set_signal_handlers(self) -> None:
        pass


class EmbeddedWorker:
    """Runs an `EmbeddedConsumer` on a background thread; `stop()` drains in-flight jobs."""

    def __init__(self, runtime: JobRuntime) -> None:
        self._consumer = runtime.consumer(embedded=True)
        self._thread = threading.Thread(target=self._consumer.run, name="spoke-jobs", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._consumer.stop(graceful=True)
        self._thread.join(10)
