"""The fast path for plain ASCII emails never disagrees with email-validator: anything it
accepts, email-validator accepts and normalises to the same string."""

from __future__ import annotations

import string

import pytest
from email_validator import EmailNotValidError, validate_email
from hypothesis import given, settings
from hypothesis import strategies as st

from spoke.users.validation import _plain_email, normalise_email

_local = st.text(
    alphabet=string.ascii_lowercase + string.digits + "!#$%&'*+/=?^_`{|}~-.",
    min_size=1,
    max_size=70,
)
_label = st.text(alphabet=string.ascii_lowercase + string.digits + "-", min_size=1, max_size=66)
_tld = st.sampled_from(
    [
        "com",
        "io",
        "test",
        "local",
        "example",
        "x",
        "c0m",
        "arpa",
        "onion",
        "museum",
        "localhost",
        "invalid",
    ]
)


@settings(max_examples=3000, deadline=None, derandomize=True)
@given(local=_local, labels=st.lists(_label, min_size=1, max_size=4), tld=_tld)
def test_fast_path_agrees_with_email_validator(local: str, labels: list[str], tld: str) -> None:
    address = f"{local}@{'.'.join([*labels, tld])}"
    if not _plain_email(address):
        return
    try:
        normalised = validate_email(address, check_deliverability=False).normalized.lower()
    except EmailNotValidError as exc:
        pytest.fail(f"fast path accepted {address!r}, email-validator says: {exc}")
    assert normalised == address


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("  Ann@Example.COM ", "ann@example.com"),
        ("jürgen@müller.de", "jürgen@müller.de"),  # Unicode takes the full path
    ],
)
def test_normalise_email(raw: str, expected: str) -> None:
    assert normalise_email(raw) == expected


@pytest.mark.parametrize("raw", ["a@localhost", "a..b@x.com", "a@b", "a@xn--.com", "a@sub.test"])
def test_rejected_either_way(raw: str) -> None:
    with pytest.raises(ValueError, match="not a valid email"):
        normalise_email(raw)
