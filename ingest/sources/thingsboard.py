"""ThingsBoard's device and gateway MQTT APIs (JSON), as ThingsBoard's own server reads them.

Decided, from ThingsBoard's documentation and its ``JsonConverter`` (``../shared/realworld/thingsboard``):

- **Device API** (``v1/devices/{user}/telemetry`` and ``…/attributes``): a device publishes to
  ``v1/devices/me/…`` and is known by its MQTT user name (its access token). Subscribers never see
  a publisher's user name, so the broker puts it in the topic: the Mosquitto plugin of
  ``deploy/mosquitto-plugin/`` rewrites ``v1/devices/me/…`` to ``v1/devices/{user name}/…`` and
  refuses every other publish under ``v1/devices/``. Topic level 2 → external id ``thingsboard``.
  A topic still saying ``me`` (a broker without the plugin) → ``unknown_device``, naming the plugin.
- **Gateway API** (``v1/gateway/telemetry``, ``attributes``, ``connect``, ``disconnect``): the
  payload names each device (an object key, or ``"device"``) → external id ``thingsboard``. An
  unknown device refuses its own part (``unknown_device``); the other devices of the message are
  stored. Who may speak for which device is the broker's ACL (only gateway accounts write
  ``v1/gateway/#``).
- **Telemetry**: an object, or an array of objects; an object with both ``ts`` (epoch ms) and
  ``values`` is a timestamped set, any other object is a set at the receive time (ThingsBoard's
  server time). Each distinct time is one reading (sets of one time are merged); ``seq`` is 0
  (ThingsBoard has no counter). Keys → our fields through the model's mapping (a dotted path
  reaches into a nested JSON value); nested objects are never readings by themselves. ``null``
  is no value (ThingsBoard skips it), a numeric string is a number (its type-cast), a boolean is
  0/1 for our 0/1 fields and refused elsewhere. A set that is not an object, a ``ts`` that is not
  an integer and ``values`` that are not an object refuse that set alone.
- **Status fields in telemetry** that are no reading of the device's kind (``battery_pct``, ``fw``;
  a camera's ``battery_v``) go to a ``device_status`` point at the set's time.
- **Attributes** are not time series: only our status fields (``battery_v``, ``battery_pct``,
  ``rssi_dbm``, ``fw``, through the model's mapping) are read, as a ``device_status`` point at the
  receive time (the device, or its gateway for it, is online). Attributes without one are counted
  (``ioc_ingest_ignored_total{event="attributes"}``), never dead-lettered.
- **connect / disconnect** → a ``device_status`` point online / offline at the receive time.
- **Retained** messages are replayed on every subscribe: what has no time of its own in them
  (server-time sets, attributes, connect/disconnect) is skipped and counted (``retained``); sets
  with ``ts`` are stored (the same point again).
- Other topics of the APIs (``rpc``, ``claim``, ``attributes/request``, …) and empty messages carry
  no reading: counted.
"""

from __future__ import annotations

from typing import Any, Final

import msgspec

from contract.reasons import Reason
from ingest.batch import BatchBuilder, Rejection
from ingest.registry import RegisteredDevice
from ingest.sources.base import SourceContext
from ingest.sources.config import FIELD_SPECS, Source
from ingest.sources.shapes import FlatShapes
from ingest.sources.sink import ReadingSink, Refused

SCHEME: Final = "thingsboard"
PLUGIN: Final = "deploy/mosquitto-plugin (mosquitto_tb_identity.so)"
MAX_READINGS: Final = 10_000
"""Readings one message may carry (as ingest's ``max_readings_per_message`` for gateway batches)."""
STATUS_NAMES: Final = frozenset({"battery_v", "battery_pct", "rssi_dbm", "fw"})
"""Our fields of a ``device_status`` point: all attributes may carry, and where telemetry's go when
the device's kind has no such reading."""
_BOOLEAN_FIELDS: Final = frozenset(name for name, spec in FIELD_SPECS.items() if spec.unit == "0/1")
_GATEWAY_EVENTS: Final = ("telemetry", "attributes", "connect", "disconnect")
_OTHER_EVENTS: Final = frozenset({"rpc", "claim", "provision", "fw", "sw"})
"""Other messages of the APIs, counted by name (anything else is counted as ``other``)."""


class _Refusal(Exception):
    """One part of a message refused: its reason and what to say."""

    def __init__(self, reason: Reason, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason


def _ts(raw: Any) -> int:
    """``ts`` as epoch milliseconds (an integer, as ThingsBoard reads it with ``getAsLong``)."""
    if type(raw) is int:
        return raw
    if isinstance(raw, bool) or not isinstance(raw, int | float) or raw != int(raw):
        raise _Refusal(Reason.BAD_TIMESTAMP, f"ts {str(raw)[:40]!r} is not epoch milliseconds (an integer)")
    return int(raw)


def telemetry_sets(doc: Any) -> tuple[dict[int | None, dict[str, Any]], list[_Refusal]]:
    """A telemetry payload's values by time (None: the receive time), and the sets refused. A time's one
    set is the payload's own object (read, never changed); sets of the same time are merged into a new one."""
    if isinstance(doc, dict):
        items: list[Any] = [doc]
    elif isinstance(doc, list):
        items = doc
    else:
        raise _Refusal(Reason.BAD_SHAPE, f"telemetry is a JSON object or an array of them, not {type(doc).__name__}")
    if len(items) > MAX_READINGS:
        raise _Refusal(Reason.TOO_LARGE, f"{len(items)} sets of values; at most {MAX_READINGS} a message")
    by_time: dict[int | None, dict[str, Any]] = {}
    refused: list[_Refusal] = []
    in_array = isinstance(doc, list)
    for i, item in enumerate(items):
        if not isinstance(item, dict):
            detail = f"{_where(i, in_array)}{type(item).__name__} is not an object of values"
            refused.append(_Refusal(Reason.BAD_SHAPE, detail))
            continue
        if "ts" in item and "values" in item:
            try:
                ts: int | None = _ts(item["ts"])
            except _Refusal as exc:
                refused.append(_Refusal(exc.reason, f"{_where(i, in_array)}{exc}"))
                continue
            values = item["values"]
            if not isinstance(values, dict):
                detail = f"{_where(i, in_array)}values is {type(values).__name__}, not an object"
                refused.append(_Refusal(Reason.BAD_SHAPE, detail))
                continue
        else:
            ts, values = None, item
        merged = by_time.get(ts)
        by_time[ts] = values if merged is None else {**merged, **values}
    return by_time, refused


def _where(i: int, in_array: bool) -> str:
    """What a refused set's detail starts with: its index in an array."""
    return f"[{i}]: " if in_array else ""


class ThingsBoard:
    """``v1/devices/{user}/{telemetry|attributes}`` and ``v1/gateway/{telemetry|attributes|connect|disconnect}``."""

    FORMAT = "thingsboard"

    def __init__(self, source: Source, context: SourceContext) -> None:
        self._registry = context.registry
        self._mapper = context.mapper
        self._ignore = context.ignore
        self._model = source.model
        self._sink = ReadingSink()
        self._shapes = FlatShapes(context.mapper)

    def decode(self, topic: str, payload: bytes, *, retained: bool, now_ms: int, out: BatchBuilder) -> None:
        levels = topic.split("/")
        v1 = levels[0] == "v1"
        if len(levels) == 4 and v1 and levels[1] == "devices" and levels[3] in ("telemetry", "attributes"):
            self._device_api(topic, payload, levels[2], levels[3], retained, now_ms, out)
        elif len(levels) == 3 and v1 and levels[1] == "gateway" and levels[2] in _GATEWAY_EVENTS:
            self._gateway_api(topic, payload, levels[2], retained, now_ms, out)
        elif len(levels) >= 3 and levels[0] == "v1" and levels[1] in ("devices", "gateway"):
            event = levels[3] if levels[1] == "devices" and len(levels) > 3 else levels[2]
            self._ignore(event if event in _OTHER_EVENTS else "other")
        else:
            detail = "not a ThingsBoard topic: v1/devices/{user}/telemetry|attributes or v1/gateway/{event}"
            out.reject(Rejection(topic, Reason.BAD_TOPIC, detail, payload))

    def _device_api(
        self, topic: str, payload: bytes, user: str, event: str, retained: bool, now_ms: int, out: BatchBuilder
    ) -> None:
        if user == "me":
            detail = (
                "the topic says 'me', not the device: the broker must put the publisher's MQTT user name "
                f"(its access token) in the topic — load the plugin of {PLUGIN} (it never rewrites a will)"
            )
            out.reject(Rejection(topic, Reason.UNKNOWN_DEVICE, detail, payload))
            return
        device = self._registry.external(SCHEME, user)
        if device is None:
            detail = "the MQTT user name in the topic is not an active registered device (external id thingsboard)"
            out.reject(Rejection(topic, Reason.UNKNOWN_DEVICE, detail, payload))
            return
        doc = self._parse(topic, payload, out)
        if doc is not _INVALID:
            self._part(topic, payload, device, event, doc, "", retained, now_ms, out)

    def _gateway_api(
        self, topic: str, payload: bytes, event: str, retained: bool, now_ms: int, out: BatchBuilder
    ) -> None:
        doc = self._parse(topic, payload, out)
        if doc is _INVALID:
            return
        if event in ("connect", "disconnect"):
            name = doc.get("device") if isinstance(doc, dict) else None
            if not isinstance(name, str) or not name:
                detail = f'a gateway {event} is {{"device": "<name>", …}}; no device name in it'
                out.reject(Rejection(topic, Reason.BAD_SHAPE, detail, payload))
                return
            device = self._device(topic, payload, name, out)
            if device is None:
                return
            if retained:
                self._ignore("retained")
                return
            self._sink.status(topic, payload, device, now_ms, event == "connect", {}, now_ms=now_ms, out=out)
            return
        if not isinstance(doc, dict):
            detail = f"a gateway {event} message is an object of device names, not {type(doc).__name__}"
            out.reject(Rejection(topic, Reason.BAD_SHAPE, detail, payload))
            return
        if not doc:
            self._ignore("empty")
        for name, part in doc.items():
            device = self._device(topic, payload, name, out)
            if device is not None:
                self._part(topic, payload, device, event, part, f"{name!r}: ", retained, now_ms, out)

    def _device(self, topic: str, payload: bytes, name: str, out: BatchBuilder) -> RegisteredDevice | None:
        device = self._registry.external(SCHEME, name) if name else None
        if device is None:
            detail = f"ThingsBoard device {name[:128]!r} is not an active registered device (external id thingsboard)"
            out.reject(Rejection(topic, Reason.UNKNOWN_DEVICE, detail, payload))
        return device

    @staticmethod
    def _parse(topic: str, payload: bytes, out: BatchBuilder) -> Any:
        try:
            return msgspec.json.decode(payload)
        except msgspec.MsgspecError as exc:
            out.reject(Rejection(topic, Reason.BAD_JSON, f"not ThingsBoard JSON: {exc}", payload))
            return _INVALID

    def _part(
        self,
        topic: str,
        payload: bytes,
        device: RegisteredDevice,
        event: str,
        doc: Any,
        where: str,
        retained: bool,
        now_ms: int,
        out: BatchBuilder,
    ) -> None:
        """One device's telemetry or attributes; ``where`` (its name, in a gateway's message) prefixes
        every refusal."""
        try:
            if event == "telemetry":
                self._telemetry(topic, payload, device, doc, where, retained, now_ms, out)
            elif not isinstance(doc, dict):
                raise _Refusal(Reason.BAD_SHAPE, f"attributes are an object, not {type(doc).__name__}")
            elif retained:
                self._ignore("retained")
            else:
                self._attributes(topic, payload, device, doc, where, now_ms, out)
        except _Refusal as exc:
            out.reject(Rejection(topic, exc.reason, f"{where}{exc}", payload))

    def _telemetry(
        self, topic: str, payload: bytes, device: RegisteredDevice, doc: Any, where: str, retained: bool, now_ms: int,
        out: BatchBuilder,
    ) -> None:  # fmt: skip
        by_time, refused_sets = telemetry_sets(doc)
        for r in refused_sets:
            out.reject(Rejection(topic, r.reason, f"{where}{r}", payload))
        if not by_time and not refused_sets:
            self._ignore("empty")
        if retained and None in by_time:
            del by_time[None]  # replayed on subscribe: it was stored at its first receive time
            self._ignore("retained")
        sink, shapes, model = self._sink, self._shapes, self._model or device.model
        for ts, raw in by_time.items():
            at = now_ms if ts is None else ts
            if shapes.reading(device, model, raw, at, 0, now_ms=now_ms, out=out):
                continue
            values, refused = self._values(device, raw)
            status = sink.split_status(device, values)  # battery_pct, fw: not readings, but of the device's status
            stored = bool(status) and sink.status(topic, payload, device, at, True, status, now_ms=now_ms, out=out)
            if values:
                stored = sink.reading(topic, payload, device, at, 0, values, now_ms=now_ms, out=out) or stored
            sink.refuse(topic, payload, refused, stored=stored, where=where, out=out)
            if not values and not status and not refused:
                when = "message" if ts is None else f"set at ts {ts}"
                hint = self._mapper.hint(self._model or device.model)
                detail = f"{where}no field of the {when} maps to ours{hint}"
                out.reject(Rejection(topic, Reason.MISSING_FIELD, detail, payload))

    def _attributes(
        self, topic: str, payload: bytes, device: RegisteredDevice, doc: dict[str, Any], where: str, now_ms: int,
        out: BatchBuilder,
    ) -> None:  # fmt: skip
        """Our status fields among the attributes, as a status report at the receive time."""
        values, refused = self._values(device, doc)
        values = {k: v for k, v in values.items() if k in STATUS_NAMES}
        refused = [r for r in refused if str(r).split(":", 1)[0] in STATUS_NAMES]
        sink = self._sink
        stored = bool(values) and sink.status(topic, payload, device, now_ms, True, values, now_ms=now_ms, out=out)
        sink.refuse(topic, payload, refused, stored=stored, where=where, out=out)
        if not values and not refused:
            self._ignore("attributes")

    def _values(self, device: RegisteredDevice, raw: dict[str, Any]) -> tuple[dict[str, Any], list[Refused]]:
        """Our fields of one set and the refused ones (a boolean is 0/1 for our 0/1 fields)."""
        values, refused = self._mapper.values(self._model or device.model, raw)
        if not _BOOLEAN_FIELDS.isdisjoint(values):
            for name in _BOOLEAN_FIELDS.intersection(values):
                if isinstance(values[name], bool):
                    values[name] = int(values[name])
        return values, refused


_INVALID: Final[Any] = object()
"""What :meth:`ThingsBoard._parse` returns for a payload it refused."""
