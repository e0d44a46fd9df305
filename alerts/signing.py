"""Standard Webhooks signatures, wrapped: the rest of the code sees these functions only.

The ``standardwebhooks`` package (the specification's reference implementation) does the
cryptography: HMAC-SHA256 over ``{webhook-id}.{webhook-timestamp}.{body}`` with the secret's bytes,
sent as ``webhook-signature: v1,<base64>``; secrets are ``whsec_<base64>``. Its errors (and the
``ValueError``/``binascii.Error`` it lets through on malformed headers) become
:class:`~alerts.errors.SignatureError` here.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import standardwebhooks

from alerts.errors import InvalidSubscription, SignatureError

SECRET_PREFIX = "whsec_"
SECRET_BYTES = 32
MIN_SECRET_BYTES = 16
MAX_SECRET_BYTES = 64
_B64 = "[A-Za-z0-9+/]"
SECRET_PATTERN = (
    f"^{SECRET_PREFIX}(?:"
    f"(?:{_B64}{{4}}){{5}}(?:{_B64}{{2}}==|{_B64}{{3}}=)"  # 16–17 bytes
    f"|(?:{_B64}{{4}}){{6,20}}(?:{_B64}{{2}}==|{_B64}{{3}}=)?"  # 18–62 bytes
    f"|(?:{_B64}{{4}}){{21}}(?:{_B64}{{2}}==)?"  # 63–64 bytes
    ")$"
)
"""``whsec_`` + padded base64 of 16–64 bytes: exactly the secrets :func:`validate_secret` accepts."""
TOLERANCE_S = 300
"""Receivers refuse timestamps further than this from their clock (the library's fixed 5 min)."""


def generate_secret() -> str:
    """A new random secret, ``whsec_`` + base64 of 32 random bytes."""
    return SECRET_PREFIX + base64.b64encode(os.urandom(SECRET_BYTES)).decode()


def validate_secret(secret: str) -> str:
    """Return ``secret`` if it is ``whsec_<base64>`` of 16–64 bytes, else raise InvalidSubscription."""
    if not secret.startswith(SECRET_PREFIX):
        raise InvalidSubscription("a webhook secret looks like whsec_<base64> (leave it out to generate one)")
    try:
        raw = base64.b64decode(secret[len(SECRET_PREFIX) :], validate=True)
    except (binascii.Error, ValueError):
        raise InvalidSubscription("the webhook secret after whsec_ is not valid base64") from None
    if not MIN_SECRET_BYTES <= len(raw) <= MAX_SECRET_BYTES:
        raise InvalidSubscription(
            f"the webhook secret must hold {MIN_SECRET_BYTES}–{MAX_SECRET_BYTES} bytes, it holds {len(raw)}"
        )
    return secret


def _webhook(secret: str) -> standardwebhooks.Webhook:
    try:
        return standardwebhooks.Webhook(secret)
    except (binascii.Error, ValueError, RuntimeError, standardwebhooks.webhooks.EmptyWebhookSecretError) as exc:
        raise SignatureError(f"unusable webhook secret: {exc}") from None


def _text(body: bytes | str) -> str:
    return body if isinstance(body, str) else body.decode("utf-8")


def sign(secret: str, msg_id: str, timestamp: int, body: bytes | str) -> str:
    """The ``webhook-signature`` value (``v1,<base64>``) for one message."""
    when = datetime.fromtimestamp(timestamp, tz=UTC)
    return _webhook(secret).sign(msg_id, when, _text(body))


def headers(secret: str, msg_id: str, timestamp: int, body: bytes | str) -> dict[str, str]:
    """The three Standard Webhooks headers for one delivery attempt."""
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(int(timestamp)),
        "webhook-signature": sign(secret, msg_id, timestamp, body),
    }


def verify(secret: str, body: bytes | str, received: Mapping[str, str]) -> Any:
    """Check a delivery's headers against its body; return the parsed JSON body.

    Raises:
        SignatureError: headers missing or malformed, no matching ``v1`` signature (tampered body,
            wrong secret), timestamp more than 5 minutes from now, or a body that is not JSON.
    """
    try:
        text = _text(body)
    except UnicodeDecodeError:
        raise SignatureError("body is not UTF-8") from None
    hook = _webhook(secret)
    try:
        hook.verify(text, dict(received), json_parse=False)
    except standardwebhooks.WebhookVerificationError as exc:
        raise SignatureError(str(exc)) from None
    except (ValueError, binascii.Error) as exc:  # a malformed signature header the library does not catch
        raise SignatureError(f"malformed signature header: {exc}") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise SignatureError(f"signed body is not JSON: {exc}") from None
