"""The composition root: turns `Settings` into the engine, sessions, job runtime and the
rest, once per process. Domains never build these themselves; they are passed in."""

from __future__ import annotations

import importlib
from dataclasses import dataclass

from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

from spoke.config import Settings
from spoke.core.crypto import Encryptor
from spoke.core.db import make_engine, make_session_factory
from spoke.core.jobs import JobRuntime, build_huey
from spoke.core.metrics import Metrics

# Modules that declare jobs; imported before the job runtime binds them to a queue.
TASK_MODULES = (
    "spoke.core.tasks",
    "spoke.users.tasks",
    "spoke.sync.tasks",
    "spoke.messaging.tasks",
    "spoke.events.export_tasks",
)


@dataclass
class Runtime:
    settings: Settings
    engine: Engine
    sessions: sessionmaker[Session]
    read_sessions: sessionmaker[Session]
    encryptor: Encryptor
    jobs: JobRuntime
    metrics: Metrics

    def close(self) -> None:
        self.engine.dispose()


def build_runtime(settings: Settings, *, queue_name: str | None = None) -> Runtime:
    for module in TASK_MODULES:
        importlib.import_module(module)
    engine = make_engine(
        settings.database_url,
        pool_size=settings.database.pool_size,
        pool_timeout=settings.database.pool_timeout,
    )
    sessions = make_session_factory(engine)
    encryptor = Encryptor(settings.secret_keys())
    jobs = JobRuntime(
        settings,
        sessions,
        build_huey(settings, name=queue_name or settings.jobs.queue_name),
        encryptor,
    )
    read_sessions = make_session_factory(engine, read_only=True)
    from spoke.sync.tasks import install as install_sync_trigger

    install_sync_trigger(jobs, engine)  # user writes start the contact sync of their workspace
    return Runtime(settings, engine, sessions, read_sessions, encryptor, jobs, Metrics())
