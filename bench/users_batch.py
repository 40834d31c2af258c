"""Upsert N users through `POST /v1/users/batch` over real HTTP; print users/s and peak RSS.

    .venv/bin/python bench/users_batch.py [--users 200000] [--batch 1000] [--clients 2]
                                          [--backend sqlite|postgresql|both]

The server is `spoke serve` in its own process (one uvicorn worker, in-process jobs), the
load comes from this process over loopback. Each user has an email, names, a country, two
tags and a custom field; every write also records its change-feed row. Peak RSS is the
server's; "RSS at 25% / end" shows whether memory grows with the number of users.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path
from typing import Any

import httpx
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


def _batch(start: int, size: int) -> bytes:
    return orjson.dumps(
        {
            "items": [
                {
                    "external_id": f"bench-{n}",
                    "email": f"user{n}@bench.example",
                    "first_name": f"First{n % 977}",
                    "last_name": f"Last{n % 1009}",
                    "country": ("KR", "JP", "US", "DE")[n % 4],
                    "tags": {"plan": ("free", "pro")[n % 2], "cohort": f"c{n % 12}"},
                    "custom": {"score": n % 100},
                }
                for n in range(start, start + size)
            ]
        }
    )


def _written(result: dict[str, Any]) -> int:
    assert result["failed"] == 0, result["results"][:3]
    return int(result["created"] + result["updated"])


def run(backend: str, users: int, batch: int, clients: int) -> LoadResult:
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        with database(backend, workdir) as url:
            env = {"SPOKE_DATABASE_URL": url, "SPOKE_SECRET_KEY": Fernet.generate_key().decode()}
            with spoke_server(env, workdir) as (base, proc):
                key = create_workspace(env, workdir)
                headers = {
                    "X-Api-Key": key[0],
                    "X-Secret-Key": key[1],
                    "Content-Type": "application/json",
                }
                with httpx.Client(base_url=base, headers=headers, timeout=120) as http:
                    http.post("/v1/fields", json={"name": "score", "type": "number"})
                bodies = (_batch(s, min(batch, users - s)) for s in range(0, users, batch))
                return post_batches(
                    base,
                    headers,
                    "/v1/users/batch",
                    bodies,
                    clients=clients,
                    server_pid=proc.pid,
                    counted=_written,
                )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--users", type=int, default=200_000)
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--clients", type=int, default=2)
    parser.add_argument("--backend", choices=["sqlite", "postgresql", "both"], default="both")
    args = parser.parse_args()
    print(f"users_batch: {args.users} users, batches of {args.batch}, {args.clients} clients")
    for backend in backends(args.backend):
        print(run(backend, args.users, args.batch, args.clients).line(backend, "users"))


if __name__ == "__main__":
    main()
