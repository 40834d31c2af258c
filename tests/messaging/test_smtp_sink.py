"""The SMTP sink itself, driven by a plain smtplib client over loopback: STARTTLS with the
certificate it publishes, AUTH, bounces and faults, and its read API."""

from __future__ import annotations

import smtplib
import ssl
from collections.abc import Iterator
from email.message import EmailMessage

import pytest
from tests.messaging.channel_support import Sink, unique_email


@pytest.fixture
def client(sink: Sink) -> Iterator[smtplib.SMTP]:
    with smtplib.SMTP("127.0.0.1", sink.smtp_port, timeout=10) as conn:
        conn.ehlo()
        yield conn


def _tls(sink: Sink) -> ssl.SSLContext:
    return ssl.create_default_context(cadata=sink.certificate)


def _message(to: str, subject: str = "Hi") -> EmailMessage:
    message = EmailMessage()
    message["From"] = "Shop <news@shop.example>"
    message["To"] = to
    message["Subject"] = subject
    message.set_content("Plain\n.\nwith a lone dot")
    message.add_alternative("<p>Rich</p>", subtype="html")
    return message


def test_starttls_with_the_published_certificate(sink: Sink, client: smtplib.SMTP) -> None:
    assert client.has_extn("starttls")
    client.starttls(context=_tls(sink))  # verifies host name and chain
    client.ehlo()
    to = unique_email("tls")
    client.send_message(_message(to, "Über TLS"))
    (received,) = sink.messages(to)
    assert received["tls"] is True
    assert received["subject"] == "Über TLS"
    assert received["from"] == "Shop <news@shop.example>"
    assert received["text"] == "Plain\n.\nwith a lone dot\n"  # dot-stuffing undone
    assert received["html"] == "<p>Rich</p>\n"
    assert ["Subject", "Über TLS"] in received["headers"]
    full = sink.http.get(f"/_smtp/messages/{received['id']}").json()
    assert "Content-Type: multipart/alternative" in full["raw"]


def test_an_untrusted_client_refuses_the_self_signed_certificate(client: smtplib.SMTP) -> None:
    with pytest.raises(ssl.SSLCertVerificationError):
        client.starttls(context=ssl.create_default_context())


def test_auth_is_required_when_configured(sink: Sink) -> None:
    response = sink.http.put(
        "/_smtp/config", json={"auth": {"username": "mailer", "password": "pw"}}
    )
    assert response.json()["auth"] is True
    to = unique_email("auth")
    with smtplib.SMTP("127.0.0.1", sink.smtp_port, timeout=10) as conn:
        conn.ehlo()
        code, _ = conn.mail("news@shop.example")
        assert code == 530  # STARTTLS first, then AUTH
        conn.starttls(context=_tls(sink))
        conn.ehlo()
        with pytest.raises(smtplib.SMTPAuthenticationError):
            conn.login("mailer", "wrong")
        conn.login("mailer", "pw")
        conn.send_message(_message(to))
    assert sink.messages(to)[0]["auth_user"] == "mailer"
    sink.http.put("/_smtp/config", json={"auth": None})


def test_rejected_and_deferred_recipients(sink: Sink, client: smtplib.SMTP) -> None:
    gone, busy = unique_email("gone"), unique_email("busy")
    sink.set_recipient(gone, "reject")
    sink.set_recipient(busy, "defer")
    client.mail("news@shop.example")
    code, text = client.rcpt(gone)
    assert (code, text[:5]) == (550, b"5.1.1")
    code, _ = client.rcpt(busy)
    assert code == 450
    client.rset()
    assert sink.messages(gone) == sink.messages(busy) == []


def test_injected_faults_per_stage(sink: Sink, client: smtplib.SMTP) -> None:
    to = unique_email("faults")
    sink.fault(451, stage="mail")
    sink.fault(554, stage="data", recipient=to, message="5.7.1 Content rejected")
    assert client.mail("news@shop.example")[0] == 451
    assert client.mail("news@shop.example")[0] == 250  # one fault, used up
    assert client.rcpt(to)[0] == 250
    code, text = client.data(_message(to).as_bytes())
    assert (code, text) == (554, b"5.7.1 Content rejected")
    assert sink.messages(to) == []
    client.send_message(_message(to))
    assert len(sink.messages(to)) == 1


def test_the_read_api(sink: Sink, client: smtplib.SMTP) -> None:
    first, second = unique_email("one"), unique_email("two")
    client.send_message(_message(first))
    client.send_message(_message(second))
    assert [m["rcpt_tos"] for m in sink.messages(first)] == [[first]]
    assert sink.http.get("/_smtp/messages/999999999").status_code == 404
    stats = sink.http.get("/_smtp/stats").json()
    assert stats["accepted"] >= 2
    assert sink.http.delete("/_smtp/messages").status_code == 204
    assert sink.messages(first) == []
    for bad in ({"code": 200}, {"code": 550, "stage": "helo"}, {"code": 550, "count": "x"}):
        assert sink.http.post("/_smtp/faults", json=bad).status_code == 400
    assert sink.http.put(f"/_smtp/recipients/{first}", json={"state": "x"}).status_code == 400
    assert "BEGIN CERTIFICATE" in sink.certificate
