"""Sparkplug B (Eclipse Sparkplug 3.0) edge nodes: protobuf payloads read as a host application does.

``spBv1.0/{group}/{NBIRTH|NDATA|NDEATH}/{edge}`` and ``spBv1.0/{group}/{DBIRTH|DDATA|DDEATH}/{edge}/{device}``
(``org.eclipse.tahu.protobuf.Payload``, :mod:`ingest.sources.sparkplug_b_pb2`). Decided, from the
specification and the payloads real edge nodes publish (``../shared/realworld/sparkplug_b``):

- **Identity**: external id ``sparkplug`` = ``group/edge/device`` for device messages,
  ``group/edge`` for the node's own (a node's metrics are readings only of a device registered
  so). Unknown or inactive → ``unknown_device`` for DATA and DBIRTH; the births and deaths of an
  unregistered node, and deaths of an unregistered device, carry no reading of ours: counted.
- **Births define the metrics**: name, datatype and ``engUnit`` property per alias, for the node
  (NBIRTH) and each device (DBIRTH); DATA names its metrics by alias (or by name). Births carry
  current values: they are readings too, and an ``online`` status.
- **seq** (0–255, 255 → 0 wraps) runs per edge node over the node and all its devices; NBIRTH
  starts it. A DATA that cannot be read for certain — no birth seen since ingest started, a seq
  gap, an alias or device no birth declared — is dead-lettered (:data:`REBIRTH_REASON`) and the node
  is asked to rebirth (``NCMD`` ``Node Control/Rebirth``), at most once per
  :data:`REBIRTH_INTERVAL_MS` per edge node. Nothing is guessed; after a gap the node's DATA waits
  for its NBIRTH.
- **bdSeq**: an NDEATH whose ``bdSeq`` is not the current NBIRTH's is from an older session (the
  broker publishes a will late): counted, never taken. A matching NDEATH sets the node's device
  and every registered device born under it offline, at its arrival time (a will is written at
  CONNECT, its own timestamp is older than the session). DDEATH sets its device offline.
- **Values**: signed integers arrive in two's complement (Int16 −12 as 65524) and are read by their
  datatype; Float is float32 and is stored as its shortest decimal (10.8, not 10.800000190734863);
  Boolean is 1/0. DataSet, Template, Bytes, File, arrays and ``is_transient`` metrics are not
  readings; ``is_null`` is absent. ``is_historical`` values are stored at their own time.
- **Time**: the metric's ``timestamp``, else the payload's, else arrival; metrics of different
  times in one message are separate readings.

State is held per edge node (its session, seq, the metrics its births declared), for at most
:data:`MAX_NODES` edge nodes; devices are held only when registered. A worker sharing the stream
(``$share``) sees part of a node's seq and would see gaps: Sparkplug needs one reader per node.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import Any, Final, cast

from google.protobuf.message import DecodeError

from contract.fields import Kind
from contract.reasons import Reason
from ingest.batch import BatchBuilder, Rejection
from ingest.registry import RegisteredDevice
from ingest.sources.base import SourceContext
from ingest.sources.config import Source
from ingest.sources.mapping import Step, as_number
from ingest.sources.shapes import FlatShapes, Take
from ingest.sources.sink import ReadingSink, Refused
from ingest.sources.sparkplug_b_pb2 import DataType, Payload
from ingest.sources.sparkplug_layout import BOOLEAN, Fixed, Layout, Layouts, integer
from ingest.sources.sparkplug_layout import signed as _signed
from ingest.sources.units import Convert

NAMESPACE: Final = "spBv1.0"
REBIRTH_REASON: Final = Reason.SPARKPLUG_REBIRTH
"""The reason of a DATA that cannot be read without the node's (re)birth."""
REBIRTH_INTERVAL_MS: Final = 5_000
"""At most one rebirth request per edge node in this time, while its NBIRTH is awaited."""
MAX_NODES: Final = 100_000
"""Edge nodes whose state is held; past it the oldest is forgotten (its next DATA asks a rebirth)."""
MAX_TOPICS: Final = 262_144
"""Sparkplug topics whose reading (:func:`_topic_of`) is remembered (every device's DATA topic of a
100,000-device fleet, births and deaths besides); past it the map starts again."""
MAX_FAST: Final = 64
"""Alias sequences whose compiled take one births remembers (a device's DATA repeats a few)."""
MAX_PATTERNS: Final = 4
"""Byte layouts (:class:`Layout`) of DATA one births remembers, the newest (:mod:`ingest.sources.sparkplug_layout`)."""
MAX_FIXED: Final = 4
"""Layouts at one length (:class:`Fixed`) one births remembers, the newest."""
MAX_LAYOUTS_TRIED: Final = 16
"""Layouts one births works out at most, until its node's next birth: a device whose DATA keeps
changing its layout (reporting only what changed, say) keeps those it has, and the rest of its DATA
are read through protobuf."""
MAX_PLANS: Final = 65_536
"""(model, metric name, unit, datatype) whose mapping is remembered; names come from births, so past
it the map starts again."""
REBIRTH_METRIC: Final = "Node Control/Rebirth"
BD_SEQ: Final = "bdSeq"

_NODE_TYPES: Final = frozenset({"NBIRTH", "NDATA", "NDEATH", "NCMD"})
_DEVICE_TYPES: Final = frozenset({"DBIRTH", "DDATA", "DDEATH", "DCMD"})
_DATA_TYPES: Final = frozenset({"NDATA", "DDATA"})
_SIGNED_BITS: Final[dict[int, int]] = {DataType.Int8: 8, DataType.Int16: 16, DataType.Int32: 32, DataType.Int64: 64}
_INTEGER_BITS: Final[dict[int, int]] = {
    **_SIGNED_BITS,
    DataType.UInt8: 8,
    DataType.UInt16: 16,
    DataType.UInt32: 32,
    DataType.UInt64: 64,
    DataType.DateTime: 64,
}
_TEXT: Final[frozenset[int]] = frozenset({DataType.String, DataType.Text, DataType.UUID})
_FLOATS: Final[frozenset[int]] = frozenset({DataType.Float, DataType.Double})
_BOOLEAN: Final = int(DataType.Boolean)
_DOUBLE: Final = int(DataType.Double)
_UNKNOWN: Final = int(DataType.Unknown)
_FLOAT32: Final = struct.Struct("<f")
_NAMES: Final[dict[int, str]] = {v: k for k, v in DataType.items()}
_SKIP: Final = object()
"""A metric that is not a reading (DataSet, Template, Bytes, File, arrays, transient)."""


Single = tuple[int, int, str, Convert | None, int]
"""A usual metric's one :data:`Step` (taking it as a number, converted; None: a Boolean, as 1 or 0)
and 0 for a Double, else the integer's bits, negative when signed (:data:`BOOLEAN`: a Boolean's)
(:attr:`Declared.single`)."""

Topic = tuple[str, tuple[str, str], str | None, str]
"""A topic's message type (``STATE`` for a host application's; empty: not a Sparkplug topic), its
(group, edge node), its device (None: the node's own), and the registry's ``sparkplug`` id of it."""

Fast = tuple[Kind, Take | None, tuple[tuple[int, int], ...]]
""":attr:`Births.fast`'s entry: (the device kind, the take of the metrics' values in order or None,
the integers' positions and bits)."""

Groups = dict[int, tuple[dict[str, Any], dict[str, str]]]
"""A message's values by time: each time's metric name → value, and name → unit (where one is declared)."""


class Unreadable:
    """A value whose payload contradicts its datatype: refused (``bad_type``) if a field maps it."""

    __slots__ = ("what",)

    def __init__(self, what: str) -> None:
        self.what = what

    def __str__(self) -> str:
        return self.what


@dataclass(slots=True, eq=False)
class Declared:
    """A metric as a birth declared it."""

    name: str
    datatype: int
    unit: str | None
    plan: tuple[Step, ...] | None = None
    """What the model of :attr:`Births.model` makes of the metric (:meth:`FieldMapper.plan`)."""
    single: Single | None = None
    """The usual metric, read in short: a Double, an integer or a Boolean that feeds one field of ours
    as a number (its step, and 0 for a Double, the integer's bits, negative when signed, or
    :data:`BOOLEAN`)."""


@dataclass(slots=True)
class Births:
    """The metrics one NBIRTH or DBIRTH declared, by alias and by name."""

    by_alias: dict[int, Declared] = field(default_factory=dict)
    by_name: dict[str, Declared] = field(default_factory=dict)
    model: str | None = None
    """The model the metrics' plans are of (None: not worked out yet; at the first DATA)."""
    bits: dict[int, int] = field(default_factory=dict)
    """By alias (not 0), each :attr:`Declared.single` metric's bits as :data:`Single`'s (0: a Double;
    :data:`BOOLEAN`: a Boolean), in :attr:`model` (:meth:`SparkplugB._fast`)."""
    fast: dict[tuple[int, ...], Fast] = field(default_factory=dict)
    """By a DATA's aliases in order (every metric :attr:`Declared.single`): (the device kind, the
    :meth:`FlatShapes.planned` take of the metrics' values in that order or None, the integers'
    positions and bits as :data:`Single`'s) (:meth:`SparkplugB._fast`)."""
    layouts: list[tuple[Layout | Fixed, Fast]] = field(default_factory=list)
    """The byte layouts of DATA :meth:`SparkplugB._fast` read, each with its :attr:`fast` entry, the
    :class:`Fixed` first (:meth:`SparkplugB._by_layout`)."""
    tried: int = 0
    """Layouts worked out (:data:`MAX_LAYOUTS_TRIED`)."""


@dataclass(slots=True)
class Node:
    """One edge node as ingest knows it: its session (NBIRTH to NDEATH) and what its births said."""

    born: bool = False
    """An NBIRTH was seen and no matching NDEATH since."""
    trusted: bool = False
    """Born, and no seq gap since: its DATA can be read."""
    seq: int = 0
    """The last seq seen."""
    bd_seq: int | None = None
    metrics: Births = field(default_factory=Births)
    devices: dict[str, Births] = field(default_factory=dict)
    """Registered devices born in this session (DBIRTH seen), by device id of the topic."""
    why: str = "no NBIRTH seen since ingest started"
    asked_ms: int | None = None
    """When a rebirth was last requested."""


def _f32(x: float) -> float:
    """A float32 as the shortest decimal that is the same float32 (what its sender wrote)."""
    for fmt in ("%.6g", "%.7g", "%.8g"):
        short = float(fmt % x)
        try:
            if _FLOAT32.unpack(_FLOAT32.pack(short))[0] == x:
                return short
        except OverflowError:
            break
    return x


def value_of(metric: Payload.Metric, datatype: int) -> Any:
    """The metric's value read by ``datatype``: a number or text, None (null or no value),
    :data:`_SKIP` (not a reading) or :class:`Unreadable`."""
    if metric.is_transient:
        return _SKIP
    if metric.is_null:
        return None
    kind = metric.WhichOneof("value")
    if kind is None:
        return None
    if datatype in _FLOATS:
        if kind == "float_value":
            return _f32(metric.float_value)
        if kind == "double_value":
            return metric.double_value
    elif datatype in _INTEGER_BITS:
        if kind == "int_value":
            raw, width = metric.int_value, 32
        elif kind == "long_value":
            raw, width = metric.long_value, 64
        else:
            return _unreadable(datatype, f"carrying {kind}")
        bits = _SIGNED_BITS.get(datatype)
        if bits is not None:
            signed = _signed(raw, bits, width)
            return _unreadable(datatype, f"{raw} out of its range") if signed is None else signed
        if raw >> _INTEGER_BITS[datatype]:
            return _unreadable(datatype, f"{raw} out of its range")
        return raw
    elif datatype == _BOOLEAN:
        if kind == "boolean_value":
            return int(metric.boolean_value)
    elif datatype in _TEXT:
        if kind == "string_value":
            text = metric.string_value
            return text if isinstance(text, str) else _unreadable(datatype, "that is not UTF-8")
    elif datatype == _UNKNOWN:
        return Unreadable("a value without a datatype (its birth must declare one)")
    else:  # DataSet, Bytes, File, Template, property sets, arrays, codes this version does not know
        return _SKIP
    return _unreadable(datatype, f"carrying {kind}")


def _unreadable(datatype: int, what: str) -> Unreadable:
    return Unreadable(f"{_NAMES.get(datatype, f'datatype {datatype}')} {what}")


def _unit(metric: Payload.Metric) -> str | None:
    """The metric's ``engUnit`` property (text), if any."""
    if not metric.HasField("properties"):
        return None
    props = metric.properties
    for key, value in zip(props.keys, props.values, strict=False):
        if key == "engUnit" and value.WhichOneof("value") == "string_value" and isinstance(value.string_value, str):
            return value.string_value
    return None


def _bd_seq(payload: Payload) -> int | None:
    """The ``bdSeq`` metric's value (NBIRTH, NDEATH), if any."""
    for m in payload.metrics:
        if m.name == BD_SEQ:
            kind = m.WhichOneof("value")
            if kind == "long_value":
                return m.long_value
            if kind == "int_value":
                return m.int_value
    return None


def _topic_of(topic: str) -> Topic:
    """What a topic says (:data:`Topic`)."""
    levels = topic.split("/")
    if len(levels) == 3 and levels[1] == "STATE":
        return "STATE", ("", ""), None, ""
    kind = levels[2] if len(levels) >= 4 else ""
    if levels[0] != NAMESPACE or not (
        (len(levels) == 4 and kind in _NODE_TYPES) or (len(levels) == 5 and kind in _DEVICE_TYPES)
    ):
        return "", ("", ""), None, ""
    key, device = (levels[1], levels[3]), levels[4] if len(levels) == 5 else None
    return kind, key, device, _external_id(key, device)


def _external_id(key: tuple[str, str], device: str | None) -> str:
    """The registry's ``sparkplug`` id: ``group/edge`` for a node, ``group/edge/device``."""
    return f"{key[0]}/{key[1]}" if device is None else f"{key[0]}/{key[1]}/{device}"


def rebirth_request(now_ms: int) -> bytes:
    """The NCMD payload asking an edge node to publish its births again."""
    payload = Payload(timestamp=now_ms)
    payload.metrics.add(name=REBIRTH_METRIC, timestamp=now_ms, datatype=DataType.Boolean, boolean_value=True)
    return payload.SerializeToString()


class SparkplugB:
    """Sparkplug B's MQTT topic namespace ``spBv1.0/#``; holds each edge node's session."""

    FORMAT = "sparkplug_b"

    def __init__(self, source: Source, context: SourceContext) -> None:
        self._registry = context.registry
        self._mapper = context.mapper
        self._ignore = context.ignore
        self._model = source.model
        self._rebirth = source.rebirth
        self._sink = ReadingSink()
        self._layouts = Layouts()
        self._shapes = FlatShapes(context.mapper)
        self._nodes: dict[tuple[str, str], Node] = {}
        self._plans: dict[tuple[str, str, str | None, int], tuple[tuple[Step, ...] | None, Single | None]] = {}
        self._takes: dict[tuple[Any, ...], tuple[Take | None, tuple[tuple[int, int], ...]]] = {}
        """:meth:`_compiled` by (device kind, the metrics' :data:`Single` in order): devices of a model share them."""
        self._topics: dict[str, Topic] = {}
        """:func:`_topic_of` by topic."""

    def decode(self, topic: str, payload: bytes, *, retained: bool, now_ms: int, out: BatchBuilder) -> None:
        parsed = self._topics.get(topic)
        if parsed is None:
            parsed = _topic_of(topic)
            if parsed[0]:  # a Sparkplug topic (not a malformed one)
                if len(self._topics) >= MAX_TOPICS:
                    self._topics.clear()
                self._topics[topic] = parsed
        kind, key, device, external = parsed
        if not kind:
            detail = "not a Sparkplug B topic: spBv1.0/{group}/{N…}/{edge} or spBv1.0/{group}/{D…}/{edge}/{device}"
            out.reject(Rejection(topic, Reason.BAD_TOPIC, detail, payload))
            return
        if kind in ("STATE", "NCMD", "DCMD"):  # a host's state, commands to the node (ours among them): no readings
            self._ignore(kind)
            return
        if kind in _DATA_TYPES and self._by_layout(key, device, external, payload, now_ms, out):
            return
        try:
            msg = Payload.FromString(payload)
        except DecodeError as exc:
            detail = f"not a Sparkplug B payload (org.eclipse.tahu.protobuf.Payload): {exc}"
            out.reject(Rejection(topic, Reason.BAD_SHAPE, detail, payload))
            return
        if kind == "NBIRTH":
            self._nbirth(topic, payload, msg, key, now_ms, out)
        elif kind == "NDEATH":
            self._ndeath(topic, payload, msg, key, now_ms, out)
        else:
            node = self._nodes.get(key)
            self._check_seq(node, msg, key, now_ms, out)
            if kind == "DBIRTH":
                self._dbirth(topic, payload, msg, key, node, cast(str, device), now_ms, out)
            elif kind == "DDEATH":
                self._ddeath(topic, payload, msg, key, node, cast(str, device), now_ms, out)
            else:
                self._data(topic, payload, msg, key, node, device, now_ms, out)

    # ---- session -------------------------------------------------------------------------------

    def _node(self, key: tuple[str, str]) -> Node:
        node = self._nodes.get(key)
        if node is None:
            if len(self._nodes) >= MAX_NODES:
                del self._nodes[next(iter(self._nodes))]
            node = self._nodes[key] = Node()
        return node

    def _check_seq(self, node: Node | None, msg: Payload, key: tuple[str, str], now_ms: int, out: BatchBuilder) -> None:
        """Follow the node's seq; a gap makes its DATA unreadable until its next NBIRTH."""
        if node is None or not node.trusted:
            return
        expected = (node.seq + 1) % 256
        seq = msg.seq if msg.HasField("seq") else None
        if seq == expected:
            node.seq = expected
            return
        node.trusted = False
        node.why = f"a message was lost (seq {'none' if seq is None else seq} came where {expected} was due)"
        self._ask_rebirth(key, node, now_ms, out)

    def _ask_rebirth(self, key: tuple[str, str], node: Node, now_ms: int, out: BatchBuilder) -> None:
        if not self._rebirth:
            return
        if node.asked_ms is not None and 0 <= now_ms - node.asked_ms < REBIRTH_INTERVAL_MS:
            return
        node.asked_ms = now_ms
        out.command(f"{NAMESPACE}/{key[0]}/NCMD/{key[1]}", rebirth_request(now_ms))

    def _unreadable(
        self, topic: str, payload: bytes, key: tuple[str, str], node: Node, why: str, now_ms: int, out: BatchBuilder
    ) -> None:
        asked = " (rebirth requested)" if self._rebirth else ""
        detail = f"Sparkplug edge node {key[0]}/{key[1]}: {why}; its DATA cannot be read until its NBIRTH{asked}"
        out.reject(Rejection(topic, REBIRTH_REASON, detail, payload))
        self._ask_rebirth(key, node, now_ms, out)

    def _registered(self, key: tuple[str, str], device: str | None) -> RegisteredDevice | None:
        return self._registry.external("sparkplug", _external_id(key, device))

    @staticmethod
    def _unknown(topic: str, payload: bytes, key: tuple[str, str], device: str | None, out: BatchBuilder) -> None:
        what = "node" if device is None else "device"
        detail = f"Sparkplug {what} {_external_id(key, device)!r} is not an active registered device"
        out.reject(Rejection(topic, Reason.UNKNOWN_DEVICE, detail, payload))

    # ---- messages ------------------------------------------------------------------------------

    def _nbirth(
        self, topic: str, payload: bytes, msg: Payload, key: tuple[str, str], now_ms: int, out: BatchBuilder
    ) -> None:
        node = self._node(key)
        node.born = node.trusted = True
        node.seq = msg.seq % 256 if msg.HasField("seq") else 0
        node.bd_seq = _bd_seq(msg)
        node.metrics = _declared(msg)
        node.devices = {}
        device = self._registered(key, None)
        if device is None:  # a node that is a gateway, not one of our devices: its session is kept
            self._ignore("NBIRTH")
            return
        self._birth(topic, payload, msg, device, node.metrics, now_ms, out)

    def _dbirth(
        self,
        topic: str,
        payload: bytes,
        msg: Payload,
        key: tuple[str, str],
        node: Node | None,
        name: str,
        now_ms: int,
        out: BatchBuilder,
    ) -> None:
        device = self._registered(key, name)
        if device is None:
            self._unknown(topic, payload, key, name, out)
            return
        births = _declared(msg)
        if node is not None and node.born:
            node.devices[name] = births
        self._birth(topic, payload, msg, device, births, now_ms, out)

    def _birth(
        self,
        topic: str,
        payload: bytes,
        msg: Payload,
        device: RegisteredDevice,
        births: Births,
        now_ms: int,
        out: BatchBuilder,
    ) -> None:
        """A birth's online status and the current values it carries."""
        ts = msg.timestamp if msg.HasField("timestamp") else now_ms
        self._sink.status(topic, payload, device, ts, True, {}, now_ms=now_ms, out=out)
        groups, nameless, _ = _groups(msg, births, ts, birth=True)
        self._readings(topic, payload, msg, device, groups, nameless, now_ms, out, birth=True)

    def _ndeath(
        self, topic: str, payload: bytes, msg: Payload, key: tuple[str, str], now_ms: int, out: BatchBuilder
    ) -> None:
        node = self._nodes.get(key)
        if node is None or not node.born:  # no session to end: ingest has not seen this node's birth
            self._ignore("NDEATH_unborn")
            return
        if _bd_seq(msg) != node.bd_seq:  # a will of an older session, published late
            self._ignore("NDEATH_stale")
            return
        node.born = node.trusted = False
        node.why = "it died (NDEATH)"
        offline = [self._registered(key, None), *(self._registered(key, d) for d in node.devices)]
        node.devices = {}
        stored = False
        for device in offline:
            if device is not None:
                stored |= self._sink.status(topic, payload, device, now_ms, False, {}, now_ms=now_ms, out=out)
        if not stored:
            self._ignore("NDEATH")

    def _ddeath(
        self,
        topic: str,
        payload: bytes,
        msg: Payload,
        key: tuple[str, str],
        node: Node | None,
        name: str,
        now_ms: int,
        out: BatchBuilder,
    ) -> None:
        if node is not None:
            node.devices.pop(name, None)
        device = self._registered(key, name)
        if device is None:
            self._ignore("DDEATH")
            return
        ts = msg.timestamp if msg.HasField("timestamp") else now_ms
        self._sink.status(topic, payload, device, ts, False, {}, now_ms=now_ms, out=out)

    def _data(
        self,
        topic: str,
        payload: bytes,
        msg: Payload,
        key: tuple[str, str],
        node: Node | None,
        name: str | None,
        now_ms: int,
        out: BatchBuilder,
    ) -> None:
        device = self._registered(key, name)
        if device is None:
            self._unknown(topic, payload, key, name, out)
            return
        if node is None:
            node = self._node(key)
        if not node.trusted:
            self._unreadable(topic, payload, key, node, node.why, now_ms, out)
            return
        births = node.metrics if name is None else node.devices.get(name)
        if births is None:
            self._unreadable(topic, payload, key, node, f"no DBIRTH of device {name!r} in this session", now_ms, out)
            return
        default_ts = msg.timestamp if msg.HasField("timestamp") else now_ms
        model = self._model or device.model
        self._model_of(births, model)
        if self._fast(msg, births, device, default_ts, now_ms, out):
            self._learn(births, msg, payload)
            return
        picks = self._picks(msg, births, default_ts, model)
        if isinstance(picks, str):
            self._unreadable(topic, payload, key, node, f"{picks} was not declared by a birth", now_ms, out)
            return
        if picks is not None:
            self._picked(topic, payload, msg, device, model, picks[0], picks[1], now_ms, out)
            return
        groups, nameless, undeclared = _groups(msg, births, default_ts, birth=False)
        if undeclared is not None:
            self._unreadable(topic, payload, key, node, f"{undeclared} was not declared by a birth", now_ms, out)
            return
        self._readings(topic, payload, msg, device, groups, nameless, now_ms, out, birth=False)

    def _picks(
        self, msg: Payload, births: Births, default_ts: int, model: str
    ) -> tuple[dict[int, dict[int, tuple[int, str, Any]]], int] | str | None:
        """A DATA's metrics as :func:`_groups` reads them, mapped at once by each metric's plan in
        ``model`` as :meth:`FieldMapper.values` maps them: by time, each field's best-ranked metric
        as (its rank, the field, its value or :class:`Refused`), and how many metrics have neither
        name nor alias; or the first alias or name no birth declared; or None where
        :meth:`FieldMapper.values` itself is needed (a model without an entry; a metric of ours
        null, or named twice in one time)."""
        self._model_of(births, model)
        groups: dict[int, dict[int, tuple[int, str, Any]]] = {}
        nameless = 0
        by_alias = births.by_alias
        at: int | None = None
        picked: dict[int, tuple[int, str, Any]] = {}
        for m in msg.metrics:
            alias = m.alias
            if alias or m.HasField("alias"):
                found = by_alias.get(alias)
                if found is None:
                    return f"alias {alias}"
                single = found.single
                if single is not None and not m.HasField("properties"):  # the usual metric, in short
                    i, rank, name, convert, bits = single
                    value: Any = None
                    if convert is None:  # a Boolean: read below, by its datatype
                        pass
                    elif bits:  # an integer in an int_value, in its range
                        if m.WhichOneof("value") == "int_value" and not m.is_transient and not m.is_null:
                            raw = integer(m.int_value, bits)
                            if raw is not None:
                                value = convert(float(raw))
                    else:  # a Double, set
                        value = m.double_value
                        if not value or m.is_transient or m.is_null:
                            value = None
                        elif convert is not float:
                            value = convert(value)
                    if value is not None:
                        ts = m.timestamp
                        if not ts and not m.HasField("timestamp"):
                            ts = default_ts
                        if ts != at:
                            at = ts
                            picked = groups.setdefault(ts, {})
                        best = picked.get(i)
                        if best is None or rank < best[0]:
                            picked[i] = (rank, name, value)
                        elif rank == best[0]:
                            return None
                        continue
            elif m.HasField("name") and isinstance(m.name, str):
                found = births.by_name.get(m.name)
                if found is None:
                    return f"metric {m.name[:60]!r}"
            else:
                nameless += 1
                continue
            datatype = found.datatype
            if not datatype or m.HasField("properties"):
                found = _redeclared(m, found)
                datatype = found.datatype
                if found.plan is None:
                    self._plan(model, found)
            plan = found.plan
            ts = m.timestamp
            if not ts and not m.HasField("timestamp"):
                ts = default_ts
            if not plan:
                if plan is None:
                    return None
                if ts == at:  # no field of ours, in the time of the metric before
                    continue
            if datatype == _DOUBLE:
                value = m.double_value
                if not value or m.is_transient or m.is_null:
                    value = value_of(m, datatype)
            else:
                value = value_of(m, datatype)
            if value is _SKIP:
                continue
            if ts != at:  # the times in the order _groups gives them
                at = ts
                picked = groups.setdefault(ts, {})
            if not plan:
                continue
            if value is None:  # it hides a worse-ranked metric of the field: values() says
                return None
            for i, rank, name, how in plan:
                best = picked.get(i)
                if best is None or rank < best[0]:
                    if how is float and type(value) is float:  # the usual metric: a number in our unit
                        picked[i] = (rank, name, value)
                    else:
                        picked[i] = (rank, name, _taken(name, how, value))
                elif rank == best[0]:  # the same metric twice (the last counts): values() says
                    return None
        return groups, nameless

    def _model_of(self, births: Births, model: str) -> None:
        """Every metric's plan in ``model`` (births are rare: all at once)."""
        if births.model != model:
            for declared in (*births.by_alias.values(), *births.by_name.values()):
                self._plan(model, declared)
            births.model = model
            births.fast.clear()
            births.bits = {a: d.single[4] for a, d in births.by_alias.items() if a and d.single is not None}
            births.layouts.clear()  # their integers' bits were the old model's
            births.tried = 0

    def _fast(
        self, msg: Payload, births: Births, device: RegisteredDevice, default_ts: int, now_ms: int, out: BatchBuilder
    ) -> bool:
        """The usual DATA in one pass, as :meth:`_picks` and :meth:`_picked` store it: every metric by
        an alias whose birth made it :attr:`Declared.single`, without properties, set, not null nor
        transient, all of one time, their fields' values within range: its reading by the take
        compiled for its aliases in order. False: nothing was done (the general path's)."""
        bits = births.bits
        aliases: list[int] = []
        values: list[Any] = []
        alias_of, value_of_ = aliases.append, values.append
        ts: int | None = None
        for m in msg.metrics:
            alias = m.alias
            b = bits.get(alias)
            if b is None or m.HasField("properties") or m.is_transient or m.is_null:
                return False
            if b == BOOLEAN:  # a Boolean, in a boolean_value
                if not m.HasField("boolean_value"):
                    return False
                value: Any = int(m.boolean_value)
            elif b:  # an integer, in an int_value (its range is checked below)
                value = m.int_value
                if not value and not m.HasField("int_value"):
                    return False
            else:  # a Double, set
                value = m.double_value
                if not value:
                    return False
            t = m.timestamp
            if not t and not m.HasField("timestamp"):
                t = default_ts
            if t != ts:
                if ts is not None:
                    return False
                ts = t
            alias_of(alias)
            value_of_(value)
        if ts is None:
            return False
        key = tuple(aliases)
        found_fast = births.fast.get(key)
        if found_fast is None or found_fast[0] != device.device_kind:
            if len(births.fast) >= MAX_FAST:
                births.fast.clear()
            found_fast = births.fast[key] = (device.device_kind, *self._compiled(key, births, device))
        _, take, integers = found_fast
        if take is None or not _in_range(values, integers):
            return False
        seq = msg.seq if msg.HasField("seq") else 0
        return FlatShapes.take(take, device, cast(Any, values), ts, seq, now_ms=now_ms, out=out)

    def _by_layout(
        self, key: tuple[str, str], name: str | None, external: str, payload: bytes, now_ms: int, out: BatchBuilder
    ) -> bool:
        """A DATA of a layout its births remember, stored as :meth:`_fast` stores it, without protobuf.
        It holds to what :meth:`_check_seq`, :meth:`_data` and :meth:`_fast` would: a trusted node, its
        seq the next, its device registered and active, of the model and kind the layout's take was
        compiled for, every value as :meth:`_fast` takes it. False: nothing was done, nothing changed
        (read it through protobuf)."""
        node = self._nodes.get(key)
        if node is None or not node.trusted:
            return False
        births = node.metrics if name is None else node.devices.get(name)
        if births is None or not births.layouts:
            return False
        for layout, found in births.layouts:  # noqa: B007 (found: the one read)
            read = layout.read(payload)
            if read is not None:
                break
        else:
            return False
        ts, values, seq = read
        if seq != (node.seq + 1) % 256:
            return False
        device = self._registry.external("sparkplug", external)
        if device is None or births.model != (self._model or device.model):
            return False
        if found[0] != device.device_kind or found[1] is None:
            return False
        if not FlatShapes.take(found[1], device, cast(Any, values), ts, seq, now_ms=now_ms, out=out):
            return False
        node.seq = seq
        if type(layout) is Layout and births.tried < MAX_LAYOUTS_TRIED:  # a length not seen yet
            births.tried += 1
            _remember(births, layout.fixed(payload), found)
        return True

    def _learn(self, births: Births, msg: Payload, payload: bytes) -> None:
        """Remember the layout of a DATA :meth:`_fast` read with its :attr:`Births.fast` entry, unless
        one remembered reads it. The layouts of its aliases take that entry (the device's kind may
        have changed since they were learnt)."""
        aliases = tuple(m.alias for m in msg.metrics)
        found = births.fast.get(aliases)
        if found is None:
            return
        known = False
        for i, (layout, entry) in enumerate(births.layouts):
            if layout.aliases == aliases:
                if entry is not found:
                    births.layouts[i] = (layout, found)
                known = known or layout.read(payload) is not None
        if known or births.tried >= MAX_LAYOUTS_TRIED:
            return
        births.tried += 1
        learnt = self._layouts.of(msg, payload, births.bits)
        if learnt is not None:
            _remember(births, learnt, found)
            _remember(births, learnt.fixed(payload), found)

    def _compiled(
        self, aliases: tuple[int, ...], births: Births, device: RegisteredDevice
    ) -> tuple[Take | None, tuple[tuple[int, int], ...]]:
        """:meth:`_fast`'s take of ``aliases`` (each a :attr:`Declared.single`): each field of ours from
        its best-ranked metric, by position (None where two metrics of one rank feed a field), and the
        integers' positions and bits."""
        singles = tuple(births.by_alias[alias].single for alias in aliases)
        key = (device.device_kind, singles)
        found = self._takes.get(key)
        if found is None:
            if len(self._takes) >= MAX_PLANS:
                self._takes.clear()
            found = self._takes[key] = self._compile(device, singles)
        return found

    def _compile(
        self, device: RegisteredDevice, singles: tuple[Single | None, ...]
    ) -> tuple[Take | None, tuple[tuple[int, int], ...]]:
        """:meth:`_compiled`, worked out."""
        chosen: dict[int, tuple[int, int, str, Any]] = {}
        integers: list[tuple[int, int]] = []
        for p, single in enumerate(singles):
            assert single is not None
            i, rank, name, convert, b = single
            if b:
                integers.append((p, b))
            best = chosen.get(i)
            if best is None or rank < best[0]:
                chosen[i] = (rank, p, name, None if convert is float else convert)
            elif rank == best[0]:
                return None, ()
        plan = [(name, cast(str, p), convert) for _, p, name, convert in chosen.values()]
        return self._shapes.planned(device.device_kind, plan), tuple(integers)

    def _plan(self, model: str, declared: Declared) -> None:
        """``declared``'s :attr:`~Declared.plan` and :attr:`~Declared.single` in ``model``, remembered
        (every device of a model declares the same metrics)."""
        key = (model, declared.name, declared.unit, declared.datatype)
        found = self._plans.get(key)
        if found is None:
            if len(self._plans) >= MAX_PLANS:
                self._plans.clear()
            plan = self._mapper.plan(model, declared.name, declared.unit)
            found = self._plans[key] = (plan, _single(declared.datatype, plan))
        declared.plan, declared.single = found

    def _picked(
        self,
        topic: str,
        payload: bytes,
        msg: Payload,
        device: RegisteredDevice,
        model: str,
        groups: dict[int, dict[int, tuple[int, str, Any]]],
        nameless: int,
        now_ms: int,
        out: BatchBuilder,
    ) -> None:
        """:meth:`_readings` of a DATA's :meth:`_picks`: the same readings and refusals."""
        if nameless:
            detail = f"{nameless} metric(s) with neither name nor alias cannot be attributed"
            out.reject(Rejection(topic, Reason.BAD_SHAPE, detail, payload))
        seq = msg.seq if msg.HasField("seq") else 0
        sink, shapes = self._sink, self._shapes
        mapped = False
        for ts, picked in groups.items():
            if not picked:
                continue
            fields: dict[str, Any] = {}
            refused: list[Refused] = []
            for _, (_, name, value) in sorted(picked.items()):  # in the model's order, as values() gives them
                if type(value) is Refused:
                    refused.append(value)
                else:
                    fields[name] = value
            if refused:
                sink.mapped(topic, payload, device, ts, seq, fields, refused, missing=None, now_ms=now_ms, out=out)
            elif fields and not shapes.ours(device, fields, ts, seq, now_ms=now_ms, out=out):  # what mapped() does
                sink.reading(topic, payload, device, ts, seq, fields, now_ms=now_ms, out=out)
            mapped = mapped or bool(fields)
        if not mapped and not nameless:
            detail = f"no metric maps to a field of ours{self._mapper.hint(model)}"
            out.reject(Rejection(topic, Reason.MISSING_FIELD, detail, payload))

    def _readings(
        self,
        topic: str,
        payload: bytes,
        msg: Payload,
        device: RegisteredDevice,
        groups: Groups,
        nameless: int,
        now_ms: int,
        out: BatchBuilder,
        *,
        birth: bool,
    ) -> None:
        """The message's metrics (grouped by :func:`_groups`) as readings, one per timestamp, by the
        device model's mapping."""
        if nameless:
            detail = f"{nameless} metric(s) with neither name nor alias cannot be attributed"
            out.reject(Rejection(topic, Reason.BAD_SHAPE, detail, payload))
        model = self._model or device.model
        seq = msg.seq if msg.HasField("seq") else 0
        mapped = False
        for ts, (values, units) in groups.items():
            fields, refused = self._mapper.values(model, values, units)
            mapped = mapped or bool(fields)
            self._sink.mapped(topic, payload, device, ts, seq, fields, refused, missing=None, now_ms=now_ms, out=out)
        if not mapped and not birth and not nameless:  # said once for the message, not per time
            detail = f"no metric maps to a field of ours{self._mapper.hint(model)}"
            out.reject(Rejection(topic, Reason.MISSING_FIELD, detail, payload))


def _remember(births: Births, layout: Layout | Fixed | None, found: Fast) -> None:
    """``layout`` among ``births``': the :class:`Fixed` first, then the patterns, each kind in the
    order learnt; past :data:`MAX_FIXED` or :data:`MAX_PATTERNS` the oldest of its kind is forgotten."""
    if layout is None:
        return
    layouts = births.layouts
    fixed = [i for i, (known, _) in enumerate(layouts) if type(known) is Fixed]
    if type(layout) is Fixed:
        if len(fixed) >= MAX_FIXED:
            del layouts[fixed.pop(0)]
        layouts.insert(len(fixed), (layout, found))
    else:
        if len(layouts) - len(fixed) >= MAX_PATTERNS:
            del layouts[len(fixed)]
        layouts.append((layout, found))


def _in_range(values: list[Any], integers: tuple[tuple[int, int], ...]) -> bool:
    """Each integer of ``values`` at its position read by its bits, as :data:`Single`'s say (two's
    complement when negative), in place; False if one is out of its type's range."""
    for p, b in integers:
        raw = integer(values[p], b)
        if raw is None:
            return False
        values[p] = raw
    return True


def _single(datatype: int, plan: tuple[Step, ...] | None) -> Single | None:
    """:attr:`Declared.single` of a metric of ``datatype`` and ``plan``, if it is a usual one."""
    if plan is None or len(plan) != 1:
        return None
    i, rank, name, how = plan[0]
    if datatype == _BOOLEAN and how is None:
        return i, rank, name, None, BOOLEAN
    if how is None or isinstance(how, str):
        return None
    if datatype == _DOUBLE:
        return i, rank, name, how, 0
    if datatype in _INTEGER_BITS:
        bits = _SIGNED_BITS.get(datatype)
        return i, rank, name, how, (-bits if bits is not None else _INTEGER_BITS[datatype])
    return None


def _taken(name: str, how: Convert | str | None, raw: Any) -> Any:
    """``raw`` as field ``name``'s value, taken as a :data:`Step` says, or its :class:`Refused`."""
    if how is None:
        return raw
    if isinstance(how, str):
        return Refused(Reason.BAD_UNIT, how)
    try:
        return how(raw if type(raw) is float else as_number(name, raw))
    except Refused as exc:
        return exc


def _declared(msg: Payload) -> Births:
    """What a birth declares: each named metric's datatype and unit, by alias and by name."""
    births = Births()
    for m in msg.metrics:
        name = m.name
        if not m.HasField("name") or not isinstance(name, str):
            continue
        declared = Declared(name, m.datatype if m.HasField("datatype") else 0, _unit(m))
        births.by_name[name] = declared
        if m.HasField("alias"):
            births.by_alias[m.alias] = declared
    return births


def _groups(msg: Payload, births: Births, default_ts: int, *, birth: bool) -> tuple[Groups, int, str | None]:
    """Each metric's value by what its birth declared, grouped by time (``default_ts`` when it has
    none): (groups, how many have neither name nor alias, the first alias or name no birth
    declared; the groups are then incomplete). A birth declares its own metrics; DATA names them by
    alias (or name), may leave the datatype out, and may give its own ``engUnit``."""
    groups: Groups = {}
    nameless = 0
    by_alias = births.by_alias
    at: int | None = None
    values: dict[str, Any] = {}
    units: dict[str, str] = {}
    for m in msg.metrics:
        found: Declared | None
        if birth:
            name = m.name
            if not m.HasField("name") or not isinstance(name, str):
                nameless += 1
                continue
            found = births.by_name[name]
        else:
            alias = m.alias
            if alias or m.HasField("alias"):
                found = by_alias.get(alias)
                if found is None:
                    return groups, nameless, f"alias {alias}"
            elif m.HasField("name") and isinstance(m.name, str):
                found = births.by_name.get(m.name)
                if found is None:
                    return groups, nameless, f"metric {m.name[:60]!r}"
            else:
                nameless += 1
                continue
            if not found.datatype or m.HasField("properties"):
                found = _redeclared(m, found)
        datatype = found.datatype
        value = m.double_value if datatype == _DOUBLE else None
        if value is None or not (value or m.HasField("double_value")) or m.is_transient or m.is_null:
            value = value_of(m, datatype)  # what the common metric (a Double, set, not null) saves
            if value is _SKIP:
                continue
        ts = m.timestamp
        if not ts and not m.HasField("timestamp"):
            ts = default_ts
        if ts != at:
            at = ts
            group = groups.get(ts)
            if group is None:
                group = groups[ts] = ({}, {})
            values, units = group
        values[found.name] = value
        if found.unit is not None:
            units[found.name] = found.unit
    return groups, nameless, None


def _redeclared(metric: Payload.Metric, found: Declared) -> Declared:
    """What a DATA metric is, when it may say more than its birth: its own ``engUnit``, or the
    datatype its birth left out."""
    unit = _unit(metric) if metric.HasField("properties") else None
    datatype = found.datatype or (metric.datatype if metric.HasField("datatype") else 0)
    if (unit is not None and unit != found.unit) or datatype != found.datatype:
        return Declared(found.name, datatype, unit or found.unit)
    return found
