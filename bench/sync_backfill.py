"""Manual sync (backfill) against the HubSpot sandbox with real latency and rate limits.

    .venv/bin/python -m bench.sync_backfill [--records 100000] [--direction both]
                                            [--workspaces 1] [--backend sqlite|postgresql]
                                            [--workers K]

Each workspace gets its own sandbox portal (private app, 190 requests per 10 s, 150 ms ± 50 ms
per API call), so each has a ceiling of 1,900 records/s (100 per request):

- `to_spoke`: the portal is seeded with N contacts, then a HubSpot → Spoke run copies them;
- `to_hubspot`: N users are loaded into Spoke before connecting (so real time leaves them
  alone), then a Spoke → HubSpot run copies them.

Spoke is `spoke serve` in its own process, the sandbox is `spoke sandbox hubspot` in another.
The job worker runs inside `spoke serve`, unless `--workers K` (PostgreSQL only) starts K
`spoke worker` processes on Redis, the documented scale-out; then `spoke serve` runs no jobs.
Spoke is told the portal's real limit (190) and reserves nothing for other apps
(`SPOKE_HUBSPOT__RESERVED_SHARE=0`): the default reserve of 10% would cap a run at exactly 90%
of the ceiling. Printed per workspace: records/s from the run's own start/finish times, the
ratio to the ceiling, 429s the sandbox served, and the server's peak RSS; then CPU per record
summed over every Spoke process, and the machine's busy share, from which `capacity` is the
total records/s this run would reach with every core busy at the same CPU per record (sandbox
included): the ceiling the box itself sets.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import orjson
import psutil
from cryptography.fernet import Fernet

from bench._harness import (
    RssSampler,
    cpu_seconds,
    create_workspace,
    database,
    hubspot_sandbox_process,
    redis_queue_env,
    services_cpu_seconds,
    spoke_server,
    spoke_workers,
    tree_cpu_seconds,
)

LIMIT_PER_10S = 190
CEILING = LIMIT_PER_10S / 10 * 100  # records/s at 100 records per request


def _admin(base: str, method: str, path: str, body: Any = None) -> Any:
    answer = httpx.request(method, f"{base}/_sandbox{path}", json=body, timeout=600)
    answer.raise_for_status()
    return answer.json() if answer.content else None


def new_portal(base: str, slug: str) -> dict[str, Any]:
    portal: dict[str, Any] = _admin(
        base, "POST", "/portals", {"name": slug, "settings": {"rate_limits": {"enabled": False}}}
    )
    return portal


def throttle(base: str, portal_id: int) -> None:
    """The real limits and latency, switched on once seeding is over."""
    _admin(
        base,
        "PATCH",
        f"/portals/{portal_id}/settings",
        {
            "rate_limits": {"enabled": True, "private_app_burst": LIMIT_PER_10S},
            "faults": {"latency_ms": 150.0, "jitter_ms": 50.0},
        },
    )


def served_429(base: str, portal_id: int) -> int:
    return int(_admin(base, "GET", f"/portals/{portal_id}/counters")["rate_limited_served"])


def requests_served(base: str, portal_id: int) -> dict[str, int]:
    """Calls the portal has served so far, by endpoint."""
    counters = _admin(base, "GET", f"/portals/{portal_id}/counters")
    return {k: int(v) for k, v in counters["requests_by_endpoint"].items()}


def load_users(http: httpx.Client, slug: str, count: int) -> None:
    def body(start: int) -> bytes:
        items = [
            {
                "external_id": f"{slug}-{n}",
                "email": f"{slug}.{n}@example.com",
                "first_name": f"First{n}",
                "last_name": f"Last{n}",
                "phone": f"+1650253{n % 10**4:04d}",
            }
            for n in range(start, min(start + 1000, count))
        ]
        return orjson.dumps({"items": items})

    with ThreadPoolExecutor(2) as pool:
        for answer in pool.map(
            lambda s: http.post(
                "/v1/users/batch", content=body(s), headers={"Content-Type": "application/json"}
            ),
            range(0, count, 1000),
        ):
            if answer.status_code != 200:
                raise RuntimeError(answer.text[:2000])


def run_and_wait(http: httpx.Client, direction: str) -> dict[str, Any]:
    answer = http.post("/v1/sync/contacts/runs", json={"direction": direction})
    answer.raise_for_status()
    run_id = answer.json()["id"]
    while True:
        run: dict[str, Any] = http.get(f"/v1/sync/contacts/runs/{run_id}").json()
        if run["status"] not in ("queued", "running"):
            return run
        time.sleep(0.5)


def _seconds(run: dict[str, Any]) -> float:
    started = datetime.fromisoformat(run["started_at"])
    finished = datetime.fromisoformat(run["finished_at"])
    return (finished - started).total_seconds()


def bench(backend: str, direction: str, records: int, workspaces: int, workers: int) -> None:
    with tempfile.TemporaryDirectory() as tmp, ExitStack() as stack:
        workdir = Path(tmp)
        hubspot, sandbox = stack.enter_context(hubspot_sandbox_process(workdir))
        url = stack.enter_context(database(backend, workdir))
        env = {
            "SPOKE_DATABASE_URL": url,
            "SPOKE_SECRET_KEY": Fernet.generate_key().decode(),
            "SPOKE_HUBSPOT__BASE_URL": hubspot,
            "SPOKE_HUBSPOT__RATE_LIMIT": str(LIMIT_PER_10S),
            "SPOKE_HUBSPOT__RESERVED_SHARE": "0",
            # Enough threads for every run in any one process: how the runs spread over
            # the worker processes is up to Spoke, not to a shortage of threads.
            "SPOKE_JOBS__WORKERS": str(workspaces + 2),
        }
        if workers:
            env.update(redis_queue_env())
        base, proc = stack.enter_context(spoke_server(env, workdir))
        spoke = {
            "serve": proc,
            **{
                f"worker {n}": w
                for n, w in enumerate(stack.enter_context(spoke_workers(env, workdir, workers)))
            },
        }
        clients: list[tuple[str, httpx.Client, int]] = []
        for i in range(workspaces):
            slug = f"ws{i}"
            key, secret = create_workspace(env, workdir, slug)
            http = httpx.Client(
                base_url=base,
                headers={"X-Api-Key": key, "X-Secret-Key": secret},
                timeout=600,
            )
            portal = new_portal(hubspot, slug)
            if direction == "to_spoke":
                _admin(
                    hubspot,
                    "POST",
                    f"/portals/{portal['portal_id']}/seed",
                    {"contacts": records, "seed": i},
                )
            else:
                load_users(http, slug, records)
            connected = http.put(
                "/v1/hubspot/connection",
                json={
                    "private_app_token": portal["private_app_token"],
                    "portal_id": portal["portal_id"],
                },
            )
            connected.raise_for_status()
            throttle(hubspot, portal["portal_id"])
            clients.append((slug, http, portal["portal_id"]))
        calls_before = {pid: requests_served(hubspot, pid) for _, _, pid in clients}
        sampler = RssSampler(proc.pid)
        cpu_before = {name: tree_cpu_seconds(p.pid) for name, p in spoke.items()}
        sandbox_before = cpu_seconds(sandbox.pid)
        services_before = services_cpu_seconds()
        machine_before = psutil.cpu_times()
        began = time.perf_counter()
        with ThreadPoolExecutor(workspaces) as pool:
            runs = list(pool.map(lambda c: run_and_wait(c[1], direction), clients))
        wall = time.perf_counter() - began
        used = {name: tree_cpu_seconds(p.pid) - cpu_before[name] for name, p in spoke.items()}
        spoke_cpu = sum(used.values())
        sandbox_cpu = cpu_seconds(sandbox.pid) - sandbox_before
        services_cpu = services_cpu_seconds() - services_before
        machine_after = psutil.cpu_times()
        busy = sum(machine_after) - machine_after.idle - machine_after.iowait
        busy -= sum(machine_before) - machine_before.idle - machine_before.iowait
        sampler.stop()
        done = sum(run["progress"]["done"] for run in runs) or 1
        cores = psutil.cpu_count() or 1
        layout = f"serve + {workers} worker(s)" if workers else "serve with its embedded worker"
        print(
            f"{backend} {direction} ({layout}): {workspaces} workspace(s) x {records} records, "
            f"wall {wall:.1f} s, server RSS peak {sampler.peak / 2**20:.0f} MB "
            f"(at 25%: {sampler.rss_at(0.25) / 2**20:.0f} MB, "
            f"end: {sampler.rss_at(1.0) / 2**20:.0f} MB)"
        )
        # CPU per record holds still when other work shares the machine; the share
        # of a core says which process (if any) was the bottleneck.
        print(
            f"  CPU: Spoke {spoke_cpu / done * 1e6:.0f} µs/record "
            f"({spoke_cpu / wall:.0%} of a core: "
            + ", ".join(f"{name} {cpu / wall:.0%}" for name, cpu in used.items())
            + f"), sandbox {sandbox_cpu / done * 1e6:.0f} µs/record ({sandbox_cpu / wall:.0%}), "
            f"PostgreSQL + Redis {services_cpu / done * 1e6:.0f} µs/record "
            f"({services_cpu / wall:.0%}), whole machine {busy / wall:.0%} of a core busy = "
            f"{busy / wall / cores:.0%} of {cores} cores (the rest, anything else on the box: "
            f"{(busy - spoke_cpu - sandbox_cpu - services_cpu) / wall:.0%})"
        )
        total_rate = done / wall
        print(
            f"  total {total_rate:,.0f} records/s (wall clock, all runs) = "
            f"{total_rate / (CEILING * workspaces):.0%} of {CEILING * workspaces:,.0f}/s; "
            f"capacity at {busy / done * 1e6:.0f} µs of machine CPU/record: "
            f"{cores * done / busy:,.0f} records/s"
        )
        for (slug, http, portal_id), run in zip(clients, runs, strict=True):
            seconds = _seconds(run)
            rate = run["progress"]["done"] / seconds
            print(
                f"  {slug}: {run['status']}, {run['progress']['done']} done "
                f"(created {run['created']}, failed {run['failed']}) in {seconds:.1f} s "
                f"= {rate:,.0f} records/s = {rate / CEILING:.0%} of {CEILING:,.0f}/s; "
                f"429s served: {served_429(hubspot, portal_id)}"
            )
            after = requests_served(hubspot, portal_id)
            calls = {
                k: n - calls_before[portal_id].get(k, 0)
                for k, n in after.items()
                if n > calls_before[portal_id].get(k, 0)
            }
            busiest = sorted(calls.items(), key=lambda kv: -kv[1])[:4]
            print(
                f"    {sum(calls.values()):,} calls to HubSpot "
                f"({sum(calls.values()) / max(1, records) * 100:.2f} per 100 records): "
                + ", ".join(f"{k} {n:,}" for k, n in busiest)
            )
            if run["samples"]["errors"]:
                print(f"    sample errors: {run['samples']['errors'][:3]}")
            http.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--workspaces", type=int, default=1)
    parser.add_argument("--direction", choices=["to_spoke", "to_hubspot", "both"], default="both")
    parser.add_argument("--backend", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument(
        "--workers",
        type=int,
        default=0,
        help="PostgreSQL only: K `spoke worker` processes on Redis run the jobs "
        "(0: the worker inside `spoke serve`)",
    )
    args = parser.parse_args()
    if args.workers and args.backend != "postgresql":
        parser.error("--workers needs --backend postgresql (several processes share its data)")
    directions = ["to_spoke", "to_hubspot"] if args.direction == "both" else [args.direction]
    for direction in directions:
        bench(args.backend, direction, args.records, args.workspaces, args.workers)


if __name__ == "__main__":
    main()
