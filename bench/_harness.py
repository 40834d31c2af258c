"""Shared pieces of the benchmarks: a Spoke server in a subprocess, its peak RSS, a
throw-away PostgreSQL database. Benchmarks are run by hand and only print figures."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psutil
import sqlalchemy as sa

PG_ADMIN_URL = os.environ.get(
    "SPOKE_BENCH_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)
REDIS_URL = os.environ.get("SPOKE_BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def database(kind: str, workdir: Path) -> Iterator[str]:
    if kind == "sqlite":
        yield f"sqlite:///{workdir / 'bench.db'}"
        return
    name = f"spoke_bench_{uuid.uuid4().hex[:8]}"
    admin = sa.create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    try:
        yield str(
            sa.engine.make_url(PG_ADMIN_URL)
            .set(database=name)
            .render_as_string(hide_password=False)
        )
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@dataclass
class RssSampler:
    """Samples a process's resident memory every 50 ms; keeps the peak and a trace."""

    pid: int
    peak: int = 0
    samples: list[tuple[float, int]] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        proc = psutil.Process(self.pid)
        start = time.monotonic()
        while not self._stop.is_set():
            try:
                rss = proc.memory_info().rss
            except psutil.NoSuchProcess:
                return
            self.peak = max(self.peak, rss)
            self.samples.append((time.monotonic() - start, rss))
            time.sleep(0.05)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(2)

    def rss_at(self, fraction: float) -> int:
        if not self.samples:
            return 0
        return self.samples[min(len(self.samples) - 1, int(len(self.samples) * fraction))][1]


@contextmanager
def spoke_server(
    env: dict[str, str], workdir: Path, *, port: int | None = None
) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    port = port or free_port()
    full_env = {
        **os.environ,
        **env,
        "SPOKE_HTTP__PORT": str(port),
        "SPOKE_DATA_DIR": str(workdir / "data"),
        "SPOKE_LOG__LEVEL": "WARNING",
    }
    subprocess.run(
        [sys.executable, "-m", "spoke", "db", "upgrade"],
        env=full_env,
        check=True,
        capture_output=True,
    )
    with process(
        ["serve"], full_env, workdir / "server.log", f"http://127.0.0.1:{port}/healthz"
    ) as proc:
        yield f"http://127.0.0.1:{port}", proc


@contextmanager
def process(
    args: list[str], env: dict[str, str], log_path: Path, health_url: str
) -> Iterator[subprocess.Popen[bytes]]:
    """`python -m spoke <args>` in its own process, once `health_url` answers 200."""
    with log_path.open("ab") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "spoke", *args], env=env, stdout=log, stderr=subprocess.STDOUT
        )
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                if httpx.get(health_url, timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(log_path.read_text())
            time.sleep(0.1)
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()


def redis_queue_env() -> dict[str, str]:
    """Jobs on Redis, on a queue of this run's own (the Redis may be shared)."""
    return {"SPOKE_REDIS_URL": REDIS_URL, "SPOKE_JOBS__QUEUE_NAME": f"bench-{uuid.uuid4().hex[:8]}"}


@contextmanager
def spoke_workers(
    env: dict[str, str], workdir: Path, count: int
) -> Iterator[list[subprocess.Popen[bytes]]]:
    """`count` `spoke worker` processes on the queue `env` names (Redis: see
    `redis_queue_env`); stopped, gracefully if they can, on the way out."""
    full_env = {
        **os.environ,
        **env,
        "SPOKE_DATA_DIR": str(workdir / "data"),
        "SPOKE_LOG__LEVEL": "WARNING",
    }
    procs: list[subprocess.Popen[bytes]] = []
    try:
        for n in range(count):
            with (workdir / f"worker-{n}.log").open("ab") as log:
                procs.append(
                    subprocess.Popen(
                        [sys.executable, "-m", "spoke", "worker"],
                        env=full_env,
                        stdout=log,
                        stderr=subprocess.STDOUT,
                    )
                )
        yield procs
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(35)  # the consumer drains its jobs for up to 30 s
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@contextmanager
def hubspot_sandbox(workdir: Path) -> Iterator[str]:
    """`spoke sandbox hubspot` in its own process; yields its base URL."""
    with hubspot_sandbox_process(workdir) as (url, _):
        yield url


@contextmanager
def hubspot_sandbox_process(workdir: Path) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """`spoke sandbox hubspot` in its own process; yields its base URL and the process."""
    url = f"http://127.0.0.1:{free_port()}"
    port = url.rsplit(":", 1)[1]
    args = ["sandbox", "hubspot", "--port", port]
    with process(args, dict(os.environ), workdir / "sandbox.log", f"{url}/_sandbox/health") as proc:
        yield url, proc


def create_workspace(env: dict[str, str], workdir: Path, slug: str = "bench") -> tuple[str, str]:
    """Create a workspace with the CLI; returns its owner's key id and secret."""
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "spoke",
            "workspaces",
            "create",
            f"Bench {slug}",
            "--slug",
            slug,
            "--owner-email",
            f"{slug}@example.com",
        ],
        env={
            **os.environ,
            **env,
            "SPOKE_DATA_DIR": str(workdir / "data"),
            "SPOKE_LOG__LEVEL": "WARNING",
            "COLUMNS": "200",
        },
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    key = re.search(r"X-Api-Key:\s+(\S+)", out)
    secret = re.search(r"X-Secret-Key:\s+(\S+)", out)
    assert key, out
    assert secret, out
    return key.group(1), secret.group(1)


@dataclass(frozen=True)
class LoadResult:
    """What one benchmark run measured: items written, time, and the server's memory."""

    count: int
    seconds: float
    peak_mb: float
    rss_25_mb: float
    rss_end_mb: float
    # CPU time the server process used (user + system): per item, it is the figure that
    # holds still when other work shares the machine; as a share of the wall time, it
    # says whether the server was the bottleneck (~100% of one core under the GIL).
    server_cpu_s: float = 0.0

    def line(self, label: str, unit: str) -> str:
        cpu = ""
        if self.server_cpu_s:
            cpu = (
                f" | server CPU {self.server_cpu_s / self.count * 1e6:.0f} µs/{unit.rstrip('s')}"
                f" ({self.server_cpu_s / self.seconds:.0%} of a core)"
            )
        return (
            f"  {label:<10} {self.count:>8} {unit} in {self.seconds:6.1f} s = "
            f"{self.count / self.seconds:7.0f} {unit}/s | server RSS peak {self.peak_mb:.0f} MB "
            f"(at 25%: {self.rss_25_mb:.0f} MB, end: {self.rss_end_mb:.0f} MB){cpu}"
        )


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used so far."""
    times = psutil.Process(pid).cpu_times()
    return float(times.user + times.system)


def _cpu_of(processes: Iterable[psutil.Process]) -> float:
    """User + system CPU seconds of the processes still alive."""
    total = 0.0
    for proc in processes:
        try:
            times = proc.cpu_times()
        except psutil.NoSuchProcess:
            continue
        total += times.user + times.system
    return total


def tree_cpu_seconds(pid: int) -> float:
    """CPU time of a process and its live descendants (e.g. `spoke serve --processes N`)."""
    root = psutil.Process(pid)
    return _cpu_of([root, *root.children(recursive=True)])


def services_cpu_seconds(names: tuple[str, ...] = ("postgres", "redis-server")) -> float:
    """CPU time of the local PostgreSQL and Redis processes alive now (a backend that exits
    takes its share with it, so a run's figure is a floor)."""
    return _cpu_of(p for p in psutil.process_iter(["name"]) if p.info["name"] in names)


def post_batches(
    base: str,
    headers: dict[str, str],
    path: str,
    bodies: Iterator[bytes],
    *,
    clients: int,
    server_pid: int,
    counted: Callable[[dict[str, Any]], int],
) -> LoadResult:
    """POST every body to `path` from `clients` threads; `counted` reads the items a
    response says it wrote (and checks nothing failed)."""
    sampler = RssSampler(server_pid)
    total = 0
    cpu_before = cpu_seconds(server_pid)
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
        for response in pool.map(lambda body: http.post(path, content=body), bodies):
            response.raise_for_status()
            total += counted(response.json())
    elapsed = time.perf_counter() - began
    sampler.stop()
    return LoadResult(
        total,
        elapsed,
        sampler.peak / 2**20,
        sampler.rss_at(0.25) / 2**20,
        sampler.rss_at(1.0) / 2**20,
        server_cpu_s=cpu_seconds(server_pid) - cpu_before,
    )


def backends(choice: str) -> list[str]:
    return ["sqlite", "postgresql"] if choice == "both" else [choice]
