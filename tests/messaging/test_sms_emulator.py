"""The Twilio Messages API emulator itself, over loopback HTTP: the resource it answers,
Twilio's validation and error bodies, number states, faults by count and by rate."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from tests.messaging.channel_support import Sms, unique_phone


@pytest.fixture
def account(sms: Sms) -> dict[str, str]:
    return sms.account()


def _send(sms: Sms, account: dict[str, str], **form: str) -> httpx.Response:
    sid = account["account_sid"]
    return sms.http.post(
        f"/2010-04-01/Accounts/{sid}/Messages.json",
        data={"From": "+15005550006", **form},
        auth=(sid, account["auth_token"]),
    )


def _error(response: httpx.Response, status: int, code: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body = dict(response.json())
    assert (body["status"], body["code"]) == (status, code)
    assert body["more_info"] == f"https://www.twilio.com/docs/errors/{code}"
    return body


def test_a_message_is_created_like_twilio_creates_it(sms: Sms, account: dict[str, str]) -> None:
    to = unique_phone()
    response = _send(sms, account, To=to, Body="Hello")
    assert response.status_code == 201
    message = response.json()
    sid = account["account_sid"]
    assert message["sid"].startswith("SM")
    assert len(message["sid"]) == 34
    assert (message["to"], message["from"], message["body"]) == (to, "+15005550006", "Hello")
    assert (message["status"], message["direction"], message["num_segments"]) == (
        "queued",
        "outbound-api",
        "1",
    )
    assert message["uri"] == f"/2010-04-01/Accounts/{sid}/Messages/{message['sid']}.json"
    listed = sms.http.get(
        f"/2010-04-01/Accounts/{sid}/Messages.json",
        params={"To": to},
        auth=(sid, account["auth_token"]),
    ).json()
    assert [m["sid"] for m in listed["messages"]] == [message["sid"]]
    fetched = sms.http.get(f"/2010-04-01/Accounts/{sid}.json", auth=(sid, account["auth_token"]))
    assert fetched.json()["status"] == "active"
    assert [m["sid"] for m in sms.messages(to)] == [message["sid"]]


def test_wrong_credentials_are_refused(sms: Sms, account: dict[str, str]) -> None:
    bad = {**account, "auth_token": "nope"}
    body = _error(_send(sms, bad, To=unique_phone(), Body="x"), 401, 20003)
    assert body["message"] == "Authenticate"
    sid = account["account_sid"]
    assert sms.http.get(f"/2010-04-01/Accounts/{sid}.json").status_code == 401


def test_twilios_validation(sms: Sms, account: dict[str, str]) -> None:
    _error(_send(sms, account, Body="x"), 400, 21604)
    _error(_send(sms, account, To="010-1234", Body="x"), 400, 21211)
    _error(_send(sms, account, To=unique_phone()), 400, 21602)
    _error(_send(sms, account, To=unique_phone(), Body="x" * 1601), 400, 21617)
    long = _send(sms, account, To=unique_phone(), Body="x" * 400)
    assert long.json()["num_segments"] == "3"


@pytest.mark.parametrize(
    ("state", "code"), [("invalid", 21211), ("stopped", 21610), ("landline", 21614)]
)
def test_number_states(sms: Sms, account: dict[str, str], state: str, code: int) -> None:
    number = unique_phone()
    sms.set_number(number, state)
    _error(_send(sms, account, To=number, Body="x"), 400, code)
    sms.set_number(number, "valid")
    assert _send(sms, account, To=number, Body="x").status_code == 201


def test_faults_by_count_and_by_rate(sms: Sms, account: dict[str, str]) -> None:
    number = unique_phone()
    sms.fault(429, count=2, to=number, retry_after=3)
    first = _send(sms, account, To=number, Body="x")
    _error(first, 429, 20429)
    assert first.headers["retry-after"] == "3"
    _error(_send(sms, account, To=number, Body="x"), 429, 20429)
    assert _send(sms, account, To=number, Body="x").status_code == 201
    sms.fault(503, code=20503)
    _error(_send(sms, account, To=unique_phone(), Body="x"), 503, 20503)
    config = sms.http.put("/_sms/config", json={"fault_rates": {"500": 1.0}, "seed": 1})
    assert config.json()["fault_rates"] == {"500": 1.0}
    _error(_send(sms, account, To=unique_phone(), Body="x"), 500, 20500)
    sms.http.put("/_sms/config", json={"fault_rates": {}})
    assert _send(sms, account, To=unique_phone(), Body="x").status_code == 201


def test_admin_input_is_checked(sms: Sms) -> None:
    for bad in ({"status": 200}, {"status": 500, "retry_after": "soon"}, {"status": 500, "to": 1}):
        assert sms.http.post("/_sms/faults", json=bad).status_code == 400
    assert sms.http.put("/_sms/config", json={"fault_rates": {"x": 1}}).status_code == 400
    assert sms.http.put("/_sms/config", json={"fault_rates": {"429": 2}}).status_code == 400
    assert sms.http.put("/_sms/numbers/+1", json={"state": "on fire"}).status_code == 400
    assert sms.http.post("/_sms/accounts", json={"account_sid": "AC1"}).status_code == 400


def test_the_message_list_pages_newest_first(sms: Sms, account: dict[str, str]) -> None:
    to = unique_phone()
    sids = [_send(sms, account, To=to, Body=f"n{i}").json()["sid"] for i in range(5)]
    sid, auth = account["account_sid"], (account["account_sid"], account["auth_token"])
    path = f"/2010-04-01/Accounts/{sid}/Messages.json"
    seen: list[str] = []
    page: dict[str, Any] = sms.http.get(path, params={"To": to, "PageSize": 2}, auth=auth).json()
    while True:
        assert page["page_size"] == 2
        seen += [m["sid"] for m in page["messages"]]
        if page["next_page_uri"] is None:
            break
        page = sms.http.get(page["next_page_uri"], auth=auth).json()
    assert seen == sids[::-1]
    for bad in ({"PageSize": 0}, {"PageSize": 1001}, {"Page": -1}, {"PageSize": "x"}):
        _error(sms.http.get(path, params=bad, auth=auth), 400, 20001)


def test_a_fault_for_a_number_also_answers_a_look_up_of_it(
    sms: Sms, account: dict[str, str]
) -> None:
    to, other = unique_phone(), unique_phone()
    sms.fault(503, to=to)
    sid, auth = account["account_sid"], (account["account_sid"], account["auth_token"])
    path = f"/2010-04-01/Accounts/{sid}/Messages.json"
    assert sms.http.get(path, params={"To": other}, auth=auth).status_code == 200
    _error(sms.http.get(path, params={"To": to}, auth=auth), 503, 20503)
    assert sms.http.get(path, params={"To": to}, auth=auth).status_code == 200  # used up
