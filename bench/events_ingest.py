"""Ingest N product events through `POST /v1/events` over real HTTP; print events/s and peak RSS.

    .venv/bin/python -m bench.events_ingest [--events 500000] [--batch 1000] [--clients 2]
                                            [--backend sqlite|postgresql|both]

The server is `spoke serve` in its own process (one uvicorn worker). Every event carries
its own id (so resend protection is exercised), a user id, a name out of 20 and three
properties. Peak RSS is the server's; "RSS at 25% / end" shows whether memory grows.
"""

from __future__ import annotations

import argparse
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
from cryptography.fernet import Fernet

from bench._harness import (
    LoadResult,
    backends,
    create_workspace,
    database,
    post_batches,
    spoke_server,
)

NAMES = [f"feature_{i}" for i in range(20)]


def _batch(start: int, size: int) -> bytes:
    now = datetime.now(UTC).isoformat()
    return orjson.dumps(
        {
            "events": [
                {
                    "id": f"ev-{n}",
                    "type": "track",
                    "name": NAMES[n % 20],
                    "user_id": f"user-{n % 5000}",
                    "occurred_at": now,
                    "properties": {"plan": "pro", "rows": n % 1000, "ok": True},
                }
                for n in range(start, start + size)
            ]
        }
    )


def _accepted(result: dict[str, Any]) -> int:
    assert result["failed"] == 0, result["results"][:3]
    return int(result["accepted"])


def run(backend: str, events: int, batch: int, clients: int) -> LoadResult:
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        with database(backend, workdir) as url:
            env = {"SPOKE_DATABASE_URL": url, "SPOKE_SECRET_KEY": Fernet.generate_key().decode()}
            with spoke_server(env, workdir) as (base, proc):
                key_id, secret = create_workspace(env, workdir)
                headers = {
                    "X-Api-Key": key_id,
                    "X-Secret-Key": secret,
                    "Content-Type": "application/json",
                }
                bodies = (_batch(s, min(batch, events - s)) for s in range(0, events, batch))
                return post_batches(
                    base,
                    headers,
                    "/v1/events",
                    bodies,
                    clients=clients,
                    server_pid=proc.pid,
                    counted=_accepted,
                )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=500_000)
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--clients", type=int, default=2)
    parser.add_argument("--backend", choices=["sqlite", "postgresql", "both"], default="both")
    args = parser.parse_args()
    print(f"events_ingest: {args.events} events, batches of {args.batch}, {args.clients} clients")
    for backend in backends(args.backend):
        print(run(backend, args.events, args.batch, args.clients).line(backend, "events"))


if __name__ == "__main__":
    main()
