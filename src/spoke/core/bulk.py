"""Bulk INSERT / UPDATE / DELETE of many rows in one statement, on both databases.

SQLite is fastest with plain `executemany`, handed to the driver directly: the values go
through each column type's own bind processor (so they are stored exactly as an ORM write
would store them), but SQLAlchemy's per-row parameter compilation, which cost as much as
the write itself for a 1,000-event batch, is skipped. On PostgreSQL, psycopg's executemany
sends one statement per row and SQLAlchemy's multi-VALUES insert makes psycopg parse a huge
query text each time; both cost more than the write itself for a 1,000-user batch. There,
each column travels as one array parameter and the statement reads them back with
`unnest()`: one short, cacheable statement whatever the row count.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, cast

import orjson
import psycopg
import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import QueryableAttribute, Session

from spoke.core.db import UTCDateTime

Row = Mapping[str, Any]


def _pg_type(column: sa.Column[Any]) -> str:
    kind = column.type
    if isinstance(kind, UTCDateTime):
        return "timestamptz"
    if isinstance(kind, sa.JSON):
        return "jsonb"
    if isinstance(kind, sa.Boolean):
        return "boolean"
    if isinstance(kind, sa.Integer):
        return "bigint"
    if isinstance(kind, sa.String | sa.Text | sa.Enum):
        return "text"
    raise TypeError(f"no array mapping for {column.table.name}.{column.name}: {kind!r}")


def _arrays(
    table: sa.Table, columns: Sequence[str], rows: Sequence[Row]
) -> tuple[str, dict[str, list[Any]]]:
    """`unnest(...)` over one array parameter per column, and those parameters."""
    parts, params = [], {}
    for i, name in enumerate(columns):
        column = table.c[name]
        pg_type = _pg_type(column)
        values = [row[name] for row in rows]
        if pg_type == "jsonb":
            # Arrays of jsonb are sent as text and cast, so values can't be confused with arrays.
            values = [None if v is None else orjson.dumps(v).decode() for v in values]
            parts.append(f"CAST(CAST(:p{i} AS text[]) AS jsonb[])")
        elif pg_type == "timestamptz":
            parts.append(f"CAST(:p{i} AS timestamptz[])")
        else:
            parts.append(f"CAST(:p{i} AS {pg_type}[])")
        params[f"p{i}"] = values
    return f"unnest({', '.join(parts)})", params


def _is_pg(session: Session) -> bool:
    return session.get_bind().dialect.name == "postgresql"


def among(
    session: Session,
    column: sa.ColumnElement[Any] | QueryableAttribute[Any],
    values: Sequence[Any],
) -> sa.ColumnElement[bool]:
    """`column IN values` for a long list. On PostgreSQL the list travels as one array
    parameter (`= ANY(:values)`): binding and planning a 1,000-placeholder IN list cost
    more than the index lookups it asks for."""
    if _is_pg(session):
        return column == sa.any_(sa.bindparam(None, list(values), type_=ARRAY(column.type)))
    return column.in_(values)


def insert(
    session: Session, table: sa.Table, rows: Sequence[Row], returning: Sequence[str] = ()
) -> list[dict[str, Any]]:
    """Insert `rows` (all with the same keys); returns the `returning` columns per row,
    in input order. On PostgreSQL the rows go through COPY; a serial `id` asked for in
    `returning` is drawn from its sequence first, so COPY can carry it."""
    if not rows:
        return []
    if not _is_pg(session):
        if returning:
            stmt = sa.insert(table).returning(
                *(table.c[c] for c in returning), sort_by_parameter_order=True
            )
            return [dict(r._mapping) for r in session.execute(stmt, list(rows))]
        _executemany(session, table, rows)
        return []
    materialised = [dict(row) for row in rows]
    if "id" in returning and "id" not in materialised[0]:
        ids = (
            session.execute(
                sa.text(
                    "SELECT nextval(pg_get_serial_sequence(:t, 'id')) FROM generate_series(1, :n)"
                ),
                {"t": table.name, "n": len(materialised)},
            )
            .scalars()
            .all()
        )
        for row, new_id in zip(materialised, ids, strict=True):
            row["id"] = new_id
    _copy(session, table, materialised)
    return [{c: row[c] for c in returning} for row in materialised] if returning else []


def _executemany(session: Session, table: sa.Table, rows: Sequence[Row]) -> None:
    columns = list(rows[0])
    if any(c.default is not None for c in table.c if c.name not in rows[0]):
        # Python-side defaults are SQLAlchemy's to fill in (COPY on PostgreSQL can't either,
        # so callers pass every column; this keeps SQLite forgiving all the same).
        session.execute(sa.insert(table), list(rows))
        return
    names = ", ".join(f'"{c}"' for c in columns)
    marks = ", ".join("?" for _ in columns)
    sql = f'INSERT INTO "{table.name}" ({names}) VALUES ({marks})'  # noqa: S608
    _sqlite_executemany(session, table, sql, columns, rows)


def _sqlite_executemany(
    session: Session, table: sa.Table, sql: str, columns: Sequence[str], rows: Sequence[Row]
) -> None:
    """Run `sql` (identifiers from our own table metadata, `?` for values) once per row,
    each value passed through its column type's bind processor, in one driver call."""
    connection = session.connection()
    dialect = connection.dialect
    processors = [table.c[c].type.dialect_impl(dialect).bind_processor(dialect) for c in columns]
    # Column by column: `map` over one processor is far cheaper than a generator per row.
    values: list[list[Any]] = []
    for name, process in zip(columns, processors, strict=True):
        column = [row[name] for row in rows]
        values.append(column if process is None else list(map(process, column)))
    params = list(zip(*values, strict=True))
    connection.exec_driver_sql(sql, params)


def _copy(session: Session, table: sa.Table, rows: Sequence[Row]) -> None:
    columns = list(rows[0])
    json_columns = {c for c in columns if isinstance(table.c[c].type, sa.JSON)}
    # Only reached on PostgreSQL, whose driver here is psycopg 3.
    dbapi = cast("psycopg.Connection[Any]", session.connection().connection.dbapi_connection)
    names = ", ".join(f'"{c}"' for c in columns)
    statement = f'COPY "{table.name}" ({names}) FROM STDIN'
    try:
        with dbapi.cursor() as cursor, cursor.copy(statement) as copy:
            for row in rows:
                copy.write_row(
                    [
                        (None if row[c] is None else orjson.dumps(row[c]).decode())
                        if c in json_columns
                        else row[c]
                        for c in columns
                    ]
                )
    except psycopg.IntegrityError as exc:
        # The raw cursor bypasses SQLAlchemy's error translation; callers that retry a
        # lost unique-index race catch SQLAlchemy's IntegrityError, as on SQLite.
        raise sa.exc.IntegrityError(statement, None, exc) from exc


def update(session: Session, table: sa.Table, keys: Sequence[str], rows: Sequence[Row]) -> None:
    """Set every non-key column of each row on the table row matching its `keys`
    (statements below SQLAlchemy's: Python-side `onupdate` values are not applied)."""
    if not rows:
        return
    columns = list(rows[0])
    if not _is_pg(session):
        changed = [c for c in columns if c not in keys]
        assignments = ", ".join(f'"{c}" = ?' for c in changed)
        match = " AND ".join(f'"{k}" = ?' for k in keys)
        _sqlite_executemany(
            session,
            table,
            f'UPDATE "{table.name}" SET {assignments} WHERE {match}',  # noqa: S608
            [*changed, *keys],
            rows,
        )
        return
    source, params = _arrays(table, columns, rows)
    alias = ", ".join(f'"{c}"' for c in columns)
    sets = ", ".join(f'"{c}" = v."{c}"' for c in columns if c not in keys)
    where = " AND ".join(f't."{k}" = v."{k}"' for k in keys)
    session.execute(
        # Identifiers come from our own table metadata; values travel as parameters.
        sa.text(f'UPDATE "{table.name}" AS t SET {sets} FROM {source} AS v({alias}) WHERE {where}'),  # noqa: S608
        params,
    )


def delete(session: Session, table: sa.Table, keys: Sequence[str], rows: Sequence[Row]) -> None:
    """Delete the table rows matching each row's `keys`."""
    if not rows:
        return
    if not _is_pg(session):
        match = sa.and_(*(table.c[k] == sa.bindparam(f"k_{k}") for k in keys))
        session.execute(
            table.delete().where(match), [{f"k_{k}": row[k] for k in keys} for row in rows]
        )
        return
    source, params = _arrays(table, keys, rows)
    alias = ", ".join(f'"{k}"' for k in keys)
    where = " AND ".join(f't."{k}" = v."{k}"' for k in keys)
    session.execute(
        sa.text(f'DELETE FROM "{table.name}" AS t USING {source} AS v({alias}) WHERE {where}'),  # noqa: S608
        params,
    )
