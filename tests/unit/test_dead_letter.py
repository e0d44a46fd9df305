"""The dead-letter payload (ingest.service.dead_letter)."""

from __future__ import annotations

import base64
import json

import pytest

from contract.reasons import Reason
from ingest.batch import Rejection
from ingest.service import dead_letter

TOPIC = "ioc/v1/ben_tre/water_quality/wq-1/telemetry"
RECEIVED = 1_767_240_000_123


def letter(
    payload: bytes,
    *,
    cap: int = 4096,
    reason: Reason = Reason.BAD_JSON,
    detail: str = "JSON is malformed",
    topic: str = TOPIC,
) -> dict[str, object]:
    raw = dead_letter(Rejection(topic, reason, detail, payload), cap=cap, received_ms=RECEIVED)
    assert isinstance(raw, bytes)
    doc = json.loads(raw)  # strict JSON
    assert isinstance(doc, dict)
    return doc


def test_fields() -> None:
    doc = letter(
        b'{"ts": 1, "ph": NaN}', reason=Reason.BAD_JSON, detail="JSON is malformed: invalid character (byte 17)"
    )
    assert doc == {
        "topic": TOPIC,
        "reason": "bad_json",
        "detail": "JSON is malformed: invalid character (byte 17)",
        "truncated": False,
        "received_ms": RECEIVED,
        "payload": '{"ts": 1, "ph": NaN}',
    }


@pytest.mark.parametrize("reason", list(Reason))
def test_reason_value(reason: Reason) -> None:
    assert letter(b"{}", reason=reason)["reason"] == reason.value


@pytest.mark.parametrize(
    ("size", "cap", "truncated"),
    [(0, 64, False), (63, 64, False), (64, 64, False), (65, 64, True), (10_000, 4096, True)],
)
def test_truncation_at_cap(size: int, cap: int, truncated: bool) -> None:
    payload = bytes(ord("a") + i % 26 for i in range(size))
    doc = letter(payload, cap=cap)
    assert doc["truncated"] is truncated
    assert doc["payload"] == payload[:cap].decode()
    assert len(str(doc["payload"])) == min(size, cap)


def test_text_with_quotes_and_unicode_survives() -> None:
    payload = '{"fw": "2.4 \\"β\\"", "note": "Cà Mau\\n"}'.encode()
    assert letter(payload)["payload"] == payload.decode()


@pytest.mark.parametrize("payload", [b"\xff\xfe\x00", b'{"a":"\xc3"}', b"\x80abc", "ảnh".encode("utf-16")])
def test_not_utf8_is_base64(payload: bytes) -> None:
    doc = letter(payload, reason=Reason.BAD_UTF8, detail="not UTF-8 at byte 0")
    assert "payload" not in doc
    assert base64.b64decode(str(doc["payload_b64"])) == payload
    assert doc["truncated"] is False


def test_not_utf8_truncated_base64() -> None:
    payload = b"\xff" * 200
    doc = letter(payload, cap=64, reason=Reason.TOO_LARGE)
    assert doc["truncated"] is True
    assert base64.b64decode(str(doc["payload_b64"])) == payload[:64]


def test_control_characters_are_escaped() -> None:
    payload = b'{"a":"\x00\x01\x1f"}\n\t'
    raw = dead_letter(Rejection(TOPIC, Reason.BAD_JSON, "d\n", payload), cap=4096, received_ms=RECEIVED)
    assert b"\n" not in raw  # one JSON document on one line
    assert json.loads(raw)["payload"] == payload.decode()


def test_utf8_payload_truncated_mid_character_stays_text() -> None:
    payload = ("ả" * 100).encode()  # 3 bytes per character
    doc = letter(payload, cap=64)  # 64 = 21 characters + 1 byte
    assert doc["truncated"] is True
    assert doc["payload"] == "ả" * 21
