"""Standard Webhooks signing through our wrapper: round trip and every rejection."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time

import pytest

from alerts.errors import InvalidSubscription, SignatureError
from alerts.signing import generate_secret, headers, sign, validate_secret, verify

BODY = json.dumps({"type": "alert.firing", "message": "Độ mặn cao"}, ensure_ascii=False).encode()


def test_round_trip() -> None:
    secret = generate_secret()
    now = int(time.time())
    h = headers(secret, "evt_1_firing", now, BODY)
    assert h["webhook-id"] == "evt_1_firing"
    assert h["webhook-timestamp"] == str(now)
    assert h["webhook-signature"].startswith("v1,")
    assert verify(secret, BODY, h) == {"type": "alert.firing", "message": "Độ mặn cao"}


def test_signature_is_hmac_sha256_over_id_timestamp_body() -> None:
    """The spec's construction, computed by hand, agrees with the wrapper."""
    secret = "whsec_" + base64.b64encode(b"k" * 32).decode()
    expected = hmac.new(b"k" * 32, b"msg_1.1700000000." + BODY, hashlib.sha256).digest()
    assert sign(secret, "msg_1", 1_700_000_000, BODY) == "v1," + base64.b64encode(expected).decode()


def test_header_names_are_case_insensitive() -> None:
    secret = generate_secret()
    h = {k.upper(): v for k, v in headers(secret, "m", int(time.time()), BODY).items()}
    verify(secret, BODY, h)


def test_tampered_body_is_rejected() -> None:
    secret = generate_secret()
    h = headers(secret, "m", int(time.time()), BODY)
    with pytest.raises(SignatureError, match="signature"):
        verify(secret, BODY.replace(b"alert.firing", b"alert.resolved"), h)


def test_wrong_secret_is_rejected() -> None:
    h = headers(generate_secret(), "m", int(time.time()), BODY)
    with pytest.raises(SignatureError, match="signature"):
        verify(generate_secret(), BODY, h)


def test_changed_id_is_rejected() -> None:
    secret = generate_secret()
    h = headers(secret, "m1", int(time.time()), BODY)
    h["webhook-id"] = "m2"
    with pytest.raises(SignatureError):
        verify(secret, BODY, h)


@pytest.mark.parametrize("offset", [-301, -3600, 301])
def test_stale_or_future_timestamp_is_rejected(offset: int) -> None:
    secret = generate_secret()
    h = headers(secret, "m", int(time.time()) + offset, BODY)
    with pytest.raises(SignatureError, match=r"too (old|new)"):
        verify(secret, BODY, h)


def test_timestamp_within_five_minutes_is_accepted() -> None:
    secret = generate_secret()
    verify(secret, BODY, headers(secret, "m", int(time.time()) - 240, BODY))


@pytest.mark.parametrize(
    "mangle",
    [
        lambda h: h.pop("webhook-signature"),
        lambda h: h.pop("webhook-id"),
        lambda h: h.pop("webhook-timestamp"),
        lambda h: h.update({"webhook-signature": "garbage"}),
        lambda h: h.update({"webhook-signature": "v1,@@@notbase64"}),
        lambda h: h.update({"webhook-timestamp": "yesterday"}),
        lambda h: h.update({"webhook-signature": "v2,AAAA"}),
    ],
)
def test_missing_or_malformed_headers_are_rejected(mangle: object) -> None:
    secret = generate_secret()
    h = headers(secret, "m", int(time.time()), BODY)
    mangle(h)  # type: ignore[operator]
    with pytest.raises(SignatureError):
        verify(secret, BODY, h)


def test_one_of_several_signatures_may_match() -> None:
    """Secret rotation: a sender may send signatures with the old and the new secret."""
    old, new = generate_secret(), generate_secret()
    now = int(time.time())
    h = headers(new, "m", now, BODY)
    h["webhook-signature"] = f"{sign(old, 'm', now, BODY)} {h['webhook-signature']}"
    verify(new, BODY, h)
    verify(old, BODY, h)


def test_non_utf8_body_is_rejected() -> None:
    secret = generate_secret()
    with pytest.raises(SignatureError):
        verify(secret, b"\xff\xfe", headers(secret, "m", int(time.time()), "x"))


def test_generated_secrets_are_valid_and_distinct() -> None:
    a, b = generate_secret(), generate_secret()
    assert a != b
    assert validate_secret(a) == a
    assert len(base64.b64decode(a.removeprefix("whsec_"))) == 32


@pytest.mark.parametrize("bad", ["", "secret", "whsec_", "whsec_!!!!", "whsec_" + base64.b64encode(b"short").decode()])
def test_bad_secrets_are_refused(bad: str) -> None:
    with pytest.raises(InvalidSubscription):
        validate_secret(bad)
