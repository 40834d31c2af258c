"""`spoke sandbox fcm` runs the emulator as its own process and prints a usable key."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time

import httpx
import orjson
from tests.support.server import free_port

from spoke.messaging.providers.base import PushMessage
from spoke.messaging.providers.fcm import FcmProvider
from spoke.messaging.providers.oauth import ServiceAccount


def test_the_cli_serves_an_emulator_that_the_adapter_can_use() -> None:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "spoke", "sandbox", "fcm", "--port", str(port)],
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
    )
    try:
        assert proc.stderr is not None
        key = None
        deadline = time.monotonic() + 30
        while key is None and time.monotonic() < deadline:
            line = proc.stderr.readline()
            if line.startswith(b"{"):
                key = orjson.loads(line)
        assert key is not None, "no key printed"
        assert key["token_uri"] == f"http://127.0.0.1:{port}/token"
        while time.monotonic() < deadline:
            try:
                httpx.get(f"http://127.0.0.1:{port}/_fcm/stats", timeout=1)
                break
            except httpx.HTTPError:
                time.sleep(0.05)

        async def send() -> str:
            provider = FcmProvider(
                ServiceAccount.from_info(key), base_url=f"http://127.0.0.1:{port}"
            )
            try:
                (result,) = await provider.send_many([PushMessage("cli-device", body="hi")])
            finally:
                await provider.aclose()
            return result.outcome

        assert asyncio.run(send()) == "sent"
        received = httpx.get(f"http://127.0.0.1:{port}/_fcm/messages").json()
        assert [m["token"] for m in received["messages"]] == ["cli-device"]
    finally:
        proc.terminate()
        proc.wait(10)
        if proc.stderr is not None:
            proc.stderr.close()
