"""LoRaWAN network servers' MQTT integrations: ChirpStack v4 and The Things Stack v3 (JSON).

Decided, from the payloads these servers publish (``../shared/realworld/chirpstack_v4``, ``tts_v3``):

- **Identity**: ChirpStack's ``deviceInfo.devEui`` (lower-case hex; the topic's is the same), TTS's
  ``end_device_ids.device_id``, looked up in the registry's external ids (``dev_eui``,
  ``tts_device_id``; a TTS device registered by DevEUI alone is found by ``dev_eui`` too). Unknown
  or inactive → ``unknown_device``.
- **Time**: the network server's receive time (ChirpStack ``time``, TTS ``received_at``, else
  ``uplink_message.received_at``); LoRaWAN devices have no clock of their own. A message without
  one is stamped with ingest's receive time.
- **Counter**: ``fCnt`` / ``f_cnt`` is the reading's ``seq``; both servers omit it when it is 0
  (the first uplink after a join), so absent means 0. It resets on join: it is never used to drop
  a reading.
- **Fields**: the codec's output (``object`` / ``decoded_payload``) through the device model's
  mapping (the sources file); the strongest gateway's RSSI is ``rssi_dbm``. No codec output → the
  uplink carries nothing we can store: ``missing_field``, naming it.
- **ChirpStack status** (``event/status``): ``batteryLevel`` (percent) → ``battery_pct`` of a
  ``device_status`` point; ``batteryLevelUnavailable`` or ``externalPowerSource`` → no battery
  value (never 0 %). Joins, logs, acks and other events carry no readings: they are counted
  (``ioc_ingest_ignored_total``) and acknowledged.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

import msgspec

from contract.reasons import Reason
from ingest.batch import BatchBuilder, Rejection
from ingest.registry import RegisteredDevice
from ingest.sources.base import SourceContext
from ingest.sources.config import Source
from ingest.sources.shapes import FlatShapes
from ingest.sources.sink import ReadingSink

ZonedTime = Annotated[datetime, msgspec.Meta(tz=True)]
"""An RFC 3339 time with its zone: one without is refused (``bad_shape``), never read as local time."""
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MS = timedelta(milliseconds=1)
"""Made once: a timedelta made per message cost a twentieth of a ChirpStack uplink's decode."""


# The envelopes are decoded from JSON (no reference cycles): gc=False spares the collector tracking them.


class _Gateway(msgspec.Struct, gc=False):
    rssi: float | None = None


class _DeviceInfo(msgspec.Struct, rename="camel", gc=False):
    dev_eui: str = ""


class ChirpStackEvent(msgspec.Struct, rename="camel", gc=False):
    """What ingest reads of a ChirpStack v4 event (``up`` or ``status``); the rest is ignored."""

    device_info: _DeviceInfo = msgspec.field(default_factory=_DeviceInfo)
    time: ZonedTime | None = None
    f_cnt: int | None = None
    object: dict[str, Any] | None = None
    rx_info: list[_Gateway] | None = None
    battery_level: float | None = None
    battery_level_unavailable: bool | None = None
    external_power_source: bool | None = None


class _TtsIds(msgspec.Struct, gc=False):
    device_id: str = ""
    dev_eui: str | None = None


class _TtsUplink(msgspec.Struct, gc=False):
    f_cnt: int | None = None
    decoded_payload: dict[str, Any] | None = None
    rx_metadata: list[_Gateway] | None = None
    received_at: ZonedTime | None = None


class TtsUplink(msgspec.Struct, gc=False):
    """What ingest reads of a The Things Stack v3 uplink."""

    end_device_ids: _TtsIds = msgspec.field(default_factory=_TtsIds)
    received_at: ZonedTime | None = None
    uplink_message: _TtsUplink | None = None


def _refuse(exc: msgspec.MsgspecError, topic: str, payload: bytes, what: str, out: BatchBuilder) -> None:
    """Refuse an envelope that did not decode: ``bad_json``, or ``bad_shape`` naming ``what``."""
    reason = Reason.BAD_SHAPE if isinstance(exc, msgspec.ValidationError) else Reason.BAD_JSON
    out.reject(Rejection(topic, reason, f"not {what}: {exc}", payload))


def _ms(at: datetime | None, now_ms: int) -> int:
    """Epoch milliseconds of ``at`` (``now_ms`` when absent); any year 1–9999 converts (the sink then
    refuses what is before 2000 or ahead of the clock)."""
    return now_ms if at is None else (at - _EPOCH) // _MS


def _best_rssi(gateways: list[_Gateway] | None) -> float | None:
    """The strongest gateway's RSSI (None: no gateway gives one)."""
    best: float | None = None
    for gateway in gateways or ():
        rssi = gateway.rssi
        if rssi is not None and (best is None or rssi > best):
            best = rssi
    return best


class _LoRaWAN:
    """What both servers' decoders share: the sink, the model mapping, and the uplink's readings."""

    def __init__(self, source: Source, context: SourceContext) -> None:
        self._registry = context.registry
        self._mapper = context.mapper
        self._sink = ReadingSink()
        self._shapes = FlatShapes(context.mapper)
        self._ignore = context.ignore
        self._model = source.model

    def _uplink(
        self,
        topic: str,
        payload: bytes,
        device: RegisteredDevice,
        ts_ms: int,
        f_cnt: int | None,
        decoded: dict[str, Any] | None,
        rssi: float | None,
        now_ms: int,
        out: BatchBuilder,
    ) -> None:
        if decoded is None:
            detail = "the uplink has no decoded payload (no codec on the network server): nothing to store"
            out.reject(Rejection(topic, Reason.MISSING_FIELD, detail, payload))
            return
        model = self._model or device.model
        seq = f_cnt or 0
        if self._shapes.reading(device, model, decoded, ts_ms, seq, extra=rssi, now_ms=now_ms, out=out):
            return
        values, refused = self._mapper.values(model, decoded)
        if values and rssi is not None:
            values.setdefault("rssi_dbm", rssi)
        self._sink.mapped(
            topic, payload, device, ts_ms, seq, values, refused, hint=self._mapper.hint(model), now_ms=now_ms,
            out=out,
        )  # fmt: skip

    def _unknown(self, topic: str, payload: bytes, what: str, out: BatchBuilder) -> None:
        out.reject(Rejection(topic, Reason.UNKNOWN_DEVICE, f"{what} is not an active registered device", payload))


class ChirpStackV4(_LoRaWAN):
    """``application/{app}/device/{devEui}/event/{up|status|join|log|…}`` (JSON)."""

    FORMAT = "chirpstack_v4"
    _decoder = msgspec.json.Decoder(ChirpStackEvent)

    def decode(self, topic: str, payload: bytes, *, retained: bool, now_ms: int, out: BatchBuilder) -> None:
        event = topic.rsplit("/", 1)[-1]
        if event not in ("up", "status"):
            self._ignore(event)
            return
        try:
            msg = self._decoder.decode(payload)
        except msgspec.MsgspecError as exc:
            _refuse(exc, topic, payload, f"a ChirpStack v4 {event} event", out)
            return
        eui = msg.device_info.dev_eui.lower()
        device = self._registry.external("dev_eui", eui) if eui else None
        if device is None:
            self._unknown(topic, payload, f"DevEUI {eui!r}", out)
            return
        ts = _ms(msg.time, now_ms)
        if event == "status":
            battery = msg.battery_level
            if msg.battery_level_unavailable or msg.external_power_source:
                battery = None
            values = {} if battery is None else {"battery_pct": battery}
            self._sink.status(topic, payload, device, ts, True, values, now_ms=now_ms, out=out)
            return
        self._uplink(topic, payload, device, ts, msg.f_cnt, msg.object, _best_rssi(msg.rx_info), now_ms, out)


class TtsV3(_LoRaWAN):
    """``v3/{app}@{tenant}/devices/{device}/up`` (JSON); other TTS messages carry no readings."""

    FORMAT = "tts_v3"
    _decoder = msgspec.json.Decoder(TtsUplink)

    def decode(self, topic: str, payload: bytes, *, retained: bool, now_ms: int, out: BatchBuilder) -> None:
        if not topic.endswith("/up"):
            self._ignore(topic.split("/devices/", 1)[-1].split("/", 1)[-1])
            return
        try:
            msg = self._decoder.decode(payload)
        except msgspec.MsgspecError as exc:
            _refuse(exc, topic, payload, "a The Things Stack v3 uplink", out)
            return
        ids = msg.end_device_ids
        device = self._registry.external("tts_device_id", ids.device_id) if ids.device_id else None
        if device is None and ids.dev_eui:
            device = self._registry.external("dev_eui", ids.dev_eui.lower())
        if device is None:
            self._unknown(topic, payload, f"TTS device {ids.device_id!r}", out)
            return
        up = msg.uplink_message
        if up is None:
            self._ignore("no uplink_message")
            return
        ts = _ms(msg.received_at or up.received_at, now_ms)
        self._uplink(topic, payload, device, ts, up.f_cnt, up.decoded_payload, _best_rssi(up.rx_metadata), now_ms, out)
