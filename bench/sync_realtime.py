"""Real-time contact sync under load: changes on both sides at once, time to the other side.

    .venv/bin/python -m bench.sync_realtime [--rate 50] [--seconds 120] [--backend sqlite]

One workspace connected by OAuth to a sandbox portal with HubSpot's real limits for an OAuth
app (110 requests per 10 s) and 150 ms ± 50 ms per API call. Webhooks are on (the sandbox
delivers them about every 20 ms). For `--seconds`, every 200 ms:

- Spoke side: one `POST /v1/users/batch` changes `first_name` of rate/5 users;
- HubSpot side: someone else's app (the portal's private app) batch-updates `lastname` of
  rate/5 other contacts.

Arrival is read afterwards from each side's own record, not polled: HubSpot's property
history timestamp of the new `firstname`, and the `created_at` of the Spoke change that
brought the new `last_name`. Printed: p50/p95/max per direction, changes that never arrived,
and echo writes: Spoke writing a `lastname` back to HubSpot, or a `first_name` change coming
back into Spoke from HubSpot.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import orjson
from cryptography.fernet import Fernet

from bench._harness import create_workspace, database, free_port, hubspot_sandbox, spoke_server
from bench.sync_backfill import _admin

POOL = 200  # users per side, changed round robin
TICK = 0.2
JSON = {"Content-Type": "application/json"}


def _oauth_app(hubspot: str, spoke_url: str) -> dict[str, Any]:
    home = _admin(
        hubspot,
        "POST",
        "/portals",
        {
            "name": "Spoke app home",
            "redirect_uris": [f"{spoke_url}/oauth/hubspot/callback"],
            "settings": {"rate_limits": {"enabled": False}},
        },
    )
    app: dict[str, Any] = home["oauth_app"]
    hooks = f"{hubspot}/webhooks/v3/{app['app_id']}"
    key = {"hapikey": app["developer_api_key"]}
    httpx.put(
        f"{hooks}/settings",
        params=key,
        json={
            "targetUrl": f"{spoke_url}/hooks/hubspot",
            "throttling": {"maxConcurrentRequests": 10},
        },
        timeout=10,
    ).raise_for_status()
    for body in [
        {"eventType": "contact.creation", "active": True},
        *(
            {"eventType": "contact.propertyChange", "propertyName": p, "active": True}
            for p in ("email", "firstname", "lastname")
        ),
    ]:
        httpx.post(f"{hooks}/subscriptions", params=key, json=body, timeout=10).raise_for_status()
    return app


def _connect(http: httpx.Client, portal_id: int) -> None:
    started = http.post("/v1/hubspot/connection/oauth")
    started.raise_for_status()
    consent = httpx.get(started.json()["authorize_url"] + f"&portal_id={portal_id}", timeout=10)
    assert consent.status_code == 302, consent.text
    httpx.get(consent.headers["location"], timeout=30).raise_for_status()


def _wait(check: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {what}")
        time.sleep(0.5)


def _paced(seconds: float, action: Any) -> None:
    """Call action(tick) every TICK seconds on a pool, so slow calls don't slow the pace."""
    with ThreadPoolExecutor(16) as pool:
        start = time.monotonic()
        tick = 0
        while (at := start + tick * TICK) < start + seconds:
            time.sleep(max(0.0, at - time.monotonic()))
            pool.submit(action, tick)
            tick += 1


def _pct(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100)[q - 1] if len(values) > 1 else values[0]


def bench(backend: str, rate: int, seconds: float) -> None:
    per_tick = max(1, round(rate * TICK))
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        port = free_port()
        spoke_url = f"http://127.0.0.1:{port}"
        with hubspot_sandbox(workdir) as hubspot, database(backend, workdir) as url:
            app = _oauth_app(hubspot, spoke_url)
            env = {
                "SPOKE_DATABASE_URL": url,
                "SPOKE_SECRET_KEY": Fernet.generate_key().decode(),
                "SPOKE_HTTP__PUBLIC_URL": spoke_url,
                "SPOKE_HUBSPOT__BASE_URL": hubspot,
                "SPOKE_HUBSPOT__APP_URL": hubspot,
                "SPOKE_HUBSPOT__CLIENT_ID": app["client_id"],
                "SPOKE_HUBSPOT__CLIENT_SECRET": app["client_secret"],
                "SPOKE_HUBSPOT__APP_ID": str(app["app_id"]),
                "SPOKE_HUBSPOT__RATE_LIMIT": "110",
                "SPOKE_JOBS__WORKERS": "4",
            }
            with spoke_server(env, workdir, port=port) as (base, _proc):
                key, secret = create_workspace(env, workdir, "rt")
                http = httpx.Client(
                    base_url=base, headers={"X-Api-Key": key, "X-Secret-Key": secret}, timeout=60
                )
                portal = _admin(hubspot, "POST", "/portals", {"name": "rt"})
                portal_id, token = portal["portal_id"], portal["private_app_token"]
                _connect(http, portal_id)
                _admin(
                    hubspot,
                    "PATCH",
                    f"/portals/{portal_id}/settings",
                    {
                        "rate_limits": {"enabled": True},
                        "faults": {"latency_ms": 150.0, "jitter_ms": 50.0},
                    },
                )
                theirs = httpx.Client(
                    base_url=hubspot, headers={"Authorization": f"Bearer {token}"}, timeout=60
                )
                # Both pools exist on both sides before the clock starts.
                items = [
                    {
                        "external_id": f"{side}{i}",
                        "email": f"{side}{i}@example.com",
                        "first_name": "F",
                        "last_name": "L",
                    }
                    for side in ("s", "h")
                    for i in range(POOL)
                ]
                http.post("/v1/users/batch", content=orjson.dumps({"items": items}), headers=JSON)
                contact_ids: dict[str, str] = {}

                def linked() -> bool:
                    found = theirs.post(
                        "/crm/v3/objects/contacts/search",
                        json={"limit": 1, "filterGroups": []},
                    )
                    return found.status_code == 200 and found.json()["total"] >= 2 * POOL

                _wait(linked, 120, "the initial users to reach HubSpot")
                for side in ("s", "h"):
                    for i in range(0, POOL, 100):
                        batch = theirs.post(
                            "/crm/v3/objects/contacts/batch/read",
                            json={
                                "idProperty": "email",
                                "inputs": [
                                    {"id": f"{side}{n}@example.com"} for n in range(i, i + 100)
                                ],
                                "properties": ["email"],
                            },
                        ).json()
                        for contact in batch["results"]:
                            contact_ids[contact["properties"]["email"].split("@")[0]] = contact[
                                "id"
                            ]
                time.sleep(5)  # let the initial wave settle
                seq_before = max(
                    [c["seq"] for c in http.get("/v1/changes", params={"limit": 1000}).json()]
                    or [0]
                )
                sent_spoke: dict[str, float] = {}  # value -> wall time it was written
                sent_hubspot: dict[str, float] = {}
                lock = threading.Lock()

                def spoke_side(tick: int) -> None:
                    batch = []
                    for k in range(per_tick):
                        n = tick * per_tick + k
                        value = f"S{n}"
                        batch.append({"external_id": f"s{n % POOL}", "first_name": value})
                        with lock:
                            sent_spoke[value] = time.time()
                    http.post(
                        "/v1/users/batch", content=orjson.dumps({"items": batch}), headers=JSON
                    ).raise_for_status()

                def hubspot_side(tick: int) -> None:
                    inputs = []
                    for k in range(per_tick):
                        n = tick * per_tick + k
                        value = f"H{n}"
                        inputs.append(
                            {"id": contact_ids[f"h{n % POOL}"], "properties": {"lastname": value}}
                        )
                        with lock:
                            sent_hubspot[value] = time.time()
                    answer = theirs.post(
                        "/crm/v3/objects/contacts/batch/update", json={"inputs": inputs}
                    )
                    answer.raise_for_status()

                both = threading.Thread(target=_paced, args=(seconds, hubspot_side))
                both.start()
                _paced(seconds, spoke_side)
                both.join()
                time.sleep(15)  # everything in flight lands
                _admin(
                    hubspot,
                    "PATCH",
                    f"/portals/{portal_id}/settings",
                    {
                        "rate_limits": {"enabled": False},
                        "faults": {"latency_ms": 0.0, "jitter_ms": 0.0},
                    },
                )
                _report(http, theirs, contact_ids, sent_spoke, sent_hubspot, seq_before, app)


def _report(
    http: httpx.Client,
    theirs: httpx.Client,
    contact_ids: dict[str, str],
    sent_spoke: dict[str, float],
    sent_hubspot: dict[str, float],
    seq_before: int,
    app: dict[str, Any],
) -> None:
    # Spoke -> HubSpot: when each first_name value was written, from property history.
    arrived_hs: dict[str, float] = {}
    echo_to_hubspot = 0
    ids = [contact_ids[f"{side}{i}"] for side in ("s", "h") for i in range(POOL)]
    for i in range(0, len(ids), 50):
        page = theirs.post(
            "/crm/v3/objects/contacts/batch/read",
            json={
                "inputs": [{"id": x} for x in ids[i : i + 50]],
                "propertiesWithHistory": ["firstname", "lastname"],
            },
        ).json()
        for contact in page["results"]:
            history = contact.get("propertiesWithHistory", {})
            for entry in history.get("firstname", []):
                if entry["value"] in sent_spoke:
                    stamp = datetime.fromisoformat(entry["timestamp"].replace("Z", "+00:00"))
                    arrived_hs.setdefault(entry["value"], stamp.timestamp())
            for entry in history.get("lastname", []):
                if entry["value"].startswith("H") and entry.get("sourceId") == str(app["app_id"]):
                    echo_to_hubspot += 1
    # HubSpot -> Spoke: the change feed says when each last_name value landed.
    arrived_spoke: dict[str, float] = {}
    echo_to_spoke = 0
    after = seq_before
    while True:
        changes = http.get("/v1/changes", params={"after_seq": after, "limit": 1000}).json()
        if not changes:
            break
        for change in changes:
            after = change["seq"]
            new_last = change["changes"].get("last_name", [None, None])[1]
            if new_last in sent_hubspot:
                stamp = datetime.fromisoformat(change["created_at"]).replace(tzinfo=UTC)
                arrived_spoke.setdefault(new_last, stamp.timestamp())
            if change["origin"].startswith("sync") and "first_name" in change["changes"]:
                echo_to_spoke += 1
    for label, sent, arrived in (
        ("Spoke -> HubSpot", sent_spoke, arrived_hs),
        ("HubSpot -> Spoke", sent_hubspot, arrived_spoke),
    ):
        # A value overwritten before it was synced never arrives: only the last per record
        # must. Count lateness over those that did arrive, and report the rest.
        delays = [arrived[v] - sent[v] for v in arrived]
        missing = len(sent) - len(arrived)
        if not delays:
            print(f"  {label}: nothing arrived of {len(sent)}")
            continue
        print(
            f"  {label}: {len(sent)} changes, {len(arrived)} arrived, {missing} superseded "
            f"before sync; p50 {_pct(delays, 50):.2f} s, p95 {_pct(delays, 95):.2f} s, "
            f"max {max(delays):.2f} s"
        )
    print(f"  echo writes: {echo_to_hubspot} to HubSpot, {echo_to_spoke} back into Spoke")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rate", type=int, default=50, help="changes per second per side")
    parser.add_argument("--seconds", type=float, default=120)
    parser.add_argument("--backend", choices=["sqlite", "postgresql"], default="sqlite")
    args = parser.parse_args()
    print(f"{args.backend}: {args.rate} changes/s per side for {args.seconds:.0f} s")
    bench(args.backend, args.rate, args.seconds)


if __name__ == "__main__":
    main()
