"""Fan-out of one `/v1/push/users`-style send to N devices through the FCM emulator.

    .venv/bin/python -m bench.push_fanout [--devices 100000] [--latency-ms 50]
        [--concurrency 512] [--batch 2000] [--backend sqlite|postgresql]

The emulator (`spoke sandbox fcm`) runs in its own process with the given latency; the
fan-out runs in this process exactly as a worker runs it (`fanout.run`). Users get
`devices // 10_000` (at least 1) devices each, so one send of ≤ 10,000 user ids reaches
N devices. Prints sends/s, the time from accepting the send to the emulator's first
received message, this process's peak RSS, and, for comparison, the emulator's own
ceiling: the same number of POSTs fired at it straight from one asyncio client.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import psutil
import sqlalchemy as sa
from cryptography.fernet import Fernet

from bench._harness import database, free_port
from spoke.config import Settings
from spoke.core import bulk, migrate
from spoke.core.clock import utcnow
from spoke.core.db import session_scope, table_of
from spoke.messaging import fanout, providers_config, service
from spoke.messaging.models import Subscription
from spoke.messaging.providers.fcm import SCOPE, RetryPolicy
from spoke.messaging.providers.http1 import Http1Pool
from spoke.messaging.providers.oauth import AccessTokens, ServiceAccount
from spoke.runtime import Runtime, build_runtime
from spoke.users import service as users
from spoke.users.changes import Origin
from spoke.users.models import User
from spoke.users.schemas import UserFields
from spoke.workspaces import service as workspaces


def _cpu(times: Any) -> float:
    return float(times.user + times.system)


def _emulator(port: int, latency_ms: float) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "spoke",
            "sandbox",
            "fcm",
            "--port",
            str(port),
            "--latency-ms",
            str(latency_ms),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 60  # a loaded machine imports slowly
    while time.monotonic() < deadline:
        try:
            httpx.get(f"http://127.0.0.1:{port}/_fcm/stats", timeout=1)
            return proc
        except httpx.HTTPError:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError("emulator did not start")


async def _ceiling(url: str, count: int, concurrency: int) -> float:
    pool = Http1Pool(url, size=concurrency)
    body = b'{"message":{"token":"ceiling","notification":{"title":"x"}}}'
    token = httpx.post(f"{url}/_fcm/service-accounts", json={"project_id": "ceil"}).json()
    bearer = await AccessTokens(ServiceAccount.from_info(token), SCOPE).get()
    headers = {"Authorization": f"Bearer {bearer}", "Content-Type": "application/json"}
    started = time.perf_counter()
    await asyncio.gather(
        *(
            pool.request("POST", "/v1/projects/ceil/messages:send", headers=headers, body=body)
            for _ in range(count)
        )
    )
    elapsed = time.perf_counter() - started
    await pool.aclose()
    return count / elapsed


def _small_sends(
    runtime: Runtime, workspace_id: str, options: fanout.FanoutOptions, url: str, count: int
) -> None:
    """One-user sends, each accepted then fanned out before the next (one worker thread):
    what a send costs the worker besides its one request."""
    with session_scope(runtime.sessions) as session:
        ids = [
            service.create_push(
                session,
                runtime.jobs,
                workspace_id,
                source="messages",
                content={},
                recipients=[{"user_id": f"u{i}", "title": "Hi", "body": f"#{i}"}],
                request_group_id=None,
            ).id
            for i in range(count)
        ]
    factory = fanout.fcm_factory(runtime.encryptor, options)
    process = psutil.Process(os.getpid())
    cpu_before = _cpu(process.cpu_times())
    started = time.perf_counter()
    for notification_id in ids:
        fanout.run(runtime.sessions, notification_id, provider_factory=factory, options=options)
    elapsed = time.perf_counter() - started
    cpu = _cpu(process.cpu_times()) - cpu_before
    sent = httpx.get(f"{url}/_fcm/stats").json()["accepted"]
    print(
        f"{count} one-user sends, one after another: {sent} pushes received; "
        f"fan-out CPU {cpu / count * 1000:.2f} ms/send, wall {elapsed / count * 1000:.1f} ms/send "
        f"(machine load {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores)"
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--devices", type=int, default=100_000)
    parser.add_argument("--latency-ms", type=float, default=50)
    parser.add_argument("--concurrency", type=int, default=512)
    parser.add_argument("--batch", type=int, default=2000)
    parser.add_argument("--backend", default="sqlite")
    parser.add_argument(
        "--small-sends",
        type=int,
        default=0,
        help="instead: this many one-user sends, fanned out one after another as a worker "
        "thread would; prints the fan-out's CPU and wall time per send",
    )
    args = parser.parse_args()
    per_user = max(1, args.devices // 10_000) if not args.small_sends else 1
    user_count = args.devices // per_user if not args.small_sends else args.small_sends
    port = free_port()
    emulator = _emulator(port, args.latency_ms)
    url = f"http://127.0.0.1:{port}"
    try:
        with tempfile.TemporaryDirectory() as tmp, database(args.backend, Path(tmp)) as db_url:
            migrate.upgrade(db_url)
            settings = Settings(
                database_url=db_url,
                data_dir=Path(tmp),
                secret_key=Fernet.generate_key().decode(),  # type: ignore[arg-type]
            )
            runtime = build_runtime(settings)
            key = httpx.post(f"{url}/_fcm/service-accounts", json={"project_id": "bench"}).json()
            with session_scope(runtime.sessions) as session:
                ws = workspaces.create_workspace(
                    session, runtime.encryptor, name="b", slug="bench", owner_email="b@x.io"
                ).workspace
                origin = Origin(ws.id, "bench", "bench")
                for start in range(0, user_count, 1000):
                    users.write_users(
                        session,
                        origin,
                        [
                            users.WriteItem(f"u{i}", UserFields())
                            for i in range(start, min(start + 1000, user_count))
                        ],
                    )
                providers_config.set_fcm(session, runtime.encryptor, ws.id, key, url)
            with session_scope(runtime.sessions) as session:
                ids = dict(
                    session.execute(
                        sa.select(User.external_id, User.id).where(User.workspace_id == ws.id)
                    ).all()
                )
                now = utcnow()
                rows = [
                    {
                        "workspace_id": ws.id,
                        "user_id": ids[f"u{i}"],
                        "channel": "push",
                        "address": f"dev-{i}-{d}:APA91b",
                        "platform": "android",
                        "status": "subscribed",
                        "status_reason": None,
                        "created_at": now,
                        "updated_at": now,
                    }
                    for i in range(user_count)
                    for d in range(per_user)
                ]
                for start in range(0, len(rows), 10_000):
                    bulk.insert(session, table_of(Subscription), rows[start : start + 10_000])
            print(
                f"seeded {user_count} users x {per_user} devices; emulator latency "
                f"{args.latency_ms:g} ms; concurrency {args.concurrency}; batch {args.batch}"
            )
            options = fanout.FanoutOptions(
                batch_size=max(1, args.batch // per_user),
                concurrency=args.concurrency,
                retry=RetryPolicy(),
            )
            if args.small_sends:
                _small_sends(runtime, ws.id, options, url, args.small_sends)
                runtime.close()
                return
            process = psutil.Process(os.getpid())
            peak = [process.memory_info().rss]
            stop = threading.Event()

            def sample() -> None:
                while not stop.wait(0.05):
                    peak[0] = max(peak[0], process.memory_info().rss)

            sampler = threading.Thread(target=sample, daemon=True)
            sampler.start()
            accepted = time.time()
            with session_scope(runtime.sessions) as session:
                notification = service.create_push(
                    session,
                    runtime.jobs,
                    ws.id,
                    source="users",
                    content={"title": "Bench", "body": "Hello"},
                    recipients=[f"u{i}" for i in range(user_count)],
                    request_group_id=None,
                )
            committed = time.time()
            cpu_before = _cpu(process.cpu_times())
            emulator_before = _cpu(psutil.Process(emulator.pid).cpu_times())
            started = time.perf_counter()
            run_started = time.time()
            fanout.run(
                runtime.sessions,
                notification.id,
                provider_factory=fanout.fcm_factory(runtime.encryptor, options),
                options=options,
            )
            elapsed = time.perf_counter() - started
            stop.set()
            stats = httpx.get(f"{url}/_fcm/stats").json()
            rate = stats["accepted"] / elapsed
            print(f"sent {stats['accepted']} in {elapsed:.1f} s = {rate:,.0f} sends/s")
            ours = _cpu(process.cpu_times()) - cpu_before
            theirs = _cpu(psutil.Process(emulator.pid).cpu_times()) - emulator_before
            sends = max(1, stats["accepted"])
            print(
                f"CPU: fan-out {ours:.1f} s ({ours / sends * 1e6:.0f} µs/send, "
                f"{ours / elapsed:.0%} of a core), emulator {theirs:.1f} s "
                f"({theirs / sends * 1e6:.0f} µs/send); machine load {os.getloadavg()[0]:.1f} "
                f"on {os.cpu_count()} cores"
            )
            first = stats["first_received_at"]
            print(
                f"accept (one INSERT, committed) {(committed - accepted) * 1000:.0f} ms; "
                f"accept → first send received: {(first - accepted) * 1000:.0f} ms "
                f"(job start → first received {(first - run_started) * 1000:.0f} ms, of which "
                f"{args.latency_ms:g} ms is the emulator's latency; the queue pickup is not "
                f"included: Redis hands a job over at once, the SQLite queue polls)"
            )
            print(f"peak RSS of the fan-out process: {peak[0] / 2**20:.0f} MiB")
            ceiling = asyncio.run(_ceiling(url, min(args.devices, 50_000), args.concurrency))
            print(
                f"emulator ceiling (bare client, same concurrency): {ceiling:,.0f} sends/s; "
                f"fan-out reaches {rate / ceiling:.0%} of it"
            )
            runtime.close()
    finally:
        emulator.terminate()
        emulator.wait(10)


if __name__ == "__main__":
    main()
