"""Export N stored product events to the HubSpot sandbox as custom event completions.

    .venv/bin/python -m bench.events_export [--events 1000000] [--users 10000]
        [--latency-ms 100] [--concurrency 10] [--chunk 5000] [--backend sqlite|postgresql]
        [--rate-limit 190]

The sandbox (`spoke sandbox hubspot`) runs in its own process with its rate limits on —
custom event sends at HubSpot's 1,250 requests/s — and the given latency on every call.
Events are loaded with one bulk insert per 20,000 (loading is not measured), each with a
user (by email, one of `--users` contacts that exist in the portal) and three properties.
Spoke paces its other calls (contact lookups by email, definitions) to `--rate-limit` per
10 s less the 10 % reserve, as it would for a real portal. The export runs in this process
exactly as a worker runs it (`export_run.process`), from enabling to the end: contact
matching by email, definition creation, reads, sends, checkpoints. Prints events/s end to
end, this process's peak RSS (and at 25 %), and the sandbox's own count of completions
received against distinct uuids (duplicates must be 0).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import threading
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import psutil
from cryptography.fernet import Fernet

from bench._harness import database, free_port
from spoke.config import Settings
from spoke.connections import service as connections
from spoke.core import bulk, migrate
from spoke.core.clock import utcnow
from spoke.core.db import session_scope, table_of
from spoke.events import export_run, export_settings
from spoke.events.export_schemas import ExportSettingsIn
from spoke.events.models import KnownEvent, ProductEvent
from spoke.runtime import build_runtime
from spoke.workspaces import service as workspaces

SEND_LIMIT_PER_SECOND = 1250  # HubSpot's, and the sandbox's default
BATCH = 500


def _cpu(times: Any) -> float:
    return float(times.user + times.system)


def _sandbox(port: int) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "spoke", "sandbox", "hubspot", "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            httpx.get(f"http://127.0.0.1:{port}/_sandbox/health", timeout=2)
            return proc
        except httpx.HTTPError:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError("sandbox did not start")


def _portal(url: str, users: int) -> dict[str, object]:
    portal: dict[str, object] = httpx.post(
        f"{url}/_sandbox/portals",
        json={
            "name": "bench",
            # Limits on; the ten-second burst raised so seeding contacts is quick. The send
            # endpoint keeps its own limit (1,250 requests/s).
            "settings": {"rate_limits": {"enabled": True, "private_app_burst": 1_000_000}},
        },
    ).json()
    headers = {"Authorization": f"Bearer {portal['private_app_token']}"}
    for start in range(0, users, 100):
        inputs = [
            {"properties": {"email": f"user{i}@example.com"}}
            for i in range(start, min(users, start + 100))
        ]
        httpx.post(
            f"{url}/crm/v3/objects/contacts/batch/create",
            json={"inputs": inputs},
            headers=headers,
            timeout=60,
        ).raise_for_status()
    return portal


def _load(runtime: object, workspace_id: str, count: int, users: int) -> None:
    sessions = runtime.sessions  # type: ignore[attr-defined]
    now = utcnow()
    received = now - timedelta(hours=1)
    names = ("Report exported", "Search", "Invite sent")
    with session_scope(sessions) as session:
        session.execute(
            KnownEvent.__table__.insert(),  # type: ignore[attr-defined]
            [
                {
                    "workspace_id": workspace_id,
                    "type": "track",
                    "name": n,
                    "is_core": True,
                    "volume": 0,
                    "first_seen_at": received,
                    "last_seen_at": received,
                }
                for n in names
            ],
        )
    for start in range(0, count, 20_000):
        rows = [
            {
                "workspace_id": workspace_id,
                "event_key": None,
                "type": "track",
                "name": names[i % 3],
                "external_id": None,
                "email": f"user{i % users}@example.com",
                "properties": {
                    "plan": ("free", "pro", "team")[i % 3],
                    "page_url": f"https://app.example.com/reports/{i % 977}",
                    "count": i % 50,
                },
                "occurred_at": received - timedelta(seconds=i % 3600),
                "received_at": received,
            }
            for i in range(start, min(count, start + 20_000))
        ]
        with session_scope(sessions) as session:
            bulk.insert(session, table_of(ProductEvent), rows)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--users", type=int, default=10_000)
    parser.add_argument("--latency-ms", type=float, default=100)
    parser.add_argument("--concurrency", type=int, default=10)
    parser.add_argument("--chunk", type=int, default=5000)
    parser.add_argument("--backend", default="sqlite")
    parser.add_argument(
        "--rate-limit",
        type=int,
        default=190,
        help="the portal's calls per 10 s that Spoke paces itself to (contact lookups, "
        "definitions); 190 is HubSpot's for private apps on Pro and Enterprise",
    )
    args = parser.parse_args()
    port = free_port()
    sandbox = _sandbox(port)
    url = f"http://127.0.0.1:{port}"
    try:
        portal = _portal(url, args.users)
        portal_id = int(str(portal["portal_id"]))
        with tempfile.TemporaryDirectory() as tmp, database(args.backend, Path(tmp)) as db_url:
            migrate.upgrade(db_url)
            settings = Settings(
                database_url=db_url,
                data_dir=Path(tmp),
                secret_key=Fernet.generate_key().decode(),  # type: ignore[arg-type]
                hubspot={"base_url": url, "rate_limit": args.rate_limit},  # type: ignore[arg-type]
                events_export={  # type: ignore[arg-type]
                    "concurrency": args.concurrency,
                    "chunk": args.chunk,
                    "settle_seconds": 30,
                },
            )
            runtime = build_runtime(settings)
            with session_scope(runtime.sessions) as session:
                created = workspaces.create_workspace(
                    session, runtime.encryptor, name="b", slug="bench", owner_email="b@x.io"
                )
                workspace_id = created.workspace.id
                caller = workspaces.Caller(
                    workspace_id=workspace_id,
                    member_id=created.owner.id,
                    role=None,
                    key_id=created.key.id,
                )
                connections.connect_private_app(
                    session,
                    settings,
                    runtime.encryptor,
                    caller,
                    token=str(portal["private_app_token"]),
                    portal_id=portal_id,
                    webhook_secret=None,
                )
            loading = time.perf_counter()
            _load(runtime, workspace_id, args.events, args.users)
            print(
                f"loaded {args.events:,} events of {args.users:,} users in "
                f"{time.perf_counter() - loading:.1f} s ({args.backend})"
            )
            httpx.put(
                f"{url}/_sandbox/portals/{portal_id}/faults", json={"latency_ms": args.latency_ms}
            ).raise_for_status()

            process = psutil.Process(os.getpid())
            samples: list[int] = []
            stop = threading.Event()

            def sample() -> None:
                while not stop.wait(0.05):
                    samples.append(process.memory_info().rss)

            sampler = threading.Thread(target=sample, daemon=True)
            sampler.start()
            sandbox_proc = psutil.Process(sandbox.pid)
            cpu_before = (process.cpu_times(), sandbox_proc.cpu_times())
            started = time.perf_counter()
            with session_scope(runtime.sessions) as session:
                run = export_settings.save(
                    session, workspace_id, ExportSettingsIn(enabled=True, lookback_days=1)
                )
                assert run is not None
                run_id = run.id
            if os.environ.get("BENCH_PROFILE"):
                import cProfile

                cProfile.runctx(
                    "export_run.process(runtime.sessions, settings, runtime.encryptor, run_id)",
                    globals(),
                    locals(),
                    os.environ["BENCH_PROFILE"],
                )
            else:
                export_run.process(runtime.sessions, settings, runtime.encryptor, run_id)
            elapsed = time.perf_counter() - started
            ours = _cpu(process.cpu_times()) - _cpu(cpu_before[0])
            theirs = _cpu(sandbox_proc.cpu_times()) - _cpu(cpu_before[1])
            stop.set()
            sampler.join(1)
            counters = httpx.get(f"{url}/_sandbox/portals/{portal_id}/counters").json()
            events = counters["custom_events"]
            rate = args.events / elapsed
            print(
                f"exported {args.events:,} in {elapsed:.1f} s = {rate:,.0f} events/s "
                f"({rate / 20_000:.0%} of the 20,000/s target); latency {args.latency_ms:g} ms, "
                f"{args.concurrency} batches in flight, {args.chunk} events per checkpoint, "
                f"{args.rate_limit} calls/10 s for other calls"
            )
            print(
                f"CPU: export {ours:.1f} s ({ours / args.events * 1e6:.0f} µs/event), sandbox "
                f"{theirs:.1f} s ({theirs / args.events * 1e6:.0f} µs/event); machine load "
                f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} cores"
            )
            peak = max(samples or [0]) / 2**20
            quarter = samples[len(samples) // 4] / 2**20 if samples else 0.0
            print(f"this process: RSS peak {peak:.0f} MB (at 25%: {quarter:.0f} MB)")
            print(
                f"sandbox: received {events['received']:,} completions, "
                f"{events['distinct_uuids']:,} distinct uuids, "
                f"{events['duplicate_uuids']} duplicates; "
                f"{counters['requests_by_endpoint'].get('POST /events/v3/send/batch', 0):,} "
                f"batch requests, {counters['rate_limited_served']} answered 429"
            )
            needed = rate / BATCH
            print(
                f"send limit: {SEND_LIMIT_PER_SECOND:,} requests/s x {BATCH} = "
                f"{SEND_LIMIT_PER_SECOND * BATCH:,} events/s; this run used {needed:,.0f} "
                f"requests/s ({needed / SEND_LIMIT_PER_SECOND:.1%} of it)"
            )
            runtime.close()
    finally:
        sandbox.terminate()
        sandbox.wait(10)


if __name__ == "__main__":
    main()
