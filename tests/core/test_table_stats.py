"""`GrowingTables` analyzes a table as a job's writes to it double (PostgreSQL only)."""

from __future__ import annotations

import time
import uuid

import sqlalchemy as sa
from tests.conftest import Backend

from spoke.core.table_stats import GrowingTables


def _analyzed(engine: sa.Engine, table: str) -> int:
    with engine.connect() as connection:
        count = connection.execute(
            sa.text("SELECT analyze_count FROM pg_stat_user_tables WHERE relname = :table"),
            {"table": table},
        ).scalar()
    return int(count or 0)


def _settles_at(engine: sa.Engine, table: str, count: int, wait: float) -> int:
    """The count once it reached `count`, or after `wait` s (the view lags the ANALYZE)."""
    deadline = time.monotonic() + wait
    while (seen := _analyzed(engine, table)) < count and time.monotonic() < deadline:
        time.sleep(0.05)
    return seen


def test_tables_are_analyzed_each_time_the_rows_written_double(backend: Backend) -> None:
    engine = backend.runtime.sessions.kw["bind"]
    if backend.name == "sqlite":
        GrowingTables(engine, ["users"], first=1).wrote(10_000)  # nothing to do or raise
        return
    table = f"growing_{uuid.uuid4().hex[:8]}"  # its own table: autovacuum leaves it alone
    with engine.begin() as connection:
        connection.execute(sa.text(f"CREATE TABLE {table} (id integer)"))
    try:
        grown = GrowingTables(engine, [table], first=100)
        grown.wrote(60)
        grown.wrote(39)
        assert _settles_at(engine, table, 1, wait=1.5) == 0  # 99 < 100: not yet
        grown.wrote(1)  # 100: the first mark
        assert _settles_at(engine, table, 1, wait=5) == 1
        grown.wrote(99)  # 199 < 200
        grown.wrote(1)  # 200: doubled
        assert _settles_at(engine, table, 2, wait=5) == 2
        grown.wrote(0)
        grown.wrote(150)  # 350 < 400
        assert _settles_at(engine, table, 3, wait=1.5) == 2
    finally:
        with engine.begin() as connection:
            connection.execute(sa.text(f"DROP TABLE {table}"))
