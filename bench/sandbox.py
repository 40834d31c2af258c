"""Throughput of the HubSpot sandbox over real HTTP, and its rate limiter.

Starts the sandbox with uvicorn in a child process on a free 127.0.0.1 port, then measures:

1. batch upsert by email (contacts/s), with rate limits off;
2. single-contact GET (requests/s), with rate limits off;
3. with limits on, that a tight loop gets exactly the configured ten-secondly budget.

Targets (issue 4): >= 20,000 contacts/s and >= 2,000 GET/s. Every phase is bounded in both count
and time. Run: `.venv/bin/python bench/sandbox.py [--seconds 5] [--window-ms 2000]`.
"""

from __future__ import annotations

import argparse
import http.client
import multiprocessing
import socket
import sys
import threading
import time
from typing import Any

import orjson


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _serve(port: int) -> None:
    import uvicorn

    from spoke.sandbox.hubspot import SandboxConfig, create_sandbox_app

    app = create_sandbox_app(config=SandboxConfig(public_base_url=f"http://127.0.0.1:{port}"))
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False, ws="none")


class Conn:
    """A keep-alive HTTP/1.1 connection; lighter than any client library, so the server is what
    gets measured."""

    def __init__(self, port: int, token: str | None = None) -> None:
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        self.headers = {"Content-Type": "application/json"}
        if token:
            self.headers["Authorization"] = f"Bearer {token}"

    def call(self, method: str, path: str, body: Any = None) -> tuple[int, bytes, Any]:
        data = orjson.dumps(body) if body is not None else None
        self.conn.request(method, path, body=data, headers=self.headers)
        resp = self.conn.getresponse()
        return resp.status, resp.read(), resp.headers


def _wait(port: int) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            status, _, _ = Conn(port).call("GET", "/_sandbox/health")
            if status == 200:
                return
        except OSError:
            time.sleep(0.05)
    raise SystemExit("sandbox did not start")


def _portal(port: int, settings: dict[str, Any]) -> str:
    """Create a portal with the given settings; returns its private-app token."""
    status, body, _ = Conn(port).call("POST", "/_sandbox/portals", {"settings": settings})
    assert status == 201, body
    return str(orjson.loads(body)["private_app_token"])


def _parallel(workers: int, fn: Any) -> list[Any]:
    results: list[Any] = [None] * workers
    threads = [
        threading.Thread(target=lambda i=i: results.__setitem__(i, fn(i))) for i in range(workers)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


def bench_upsert(port: int, token: str, seconds: float, max_batches: int) -> float:
    def worker(w: int) -> int:
        conn = Conn(port, token)
        done, deadline = 0, time.monotonic() + seconds
        while done < max_batches and time.monotonic() < deadline:
            inputs = [
                {
                    "id": f"w{w}-b{done}-{i}@bench.example.com",
                    "idProperty": "email",
                    "properties": {"firstname": "Bench", "lastname": str(i), "city": "Lyon"},
                }
                for i in range(100)
            ]
            status, body, _ = conn.call(
                "POST", "/crm/v3/objects/contacts/batch/upsert", {"inputs": inputs}
            )
            assert status == 200, body[:300]
            done += 1
        return done * 100

    start = time.monotonic()
    total: int = sum(_parallel(2, worker))
    return total / (time.monotonic() - start)


def bench_get(port: int, token: str, seconds: float, max_requests: int) -> float:
    conn = Conn(port, token)
    status, body, _ = conn.call(
        "POST", "/crm/v3/objects/contacts", {"properties": {"email": "get@bench.example.com"}}
    )
    assert status == 201, body
    path = f"/crm/v3/objects/contacts/{orjson.loads(body)['id']}"

    def worker(_: int) -> int:
        c = Conn(port, token)
        done, deadline = 0, time.monotonic() + seconds
        while done < max_requests and time.monotonic() < deadline:
            code = c.call("GET", path)[0]
            assert code == 200
            done += 1
        return done

    start = time.monotonic()
    total: int = sum(_parallel(4, worker))
    return total / (time.monotonic() - start)


def check_rate_limit(port: int, budget: int, window_ms: int, windows: int) -> bool:
    token = _portal(
        port,
        {"rate_limits": {"enabled": True, "private_app_burst": budget, "window_ms": window_ms}},
    )
    conn = Conn(port, token)
    ok: list[tuple[float, float]] = []  # (sent, received) of each success
    limited = 0
    window = window_ms / 1000
    end = time.monotonic() + windows * window
    while time.monotonic() < end and len(ok) + limited < 200_000:
        sent = time.monotonic()
        status, body, _ = conn.call("GET", "/crm/v3/objects/contacts?limit=1")
        if status == 200:
            ok.append((sent, time.monotonic()))
        else:
            assert status == 429, body
            assert orjson.loads(body)["policyName"] == "TEN_SECONDLY_ROLLING"
            limited += 1
    # The server admitted success i somewhere in [sent_i, received_i]. Budget+1 successes fit in
    # one window for certain only if the last was received less than a window after the first
    # was sent.
    violations = sum(1 for i in range(len(ok) - budget) if ok[i + budget][1] - ok[i][0] < window)
    print(
        f"rate limit: budget {budget}/{window_ms} ms, {len(ok)} ok and {limited} 429s "
        f"over {windows} windows; windows with more than the budget: {violations}"
    )
    return violations == 0 and len(ok) >= budget * windows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="duration of each phase")
    parser.add_argument("--window-ms", type=int, default=10_000, help="rate-limit window")
    parser.add_argument("--budget", type=int, default=100, help="rate-limit budget per window")
    parser.add_argument("--windows", type=int, default=2, help="windows the limit check runs")
    args = parser.parse_args()

    port = _free_port()
    proc = multiprocessing.get_context("spawn").Process(target=_serve, args=(port,), daemon=True)
    proc.start()
    try:
        _wait(port)
        token = _portal(port, {"rate_limits": {"enabled": False}})
        upserts = bench_upsert(port, token, args.seconds, max_batches=5_000)
        print(f"batch upsert: {upserts:,.0f} contacts/s (target >= 20,000)")
        gets = bench_get(port, token, args.seconds, max_requests=200_000)
        print(f"single GET:   {gets:,.0f} requests/s (target >= 2,000)")
        exact = check_rate_limit(port, args.budget, args.window_ms, args.windows)
        ok = upserts >= 20_000 and gets >= 2_000 and exact
        print("PASS" if ok else "FAIL")
        return 0 if ok else 1
    finally:
        proc.terminate()
        proc.join(10)


if __name__ == "__main__":
    sys.exit(main())
