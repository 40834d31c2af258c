"""The sandbox signs deliveries exactly as Spoke's client verifies them, including URLs
with escapes that v3 leaves encoded (HubSpot decodes only a fixed list)."""

from __future__ import annotations

import time

import pytest

from spoke.hubspot import InvalidSignature, verify_v3
from spoke.sandbox.hubspot.webhooks import sign

SECRET = "yyyyyyyy-yyyy-yyyy-yyyy-yyyyyyyyyyyy"
URLS = [
    "https://app.example.com/hooks/hubspot",
    "https://app.example.com/hooks/hubspot?portal=1&x=a%3Ab",
    "https://app.example.com/hooks/hub%20spot?q=%40me%2Cyou",
]


@pytest.mark.parametrize("url", URLS)
@pytest.mark.parametrize("version", ["v1", "v2"])
def test_sandbox_signatures_verify_with_the_client(url: str, version: str) -> None:
    body = b'[{"eventId":1,"objectId":101}]'
    now_ms = int(time.time() * 1000)
    headers = sign(SECRET, "POST", url, body, version, now_ms)
    verify_v3(
        SECRET,
        "POST",
        url,
        body,
        headers["X-HubSpot-Signature-v3"],
        headers["X-HubSpot-Request-Timestamp"],
    )
    with pytest.raises(InvalidSignature):
        verify_v3(
            SECRET,
            "POST",
            url,
            body + b" ",
            headers["X-HubSpot-Signature-v3"],
            headers["X-HubSpot-Request-Timestamp"],
        )


def test_percent_20_stays_encoded_in_the_signed_uri() -> None:
    body = b"[]"
    now_ms = int(time.time() * 1000)
    encoded = sign(SECRET, "POST", "https://a.example/x%20y", body, "v1", now_ms)
    decoded = sign(SECRET, "POST", "https://a.example/x y", body, "v1", now_ms)
    assert encoded["X-HubSpot-Signature-v3"] != decoded["X-HubSpot-Signature-v3"]
