"""Webhook signature checks, against the vectors verified in hubspot-contract.md §5."""

from __future__ import annotations

import base64
import hashlib
import hmac

import pytest

from spoke.hubspot import InvalidSignature, verify_request, verify_v1, verify_v2, verify_v3
from spoke.hubspot.signatures import sign_v1, sign_v2, sign_v3

SECRET = "yyyyyyyy-yyyy-yyyy-yyyy-yyyyyyyyyyyy"
V1_BODY = (
    '[{"eventId":1,"subscriptionId":12345,"portalId":62515,"occurredAt":1564113600000,'
    '"subscriptionType":"contact.creation","attemptNumber":0,"objectId":123,'
    '"changeSource":"CRM","changeFlag":"NEW","appId":54321}]'
)
V1_SIGNATURE = "232db2615f3d666fe21a8ec971ac7b5402d33b9a925784df3ca654d05f4817de"
V2_URL = "https://www.example.com/webhook_uri"
V2_GET_SIGNATURE = "eee2dddcc73c94d699f5e395f4b9d454a069a6855fbfa152e91e88823087200e"
V2_POST_BODY = '{"example_field":"example_value"}'
V2_POST_SIGNATURE = "9569219f8ba981ffa6f6f16aa0f48637d35d728c7e4d93d0d52efaa512af7900"


class TestVerifiedVectors:
    def test_v1_vector(self) -> None:
        assert sign_v1(SECRET, V1_BODY) == V1_SIGNATURE
        verify_v1(SECRET, V1_BODY.encode(), V1_SIGNATURE)

    def test_v2_get_vector(self) -> None:
        assert sign_v2(SECRET, "GET", V2_URL, "") == V2_GET_SIGNATURE
        verify_v2(SECRET, "GET", V2_URL, b"", V2_GET_SIGNATURE)

    def test_v2_post_vector(self) -> None:
        assert sign_v2(SECRET, "POST", V2_URL, V2_POST_BODY) == V2_POST_SIGNATURE
        verify_v2(SECRET, "POST", V2_URL, V2_POST_BODY, V2_POST_SIGNATURE)


class TestVerifyV1AndV2:
    def test_v1_rejects_a_changed_body(self) -> None:
        with pytest.raises(InvalidSignature):
            verify_v1(SECRET, V1_BODY.replace("123", "124"), V1_SIGNATURE)

    def test_v1_rejects_another_secret(self) -> None:
        with pytest.raises(InvalidSignature):
            verify_v1("other-secret", V1_BODY, V1_SIGNATURE)

    def test_v1_rejects_a_missing_signature(self) -> None:
        with pytest.raises(InvalidSignature):
            verify_v1(SECRET, V1_BODY, None)

    def test_v2_rejects_another_method(self) -> None:
        with pytest.raises(InvalidSignature):
            verify_v2(SECRET, "POST", V2_URL, "", V2_GET_SIGNATURE)

    def test_v2_rejects_another_uri(self) -> None:
        with pytest.raises(InvalidSignature):
            verify_v2(SECRET, "GET", V2_URL + "?a=1", "", V2_GET_SIGNATURE)


class TestVerifyV3:
    NOW = 1_700_000_000.0
    URL = "https://spoke.example.com/hooks/hubspot?portal=62515"

    def timestamp(self, offset: float = 0.0) -> str:
        return str(int((self.NOW + offset) * 1000))

    def test_independent_computation_matches(self) -> None:
        ts = self.timestamp()
        message = f"POST{self.URL}{V1_BODY}{ts}".encode()
        expected = base64.b64encode(hmac.new(SECRET.encode(), message, hashlib.sha256).digest())
        assert sign_v3(SECRET, "POST", self.URL, V1_BODY, ts) == expected.decode()

    def test_accepts_a_fresh_signed_request(self) -> None:
        ts = self.timestamp(-60)
        signature = sign_v3(SECRET, "POST", self.URL, V1_BODY, ts)
        verify_v3(SECRET, "POST", self.URL, V1_BODY.encode(), signature, ts, now=self.NOW)

    def test_rejects_a_request_older_than_five_minutes(self) -> None:
        ts = self.timestamp(-301)
        signature = sign_v3(SECRET, "POST", self.URL, V1_BODY, ts)
        with pytest.raises(InvalidSignature, match="window"):
            verify_v3(SECRET, "POST", self.URL, V1_BODY, signature, ts, now=self.NOW)

    def test_rejects_a_timestamp_far_in_the_future(self) -> None:
        ts = self.timestamp(+301)
        signature = sign_v3(SECRET, "POST", self.URL, V1_BODY, ts)
        with pytest.raises(InvalidSignature):
            verify_v3(SECRET, "POST", self.URL, V1_BODY, signature, ts, now=self.NOW)

    def test_rejects_missing_or_malformed_timestamp(self) -> None:
        signature = sign_v3(SECRET, "POST", self.URL, V1_BODY, self.timestamp())
        with pytest.raises(InvalidSignature):
            verify_v3(SECRET, "POST", self.URL, V1_BODY, signature, None, now=self.NOW)
        with pytest.raises(InvalidSignature):
            verify_v3(SECRET, "POST", self.URL, V1_BODY, signature, "soon", now=self.NOW)

    def test_rejects_a_replayed_signature_with_a_new_timestamp(self) -> None:
        signature = sign_v3(SECRET, "POST", self.URL, V1_BODY, self.timestamp(-10))
        with pytest.raises(InvalidSignature):
            verify_v3(SECRET, "POST", self.URL, V1_BODY, signature, self.timestamp(), now=self.NOW)

    def test_decodes_the_escapes_hubspot_decodes(self) -> None:
        ts = self.timestamp()
        decoded = "https://spoke.example.com/hooks/a:b@c?email=x@y.com&t=(1)"
        encoded = "https://spoke.example.com/hooks/a%3Ab%40c?email=x%40y.com&t=%281%29"
        signature = sign_v3(SECRET, "POST", decoded, "", ts)
        verify_v3(SECRET, "POST", encoded, "", signature, ts, now=self.NOW)

    def test_keeps_other_escapes(self) -> None:
        ts = self.timestamp()
        signature = sign_v3(SECRET, "GET", "https://x.test/a b", "", ts)
        with pytest.raises(InvalidSignature):
            verify_v3(SECRET, "GET", "https://x.test/a%20b", "", signature, ts, now=self.NOW)


class TestVerifyRequest:
    def test_prefers_v3(self) -> None:
        ts = str(int(TestVerifyV3.NOW * 1000))
        headers = {
            "X-HubSpot-Signature-v3": sign_v3(SECRET, "POST", V2_URL, V1_BODY, ts),
            "X-HubSpot-Request-Timestamp": ts,
            "X-HubSpot-Signature": "garbage",
            "X-HubSpot-Signature-Version": "v1",
        }
        version = verify_request(SECRET, "POST", V2_URL, V1_BODY, headers, now=TestVerifyV3.NOW)
        assert version == "v3"

    def test_v1_by_version_header(self) -> None:
        headers = {"x-hubspot-signature": V1_SIGNATURE, "x-hubspot-signature-version": "v1"}
        assert verify_request(SECRET, "POST", V2_URL, V1_BODY, headers) == "v1"

    def test_v2_by_version_header(self) -> None:
        headers = {"X-HubSpot-Signature": V2_POST_SIGNATURE, "X-HubSpot-Signature-Version": "v2"}
        assert verify_request(SECRET, "POST", V2_URL, V2_POST_BODY, headers) == "v2"

    def test_rejects_unsigned_requests(self) -> None:
        with pytest.raises(InvalidSignature, match="no HubSpot signature"):
            verify_request(SECRET, "POST", V2_URL, V1_BODY, {})

    def test_rejects_unknown_versions(self) -> None:
        headers = {"X-HubSpot-Signature": V1_SIGNATURE, "X-HubSpot-Signature-Version": "v9"}
        with pytest.raises(InvalidSignature, match="unknown"):
            verify_request(SECRET, "POST", V2_URL, V1_BODY, headers)


class TestAgreesWithTheOfficialSdk:
    """HubSpot's own SDK computes the same signatures (for URIs with nothing to decode)."""

    def test_all_versions(self) -> None:
        from hubspot.utils.signature import Signature

        url = "https://spoke.example.com/hooks/hubspot?portal=62515"
        ts = "1700000000000"
        assert Signature.get_signature(SECRET, V1_BODY, "v1") == sign_v1(SECRET, V1_BODY)
        assert Signature.get_signature(SECRET, V1_BODY, "v2", url, "POST") == sign_v2(
            SECRET, "POST", url, V1_BODY
        )
        assert Signature.get_signature(SECRET, V1_BODY, "v3", url, "POST", ts) == sign_v3(
            SECRET, "POST", url, V1_BODY, ts
        )
