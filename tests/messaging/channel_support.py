"""The SMTP sink and the SMS emulator on loopback ports, and helpers to wire a tenant to
them and read what they received."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

import httpx
import phonenumbers
from tests.conftest import Tenant

from spoke.sandbox.sms import SmsStore
from spoke.sandbox.smtp import SmtpStore


@dataclass
class Sink:
    url: str
    smtp_port: int
    store: SmtpStore
    http: httpx.Client

    @property
    def certificate(self) -> str:
        return self.http.get("/_smtp/certificate").text

    def messages(self, to: str | None = None) -> list[dict[str, Any]]:
        response = self.http.get("/_smtp/messages", params={"to": to} if to else {})
        assert response.status_code == 200, response.text
        return list(response.json()["messages"])

    def set_recipient(self, address: str, state: str) -> None:
        response = self.http.put(f"/_smtp/recipients/{address}", json={"state": state})
        assert response.status_code == 200, response.text

    def fault(self, code: int, count: int = 1, **extra: Any) -> None:
        response = self.http.post("/_smtp/faults", json={"code": code, "count": count, **extra})
        assert response.status_code == 201, response.text


@dataclass
class Sms:
    url: str
    store: SmsStore
    http: httpx.Client

    def account(self) -> dict[str, str]:
        response = self.http.post("/_sms/accounts", json={})
        assert response.status_code == 201, response.text
        return dict(response.json())

    def messages(self, to: str | None = None) -> list[dict[str, Any]]:
        response = self.http.get("/_sms/messages", params={"to": to} if to else {})
        assert response.status_code == 200, response.text
        return list(response.json()["messages"])

    def post_message(
        self, account: dict[str, str], to: str, body: str, sender: str = "+15005550006"
    ) -> str:
        """Send a message through the emulator's Twilio API, as a client would; its sid."""
        sid = account["account_sid"]
        response = self.http.post(
            f"/2010-04-01/Accounts/{sid}/Messages.json",
            data={"To": to, "From": sender, "Body": body},
            auth=(sid, account["auth_token"]),
        )
        assert response.status_code == 201, response.text
        return str(response.json()["sid"])

    def set_number(self, number: str, state: str) -> None:
        response = self.http.put(f"/_sms/numbers/{number}", json={"state": state})
        assert response.status_code == 200, response.text

    def fault(self, status: int, count: int = 1, **extra: Any) -> None:
        response = self.http.post("/_sms/faults", json={"status": status, "count": count, **extra})
        assert response.status_code == 201, response.text

    def configure(self, **config: Any) -> None:
        response = self.http.put("/_sms/config", json=config)
        assert response.status_code == 200, response.text

    def callbacks(self, sid: str) -> list[dict[str, Any]]:
        response = self.http.get("/_sms/callbacks", params={"sid": sid})
        assert response.status_code == 200, response.text
        return list(response.json()["callbacks"])

    def replay(self, sid: str, statuses: list[str], error_code: int | None = None) -> list[int]:
        """Have the emulator post these signed status callbacks for `sid`, in this order."""
        response = self.http.post(
            f"/_sms/messages/{sid}/callbacks",
            json={"statuses": statuses, "error_code": error_code},
        )
        assert response.status_code == 200, response.text
        return list(response.json()["answers"])


def connect_smtp(tenant: Tenant, sink: Sink, **overrides: Any) -> dict[str, Any]:
    """Give the tenant an email provider pointing at the sink over STARTTLS, trusting the
    sink's certificate, with links pointing at the tenant's Spoke."""
    body = {
        "host": "127.0.0.1",
        "port": sink.smtp_port,
        "security": "starttls",
        "from_address": "news@shop.example",
        "from_name": "Shop",
        "ca_pem": sink.certificate,
        "links_base_url": tenant.backend.url,
        "max_connections": 2,
        **overrides,
    }
    response = tenant.http.put("/v1/messaging/providers/smtp", json=body)
    assert response.status_code == 200, response.text
    return dict(response.json())


def connect_sms(tenant: Tenant, sms: Sms, **overrides: Any) -> dict[str, Any]:
    account = sms.account()
    body = {
        **account,
        "from_number": "+15005550006",
        "base_url": sms.url,
        "status_callback_base_url": tenant.backend.url,
        **overrides,
    }
    response = tenant.http.put("/v1/messaging/providers/twilio", json=body)
    assert response.status_code == 200, response.text
    return dict(response.json())


def unique_email(name: str) -> str:
    return f"{name}.{uuid.uuid4().hex[:10]}@mail.example"


def unique_phone() -> str:
    """A valid Korean mobile number (E.164), unique enough per test."""
    while True:
        number = f"+8210{uuid.uuid4().int % 10**8:08d}"
        if phonenumbers.is_valid_number(phonenumbers.parse(number)):
            return number


def put_user(tenant: Tenant, external_id: str, **fields: Any) -> None:
    response = tenant.http.put(f"/v1/users/{external_id}", json=fields)
    assert response.status_code in (200, 201), response.text


def send(tenant: Tenant, channel: str, user_ids: list[str], **content: Any) -> dict[str, Any]:
    response = tenant.http.post(
        "/v1/notifications",
        json={"channel": channel, "audience": {"user_ids": user_ids}, **content},
    )
    assert response.status_code == 202, response.text
    return dict(response.json())
