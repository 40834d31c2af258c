"""Database engine, sessions and the column types every model shares.

One session is one transaction: a request or a job opens it, services `flush()` but never
commit, and the edge commits (`session_scope`, the request route class). Jobs enqueued with
`enqueue_after_commit` leave only once that commit succeeded, so a rolled-back request
never starts work for rows that don't exist.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import orjson
import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import Dialect, Engine
from sqlalchemy.orm import DeclarativeBase, Session, SessionTransaction, sessionmaker
from sqlalchemy.pool import QueuePool

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class UTCDateTime(sa.types.TypeDecorator[datetime]):
    """Timestamps stored as UTC and always read back timezone-aware (SQLite drops the zone)."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        return (
            value.astimezone(UTC)
            if dialect.name != "sqlite"
            else value.astimezone(UTC).replace(tzinfo=None)
        )

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


JSONType = sa.JSON().with_variant(JSONB(), "postgresql")
# SQLite only auto-increments INTEGER PRIMARY KEY; PostgreSQL gets a 64-bit identity.
BigIntPK = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def table_of(model: type[Any]) -> sa.Table:
    """The Core table behind a mapped class, typed as a Table for bulk statements."""
    table = model.__table__
    assert isinstance(table, sa.Table)
    return table


def rowcount(result: sa.Result[Any]) -> int:
    """Rows matched by an UPDATE/DELETE (the Result of one is always a CursorResult)."""
    assert isinstance(result, sa.CursorResult)
    return int(result.rowcount)


class Base(DeclarativeBase):
    metadata = sa.MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {datetime: UTCDateTime(), dict[str, Any]: JSONType}


def normalise_url(url: str) -> str:
    """Accept the URLs people paste: `postgres://` and `postgresql://` both mean psycopg 3."""
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


def make_engine(
    url: str, *, echo: bool = False, pool_size: int = 10, pool_timeout: float = 30.0
) -> Engine:
    url = normalise_url(url)
    if url.startswith("sqlite"):
        engine = sa.create_engine(
            url,
            echo=echo,
            json_serializer=_json_dumps,
            json_deserializer=orjson.loads,
            connect_args={"check_same_thread": False, "timeout": 30},
            pool_size=pool_size,
            max_overflow=pool_size,
            pool_timeout=pool_timeout,
        )
        _tune_sqlite(engine)
        return engine
    return sa.create_engine(
        url,
        echo=echo,
        pool_size=pool_size,
        max_overflow=pool_size,
        pool_timeout=pool_timeout,
        pool_pre_ping=True,
        # psycopg prepares a statement after 5 runs and PostgreSQL then switches to a
        # generic plan, which for `external_id IN (…1,000 ids…)` is a sequential scan:
        # a batch upsert got slower with every user added. Custom plans keep the index.
        connect_args={"options": "-c plan_cache_mode=force_custom_plan"},
        json_serializer=_json_dumps,
        json_deserializer=orjson.loads,
    )


def kept_connections(engine: Engine) -> int | None:
    """How many connections the engine's pool keeps open (None: no fixed bound). As many
    again may open under load, but each of those is closed when it is given back."""
    pool = engine.pool
    if not isinstance(pool, QueuePool) or pool._max_overflow < 0:
        return None
    return int(pool.size())


def _json_dumps(value: Any) -> str:
    # orjson: several times faster than json.dumps on change rows and custom fields.
    return orjson.dumps(value).decode()


def _tune_sqlite(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        # Take transaction control from pysqlite so BEGIN IMMEDIATE below is what runs:
        # a deferred transaction that later writes can fail with SQLITE_BUSY at once,
        # without waiting, when another connection holds the write lock.
        dbapi_conn.isolation_level = None
        cursor = dbapi_conn.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: sa.Connection) -> None:
        # Readers start deferred so they never queue behind a long run of writes (WAL lets
        # them read a snapshot meanwhile); writers take the write lock up front.
        read_only = conn.get_execution_options().get(READ_ONLY_OPTION, False)
        conn.exec_driver_sql("BEGIN" if read_only else "BEGIN IMMEDIATE")


READ_ONLY_OPTION = "spoke_read_only"


def make_session_factory(engine: Engine, *, read_only: bool = False) -> sessionmaker[Session]:
    """Sessions for writing, or (`read_only`) for reading: on SQLite a reader doesn't take
    the write lock, so GETs and progress polls aren't starved by a running import."""
    if read_only:
        return sessionmaker(
            engine.execution_options(**{READ_ONLY_OPTION: True}),
            expire_on_commit=False,
            autoflush=False,
            info={"read_only": True},
        )
    return sessionmaker(engine, expire_on_commit=False, autoflush=False)


def is_read_only(session: Session) -> bool:
    return bool(session.info.get("read_only"))


# -- jobs that wait for the commit ------------------------------------------------------

_PENDING = "spoke.pending_jobs"
_COMMITTED = "spoke.committed_jobs"
PostCommit = Callable[[], None]


def after_commit(session: Session, callback: PostCommit) -> None:
    """Run `callback` once this session's transaction has committed (dropped on rollback)."""
    session.info.setdefault(_PENDING, []).append(callback)


@event.listens_for(Session, "after_commit")
def _hold_post_commit(session: Session) -> None:
    # SQLAlchemy fires `after_commit` while the session still holds its connection. A
    # callback that opens a session of its own (or just takes its time) would then hold two
    # connections at once: under a burst every pooled connection belonged to a request
    # waiting for a second one, and nothing moved until the pool timed out (30 s). So the
    # callbacks wait for `after_transaction_end`, which comes after the connection is back.
    callbacks = session.info.pop(_PENDING, None)
    if callbacks:
        session.info.setdefault(_COMMITTED, []).extend(callbacks)


@event.listens_for(Session, "after_transaction_end")
def _run_post_commit(session: Session, transaction: SessionTransaction) -> None:
    if transaction.parent is not None:
        return  # a savepoint or subtransaction: the outer transaction decides
    callbacks: list[PostCommit] = session.info.pop(_COMMITTED, [])
    for callback in callbacks:
        callback()


@event.listens_for(Session, "after_rollback")
def _drop_post_commit(session: Session) -> None:
    session.info.pop(_PENDING, None)


@contextmanager
def session_scope(factory: sessionmaker[Session]) -> Iterator[Session]:
    """One unit of work: commit on success, roll back on any exception."""
    session = factory()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()
