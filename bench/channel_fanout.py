"""Fan-out of one email or SMS send to N users through the local emulators.

    .venv/bin/python -m bench.channel_fanout [--channel email|sms] [--users 10000]
        [--connections 8] [--concurrency 64] [--latency-ms 0] [--batch 500]
        [--backend sqlite|postgresql]

The emulator (`spoke sandbox smtp`, STARTTLS; or `spoke sandbox sms`) runs in its own
process; the fan-out runs in this process exactly as a worker runs it (`fanout.run`), with
a personalised subject/body per user, the unsubscribe link and click tracking. Prints
sends/s, the peak RSS of this process and, for comparison, the emulator's own ceiling: the
same adapter sending the same number of ready-made messages with no database around it.
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
from email.message import EmailMessage
from pathlib import Path

import httpx
import psutil
from cryptography.fernet import Fernet

from bench._harness import database, free_port
from spoke.config import Settings
from spoke.core import migrate
from spoke.core.db import session_scope
from spoke.messaging import channel_providers, channel_send, fanout, service
from spoke.messaging.providers.fcm import RetryPolicy
from spoke.messaging.providers.sms import SmsMessage, TwilioAccount, TwilioProvider
from spoke.messaging.providers.smtp import OutgoingEmail, SmtpProvider, SmtpServer
from spoke.runtime import build_runtime
from spoke.users import service as users
from spoke.users.changes import Origin
from spoke.users.schemas import UserFields
from spoke.workspaces import service as workspaces

FROM_NUMBER = "+15005550006"


def _start(args: list[str], ready: str) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "spoke", "sandbox", *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            httpx.get(ready, timeout=1)
            return proc
        except httpx.HTTPError:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError("emulator did not start")


def _phone(n: int) -> str:
    return f"+8210{5_000_0000 + n:08d}"


def _email_ceiling(server: SmtpServer, count: int) -> float:
    message = EmailMessage()
    message["From"], message["To"], message["Subject"] = "b@bench.example", "x@y.example", "x"
    message.set_content("ceiling")
    data = message.as_bytes()
    mails = [OutgoingEmail("b@bench.example", f"c{i}@ceiling.example", data) for i in range(count)]

    async def run() -> float:
        provider = SmtpProvider(server)
        started = time.perf_counter()
        await provider.send_many(mails)
        elapsed = time.perf_counter() - started
        await provider.aclose()
        return count / elapsed

    return asyncio.run(run())


def _sms_ceiling(account: TwilioAccount, count: int, concurrency: int) -> float:
    async def run() -> float:
        provider = TwilioProvider(account, concurrency=concurrency)
        texts = [SmsMessage(_phone(9_000_000 + i), "ceiling") for i in range(count)]
        started = time.perf_counter()
        await provider.send_many(texts)
        elapsed = time.perf_counter() - started
        await provider.aclose()
        return count / elapsed

    return asyncio.run(run())


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--channel", choices=("email", "sms"), default="email")
    parser.add_argument("--users", type=int, default=10_000)
    parser.add_argument("--connections", type=int, default=8, help="SMTP connections")
    parser.add_argument("--concurrency", type=int, default=64, help="SMS requests in flight")
    parser.add_argument("--latency-ms", type=float, default=0)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--backend", default="sqlite")
    args = parser.parse_args()
    api = free_port()
    smtp_port = free_port()
    if args.channel == "email":
        emulator = _start(
            [
                "smtp",
                "--port",
                str(api),
                "--smtp-port",
                str(smtp_port),
                "--latency-ms",
                str(args.latency_ms),
            ],
            f"http://127.0.0.1:{api}/_smtp/stats",
        )
        stats_url = f"http://127.0.0.1:{api}/_smtp/stats"
    else:
        emulator = _start(
            ["sms", "--port", str(api), "--latency-ms", str(args.latency_ms)],
            f"http://127.0.0.1:{api}/_sms/stats",
        )
        stats_url = f"http://127.0.0.1:{api}/_sms/stats"
    url = f"http://127.0.0.1:{api}"
    try:
        with tempfile.TemporaryDirectory() as tmp, database(args.backend, Path(tmp)) as db_url:
            migrate.upgrade(db_url)
            settings = Settings(
                database_url=db_url,
                data_dir=Path(tmp),
                secret_key=Fernet.generate_key().decode(),  # type: ignore[arg-type]
            )
            runtime = build_runtime(settings)
            certificate = (
                httpx.get(f"{url}/_smtp/certificate").text if args.channel == "email" else ""
            )
            account = (
                httpx.post(f"{url}/_sms/accounts", json={}).json() if args.channel == "sms" else {}
            )
            with session_scope(runtime.sessions) as session:
                ws = workspaces.create_workspace(
                    session, runtime.encryptor, name="b", slug="bench", owner_email="b@x.io"
                ).workspace
                origin = Origin(ws.id, "bench", "bench")
                for start in range(0, args.users, 1000):
                    users.write_users(
                        session,
                        origin,
                        [
                            users.WriteItem(
                                f"u{i}",
                                UserFields.model_validate(
                                    {
                                        "email": f"u{i}@bench.example",
                                        "phone": _phone(i),
                                        "first_name": f"User{i}",
                                    }
                                ),
                            )
                            for i in range(start, min(start + 1000, args.users))
                        ],
                    )
                if args.channel == "email":
                    channel_providers.set_smtp(
                        session,
                        runtime.encryptor,
                        ws.id,
                        {
                            "host": "127.0.0.1",
                            "port": smtp_port,
                            "security": "starttls",
                            "from_address": "news@bench.example",
                            "ca_pem": certificate,
                            "max_connections": args.connections,
                            "links_base_url": "http://127.0.0.1:8000",
                        },
                    )
                    content = {
                        "subject": "Hi {{ first_name }}, 30% off",
                        "html": '<p>Hello {{ first_name }}</p><a href="https://shop.example/s">Sale</a>',
                        "text": "Hello {{ first_name }}",
                    }
                else:
                    channel_providers.set_twilio(
                        session,
                        runtime.encryptor,
                        ws.id,
                        {
                            **account,
                            "from_number": FROM_NUMBER,
                            "base_url": url,
                            "concurrency": args.concurrency,
                        },
                    )
                    content = {"body": "Hi {{ first_name }}, your code is 4711"}
            print(
                f"seeded {args.users} users; channel {args.channel}; emulator latency "
                f"{args.latency_ms:g} ms; {args.connections} SMTP connections / "
                f"{args.concurrency} SMS in flight; batch {args.batch}; {args.backend}"
            )
            options = fanout.FanoutOptions(batch_size=args.batch, retry=RetryPolicy())
            process = psutil.Process(os.getpid())
            peak = [process.memory_info().rss]
            stop = threading.Event()

            def sample() -> None:
                while not stop.wait(0.05):
                    peak[0] = max(peak[0], process.memory_info().rss)

            threading.Thread(target=sample, daemon=True).start()
            with session_scope(runtime.sessions) as session:
                notification = service.create_push(
                    session,
                    runtime.jobs,
                    ws.id,
                    source="users",
                    content=content,
                    recipients=[f"u{i}" for i in range(args.users)],
                    request_group_id=None,
                    channel=args.channel,
                )
            factory = channel_send.factory(
                fanout.fcm_factory(runtime.encryptor, options),
                runtime.encryptor,
                settings,
                options.retry,
            )
            started = time.perf_counter()
            fanout.run(runtime.sessions, notification.id, provider_factory=factory, options=options)
            elapsed = time.perf_counter() - started
            stop.set()
            accepted = httpx.get(stats_url).json().get("accepted", 0)
            rate = accepted / elapsed
            print(f"sent {accepted} in {elapsed:.1f} s = {rate:,.0f} sends/s")
            print(f"peak RSS of the fan-out process: {peak[0] / 2**20:.0f} MiB")
            count = min(args.users, 5_000)
            if args.channel == "email":
                server = SmtpServer(
                    "127.0.0.1", smtp_port, ca_pem=certificate, max_connections=args.connections
                )
                ceiling = _email_ceiling(server, count)
            else:
                ceiling = _sms_ceiling(
                    TwilioAccount(
                        account["account_sid"], account["auth_token"], FROM_NUMBER, base_url=url
                    ),
                    count,
                    args.concurrency,
                )
            print(
                f"emulator ceiling (the bare adapter, {count} ready-made messages): "
                f"{ceiling:,.0f} sends/s; the fan-out reaches {rate / ceiling:.0%} of it"
            )
            runtime.close()
    finally:
        emulator.terminate()
        emulator.wait(10)


if __name__ == "__main__":
    main()
