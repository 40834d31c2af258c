"""Fresh planner statistics for the tables a long job fills.

PostgreSQL plans a query from the statistics of the table's last ANALYZE. Autovacuum runs
one at most once a minute (`autovacuum_naptime`), and only after a tenth of the table
changed, so a backfill that grows `contact_links` from nothing to 100,000 rows in a minute
is planned all along as if the table held a few dozen rows. Measured at 45,000 links: a
page's lookup of its 100 links by `user_id = ANY(...)` read the whole workspace through the
`(workspace_id, state, ...)` index and filtered it (8-24 ms, three such lookups a page)
instead of probing the `(workspace_id, user_id)` index (under 1 ms), and the run's
PostgreSQL CPU grew with the table: ~330 µs per record.

`GrowingTables` counts the rows a job wrote and analyzes the tables whenever that count
has doubled since the last ANALYZE (from `first` rows on): ~7 ANALYZEs of a few tens of
milliseconds for 100,000 rows. SQLite needs none of it: without statistics its planner
takes the index that matches the query's equalities.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence

import sqlalchemy as sa
import structlog

log = structlog.get_logger("spoke.db")


class GrowingTables:
    """Analyzes `tables` as a job's writes to them double; safe to share between threads."""

    def __init__(self, engine: sa.Engine, tables: Sequence[str], *, first: int = 1000) -> None:
        self._engine = engine
        self._tables = tuple(tables)
        self._enabled = engine.dialect.name == "postgresql"
        self._written = 0
        self._next = first
        self._lock = threading.Lock()

    def wrote(self, rows: int) -> None:
        """Count `rows` written (and committed); analyze if the count passed the mark."""
        if not self._enabled or rows <= 0:
            return
        with self._lock:
            self._written += rows
            if self._written < self._next:
                return
            self._next = self._written * 2
        self._analyze()

    def _analyze(self) -> None:
        # Its own connection, outside any transaction: ANALYZE takes a lock that blocks
        # neither reads nor writes, and a failure only leaves the statistics as they were.
        try:
            with self._engine.connect().execution_options(
                isolation_level="AUTOCOMMIT"
            ) as connection:
                for table in self._tables:
                    connection.execute(sa.text(f'ANALYZE "{table}"'))
        except sa.exc.SQLAlchemyError:
            log.warning("db.analyze_failed", tables=self._tables, exc_info=True)


__all__ = ["GrowingTables"]
