"""`spoke sandbox smtp` and `spoke sandbox sms` run the emulators as their own processes,
and Spoke's adapters send through them."""

from __future__ import annotations

import asyncio
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from email.message import EmailMessage

import httpx
from tests.support.server import free_port

from spoke.messaging.providers.sms import SmsMessage, TwilioAccount, TwilioProvider
from spoke.messaging.providers.smtp import OutgoingEmail, SmtpProvider, SmtpServer


@contextmanager
def _running(*args: str, ready_url: str) -> Iterator[list[str]]:
    """The command's process until the block ends; yields the lines it printed first."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "spoke", "sandbox", *args],
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
    )
    try:
        assert proc.stderr is not None
        deadline = time.monotonic() + 120  # a loaded machine starts Python slowly
        while True:
            try:
                httpx.get(ready_url, timeout=1)
                break
            except httpx.HTTPError:
                assert proc.poll() is None, "the emulator exited"
                assert time.monotonic() < deadline, "the emulator did not start"
                time.sleep(0.05)
        lines = []
        while len(lines) < 3:
            lines.append(proc.stderr.readline().decode())
        yield lines
    finally:
        proc.terminate()
        proc.wait(10)
        if proc.stderr is not None:
            proc.stderr.close()


def test_spoke_sandbox_smtp_takes_mail_over_starttls_with_auth() -> None:
    api, smtp = free_port(), free_port()
    with _running(
        "smtp",
        "--port",
        str(api),
        "--smtp-port",
        str(smtp),
        "--username",
        "mailer",
        "--password",
        "pw",
        ready_url=f"http://127.0.0.1:{api}/_smtp/stats",
    ) as printed:
        assert f"127.0.0.1:{smtp}" in printed[0]
        cert = httpx.get(f"http://127.0.0.1:{api}/_smtp/certificate").text
        message = EmailMessage()
        message["From"], message["To"], message["Subject"] = "a@b.example", "c@d.example", "Hi"
        message.set_content("hello")
        server = SmtpServer("127.0.0.1", smtp, "starttls", "mailer", "pw", ca_pem=cert)

        async def send() -> str:
            provider = SmtpProvider(server)
            try:
                (result,) = await provider.send_many(
                    [OutgoingEmail("a@b.example", "c@d.example", message.as_bytes())]
                )
            finally:
                await provider.aclose()
            return result.outcome

        assert asyncio.run(send()) == "sent"
        received = httpx.get(f"http://127.0.0.1:{api}/_smtp/messages").json()["messages"]
        assert [(m["subject"], m["auth_user"], m["tls"]) for m in received] == [
            ("Hi", "mailer", True)
        ]


def test_spoke_sandbox_sms_prints_an_account_that_sends() -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with _running("sms", "--port", str(port), ready_url=f"{url}/_sms/stats") as printed:
        text = "".join(printed)
        sid = re.search(r"account_sid: (AC[0-9a-f]{32})", text)
        token = re.search(r"auth_token:  ([0-9a-f]{32})", text)
        assert sid is not None
        assert token is not None
        account = TwilioAccount(sid.group(1), token.group(1), "+15005550006", base_url=url)

        async def send() -> str:
            provider = TwilioProvider(account)
            try:
                (result,) = await provider.send_many([SmsMessage("+821012345678", "hi")])
            finally:
                await provider.aclose()
            return result.outcome

        assert asyncio.run(send()) == "sent"
        received = httpx.get(f"{url}/_sms/messages").json()["messages"]
        assert [(m["to"], m["body"]) for m in received] == [("+821012345678", "hi")]
