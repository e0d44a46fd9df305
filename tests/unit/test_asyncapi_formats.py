"""The AsyncAPI document describes every payload format of the sources file (issue 13).

``docs/asyncapi.yaml`` has, for each format of :data:`ingest.sources.config.Format` other than the
native ``ioc_v1``, channels marked ``x-format`` at the format's default topics, messages with the
format's content type, payload schemas of what ingest reads, and the operations of ingest and of
the devices. The payload schemas are checked against the real-payload corpus
(``../shared/realworld/``, read in place, never copied; skipped when absent): every file the corpus
gives as a message of a format validates against its channel's message, and clearly broken ones
do not.
"""

from __future__ import annotations

import base64
import copy
import json
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any, get_args

import pytest
from jsonschema import Draft7Validator  # type: ignore[import-untyped,unused-ignore]

from ingest.sources.config import DEFAULT_TOPICS, Format, Source
from ingest.sources.router import matches
from tests.unit.test_contract_docs import ROOT, load_asyncapi, pointer_validator, resolve

CORPUS = Path(os.environ.get("IOC_REALWORLD") or Path(__file__).resolve().parents[3] / "shared" / "realworld")
"""The corpus beside the project (``../shared/realworld``), or where ``IOC_REALWORLD`` says."""
NO_CORPUS = f"the real-payload corpus is not at {CORPUS} (CI has it; IOC_REALWORLD=DIR points elsewhere)"

FORMATS = [f for f in get_args(Format) if f != "ioc_v1"]
CONTENT_TYPES = {
    "chirpstack_v4": {"application/json"},
    "tts_v3": {"application/json"},
    "sparkplug_b": {"application/x-protobuf"},
    "senml": {"application/senml+json", "application/senml+cbor"},
    "thingsboard": {"application/json"},
    "influx_lp": {"text/plain"},
    "json_map": {"application/json"},
}
JSON_SCHEMA_FORMATS = {"chirpstack_v4", "tts_v3", "senml", "thingsboard"}
"""Formats whose corpus files are JSON messages with a JSON Schema payload."""

SENML_CBOR_LABELS = {
    -1: "bver", -2: "bn", -3: "bt", -4: "bu", -5: "bv", -6: "bs",
    0: "n", 1: "u", 2: "v", 3: "vs", 4: "vb", 5: "s", 6: "t", 7: "ut", 8: "vd",
}  # fmt: skip
"""RFC 8428 §6, Table 6: the integer labels of SenML in CBOR."""


# --- helpers --------------------------------------------------------------------------------------


def format_channels(fmt: str) -> dict[str, dict[str, Any]]:
    return {name: ch for name, ch in load_asyncapi()["channels"].items() if ch.get("x-format") == fmt}


def as_filter(address: str) -> str:
    """A channel address as an MQTT topic filter: each ``{parameter}`` level becomes ``+``."""
    return re.sub(r"\{\w+\}", "+", address)


def address_matches(address: str, topic: str) -> bool:
    pattern = "/".join("[^/]+" if re.fullmatch(r"\{\w+\}", level) else re.escape(level) for level in address.split("/"))
    return re.fullmatch(pattern, topic) is not None


def message_key(channel: dict[str, Any], topic: str, encoding: str) -> str:
    """The channel's message a corpus file is: the only one, the one named by the encoding (SenML
    JSON or CBOR), the one named by the topic's last level (ChirpStack ``up``/``status``), else
    ``other``."""
    messages = channel["messages"]
    if len(messages) == 1:
        return str(next(iter(messages)))
    for key in (encoding, topic.rsplit("/", 1)[-1], "other"):
        if key in messages:
            return key
    raise AssertionError(f"no message of {channel['address']} for {topic} ({encoding})")


def message_validator(channel_name: str, key: str) -> Draft7Validator:
    ref = load_asyncapi()["channels"][channel_name]["messages"][key]["$ref"]
    return pointer_validator(f"{ref}/payload")


def _refs(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for k, v in node.items():
            if k == "$ref":
                yield v
            else:
                yield from _refs(v)
    elif isinstance(node, list):
        for v in node:
            yield from _refs(v)


def _manifest() -> list[dict[str, Any]]:
    if not (CORPUS / "manifest.json").is_file():
        return []
    entries: list[dict[str, Any]] = json.loads((CORPUS / "manifest.json").read_text(encoding="utf-8"))["entries"]
    return entries


def _corpus_params(formats: set[str]) -> list[Any]:
    entries = [e for e in _manifest() if e["format"] in formats and e["encoding"] in ("json", "cbor")]
    if not entries:
        return [pytest.param(None, marks=pytest.mark.skip(reason=NO_CORPUS), id="no-corpus")]
    return [pytest.param(e, id=e["file"]) for e in entries]


def channel_of(entry: dict[str, Any]) -> str:
    """The format's channel a corpus file arrives on (by its example topic; the one without an
    address for a format that has no standard topic)."""
    channels = format_channels(entry["format"])
    topic = entry["topic"]
    found = [n for n, ch in channels.items() if ch["address"] is not None and address_matches(ch["address"], topic)]
    if not found:
        found = [n for n, ch in channels.items() if ch["address"] is None]
    assert len(found) == 1, f"{entry['file']}: channels {found} for topic {topic!r}"
    return found[0]


def senml_from_cbor(raw: bytes) -> Any:
    """A SenML CBOR pack with its integer labels read as names (``vd`` as base64url, RFC 8428 §5)."""
    import cbor2

    pack = cbor2.loads(raw)
    out = []
    for record in pack:
        named = {SENML_CBOR_LABELS[k]: v for k, v in record.items()}
        if isinstance(named.get("vd"), bytes):
            named["vd"] = base64.urlsafe_b64encode(named["vd"]).rstrip(b"=").decode()
        out.append(named)
    return out


def load_payload(entry: dict[str, Any]) -> Any:
    path = CORPUS / entry["file"]
    if entry["encoding"] == "cbor":
        return senml_from_cbor(path.read_bytes())
    return json.loads(path.read_text(encoding="utf-8"))


# --- channels, messages and operations ------------------------------------------------------------


def test_every_channel_format_is_a_sources_file_format() -> None:
    formats = {ch.get("x-format", "ioc_v1") for ch in load_asyncapi()["channels"].values()}
    assert formats == set(get_args(Format))


@pytest.mark.parametrize("fmt", FORMATS)
def test_every_format_has_channels_at_its_default_topics(fmt: str) -> None:
    channels = format_channels(fmt)
    assert channels, f"no channel with x-format: {fmt}"
    addresses = [ch["address"] for ch in channels.values() if ch["address"] is not None]
    defaults = DEFAULT_TOPICS.get(fmt, ())
    for topic_filter in defaults:
        if topic_filter.endswith("#"):
            # A multi-level filter: channels under it, one for each of its topic layouts.
            under = [a for a in addresses if matches(topic_filter, as_filter(a))]
            assert under, f"{fmt}: no channel under {topic_filter}"
        else:
            assert topic_filter in [as_filter(a) for a in addresses], f"{fmt}: no channel at {topic_filter}"
    if not defaults:
        # No standard topic: the sources file must name it, and the channel has no address.
        with pytest.raises(ValueError, match="no standard topic"):
            Source(format=fmt)
        assert [ch["address"] for ch in channels.values()] == [None]
        assert "topics:" in next(iter(channels.values()))["description"]


@pytest.mark.parametrize("fmt", FORMATS)
def test_channels_describe_identity_time_and_dead_letters(fmt: str) -> None:
    descriptions = " ".join(ch["description"] for ch in format_channels(fmt).values())
    assert f"`{fmt}`" in descriptions
    assert "unknown_device" in descriptions or (fmt == "json_map" and "`device`" in descriptions)
    scheme = {
        "chirpstack_v4": "dev_eui",
        "tts_v3": "tts_device_id",
        "sparkplug_b": "sparkplug",
        "senml": "senml",
        "thingsboard": "thingsboard",
    }.get(fmt)
    if scheme is not None:
        assert f"external id `{scheme}`" in descriptions, fmt
    for word in ("time", "seq"):
        assert word in descriptions, (fmt, word)


@pytest.mark.parametrize("fmt", FORMATS)
def test_messages_have_the_formats_content_type(fmt: str) -> None:
    doc = load_asyncapi()
    seen = set()
    for channel in format_channels(fmt).values():
        for ref in channel["messages"].values():
            message = resolve(doc, ref["$ref"])
            seen.add(message["contentType"])
            mqtt = message.get("bindings", {}).get("mqtt")
            if mqtt is not None:
                assert mqtt["contentType"] == message["contentType"]
            payload = resolve(doc, message["payload"]["$ref"]) if "$ref" in message["payload"] else message["payload"]
            if message["contentType"] == "application/x-protobuf":
                assert payload["schemaFormat"] == "application/vnd.google.protobuf;version=2"
                assert "message Payload" in payload["schema"]
                assert "Sparkplug" in message["description"]
                assert "sparkplug_b.proto" in payload["schema"]
            elif message["contentType"] == "text/plain":
                assert payload["type"] == "string"
    assert seen == CONTENT_TYPES[fmt]


def test_senml_cbor_message_names_the_rfc_labels() -> None:
    description = load_asyncapi()["components"]["messages"]["senml_cbor"]["description"]
    for label, name in SENML_CBOR_LABELS.items():
        assert f"`{name}` {str(label).replace('-', '−')}" in description, name


@pytest.mark.parametrize("fmt", FORMATS)
def test_ingest_receives_and_devices_send_on_every_format_channel(fmt: str) -> None:
    doc = load_asyncapi()
    for name in format_channels(fmt):
        ops = [op for op in doc["operations"].values() if op["channel"]["$ref"] == f"#/channels/{name}"]
        roles = {(op["action"], op["tags"][0]["name"]) for op in ops}
        if name == "sparkplug_b_command":  # ingest asks an edge node to rebirth
            assert roles == {("send", "ingest"), ("receive", "device")}
        else:
            assert roles == {("send", "device"), ("receive", "ingest")}, name
        for op in ops:
            assert {m["$ref"] for m in op["messages"]} == {
                f"#/channels/{name}/messages/{key}" for key in doc["channels"][name]["messages"]
            }
            if op["tags"][0]["name"] == "ingest" and op["action"] == "receive":
                assert op["bindings"]["mqtt"]["qos"] == 1  # ingest subscribes at QoS 1


def test_every_ref_of_the_format_sections_resolves() -> None:
    doc = load_asyncapi()
    channels = format_channels_all(doc)
    operations = [op for op in doc["operations"].values() if op["channel"]["$ref"][len("#/channels/") :] in channels]
    refs = [ref for part in (*channels.values(), *operations, doc["components"]) for ref in _refs(part)]
    assert len(refs) > 100
    for ref in refs:
        resolve(doc, ref)  # KeyError when it does not
    for channel in channels.values():  # and each message has a payload
        for ref in channel["messages"].values():
            assert resolve(doc, ref["$ref"])["payload"], ref


def format_channels_all(doc: dict[str, Any]) -> dict[str, Any]:
    return {name: ch for name, ch in doc["channels"].items() if "x-format" in ch}


def test_channel_parameters_are_described() -> None:
    doc = load_asyncapi()
    for name, channel in format_channels_all(doc).items():
        for param, ref in channel.get("parameters", {}).items():
            target = resolve(doc, ref["$ref"])
            assert target["description"], (name, param)
            for example in target.get("examples", []):
                assert isinstance(example, str), (name, param, example)
                assert "/" not in example, (name, param, example)


# --- the corpus against the payload schemas -------------------------------------------------------


@pytest.mark.parametrize("entry", _corpus_params(JSON_SCHEMA_FORMATS))
def test_real_payloads_validate_against_their_channel(entry: dict[str, Any]) -> None:
    channel_name = channel_of(entry)
    channel = load_asyncapi()["channels"][channel_name]
    key = message_key(channel, entry["topic"], entry["encoding"])
    payload = load_payload(entry)
    errors = [
        f"{list(e.absolute_path)}: {e.message}" for e in message_validator(channel_name, key).iter_errors(payload)
    ]
    assert not errors, f"{entry['file']} as {channel_name}/{key}: {errors}"
    # The topic's levels are within the parameters' vocabularies.
    if channel["address"] is not None:
        doc = load_asyncapi()
        for level, part in zip(entry["topic"].split("/"), channel["address"].split("/"), strict=True):
            m = re.fullmatch(r"\{(\w+)\}", part)
            if m:
                enum = resolve(doc, channel["parameters"][m.group(1)]["$ref"]).get("enum")
                assert enum is None or level in enum, (entry["file"], level, enum)


def test_senml_cbor_reads_as_the_json_pack() -> None:
    cbor = CORPUS / "senml" / "rfc8428_ex3.cbor"
    if not cbor.is_file():
        pytest.skip(NO_CORPUS)
    pack = senml_from_cbor(cbor.read_bytes())
    assert pack == json.loads((CORPUS / "senml" / "rfc8428_ex3.json").read_text(encoding="utf-8"))
    message_validator("senml", "cbor").validate(pack)


def _corpus_file(name: str) -> Any:
    path = CORPUS / name
    if not path.is_file():
        pytest.skip(NO_CORPUS)
    return json.loads(path.read_text(encoding="utf-8"))


def _set(doc: Any, path: str, value: Any) -> Any:
    doc = copy.deepcopy(doc)
    *parents, last = path.split(".")
    node = doc
    for p in parents:
        node = node[int(p)] if isinstance(node, list) else node[p]
    if value is _DELETE:
        del node[last]
    else:
        node[last] = value
    return doc


_DELETE = object()


@pytest.mark.parametrize(
    ("file", "channel", "key", "path", "value"),
    [
        ("chirpstack_v4/derived_up_dragino_lse01_object.json", "chirpstack_v4_event", "up", "deviceInfo.devEui",
         101010101010101),
        ("chirpstack_v4/derived_up_dragino_lse01_object.json", "chirpstack_v4_event", "up", "deviceInfo", _DELETE),
        ("chirpstack_v4/derived_up_dragino_lse01_object.json", "chirpstack_v4_event", "up", "fCnt", "7"),
        ("chirpstack_v4/derived_up_dragino_lse01_object.json", "chirpstack_v4_event", "up", "fCnt", -1),
        ("chirpstack_v4/derived_up_dragino_lse01_object.json", "chirpstack_v4_event", "up", "object", [1, 2]),
        ("chirpstack_v4/derived_up_dragino_lse01_object.json", "chirpstack_v4_event", "up", "rxInfo.0.rssi", "-36"),
        ("chirpstack_v4/derived_up_dragino_lse01_object.json", "chirpstack_v4_event", "up", "time", 1658136855),
        ("chirpstack_v4/docs_status.json", "chirpstack_v4_event", "status", "batteryLevel", "88.3"),
        ("chirpstack_v4/docs_status.json", "chirpstack_v4_event", "status", "batteryLevel", 188.3),
        ("tts_v3/docs_data_formats_up.json", "tts_v3_up", "up", "end_device_ids.device_id", 1),
        ("tts_v3/docs_data_formats_up.json", "tts_v3_up", "up", "end_device_ids", _DELETE),
        ("tts_v3/docs_data_formats_up.json", "tts_v3_up", "up", "uplink_message.f_cnt", "1"),
        ("tts_v3/docs_data_formats_up.json", "tts_v3_up", "up", "uplink_message.decoded_payload", "22.5"),
        ("senml/rfc8428_ex2.json", "senml", "json", "0.n", 7),
        ("senml/rfc8428_ex2.json", "senml", "json", "1.v", "1.2"),
        ("senml/rfc8428_ex2.json", "senml", "json", "0.bt", "now"),
        ("thingsboard/device_telemetry_with_ts.json", "thingsboard_device_telemetry", "telemetry", "ts", "noon"),
        ("thingsboard/device_telemetry_with_ts.json", "thingsboard_device_telemetry", "telemetry", "values", 42),
        ("thingsboard/gateway_connect.json", "thingsboard_gateway_connect", "connect", "device", _DELETE),
        ("thingsboard/gateway_telemetry.json", "thingsboard_gateway_telemetry", "telemetry", "Device A", {"ts": 1}),
    ],
    ids=lambda x: x if isinstance(x, str) and "/" not in x else None,
)  # fmt: skip
def test_clearly_broken_payloads_are_invalid(file: str, channel: str, key: str, path: str, value: Any) -> None:
    good = _corpus_file(file)
    validator = message_validator(channel, key)
    validator.validate(good)
    bad = _set(good, path, value)
    assert not validator.is_valid(bad), (file, path, value)


@pytest.mark.parametrize(
    ("channel", "key", "payload"),
    [
        ("senml", "json", {"bn": "urn:dev:x:", "v": 1}),  # a record, not a pack
        ("senml", "json", []),
        ("thingsboard_device_telemetry", "telemetry", "42"),
        ("thingsboard_device_telemetry", "telemetry", []),
        ("thingsboard_gateway_telemetry", "telemetry", {}),
        ("influx_lp", "lines", ""),
        ("influx_lp", "lines", 42),
        ("json_map", "json", "text"),
        ("chirpstack_v4_event", "up", []),
    ],
)
def test_payloads_of_the_wrong_shape_are_invalid(channel: str, key: str, payload: Any) -> None:
    assert not message_validator(channel, key).is_valid(payload)


def test_line_protocol_corpus_is_text_the_schema_takes() -> None:
    files = [e for e in _manifest() if e["format"] == "influx_line_protocol"]
    if not files:
        pytest.skip(NO_CORPUS)
    validator = message_validator("influx_lp", "lines")
    for entry in files:
        assert address_matches(load_asyncapi()["channels"]["influx_lp"]["address"], "telegraf/host1/modbus")
        validator.validate((CORPUS / entry["file"]).read_text(encoding="utf-8"))


# --- Sparkplug B: the inline schema is the project's -----------------------------------------------


_PROTO_FIELD = re.compile(r"^\s*(?:(optional|repeated|required)\s+)?(\w+)\s+(\w+)\s*=\s*(\d+)\s*;")


def proto_fields(text: str) -> dict[tuple[str, str], tuple[str, int, bool]]:
    """``(message path, field) → (type, number, repeated)`` of a simple proto2 text."""
    fields: dict[tuple[str, str], tuple[str, int, bool]] = {}
    stack: list[str] = []
    for line in text.splitlines():
        line = line.split("//", 1)[0]
        if m := re.match(r"^\s*message\s+(\w+)\s*\{", line):
            stack.append(m.group(1))
        elif "{" in line:  # oneof, enum
            stack.append("")
        elif m := _PROTO_FIELD.match(line):
            path = ".".join(s for s in stack if s)
            fields[(path, m.group(3))] = (m.group(2), int(m.group(4)), m.group(1) == "repeated")
        elif line.strip() == "}":
            stack.pop()
    return fields


def test_the_sparkplug_schema_is_a_subset_of_ingests() -> None:
    schema = load_asyncapi()["components"]["schemas"]["sparkplug_b_payload"]["schema"]
    ours = proto_fields(schema)
    assert ("Payload", "seq") in ours
    assert ("Payload.Metric", "alias") in ours
    full = ROOT / "ingest" / "sources" / "sparkplug_b.proto"
    theirs = proto_fields(full.read_text(encoding="utf-8"))
    for key, value in ours.items():
        assert theirs.get(key) == value, (key, value, theirs.get(key))


def test_the_sparkplug_examples_are_payloads() -> None:
    from google.protobuf import json_format

    from ingest.sources import sparkplug_b_pb2 as pb2

    messages = load_asyncapi()["components"]["messages"]
    for name in ("sparkplug_b_payload", "sparkplug_b_rebirth"):
        for example in messages[name]["examples"]:
            payload = pb2.Payload()
            json_format.ParseDict(example["payload"], payload)
            assert payload.metrics, (name, example["name"])
            # Round trip through the wire format.
            again = pb2.Payload.FromString(payload.SerializeToString())
            assert json_format.MessageToDict(again) == json_format.MessageToDict(payload)
