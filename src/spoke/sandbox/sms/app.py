"""A local Twilio Messages API: `POST /2010-04-01/Accounts/{sid}/Messages.json` with
Twilio's validation, resource shape and error bodies (`{code, message, more_info, status}`),
the account fetch and message list, and an admin API (`/_sms/...`) for numbers, faults and
what was sent.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import re
import secrets
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from email.utils import formatdate
from typing import Any
from urllib.parse import urlencode

import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from spoke.sandbox.sms.callbacks import Callbacks
from spoke.sandbox.sms.store import NUMBER_STATES, STATE_ERRORS, STATUS_ERRORS, Fault, SmsStore

E164 = re.compile(r"^\+[1-9]\d{1,14}$")
MESSAGING_SERVICE = re.compile(r"^MG[0-9a-fA-F]{32}$")
MAX_BODY = 1600


def _json(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(body), status, headers, media_type="application/json")


def twilio_error(
    status: int, code: int, message: str, headers: dict[str, str] | None = None
) -> Response:
    return _json(
        {
            "code": code,
            "message": message,
            "more_info": f"https://www.twilio.com/docs/errors/{code}",
            "status": status,
        },
        status,
        headers,
    )


def _authorised(request: Request) -> bool:
    store: SmsStore = request.app.state.store
    sid = request.path_params["sid"]
    header = request.headers.get("authorization", "")
    if not header.startswith("Basic "):
        return False
    try:
        user, _, password = base64.b64decode(header[6:]).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        return False
    token = store.accounts.get(sid)
    return user == sid and token is not None and secrets.compare_digest(password, token)


def _denied(request: Request) -> Response:
    return twilio_error(
        401, 20003, "Authenticate", {"WWW-Authenticate": 'Basic realm="Twilio API"'}
    )


def _resource(sid: str, form: dict[str, str], message_sid: str) -> dict[str, Any]:
    now = formatdate(usegmt=True).replace("GMT", "+0000")
    body = form.get("Body", "")
    return {
        "account_sid": sid,
        "api_version": "2010-04-01",
        "body": body,
        "date_created": now,
        "date_sent": None,
        "date_updated": now,
        "direction": "outbound-api",
        "error_code": None,
        "error_message": None,
        "from": form.get("From"),
        "messaging_service_sid": form.get("MessagingServiceSid"),
        "num_media": "0",
        "num_segments": str(1 if len(body) <= 160 else -(-len(body) // 153)),
        "price": None,
        "price_unit": "USD",
        "sid": message_sid,
        "status": "queued",
        "subresource_uris": {
            "media": f"/2010-04-01/Accounts/{sid}/Messages/{message_sid}/Media.json"
        },
        "to": form.get("To"),
        "uri": f"/2010-04-01/Accounts/{sid}/Messages/{message_sid}.json",
    }


def _check(form: dict[str, str]) -> tuple[int, str] | None:
    """Twilio's request validation, in its order."""
    to = form.get("To")
    if not to:
        return 21604, "A 'To' phone number is required."
    if not form.get("From") and not form.get("MessagingServiceSid"):
        return 21603, "A 'From' phone number is required."
    service = form.get("MessagingServiceSid")
    if service and not MESSAGING_SERVICE.match(service):
        return 21703, "The Messaging Service Sid is invalid."
    sender = form.get("From")
    if sender and not E164.match(sender) and not re.match(r"^[A-Za-z0-9 ]{1,11}$", sender):
        return 21212, f"The 'From' number {sender} is not a valid phone number or shortcode."
    if not E164.match(to):
        return 21211, f"The 'To' number {to} is not a valid phone number."
    if not form.get("Body"):
        return 21602, "Message body is required."
    if len(form["Body"]) > MAX_BODY:
        return 21617, "The concatenated message body exceeds the 1600 character limit."
    return None


async def create_message(request: Request) -> Response:
    store: SmsStore = request.app.state.store
    store.count("requests")
    # The body first, then the latency: like Twilio, a request that arrived whole is acted
    # on even if its client is gone by the time it is processed (a killed sender's last
    # writes), where reading it after a pause would find only the disconnect.
    form = {k: v for k, v in (await request.form()).items() if isinstance(v, str)}
    if store.latency_ms:
        await asyncio.sleep(store.latency_ms / 1000)
    if not _authorised(request):
        store.count("unauthorised")
        return _denied(request)
    problem = _check(form)
    if problem is not None:
        store.count(f"error_{problem[0]}")
        return twilio_error(400, *problem)
    to = form["To"]
    fault = store.take_fault(to)
    if fault is not None:
        store.count(f"fault_{fault.status}")
        code, message = STATUS_ERRORS.get(fault.status, (20500, "Injected failure"))
        headers = {"Retry-After": str(int(fault.retry_after))} if fault.retry_after else None
        return twilio_error(fault.status, fault.code or code, message, headers)
    state = store.state_of(to)
    if state in STATE_ERRORS:
        code, message = STATE_ERRORS[state]
        store.count(f"error_{code}")
        return twilio_error(400, code, message.format(to=to))
    sid = request.path_params["sid"]
    resource = _resource(sid, form, "SM" + secrets.token_hex(16))
    stored = store.record({**resource, "status_callback": form.get("StatusCallback")})
    request.app.state.callbacks.submit(stored)
    return _json(resource, 201)


_MAX_PAGE_SIZE = 1000


async def list_messages(request: Request) -> Response:
    """Twilio's message list for the account, newest first, filtered by `To`/`From`, in
    pages of `PageSize` (at most 1,000; 50 unless set), `Page` counting from 0. A fault
    queued for a number (`/_sms/faults` with `to`) answers a list filtered by it too."""
    store: SmsStore = request.app.state.store
    if not _authorised(request):
        return _denied(request)
    sid = request.path_params["sid"]
    query = request.query_params
    to, sender = query.get("To"), query.get("From")
    try:
        size = int(query.get("PageSize", "50"))
        number = int(query.get("Page", "0"))
    except ValueError:
        return twilio_error(400, 20001, "PageSize and Page must be integers")
    if not 1 <= size <= _MAX_PAGE_SIZE or number < 0:
        return twilio_error(400, 20001, f"PageSize must be 1-{_MAX_PAGE_SIZE}, Page at least 0")
    fault = store.take_fault(to, lookup=True) if to is not None else None
    if fault is not None:
        store.count(f"fault_{fault.status}")
        code, message = STATUS_ERRORS.get(fault.status, (20500, "Injected failure"))
        headers = {"Retry-After": str(int(fault.retry_after))} if fault.retry_after else None
        return twilio_error(fault.status, fault.code or code, message, headers)
    matching = [
        {k: v for k, v in m.items() if k not in ("received_at", "status_callback")}
        for m in reversed(store.messages)
        if m["account_sid"] == sid
        and (to is None or m["to"] == to)
        and (sender is None or m["from"] == sender)
    ]
    found = matching[number * size : (number + 1) * size]
    uri = f"/2010-04-01/Accounts/{sid}/Messages.json"
    filters = {k: v for k, v in (("To", to), ("From", sender)) if v is not None}

    def page_uri(page: int) -> str:
        return f"{uri}?{urlencode({**filters, 'PageSize': size, 'Page': page})}"

    more = (number + 1) * size < len(matching)
    return _json(
        {
            "messages": found,
            "page": number,
            "page_size": size,
            "first_page_uri": page_uri(0),
            "next_page_uri": page_uri(number + 1) if more else None,
            "previous_page_uri": page_uri(number - 1) if number > 0 else None,
            "uri": page_uri(number),
            "end": number * size + max(len(found) - 1, 0),
            "start": number * size,
        }
    )


async def fetch_account(request: Request) -> Response:
    if not _authorised(request):
        return _denied(request)
    sid = request.path_params["sid"]
    return _json(
        {
            "sid": sid,
            "friendly_name": "Spoke SMS emulator",
            "status": "active",
            "type": "Full",
            "uri": f"/2010-04-01/Accounts/{sid}.json",
        }
    )


# -- admin API ---------------------------------------------------------------------------


async def _body(request: Request) -> dict[str, Any]:
    try:
        body = orjson.loads(await request.body() or b"{}")
    except orjson.JSONDecodeError:
        return {}
    return body if isinstance(body, dict) else {}


async def create_account(request: Request) -> Response:
    store: SmsStore = request.app.state.store
    body = await _body(request)
    sid, token = body.get("account_sid"), body.get("auth_token")
    if sid is not None and (not isinstance(sid, str) or not re.match(r"^AC[0-9a-f]{32}$", sid)):
        return _json({"error": "account_sid is AC + 32 hex digits"}, 400)
    if token is not None and not isinstance(token, str):
        return _json({"error": "auth_token is a string"}, 400)
    return _json(store.create_account(sid, token), 201)


async def set_number(request: Request) -> Response:
    store: SmsStore = request.app.state.store
    state = (await _body(request)).get("state")
    if state not in NUMBER_STATES:
        return _json({"error": f"state must be one of {', '.join(NUMBER_STATES)}"}, 400)
    number = request.path_params["number"]
    store.number_states[number] = state
    return _json({"number": number, "state": state})


async def add_fault(request: Request) -> Response:
    store: SmsStore = request.app.state.store
    body = await _body(request)
    status, count = body.get("status"), body.get("count", 1)
    retry_after, to, code = body.get("retry_after"), body.get("to"), body.get("code")
    if not isinstance(status, int) or not 400 <= status <= 599 or not isinstance(count, int):
        return _json({"error": "status (4xx/5xx) and count are required"}, 400)
    if retry_after is not None and not isinstance(retry_after, int | float):
        return _json({"error": "retry_after is seconds"}, 400)
    if to is not None and not isinstance(to, str):
        return _json({"error": "to is a number"}, 400)
    if code is not None and not isinstance(code, int):
        return _json({"error": "code is a Twilio error code"}, 400)
    store.faults.append(Fault(status, count, retry_after, to, code))
    return _json({"faults": len(store.faults)}, 201)


async def config(request: Request) -> Response:
    """`{latency_ms?, default_state?, fault_rates?: {"429": 0.1, "503": 0.05},
    rate_retry_after?, seed?, report_status?, callback_delay_ms?}`; `report_status: true`
    makes accepted messages report `sent`, then their final status, to `StatusCallback`."""
    store: SmsStore = request.app.state.store
    body = await _body(request)
    if isinstance(body.get("latency_ms"), int | float):
        store.latency_ms = float(body["latency_ms"])
    if body.get("default_state") in NUMBER_STATES:
        store.default_state = body["default_state"]
    rates = body.get("fault_rates")
    if isinstance(rates, dict):
        parsed: dict[int, float] = {}
        for status, share in rates.items():
            if not str(status).isdigit() or not 400 <= int(status) <= 599:
                return _json({"error": "fault_rates keys are 4xx/5xx statuses"}, 400)
            if not isinstance(share, int | float) or not 0 <= share <= 1:
                return _json({"error": "fault_rates values are shares from 0 to 1"}, 400)
            parsed[int(status)] = float(share)
        store.fault_rates = parsed
    if "rate_retry_after" in body:
        value = body["rate_retry_after"]
        store.rate_retry_after = float(value) if isinstance(value, int | float) else None
    if isinstance(body.get("seed"), int):
        store.rng.seed(body["seed"])
    if isinstance(body.get("report_status"), bool):
        store.report_status = body["report_status"]
    if isinstance(body.get("callback_delay_ms"), int | float):
        store.callback_delay_ms = float(body["callback_delay_ms"])
    return _json(
        {
            "report_status": store.report_status,
            "callback_delay_ms": store.callback_delay_ms,
            "latency_ms": store.latency_ms,
            "default_state": store.default_state,
            "fault_rates": {str(k): v for k, v in store.fault_rates.items()},
            "rate_retry_after": store.rate_retry_after,
        }
    )


async def messages(request: Request) -> Response:
    """What was accepted, optionally for one number (`?to=`), oldest first."""
    store: SmsStore = request.app.state.store
    to = request.query_params.get("to")
    found = [m for m in store.messages if to is None or m["to"] == to]
    return _json({"count": len(found), "messages": found})


async def replay_callbacks(request: Request) -> Response:
    """`{"statuses": ["delivered", "sent", ...], "error_code"?}`: post these status callbacks
    for one accepted message now, in this order (duplicates and reordering on purpose);
    answers the HTTP status each got."""
    store: SmsStore = request.app.state.store
    message = store.find(request.path_params["sid"])
    if message is None or not message.get("status_callback"):
        return _json({"error": "no such message with a StatusCallback"}, 404)
    body = await _body(request)
    statuses, code = body.get("statuses"), body.get("error_code")
    if not isinstance(statuses, list) or not all(isinstance(s, str) for s in statuses):
        return _json({"error": "statuses is a list of message statuses"}, 400)
    if code is not None and not isinstance(code, int):
        return _json({"error": "error_code is a Twilio error code"}, 400)
    callbacks: Callbacks = request.app.state.callbacks
    answers = [await callbacks.post(message, status, code) for status in statuses]
    return _json({"answers": answers})


async def callbacks_sent(request: Request) -> Response:
    """The status callbacks posted so far (`?sid=` for one message), oldest first."""
    store: SmsStore = request.app.state.store
    sid = request.query_params.get("sid")
    found = [c for c in store.callbacks if sid is None or c["sid"] == sid]
    return _json({"count": len(found), "callbacks": found})


async def clear_messages(request: Request) -> Response:
    request.app.state.store.messages.clear()
    return Response(status_code=204)


async def stats(request: Request) -> Response:
    store: SmsStore = request.app.state.store
    return _json({**store.counts, "stored_messages": len(store.messages)})


async def reset(request: Request) -> Response:
    request.app.state.store.reset()
    return Response(status_code=204)


def create_sms_app(store: SmsStore | None = None) -> Starlette:
    """The emulator as an ASGI app over `store` (a fresh one when omitted)."""
    the_store = store if store is not None else SmsStore()
    callbacks = Callbacks(the_store)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        try:
            yield
        finally:
            await callbacks.stop()

    app = Starlette(
        lifespan=lifespan,
        routes=[
            Route("/2010-04-01/Accounts/{sid}.json", fetch_account, methods=["GET"]),
            Route("/2010-04-01/Accounts/{sid}/Messages.json", create_message, methods=["POST"]),
            Route("/2010-04-01/Accounts/{sid}/Messages.json", list_messages, methods=["GET"]),
            Route("/_sms/accounts", create_account, methods=["POST"]),
            Route("/_sms/numbers/{number}", set_number, methods=["PUT"]),
            Route("/_sms/faults", add_fault, methods=["POST"]),
            Route("/_sms/config", config, methods=["PUT"]),
            Route("/_sms/messages", messages, methods=["GET"]),
            Route("/_sms/messages", clear_messages, methods=["DELETE"]),
            Route("/_sms/messages/{sid}/callbacks", replay_callbacks, methods=["POST"]),
            Route("/_sms/callbacks", callbacks_sent, methods=["GET"]),
            Route("/_sms/stats", stats, methods=["GET"]),
            Route("/_sms/reset", reset, methods=["POST"]),
        ],
    )
    app.state.store = the_store
    app.state.callbacks = callbacks
    return app


def serve(host: str = "127.0.0.1", port: int = 8400, *, latency_ms: float = 0.0) -> None:
    """Run the emulator with uvicorn until interrupted; prints a ready account."""
    import uvicorn

    from spoke.sandbox.whole_requests import WholeRequestsProtocol

    store = SmsStore(latency_ms=latency_ms)
    account = store.create_account()
    sys.stderr.write(
        f"SMS emulator (Twilio Messages API) on http://{host}:{port}\n"
        f"  account_sid: {account['account_sid']}\n"
        f"  auth_token:  {account['auth_token']}\n"
        f"  sent messages: http://{host}:{port}/_sms/messages[?to=NUMBER]\n"
    )
    uvicorn.run(
        create_sms_app(store),
        host=host,
        port=port,
        log_level="warning",
        access_log=False,
        http=WholeRequestsProtocol,
    )
