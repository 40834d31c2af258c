"""Email over SMTP to any server: STARTTLS (or implicit TLS), optional AUTH, many messages
per connection, a few connections at once.

Why smtplib in threads rather than an asyncio client: a message is four short exchanges
(MAIL, RCPT, DATA, the body) on a connection that stays open, so the cost is round trips,
not CPU; a handful of blocking connections, each in its own thread of a private pool,
keep a server as busy as it lets one client be (servers cap connections per client), and
smtplib already does STARTTLS, AUTH, dot-stuffing and line endings right.

What each answer means (RFC 5321 §4.2, enhanced codes RFC 3463):

- 2xx after the body → `sent`.
- 4xx anywhere → retried with backoff (421 closes the connection: a new one is opened);
  failed with the last reply once the attempts run out.
- 5xx to RCPT TO, or a 5xx to the body whose enhanced code is 5.1.x (bad address) or 5.2.x
  (mailbox unavailable) → `token_gone` with `address_status="bounced"`: the address is dead.
- any other 5xx (sender refused, content refused) → failed; the address is left alone.
- Authentication refused, or STARTTLS asked for but not offered → `ProviderConfigError`,
  raised before anything is sent.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import queue
import re
import smtplib
import ssl
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Literal

from spoke.messaging.providers.base import ProviderConfigError, SendGate, SendResult
from spoke.messaging.providers.fcm import RetryPolicy

Security = Literal["starttls", "tls", "none"]
_ENHANCED = re.compile(r"^\s*([245])\.(\d{1,3})\.(\d{1,3})\b")


@dataclass(frozen=True)
class SmtpServer:
    host: str
    port: int = 587
    security: Security = "starttls"
    username: str | None = None
    password: str | None = None
    # Trust these certificates (PEM) instead of the system's, e.g. a private relay's CA.
    ca_pem: str | None = None
    verify_tls: bool = True
    timeout: float = 30.0
    helo_name: str | None = None
    max_connections: int = 4


@dataclass(frozen=True)
class OutgoingEmail:
    sender: str  # envelope MAIL FROM (bounces go there)
    recipient: str
    data: bytes  # the whole RFC 5322 message, ASCII
    message_id: str | None = None


@dataclass(frozen=True)
class _Verdict:
    kind: Literal["sent", "bounced", "failed", "retry", "reconnect"]
    reason: str | None = None


def _reply(code: int, text: bytes | str) -> str:
    message = text.decode("utf-8", "replace") if isinstance(text, bytes) else text
    return f"{code} {' '.join(message.split())}"[:300]


def classify(stage: Literal["mail", "rcpt", "data"], code: int, text: bytes | str) -> _Verdict:
    """One SMTP reply, at one stage of a transaction, as what to do next."""
    reason = _reply(code, text)
    if 200 <= code < 300:
        return _Verdict("sent", reason)
    if code == 421:
        return _Verdict("reconnect", reason)
    if 400 <= code < 500:
        return _Verdict("retry", reason)
    if stage == "rcpt":
        return _Verdict("bounced", reason)
    enhanced = _ENHANCED.match(text.decode("utf-8", "replace") if isinstance(text, bytes) else text)
    if stage == "data" and enhanced and enhanced.group(2) in ("1", "2"):
        return _Verdict("bounced", reason)
    return _Verdict("failed", reason)


def tls_context(server: SmtpServer) -> ssl.SSLContext:
    context = ssl.create_default_context(cadata=server.ca_pem) if server.ca_pem else None
    context = context or ssl.create_default_context()
    if not server.verify_tls:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


def connect(server: SmtpServer) -> smtplib.SMTP:
    """A connection ready for MAIL FROM: greeted, encrypted as configured, logged in.

    Raises:
        ProviderConfigError: the server refuses our credentials or lacks STARTTLS.
        OSError, smtplib.SMTPException: the server can't be reached right now.
    """
    context = tls_context(server) if server.security != "none" else None
    conn: smtplib.SMTP
    try:
        if server.security == "tls":
            conn = smtplib.SMTP_SSL(
                server.host,
                server.port,
                local_hostname=server.helo_name,
                timeout=server.timeout,
                context=context,
            )
        else:
            conn = smtplib.SMTP(
                server.host, server.port, local_hostname=server.helo_name, timeout=server.timeout
            )
    except ssl.SSLCertVerificationError as exc:
        raise ProviderConfigError(f"the SMTP server's certificate is not trusted: {exc}") from None
    try:
        conn.ehlo()
        if server.security == "starttls":
            if not conn.has_extn("starttls"):
                raise ProviderConfigError(
                    f"{server.host}:{server.port} does not offer STARTTLS; "
                    "use security `tls` or `none` if that is intended"
                )
            try:
                conn.starttls(context=context)
            except ssl.SSLCertVerificationError as exc:
                raise ProviderConfigError(
                    f"the SMTP server's certificate is not trusted: {exc.verify_message}"
                ) from None
            conn.ehlo()
        if server.username:
            try:
                conn.login(server.username, server.password or "")
            except smtplib.SMTPAuthenticationError as exc:
                raise ProviderConfigError(
                    f"SMTP authentication failed: {_reply(exc.smtp_code, exc.smtp_error)}"
                ) from None
            except smtplib.SMTPNotSupportedError:
                raise ProviderConfigError("the SMTP server does not offer AUTH") from None
    except BaseException:
        _close(conn)
        raise
    return conn


def _close(conn: smtplib.SMTP) -> None:
    try:
        conn.quit()
    except (OSError, smtplib.SMTPException):
        conn.close()


class _ThreadGate:
    """A `SendGate` used from a worker thread: its calls run on the event loop."""

    def __init__(self, gate: SendGate, loop: asyncio.AbstractEventLoop) -> None:
        self._gate = gate
        self._loop = loop

    def write(self, send: Callable[[], None]) -> None:
        """Block until the gate has recorded the attempt and called `send` (raises what the
        gate or `send` raised)."""
        asyncio.run_coroutine_threadsafe(self._gate.write(send), self._loop).result()

    def refused(self) -> None:
        self._loop.call_soon_threadsafe(self._gate.refused)


def _data(
    conn: smtplib.SMTP, data: bytes, gate: _ThreadGate | None, written: list[bool]
) -> tuple[int, bytes]:
    """`smtplib.SMTP.data` with the send gate between the server's 354 and the body.

    Before the body the server has nothing it could deliver, so the mark that makes a
    crashed attempt count as sent belongs right here, not before MAIL: there, a worker
    killed during MAIL/RCPT/DATA left rows `sending` (settled as sent) for mail that never
    arrived."""
    code, reply = conn.docmd("data")
    if code != 354:
        raise smtplib.SMTPDataError(code, reply)
    body = re.sub(rb"(?m)^\.", b"..", data)  # dot-stuffing (RFC 5321 4.5.2), as smtplib does
    if not body.endswith(b"\r\n"):
        body += b"\r\n"
    payload = body + b".\r\n"
    if gate is None:
        conn.send(payload)
    else:
        written[0] = True
        # The body leaves from the event loop right after the mark's COMMIT, like a push
        # request: sent from this thread, a wake-up after the commit would open a window
        # in which a killed worker left the row `sending` and the server without the body.
        # This thread waits meanwhile, so the socket has one user; a message is small
        # against the socket's buffer, so the write doesn't hold up the loop.
        gate.write(functools.partial(conn.send, payload))
    return conn.getreply()


class SmtpProvider:
    """Sends through one SMTP server, over at most `max_connections` kept-open connections."""

    def __init__(self, server: SmtpServer, *, retry: RetryPolicy | None = None) -> None:
        self._server = server
        self._retry = retry or RetryPolicy()
        self._size = max(1, server.max_connections)
        self._executor = ThreadPoolExecutor(self._size, thread_name_prefix="smtp")
        self._idle: queue.SimpleQueue[smtplib.SMTP] = queue.SimpleQueue()
        self._checked = False
        self._closed = threading.Event()

    async def send_many(
        self, messages: Sequence[OutgoingEmail], gates: Sequence[SendGate | None] | None = None
    ) -> list[SendResult]:
        """One result per message, in order; never raises for one message's failure.

        Every attempt of `messages[i]` that reaches the body passes through `gates[i]` (on
        the event loop) between the server's 354 and the body; the worker thread waits until
        the gate has recorded it (see `_data`).

        Raises:
            ProviderConfigError: the first connection showed the settings can't work.
            Whatever a gate's `write` raises (the caller's reason to stop sending).
        """
        loop = asyncio.get_running_loop()
        if not self._checked:
            # Log in once before anything is sent: bad credentials fail the batch cleanly.
            # Unreachable for now is not a configuration problem: each message retries.
            with contextlib.suppress(OSError, smtplib.SMTPException):
                self._idle.put(await loop.run_in_executor(self._executor, connect, self._server))
            self._checked = True
        results: list[SendResult | None] = [None] * len(messages)
        each = gates if gates is not None else [None] * len(messages)
        work = deque(
            (i, m, _ThreadGate(g, loop) if g else None)
            for i, (m, g) in enumerate(zip(messages, each, strict=True))
        )
        workers = min(self._size, len(messages))
        await asyncio.gather(
            *(
                loop.run_in_executor(self._executor, self._drain, work, results)
                for _ in range(workers)
            )
        )
        return [r or SendResult("failed", reason="not sent") for r in results]

    def _drain(
        self,
        work: deque[tuple[int, OutgoingEmail, _ThreadGate | None]],
        results: list[SendResult | None],
    ) -> None:
        """A worker thread: take messages until none are left, over one connection."""
        try:
            conn: smtplib.SMTP | None = self._idle.get_nowait()
        except queue.Empty:
            conn = None
        holder = [conn]
        try:
            while not self._closed.is_set():
                try:
                    index, message, gate = work.popleft()
                except IndexError:
                    break
                results[index] = self._send(holder, message, gate)
        finally:
            if holder[0] is not None:
                self._idle.put(holder[0])

    def _send(
        self, holder: list[smtplib.SMTP | None], message: OutgoingEmail, gate: _ThreadGate | None
    ) -> SendResult:
        attempt = 0
        while True:
            attempt += 1
            reused = holder[0] is not None
            written = [False]
            verdict = self._attempt(holder, message, gate, written)
            if verdict.kind == "reconnect" and reused and attempt == 1:
                attempt = 0  # an idle connection the server had dropped: not a real try
                continue
            if gate is not None and written[0] and verdict.kind == "retry":
                gate.refused()  # the server answered 4xx to the body and did not take it
            if verdict.kind in ("retry", "reconnect"):
                if attempt < self._retry.attempts and not self._closed.is_set():
                    time.sleep(self._retry.delay(attempt, None))
                    continue
                return SendResult("failed", reason=verdict.reason, attempts=attempt)
            if verdict.kind == "bounced":
                return SendResult(
                    "token_gone", reason=verdict.reason, attempts=attempt, address_status="bounced"
                )
            if verdict.kind == "sent":
                return SendResult("sent", message.message_id, None, attempt)
            return SendResult("failed", reason=verdict.reason, attempts=attempt)

    def _attempt(
        self,
        holder: list[smtplib.SMTP | None],
        message: OutgoingEmail,
        gate: _ThreadGate | None,
        written: list[bool],
    ) -> _Verdict:
        """One try of one message; drops the connection when it is no longer usable.

        The gate is passed (`written[0]` set) only once the server has said 354 to DATA:
        a worker killed before that left nothing at the server, and the delivery, not yet
        marked `sending`, is sent again by the run that resumes; once the gate has recorded
        the attempt, the body follows at once, so a `sending` row was received."""
        try:
            conn = holder[0]
            if conn is None:
                conn = holder[0] = connect(self._server)
            options = ["SMTPUTF8"] if not message.recipient.isascii() else []
            if options and not conn.has_extn("smtputf8"):
                return _Verdict("failed", "the address needs SMTPUTF8, which the server lacks")
            code, text = conn.mail(message.sender, options)
            verdict = classify("mail", code, text)
            if verdict.kind == "sent":
                code, text = conn.rcpt(message.recipient)
                verdict = classify("rcpt", code, text)
            if verdict.kind == "sent":
                reply: bytes | str
                try:
                    code, reply = _data(conn, message.data, gate, written)
                except smtplib.SMTPDataError as exc:  # DATA itself refused (no 354)
                    code, reply = exc.smtp_code, exc.smtp_error
                verdict = classify("data", code, reply)
                if verdict.kind in ("sent", "bounced", "failed"):
                    return verdict  # the transaction is over either way
            if verdict.kind == "reconnect":
                self._drop(holder)
            else:
                self._reset(holder)
            return verdict
        except ProviderConfigError as exc:
            self._drop(holder)
            return _Verdict("failed", f"provider: {exc}"[:300])
        except (OSError, smtplib.SMTPException) as exc:
            self._drop(holder)
            return _Verdict("reconnect", f"TRANSPORT: {type(exc).__name__}: {exc}"[:300])
        except BaseException:
            self._drop(holder)  # the gate refused mid-transaction: the connection is unusable
            raise

    @classmethod
    def _reset(cls, holder: list[smtplib.SMTP | None]) -> None:
        """End a refused transaction; a connection that can't even do that is dropped."""
        try:
            if holder[0] is not None:
                holder[0].rset()
        except (OSError, smtplib.SMTPException):
            cls._drop(holder)

    @staticmethod
    def _drop(holder: list[smtplib.SMTP | None]) -> None:
        if holder[0] is not None:
            holder[0].close()
            holder[0] = None

    async def aclose(self) -> None:
        self._closed.set()
        while True:
            try:
                conn = self._idle.get_nowait()
            except queue.Empty:
                break
            await asyncio.get_running_loop().run_in_executor(self._executor, _close, conn)
        self._executor.shutdown(wait=False)
