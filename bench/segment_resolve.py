"""Resolve audience filters over N users the way a send does; print users/s per filter.

    .venv/bin/python -m bench.segment_resolve [--users 200000] [--backend sqlite|postgresql|both]

Users are seeded straight into the tables (each with two tags, three custom fields, a last
seen time, and one in ten in a list), then for each filter: the `COUNT` a send answers with,
and the walk the fan-out makes (keyset pages of 1,000 user ids). The figures show that a
segment is resolved by the database in pages, never loaded into Python at once.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from bench._harness import backends, database
from spoke.core import migrate
from spoke.core.db import make_engine, table_of
from spoke.messaging import segments
from spoke.messaging.service import audience_filter
from spoke.users.models import CustomField, ListMembership, User, UserList, UserTag
from spoke.workspaces.models import Workspace

WORKSPACE = "ws_bench"
LIST_ID = "lst_bench"
PAGE = 1000


def _seed(engine: sa.Engine, users: int) -> None:
    now = datetime.now(UTC)
    with engine.begin() as conn:
        conn.execute(
            sa.insert(table_of(Workspace)),
            {
                "id": WORKSPACE,
                "slug": "bench",
                "name": "bench",
                "client_key": "pk_bench",
                "identity_verification": False,
                "identity_secret_encrypted": "-",
                "change_seq": 0,
                "created_at": now,
            },
        )
        for name, type_ in (("score", "number"), ("vip", "boolean"), ("city", "string")):
            conn.execute(
                sa.insert(table_of(CustomField)),
                {
                    "id": f"fld_{name}",
                    "workspace_id": WORKSPACE,
                    "name": name,
                    "label": name,
                    "type": type_,
                    "created_at": now,
                },
            )
        conn.execute(
            sa.insert(table_of(UserList)),
            {
                "id": LIST_ID,
                "workspace_id": WORKSPACE,
                "name": "bench",
                "description": "",
                "created_at": now,
                "updated_at": now,
            },
        )
    for start in range(0, users, 5000):
        ids = range(start + 1, min(start + 5000, users) + 1)
        rows = [
            {
                "id": i,
                "workspace_id": WORKSPACE,
                "external_id": f"user-{i}",
                "custom": {"score": i % 100, "vip": i % 7 == 0, "city": f"c{i % 20}"},
                "version": 1,
                "created_at": now,
                "updated_at": now,
                "last_seen_at": now - timedelta(days=i % 60),
            }
            for i in ids
        ]
        tags = [
            {"user_id": i, "workspace_id": WORKSPACE, "key": k, "value": v}
            for i in ids
            for k, v in (("plan", ("free", "pro", "team")[i % 3]), ("region", f"r{i % 10}"))
        ]
        members = [
            {"list_id": LIST_ID, "user_id": i, "origin": "bench", "added_at": now}
            for i in ids
            if i % 10 == 0
        ]
        with engine.begin() as conn:
            conn.execute(sa.insert(table_of(User)), rows)
            conn.execute(sa.insert(table_of(UserTag)), tags)
            conn.execute(sa.insert(table_of(ListMembership)), members)
    if engine.dialect.name == "postgresql":
        with engine.connect() as conn:
            conn.execute(sa.text("ANALYZE"))
            conn.commit()


FILTERS: dict[str, list[dict[str, Any]]] = {
    "tags has_all": [
        {"field": "tags", "relation": "has_all", "tags": {"plan": "pro", "region": "r3"}}
    ],
    "custom score > 80 and vip": [
        {"field": "custom", "key": "score", "relation": ">", "value": 80.0},
        {"field": "custom", "key": "vip", "relation": "=", "value": True},
    ],
    "list OR seen within 7 days": [
        {"field": "list", "relation": "in", "value": LIST_ID},
        {"operator": "OR"},
        {"field": "last_seen", "relation": "within_days", "days": 7},
    ],
    "tag != free, city in 3": [
        {"field": "tag", "key": "plan", "relation": "!=", "value": "free"},
        {"field": "custom", "key": "city", "relation": "in", "values": ["c1", "c2", "c3"]},
    ],
}


def _walk(engine: sa.Engine, filters: list[dict[str, Any]]) -> tuple[int, float, float]:
    where = audience_filter(WORKSPACE, {"filters": filters})
    with engine.connect() as conn:
        started = time.perf_counter()
        count = conn.scalar(sa.select(sa.func.count()).select_from(User).where(where)) or 0
        counted = time.perf_counter() - started
        started, last, walked = time.perf_counter(), 0, 0
        while True:
            ids = list(
                conn.scalars(
                    sa.select(User.id).where(where, User.id > last).order_by(User.id).limit(PAGE)
                )
            )
            if not ids:
                break
            walked += len(ids)
            last = ids[-1]
        assert walked == count, (walked, count)
        return count, counted, time.perf_counter() - started


def run(backend: str, users: int) -> None:
    with tempfile.TemporaryDirectory() as tmp, database(backend, Path(tmp)) as url:
        migrate.upgrade(url)
        engine = make_engine(url)
        started = time.perf_counter()
        _seed(engine, users)
        print(f"{backend}: seeded {users:,} users in {time.perf_counter() - started:.1f} s")
        for label, filters in FILTERS.items():
            segments.clause(filters)  # compiles
            count, counted, walked = _walk(engine, filters)
            print(
                f"  {label:<28} {count:>9,} match  count {counted * 1000:8.1f} ms  "
                f"walk {walked * 1000:8.1f} ms  ({users / walked:,.0f} users scanned/s)"
            )
        engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--users", type=int, default=200_000)
    parser.add_argument("--backend", default="both", choices=["sqlite", "postgresql", "both"])
    args = parser.parse_args()
    for backend in backends(args.backend):
        run(backend, args.users)


if __name__ == "__main__":
    main()
