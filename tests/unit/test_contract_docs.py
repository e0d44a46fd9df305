"""The device contract's documents agree with the code that enforces it.

``docs/asyncapi.yaml`` (AsyncAPI 3.0.0) and ``docs/contract.md`` are written for device makers;
``contract/fields.py``, ``contract/reasons.py`` and ``contract/topics.py`` are what ingest applies.
These tests fail when one changes without the other.

Other tests may import the schema helpers to check payloads against the published contract
(``from tests.unit.test_contract_docs import payload_validator``)::

    payload_validator("salinity", "telemetry").validate(reading)   # raises on a bad payload
"""

from __future__ import annotations

import functools
import json
import math
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from jsonschema import Draft7Validator  # type: ignore[import-untyped,unused-ignore]
from referencing import Registry
from referencing.jsonschema import DRAFT7

from contract.fields import (
    CAMERA_EVENTS,
    EVENT_FIELDS,
    SEQ_MAX,
    STATUS_FIELDS,
    STATUS_STATES,
    TELEMETRY_FIELDS,
    TS_MIN_MS,
    FieldSpec,
    Kind,
)
from contract.reasons import Reason
from contract.topics import Channel, dlq_topic, parse_device_topic
from ingest.config import IngestSettings

ROOT = Path(__file__).resolve().parents[2]
ASYNCAPI_PATH = ROOT / "docs" / "asyncapi.yaml"
CONTRACT_MD_PATH = ROOT / "docs" / "contract.md"

_BASE_URI = "https://mekong-ioc.invalid/docs/asyncapi.yaml"
_JSON_TYPE = {"float": "number", "int": "integer", "string": "string"}
_ENVELOPE = {"ts", "seq"}


# --- helpers (importable) -------------------------------------------------------------------------


@functools.cache
def load_asyncapi(path: Path = ASYNCAPI_PATH) -> dict[str, Any]:
    """The AsyncAPI document as plain data (cached; do not mutate)."""
    doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    assert isinstance(doc, dict), f"{path} is not a YAML mapping"
    return doc


def _registry(doc: dict[str, Any]) -> Registry[Any]:
    registry: Registry[Any] = Registry().with_resource(_BASE_URI, DRAFT7.create_resource(doc))
    return registry


def pointer_validator(pointer: str, *, doc: dict[str, Any] | None = None) -> Draft7Validator:
    """A validator for the schema at JSON pointer ``pointer`` (``#/components/...``)."""
    doc = load_asyncapi() if doc is None else doc
    return Draft7Validator(
        {"$ref": f"{_BASE_URI}{pointer}"},
        registry=_registry(doc),
        format_checker=Draft7Validator.FORMAT_CHECKER,
    )


def schema_validator(name: str, *, doc: dict[str, Any] | None = None) -> Draft7Validator:
    """A validator for ``components.schemas[name]`` of the AsyncAPI document."""
    return pointer_validator(f"#/components/schemas/{name}", doc=doc)


def payload_validator(kind: Kind | str, channel: Channel | str) -> Draft7Validator:
    """The validator of what a device of ``kind`` may publish on ``channel``."""
    kind, channel = Kind(kind), Channel(channel)
    if channel is Channel.TELEMETRY:
        return schema_validator(f"{kind.value}_telemetry")
    if channel is Channel.STATUS:
        return schema_validator("status")
    if kind is Kind.CAMERA:
        return schema_validator("camera_event")
    raise ValueError(f"a {kind.value} device has no {channel.value} channel")


def dead_letter_validator() -> Draft7Validator:
    """The validator of what ingest publishes on ``ioc/v1/_dlq/{reason}``."""
    return schema_validator("dead_letter")


def resolve(doc: dict[str, Any], ref: str) -> Any:
    """Follow a local ``$ref`` (``#/a/b``) in ``doc``; raise KeyError when it does not resolve."""
    if not ref.startswith("#/"):
        raise KeyError(f"not a local reference: {ref}")
    node: Any = doc
    for raw in ref[2:].split("/"):
        part = raw.replace("~1", "/").replace("~0", "~")
        if isinstance(node, list):
            node = node[int(part)]
        elif isinstance(node, dict) and part in node:
            node = node[part]
        else:
            raise KeyError(f"{ref}: no {part!r}")
    return node


def markdown_tables(text: str) -> dict[str, list[dict[str, str]]]:
    """Tables announced by ``<!-- table: NAME -->``, as rows keyed by the header cells."""
    tables: dict[str, list[dict[str, str]]] = {}
    lines = text.splitlines()
    for i, line in enumerate(lines):
        m = re.fullmatch(r"\s*<!--\s*table:\s*(.+?)\s*-->\s*", line)
        if not m:
            continue
        rows = []
        for row in lines[i + 1 :]:
            if not row.startswith("|"):
                break
            rows.append([c.strip() for c in row.strip().strip("|").split("|")])
        assert len(rows) >= 2, f"table {m.group(1)!r} has no rows"
        header, body = rows[0], rows[2:]
        tables[m.group(1)] = [dict(zip(header, r, strict=True)) for r in body]
    return tables


# --- sample payloads built from the specs ---------------------------------------------------------


def _value(spec: FieldSpec, where: str) -> Any:
    if spec.type == "string":
        return "https://example.org/x.jpg" if spec.name == "image_url" else "1.0.0"
    lo, hi = spec.lo, spec.hi
    v = {"lo": lo, "hi": hi, "mid": (lo + hi) / 2}[where]
    return math.floor(v) if spec.type == "int" else float(v)


def sample_reading(kind: Kind, where: str = "mid", /, **overrides: Any) -> dict[str, Any]:
    """A reading of ``kind`` with every field at its ``lo``, ``hi`` or ``mid`` value."""
    reading: dict[str, Any] = {"ts": TS_MIN_MS + 10**12, "seq": 7}
    reading.update({f.name: _value(f, where) for f in TELEMETRY_FIELDS[kind]})
    reading.update(overrides)
    return reading


def sample_event(event: str = "flooding", /, **overrides: Any) -> dict[str, Any]:
    payload: dict[str, Any] = {"ts": TS_MIN_MS + 10**12, "seq": 3, "event": event}
    payload.update({f.name: _value(f, "mid") for f in EVENT_FIELDS})
    payload.update(overrides)
    return payload


def sample_status(**overrides: Any) -> dict[str, Any]:
    payload: dict[str, Any] = {"state": "online", "ts": TS_MIN_MS + 10**12, "seq": 1}
    payload.update({f.name: _value(f, "mid") for f in STATUS_FIELDS})
    payload.update(overrides)
    return payload


def _outside(spec: FieldSpec) -> list[float]:
    step = 1 if spec.type == "int" else (spec.hi - spec.lo) / 100
    return [spec.lo - step, spec.hi + step]


def _numeric(specs: tuple[FieldSpec, ...]) -> list[FieldSpec]:
    return [f for f in specs if f.numeric]


def _all_fields() -> Iterator[tuple[Kind, FieldSpec]]:
    for kind, specs in TELEMETRY_FIELDS.items():
        for f in specs:
            yield kind, f


# --- the document's structure ---------------------------------------------------------------------


def test_asyncapi_is_version_3_0_0_with_the_main_sections() -> None:
    doc = load_asyncapi()
    assert doc["asyncapi"] == "3.0.0"
    assert doc["info"]["title"]
    assert doc["info"]["version"]
    for section in ("servers", "channels", "operations", "components"):
        assert doc[section], section
    assert doc["defaultContentType"] == "application/json"


def _refs(node: Any, path: str = "#") -> Iterator[tuple[str, str]]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref":
                yield path, value
            else:
                yield from _refs(value, f"{path}/{key}")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _refs(value, f"{path}/{i}")


def test_every_ref_resolves() -> None:
    doc = load_asyncapi()
    refs = list(_refs(doc))
    assert len(refs) > 50
    for where, ref in refs:
        try:
            resolve(doc, ref)
        except (KeyError, IndexError, ValueError) as exc:
            pytest.fail(f"{where}: $ref {ref} does not resolve ({exc})")


def test_a_ref_has_no_siblings_in_schemas() -> None:
    # Draft 7 ignores keywords beside $ref: a sibling would silently not apply.
    doc = load_asyncapi()
    for where, _ in _refs(doc["components"]["schemas"], "#/components/schemas"):
        node = resolve(doc, where)
        assert set(node) == {"$ref"}, f"{where}: keywords beside $ref are ignored"


def native_channels(doc: dict[str, Any]) -> dict[str, Any]:
    """The channels of the ``ioc/v1`` contract (the other formats' channels carry ``x-format``)."""
    return {name: ch for name, ch in doc["channels"].items() if ch.get("x-format", "ioc_v1") == "ioc_v1"}


def test_channel_parameters_match_their_addresses() -> None:
    doc = load_asyncapi()
    for name, channel in doc["channels"].items():
        # A null address: no standard topic, the sources file names it (SenML, vendor JSON).
        in_address = set(re.findall(r"\{(\w+)\}", channel["address"] or ""))
        assert in_address == set(channel.get("parameters", {})), name


def test_channels_follow_the_topic_scheme_of_contract_topics() -> None:
    channels = native_channels(load_asyncapi())
    expected: dict[str, str] = {}
    for kind in Kind:
        expected[f"{kind.value}_telemetry"] = f"ioc/v1/{{province}}/{kind.value}/{{device_id}}/telemetry"
        expected[f"{kind.value}_status"] = f"ioc/v1/{{province}}/{kind.value}/{{device_id}}/status"
    expected["camera_event"] = "ioc/v1/{province}/camera/{device_id}/event"
    expected["dead_letter"] = dlq_topic("{reason}")
    assert {name: ch["address"] for name, ch in channels.items()} == expected
    for name, address in expected.items():
        if name == "dead_letter":
            continue
        topic = parse_device_topic(address.format(province="hau_giang", device_id="dev-1"))
        assert name == f"{topic.kind.value}_{topic.channel.value}"


def test_parameters_describe_the_topic_levels() -> None:
    params = load_asyncapi()["components"]["parameters"]
    for example in params["province"]["examples"]:
        parse_device_topic(f"ioc/v1/{example}/salinity/x/telemetry")
    for example in params["device_id"]["examples"]:
        parse_device_topic(f"ioc/v1/hau_giang/salinity/{example}/telemetry")
    assert params["reason"]["enum"] == [r.value for r in Reason]


def test_operations_send_and_receive_every_channel_with_its_own_messages() -> None:
    doc = load_asyncapi()
    actions: dict[str, set[str]] = {name: set() for name in doc["channels"]}
    for name, op in doc["operations"].items():
        assert op["action"] in ("send", "receive"), name
        channel_ref = op["channel"]["$ref"]
        channel = channel_ref.removeprefix("#/channels/")
        assert channel in doc["channels"], name
        actions[channel].add(op["action"])
        assert op["messages"], name
        for msg in op["messages"]:
            assert msg["$ref"].startswith(f"{channel_ref}/messages/"), name
        if channel not in native_channels(doc):
            continue  # other formats: their publishers' QoS (tests/unit/test_asyncapi_formats.py)
        mqtt = op["bindings"]["mqtt"]
        assert mqtt["qos"] == 1, name
        assert mqtt["retain"] is channel.endswith("_status"), name
    assert all(a == {"send", "receive"} for a in actions.values()), actions


def test_the_will_is_documented_as_retained_offline_status() -> None:
    doc = load_asyncapi()
    will = doc["components"]["serverBindings"]["device"]["mqtt"]["lastWill"]
    assert will["retain"] is True
    assert will["qos"] == 1
    assert json.loads(will["message"]) == {"state": "offline"}
    schema_validator("will").validate(json.loads(will["message"]))


# --- fields: AsyncAPI and markdown against contract/fields.py -------------------------------------


def _expected_property(spec: FieldSpec) -> dict[str, Any]:
    if spec.type == "string":
        return {"type": "string", "maxLength": spec.max_length}
    return {"type": _JSON_TYPE[spec.type], "minimum": spec.lo, "maximum": spec.hi}


def _actual_property(prop: dict[str, Any]) -> dict[str, Any]:
    return {k: prop[k] for k in ("type", "minimum", "maximum", "maxLength") if k in prop}


def _check_properties(props: dict[str, Any], specs: tuple[FieldSpec, ...], envelope: set[str]) -> None:
    assert set(props) - envelope == {f.name for f in specs}
    for spec in specs:
        prop = props[spec.name]
        assert _actual_property(prop) == _expected_property(spec), spec.name
        # Types must match exactly: an integer bound on a number field would still compare equal.
        if spec.numeric:
            assert isinstance(prop["minimum"], int if spec.type == "int" else float), spec.name
            assert prop["x-unit"] == spec.unit, spec.name


@pytest.mark.parametrize("kind", list(Kind))
def test_telemetry_schema_matches_contract_fields(kind: Kind) -> None:
    schemas = load_asyncapi()["components"]["schemas"]
    reading = schemas[f"{kind.value}_reading"]
    assert reading["additionalProperties"] is False
    assert set(reading["required"]) == _ENVELOPE
    assert reading["minProperties"] == len(_ENVELOPE) + 1  # at least one measurement
    _check_properties(reading["properties"], TELEMETRY_FIELDS[kind], _ENVELOPE)

    batch = schemas[f"{kind.value}_batch"]
    assert batch["additionalProperties"] is False
    readings = batch["properties"]["readings"]
    assert readings["items"] == {"$ref": f"#/components/schemas/{kind.value}_reading"}
    assert readings["minItems"] == 1
    assert readings["maxItems"] == IngestSettings.model_fields["max_readings_per_message"].default
    assert schemas[f"{kind.value}_telemetry"]["oneOf"] == [
        {"$ref": f"#/components/schemas/{kind.value}_reading"},
        {"$ref": f"#/components/schemas/{kind.value}_batch"},
    ]


def test_event_schema_matches_contract_fields() -> None:
    schemas = load_asyncapi()["components"]["schemas"]
    schema = schemas["camera_detection"]
    assert schema["additionalProperties"] is False
    _check_properties(schema["properties"], EVENT_FIELDS, _ENVELOPE | {"event"})
    assert schema["properties"]["event"]["enum"] == list(CAMERA_EVENTS)
    assert set(schema["required"]) == _ENVELOPE | {"event", "confidence", "frames"}
    items = schemas["camera_detection_batch"]["properties"]["readings"]
    assert items["items"] == {"$ref": "#/components/schemas/camera_detection"}
    assert items["maxItems"] == IngestSettings.model_fields["max_readings_per_message"].default
    assert schemas["camera_event"]["oneOf"] == [
        {"$ref": "#/components/schemas/camera_detection"},
        {"$ref": "#/components/schemas/camera_detection_batch"},
    ]


def test_status_schema_matches_contract_fields() -> None:
    schemas = load_asyncapi()["components"]["schemas"]
    report = schemas["status_report"]
    assert report["additionalProperties"] is False
    _check_properties(report["properties"], STATUS_FIELDS, _ENVELOPE | {"state"})
    assert report["properties"]["state"]["enum"] == list(STATUS_STATES)
    assert set(report["required"]) == _ENVELOPE | {"state"}
    assert schemas["will"]["properties"] == {"state": {"const": "offline"}}


def test_envelope_bounds_match_contract() -> None:
    schemas = load_asyncapi()["components"]["schemas"]
    assert schemas["ts"]["type"] == "integer"
    assert schemas["ts"]["minimum"] == TS_MIN_MS
    assert schemas["seq"]["type"] == "integer"
    assert (schemas["seq"]["minimum"], schemas["seq"]["maximum"]) == (0, SEQ_MAX - 1)


def _md_rows(specs: tuple[FieldSpec, ...]) -> list[dict[str, str]]:
    rows = []
    for f in specs:
        if f.type == "string":
            lo, hi = "—", f"{f.max_length} chars"
        else:
            lo, hi = _md_number(f.lo), _md_number(f.hi)
        rows.append(
            {
                "Field": f"`{f.name}`",
                "Type": _JSON_TYPE[f.type],
                "Unit": f.unit or "—",
                "Min": lo,
                "Max": hi,
            }
        )
    return rows


def _md_number(v: float) -> str:
    return str(int(v)) if float(v).is_integer() else repr(float(v))


@pytest.mark.parametrize(
    ("table", "specs"),
    [(f"telemetry {k.value}", TELEMETRY_FIELDS[k]) for k in Kind]
    + [("event", EVENT_FIELDS), ("status", STATUS_FIELDS)],
)
def test_markdown_field_tables_match_contract_fields(table: str, specs: tuple[FieldSpec, ...]) -> None:
    tables = markdown_tables(CONTRACT_MD_PATH.read_text(encoding="utf-8"))
    assert table in tables, f"docs/contract.md has no <!-- table: {table} -->"
    rows = [{k: r[k] for k in ("Field", "Type", "Unit", "Min", "Max")} for r in tables[table]]
    assert rows == _md_rows(specs)
    assert all(r["Meaning"] for r in tables[table])


# --- reasons, limits and prose --------------------------------------------------------------------


def test_every_reason_is_in_the_dead_letter_enums() -> None:
    doc = load_asyncapi()
    values = [r.value for r in Reason]
    assert doc["components"]["schemas"]["reason"]["enum"] == values
    assert doc["components"]["parameters"]["reason"]["enum"] == values


def test_every_reason_is_explained_in_contract_md_with_a_fix() -> None:
    tables = markdown_tables(CONTRACT_MD_PATH.read_text(encoding="utf-8"))
    rows = tables["reasons"]
    assert [r["Reason"] for r in rows] == [f"`{r.value}`" for r in Reason]
    for row in rows:
        assert len(row["Meaning"]) > 20, row["Reason"]
        assert len(row["What to fix"]) > 20, row["Reason"]


def test_contract_md_states_the_ingest_limits() -> None:
    text = CONTRACT_MD_PATH.read_text(encoding="utf-8")
    fields = IngestSettings.model_fields
    for name in ("max_payload_bytes", "max_readings_per_message", "dlq_payload_cap"):
        assert str(fields[name].default) in text, name
        assert name in text, name
    for kind in Kind:
        assert f"`{kind.value}`" in text
    for channel in Channel:
        assert f"`{channel.value}`" in text
    for event in CAMERA_EVENTS:
        assert f"`{event}`" in text


def _json_blocks(text: str) -> list[Any]:
    blocks = re.findall(r"^[ \t]*```json\n(.*?)^[ \t]*```", text, flags=re.S | re.M)
    assert blocks
    return [json.loads(b) for b in blocks]


def test_json_examples_in_contract_md_are_valid() -> None:
    telemetry = [payload_validator(k, Channel.TELEMETRY) for k in Kind]
    checked = 0
    for block in _json_blocks(CONTRACT_MD_PATH.read_text(encoding="utf-8")):
        if "reason" in block:
            dead_letter_validator().validate(block)
        elif "event" in block:
            payload_validator(Kind.CAMERA, Channel.EVENT).validate(block)
        elif "state" in block:
            payload_validator(Kind.CAMERA, Channel.STATUS).validate(block)
        else:
            assert any(v.is_valid(block) for v in telemetry), block
        checked += 1
    assert checked >= len(Kind) + 4


# --- the examples in the AsyncAPI document --------------------------------------------------------


def test_every_message_has_examples_that_validate() -> None:
    doc = load_asyncapi()
    for name, message in doc["components"]["messages"].items():
        assert message.get("examples"), f"message {name} has no example"
        validator = pointer_validator(f"#/components/messages/{name}/payload")
        for example in message["examples"]:
            errors = [e.message for e in validator.iter_errors(example["payload"])]
            assert not errors, f"{name}/{example.get('name')}: {errors}"


# --- sample payloads against the schemas ----------------------------------------------------------


@pytest.mark.parametrize("kind", list(Kind))
@pytest.mark.parametrize("where", ["lo", "mid", "hi"])
def test_spec_built_readings_validate(kind: Kind, where: str) -> None:
    validator = payload_validator(kind, Channel.TELEMETRY)
    reading = sample_reading(kind, where)
    validator.validate(reading)
    validator.validate({"readings": [reading, sample_reading(kind, "mid", seq=8)]})
    for spec in TELEMETRY_FIELDS[kind]:  # any single measurement is enough
        validator.validate({"ts": reading["ts"], "seq": 1, spec.name: reading[spec.name]})


@pytest.mark.parametrize(("kind", "spec"), list(_all_fields()), ids=lambda x: getattr(x, "name", x))
def test_out_of_range_and_mistyped_readings_are_invalid(kind: Kind, spec: FieldSpec) -> None:
    validator = payload_validator(kind, Channel.TELEMETRY)
    for bad in [*_outside(spec), "1", True, None, [1], {"v": 1}]:
        reading = sample_reading(kind, **{spec.name: bad})
        assert not validator.is_valid(reading), (spec.name, bad)
        assert not validator.is_valid({"readings": [sample_reading(kind), reading]}), (
            spec.name,
            bad,
        )
    if spec.type == "int":
        assert not validator.is_valid(sample_reading(kind, **{spec.name: 0.5})), spec.name


@pytest.mark.parametrize("kind", list(Kind))
def test_malformed_readings_are_invalid(kind: Kind) -> None:
    validator = payload_validator(kind, Channel.TELEMETRY)
    good = sample_reading(kind)
    no_ts = {k: v for k, v in good.items() if k != "ts"}
    no_seq = {k: v for k, v in good.items() if k != "seq"}
    bad = [
        no_ts,
        no_seq,
        {"ts": good["ts"], "seq": 1},  # no measurement
        sample_reading(kind, unknown_field=1.0),
        sample_reading(kind, ts=TS_MIN_MS - 1),
        sample_reading(kind, ts="2026-01-01T00:00:00Z"),
        sample_reading(kind, seq=-1),
        sample_reading(kind, seq=SEQ_MAX),
        {"readings": []},
        {"readings": [good], "gateway": "gw-1"},
        {"readings": good},
        [good],
        "reading",
    ]
    for payload in bad:
        assert not validator.is_valid(payload), payload


@pytest.mark.parametrize("event", CAMERA_EVENTS)
def test_camera_events_validate(event: str) -> None:
    validator = payload_validator(Kind.CAMERA, Channel.EVENT)
    validator.validate(sample_event(event))
    minimal = {k: v for k, v in sample_event(event).items() if k in ("ts", "seq", "event", "confidence", "frames")}
    validator.validate(minimal)
    validator.validate({"readings": [minimal, sample_event(event, seq=4)]})


def test_bad_camera_events_are_invalid() -> None:
    validator = payload_validator(Kind.CAMERA, Channel.EVENT)
    good = sample_event()
    bad = [
        sample_event("fire"),
        {k: v for k, v in good.items() if k != "confidence"},
        {k: v for k, v in good.items() if k != "frames"},
        {k: v for k, v in good.items() if k != "event"},
        sample_event(image_url="http://example.org/x.jpg"),
        sample_event(image_url="https://example.org/" + "x" * 600),
        sample_event(plate="51A-12345"),
        sample_event(image_url="https://example.org/a\nb.jpg"),
        {"readings": []},
        {"readings": [good, sample_event("fire")]},
    ]
    for spec in _numeric(EVENT_FIELDS):
        bad += [sample_event(**{spec.name: v}) for v in _outside(spec)]
    for payload in bad:
        assert not validator.is_valid(payload), payload
    with pytest.raises(ValueError, match="no event channel"):
        payload_validator(Kind.SALINITY, Channel.EVENT)


def test_status_reports_and_the_will_validate() -> None:
    validator = payload_validator(Kind.SALINITY, Channel.STATUS)
    validator.validate(sample_status())
    validator.validate(sample_status(state="offline"))
    validator.validate({"state": "online", "ts": TS_MIN_MS, "seq": 0})
    validator.validate({"state": "offline"})  # the will


def test_bad_status_payloads_are_invalid() -> None:
    validator = payload_validator(Kind.SALINITY, Channel.STATUS)
    bad = [
        {"state": "online"},  # only the will may omit ts/seq
        {"state": "offline", "ts": TS_MIN_MS},
        {"state": "offline", "battery_v": 3.1},
        sample_status(state="sleeping"),
        sample_status(fw="x" * 33),
        sample_status(fw=2),
        sample_status(fw="1.0\u0000"),
        {"readings": [sample_status()]},
        sample_status(temp_c=25.0),
    ]
    for spec in _numeric(STATUS_FIELDS):
        bad += [sample_status(**{spec.name: v}) for v in _outside(spec)]
    for payload in bad:
        assert not validator.is_valid(payload), payload


def test_dead_letters_carry_exactly_one_payload_form() -> None:
    validator = dead_letter_validator()
    base = {
        "topic": "ioc/v1/x",
        "reason": "bad_json",
        "detail": "d",
        "truncated": False,
        "received_ms": 1,
    }
    validator.validate(base | {"payload": "{"})
    validator.validate(base | {"payload_b64": "/w=="})
    assert not validator.is_valid(base)
    assert not validator.is_valid(base | {"payload": "{", "payload_b64": "ew=="})
    assert not validator.is_valid(base | {"payload": "{", "reason": "nope"})
    for reason in Reason:
        validator.validate(base | {"payload": "{", "reason": reason.value})
