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
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

import httpx
import orjson
from cryptography.fernet import Fernet

from bench._harness import RssSampler, create_workspace, database, spoke_server

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


def run(backend: str, events: int, batch: int, clients: int) -> dict[str, float]:
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
                sampler = RssSampler(proc.pid)
                starts = range(0, events, batch)
                bodies = (_batch(s, min(batch, events - s)) for s in starts)
                accepted = 0
                began = time.perf_counter()
                with (
                    httpx.Client(
                        base_url=base,
                        headers=headers,
                        timeout=120,
                        limits=httpx.Limits(max_connections=clients),
                    ) as http,
                    ThreadPoolExecutor(clients) as pool,
                ):
                    for response in pool.map(lambda b: http.post("/v1/events", content=b), bodies):
                        response.raise_for_status()
                        result = response.json()
                        assert result["failed"] == 0, result["results"][:3]
                        accepted += result["accepted"]
                elapsed = time.perf_counter() - began
                sampler.stop()
                return {
                    "events": accepted,
                    "seconds": elapsed,
                    "per_s": accepted / elapsed,
                    "peak_mb": sampler.peak / 2**20,
                    "rss_25_mb": sampler.rss_at(0.25) / 2**20,
                    "rss_end_mb": sampler.rss_at(1.0) / 2**20,
                }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=500_000)
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--clients", type=int, default=2)
    parser.add_argument("--backend", choices=["sqlite", "postgresql", "both"], default="both")
    args = parser.parse_args()
    backends = ["sqlite", "postgresql"] if args.backend == "both" else [args.backend]
    print(f"events_ingest: {args.events} events, batches of {args.batch}, {args.clients} clients")
    for backend in backends:
        r = run(backend, args.events, args.batch, args.clients)
        print(
            f"  {backend:<10} {r['events']:>8.0f} events in {r['seconds']:6.1f} s = "
            f"{r['per_s']:7.0f} events/s | server RSS peak {r['peak_mb']:.0f} MB "
            f"(at 25%: {r['rss_25_mb']:.0f} MB, end: {r['rss_end_mb']:.0f} MB)"
        )


if __name__ == "__main__":
    main()
