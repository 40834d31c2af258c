"""Accept latency of per-user push sends: many API callers, each `POST /v1/push/messages`
for one user, over real HTTP to `spoke serve`; prints p50/p95/p99 accept latency.

    .venv/bin/python -m bench.push_accept [--callers 1000] [--rate 500] [--latency-ms 50]
        [--backend sqlite|postgresql]

`--callers` callers each hold their own keep-alive connection and send one request; the
callers start `--rate` per second (open loop: a slow answer doesn't delay the next caller;
`--rate 0` starts them all at once, a burst). Latency runs from a caller's scheduled start
to its 202. Each send is fanned out for real (to one device per user, through the FCM
emulator in its own process), so accepting competes with sending as it would in
production: on SQLite the worker runs inside `spoke serve`; on PostgreSQL a `spoke worker`
on Redis sends. Loopback only; bounded by `--callers`.
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

import httpx
import orjson
from cryptography.fernet import Fernet

from bench._harness import (
    create_workspace,
    database,
    free_port,
    redis_queue_env,
    spoke_server,
    spoke_workers,
    tree_cpu_seconds,
)
from bench.push_fanout import _emulator
from spoke.messaging.providers.http1 import Http1Pool, TransportError


def _percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * share))]


async def _callers(
    base: str, headers: dict[str, str], callers: int, rate: float
) -> tuple[list[float], int, float]:
    """Latencies (s) of the 202s, how many answers were not 202, and the wall time."""
    pool = Http1Pool(base, size=callers, timeout=60)
    latencies: list[float] = []
    failures = 0
    began = time.perf_counter()

    async def call(n: int) -> None:
        nonlocal failures
        scheduled = began + (n / rate if rate > 0 else 0.0)
        await asyncio.sleep(max(0.0, scheduled - time.perf_counter()))
        body = orjson.dumps({"messages": [{"user_id": f"u{n}", "title": "Hi", "body": f"#{n}"}]})
        try:
            answer = await pool.request("POST", "/v1/push/messages", headers=headers, body=body)
        except TransportError as exc:
            problem = f"no answer ({exc})"
        else:
            if answer.status == 202:
                latencies.append(time.perf_counter() - scheduled)
                return
            problem = f"HTTP {answer.status} {answer.body[:200]!r}"
        failures += 1
        if failures <= 3:
            print(f"  caller {n}: {problem}")

    await asyncio.gather(*(call(n) for n in range(callers)))
    elapsed = time.perf_counter() - began
    await pool.aclose()
    return latencies, failures, elapsed


def _report(name: str, latencies: list[float], failures: int, elapsed: float) -> None:
    print(
        f"  {name}: {len(latencies)} accepted, {failures} not, in {elapsed:.1f} s "
        f"({len(latencies) / elapsed:,.0f}/s)"
    )
    if latencies:
        print(
            f"  {name} accept latency ms: "
            f"p50 {_percentile(latencies, 0.50) * 1000:.0f}, "
            f"p95 {_percentile(latencies, 0.95) * 1000:.0f}, "
            f"p99 {_percentile(latencies, 0.99) * 1000:.0f}, "
            f"max {max(latencies) * 1000:.0f}"
        )


def _floor(callers: int, rate: float) -> None:
    """The same callers against `bench._floor_app` in one uvicorn process."""
    port = free_port()
    server = subprocess.Popen(
        [
            *(sys.executable, "-m", "uvicorn", "bench._floor_app:app", "--port", str(port)),
            *("--log-level", "warning", "--no-access-log", "--loop", "uvloop"),
        ],
        stdout=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                httpx.get(f"{base}/docs", timeout=1)
                break
            except httpx.TransportError:
                time.sleep(0.1)
        headers = {"Content-Type": "application/json"}
        latencies, failures, elapsed = asyncio.run(_callers(base, headers, callers, rate))
        _report("floor (bare FastAPI route, 1 process)", latencies, failures, elapsed)
    finally:
        server.terminate()
        server.wait(10)


def _pushes(fcm_url: str) -> int:
    return int(httpx.get(f"{fcm_url}/_fcm/stats").json().get("accepted", 0))


def _wait_for_pushes(fcm_url: str, expected: int, began: float, limit: float = 180) -> float:
    """Seconds from `began` until the emulator holds `expected` pushes (or `limit` passed)."""
    while _pushes(fcm_url) < expected and time.perf_counter() - began < limit:
        time.sleep(0.1)
    return time.perf_counter() - began


def _setup(base: str, headers: dict[str, str], fcm_url: str, callers: int) -> None:
    key = httpx.post(f"{fcm_url}/_fcm/service-accounts", json={"project_id": "accept"}).json()
    with httpx.Client(base_url=base, headers=headers, timeout=60) as http:
        answer = http.put(
            "/v1/messaging/providers/fcm", json={"service_account": key, "base_url": fcm_url}
        )
        answer.raise_for_status()
        for n in range(callers):
            http.post(
                f"/v1/users/u{n}/devices", json={"token": f"dev-{n}:APA91b", "platform": "ios"}
            ).raise_for_status()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--callers", type=int, default=1000)
    parser.add_argument("--rate", type=float, default=500, help="callers started per second")
    parser.add_argument("--latency-ms", type=float, default=50)
    parser.add_argument("--backend", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument(
        "--http-processes",
        type=int,
        default=1,
        help="PostgreSQL only: `spoke serve --processes N` (SPOKE_HTTP__PROCESSES)",
    )
    parser.add_argument(
        "--accept-only",
        action="store_true",
        help="PostgreSQL only: start no worker, so nothing is sent (isolates the accept path)",
    )
    parser.add_argument(
        "--floor",
        action="store_true",
        help="also send the same callers to a bare FastAPI route of the same shape "
        "(bench/_floor_app.py: validation and a 202, nothing else) and print its latency",
    )
    args = parser.parse_args()
    if args.floor:
        _floor(args.callers, args.rate)
    fcm_port = free_port()
    emulator = _emulator(fcm_port, args.latency_ms)
    fcm_url = f"http://127.0.0.1:{fcm_port}"
    try:
        with (
            tempfile.TemporaryDirectory() as tmp,
            database(args.backend, Path(tmp)) as url,
            ExitStack() as stack,
        ):
            workdir = Path(tmp)
            env = {"SPOKE_DATABASE_URL": url, "SPOKE_SECRET_KEY": Fernet.generate_key().decode()}
            if args.backend == "postgresql":
                env.update(redis_queue_env())
                env["SPOKE_HTTP__PROCESSES"] = str(args.http_processes)
            with spoke_server(env, workdir) as (base, server):
                sending = args.backend == "postgresql" and not args.accept_only
                workers = stack.enter_context(spoke_workers(env, workdir, int(sending)))
                key_id, secret = create_workspace(env, workdir)
                headers = {
                    "X-Api-Key": key_id,
                    "X-Secret-Key": secret,
                    "Content-Type": "application/json",
                }
                _setup(base, headers, fcm_url, args.callers)
                print(f"  {args.callers} users with a device each; calling", flush=True)
                pids = {"serve": server.pid}
                if workers:
                    pids["worker"] = workers[0].pid
                cpu_before = {name: tree_cpu_seconds(pid) for name, pid in pids.items()}
                latencies, failures, elapsed = asyncio.run(
                    _callers(base, headers, args.callers, args.rate)
                )
                accept_cpu = tree_cpu_seconds(server.pid) - cpu_before["serve"]
                pace = "all at once" if args.rate <= 0 else f"{args.rate:g} started/s"
                print(f"push_accept ({args.backend}): {args.callers} callers, {pace}")
                _report("spoke", latencies, failures, elapsed)
                at_end = _pushes(fcm_url)
                print(f"  pushes the emulator received when the last caller was answered: {at_end}")
                print(f"  spoke serve CPU per call: {accept_cpu / args.callers * 1000:.2f} ms")
                if not args.accept_only:
                    waited = _wait_for_pushes(fcm_url, args.callers, time.perf_counter() - elapsed)
                    sent = _pushes(fcm_url)
                    print(
                        f"  all pushes sent: {sent}/{args.callers} within {waited:.1f} s of the "
                        "first call"
                    )
                    for name, pid in pids.items():
                        used = tree_cpu_seconds(pid) - cpu_before[name]
                        print(
                            f"  spoke {name} CPU per push sent (calls + fan-out): "
                            f"{used / max(1, sent) * 1000:.2f} ms"
                        )
    finally:
        emulator.terminate()
        emulator.wait(10)


if __name__ == "__main__":
    main()
