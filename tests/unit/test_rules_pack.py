"""The default rule pack (rules/packs/mekong.yaml) against the domain reference and the contract,
and the pack loader's errors."""

from __future__ import annotations

import copy
import itertools
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from contract.fields import CAMERA_EVENTS, EVENT_FIELDS, TELEMETRY_FIELDS, Kind
from contract.fleet import CROPS, SITES, Device
from contract.geography import PROVINCE_BY_SLUG, PROVINCES
from rules.derived import DERIVED
from rules.engine import _Tags
from rules.errors import PackError
from rules.model import DeviceInfo, Severity
from rules.pack import (
    DEFAULT_PACK,
    PLACEHOLDERS,
    Event,
    NoData,
    Pack,
    Range,
    Rule,
    Selector,
    Threshold,
    load_pack,
    parse_pack,
    readable_fields,
)

# Every rule of the domain reference tables (§1–§5), with its severity there, and the pack rules
# that implement it (a rule with two conditions becomes two pack rules).
DOMAIN_RULES: dict[str, tuple[Severity, tuple[str, ...]]] = {
    # §1 salinity
    "SAL_FRUIT": (Severity.WARNING, ("SAL_FRUIT",)),
    "SAL_DOMESTIC": (Severity.WARNING, ("SAL_DOMESTIC",)),
    "SAL_1PPT": (Severity.WARNING, ("SAL_1PPT",)),
    "SAL_RICE_2": (Severity.WARNING, ("SAL_RICE_2",)),
    "SAL_RICE_3": (Severity.CRITICAL, ("SAL_RICE_3",)),
    "SAL_4PPT": (Severity.CRITICAL, ("SAL_4PPT",)),
    "SAL_RISE": (Severity.WARNING, ("SAL_RISE",)),
    "SAL_SAFE": (Severity.INFO, ("SAL_SAFE",)),
    # §2 river and canal water quality
    "WQ_DO_LOW": (Severity.WARNING, ("WQ_DO_LOW",)),
    "WQ_DO_CRIT": (Severity.CRITICAL, ("WQ_DO_CRIT",)),
    "WQ_PH": (Severity.WARNING, ("WQ_PH",)),
    "WQ_PH_ACID": (Severity.CRITICAL, ("WQ_PH_ACID",)),
    "WQ_NH4": (Severity.WARNING, ("WQ_NH4",)),
    # §3 ponds
    "SH_DO_WARN": (Severity.WARNING, ("SH_DO_WARN",)),
    "SH_DO_CRIT": (Severity.CRITICAL, ("SH_DO_CRIT",)),
    "SH_PH": (Severity.WARNING, ("SH_PH",)),
    "SH_PH_SWING": (Severity.WARNING, ("SH_PH_SWING",)),
    "SH_TEMP": (Severity.WARNING, ("SH_TEMP",)),
    "SH_SAL": (Severity.WARNING, ("SH_SAL", "SH_SAL_SWING")),
    "NH3_TOXIC": (Severity.WARNING, ("NH3_TOXIC",)),
    "TRA_DO": (Severity.WARNING, ("TRA_DO",)),
    "TRA_TEMP_SAL": (Severity.WARNING, ("TRA_TEMP", "TRA_SAL")),
    # §4 light traps
    "BPH_SURGE": (Severity.WARNING, ("BPH_SURGE",)),
    "BPH_HIGH": (Severity.CRITICAL, ("BPH_HIGH",)),
    "BPH_SOW_WINDOW": (Severity.INFO, ("BPH_SOW_WINDOW",)),
    "MOTH_SURGE": (Severity.WARNING, ("MOTH_SURGE_LEAFFOLDER", "MOTH_SURGE_STEMBORER")),
    "TRAP_SILENT": (Severity.WARNING, ("TRAP_SILENT",)),
    # §5 cameras (CAM_TRAFFIC is left out on purpose: see NOT_IN_PACK)
    "CAM_FIRE": (Severity.CRITICAL, ("CAM_FIRE",)),
    "CAM_FLOOD": (Severity.WARNING, ("CAM_FLOOD",)),
    "CAM_FOOD": (Severity.WARNING, ("CAM_FOOD",)),
    "CAM_OFFLINE": (Severity.WARNING, ("CAM_OFFLINE", "CAM_VIDEO_LOSS")),
}
NO_DATA_RULES = {
    "salinity": "SAL_SILENT",
    "water_quality": "WQ_SILENT",
    "light_trap": "TRAP_OFFLINE",
    "camera": "CAM_OFFLINE",
}
NOT_IN_PACK = ("CAM_TRAFFIC",)
"""Domain rules deliberately absent (hourly aggregates, not alerts); the pack says why in a comment."""

PACK_IDS = {i for _, ids in DOMAIN_RULES.values() for i in ids} | set(NO_DATA_RULES.values())
SAMPLE = {
    "value": 1.234,
    "unit": "‰",
    "device": "x",
    "place": "Ba Tri, Bến Tre",
    "time": "05:30 21/11",
    "n": 1234,
    "site": "river",
}
VIETNAMESE = re.compile("[àáảãạăằắẳẵặâầấẩẫậèéẻẽẹêềếểễệìíỉĩịòóỏõọôồốổỗộơờớởỡợùúủũụưừứửữựỳýỷỹỵđ]", re.IGNORECASE)
DISTRICTS = {d.slug for p in PROVINCES for d in p.districts}


@pytest.fixture(scope="module")
def pack() -> Pack:
    return load_pack(DEFAULT_PACK)


def rules_of(pack: Pack) -> dict[str, Rule]:
    return {r.id: r for r in pack.rules}


def fields_read(rule: Rule) -> list[str]:
    c = rule.condition
    fields = [] if isinstance(c, NoData | Event) else [c.field]
    return fields + [g.field for g in rule.also]


# --- the default pack -------------------------------------------------------------------------


def test_default_pack_loads(pack: Pack) -> None:
    assert pack.version == 1
    assert pack.name == "mekong"
    assert pack.description
    assert all(r.enabled for r in pack.rules)


def test_every_domain_rule_is_present(pack: Pack) -> None:
    ids = set(rules_of(pack))
    missing = PACK_IDS - ids
    assert not missing, f"domain rules missing from the pack: {sorted(missing)}"
    assert ids == PACK_IDS, f"rules not in the domain tables: {sorted(ids - PACK_IDS)}"


def test_left_out_rules_are_explained(pack: Pack) -> None:
    text = DEFAULT_PACK.read_text(encoding="utf-8")
    for rule_id in NOT_IN_PACK:
        assert rule_id not in rules_of(pack)
        assert re.search(rf"^#.*{rule_id}", text, re.MULTILINE), f"say in a comment why {rule_id} is left out"


@pytest.mark.parametrize("domain_id", sorted(DOMAIN_RULES))
def test_severity_follows_the_domain_table(pack: Pack, domain_id: str) -> None:
    severity, ids = DOMAIN_RULES[domain_id]
    for rule_id in ids:
        assert rules_of(pack)[rule_id].severity is severity, rule_id


def test_every_kind_has_a_no_data_rule(pack: Pack) -> None:
    rules = rules_of(pack)
    for kind, rule_id in NO_DATA_RULES.items():
        rule = rules[rule_id]
        assert rule.kind == kind
        assert isinstance(rule.condition, NoData)
        assert rule.audience == "operators"
    assert rules["CAM_OFFLINE"].condition.after_ms == 5 * 60_000  # type: ignore[union-attr]
    assert {k.value for k in Kind} == set(NO_DATA_RULES)


def test_fields_exist_for_the_rule_kind(pack: Pack) -> None:
    for rule in pack.rules:
        telemetry = {f.name for f in TELEMETRY_FIELDS[Kind(rule.kind)] if f.numeric}
        derived = {name for name, d in DERIVED.items() if rule.kind in d.kinds}
        assert set(readable_fields([rule.kind])) == telemetry | derived
        for name in fields_read(rule):
            assert name in telemetry | derived, f"{rule.id}: no field {name!r} on {rule.kind} devices"


def test_event_rules_name_real_events_and_fields(pack: Pack) -> None:
    event_fields = {f.name for f in EVENT_FIELDS if f.numeric}
    events = [r for r in pack.rules if isinstance(r.condition, Event)]
    assert {r.condition.event for r in events} >= {"smoke_fire", "flooding", "hygiene_violation"}  # type: ignore[union-attr]
    for rule in events:
        c = rule.condition
        assert isinstance(c, Event)
        assert rule.kind == "camera", rule.id
        assert c.event in CAMERA_EVENTS, rule.id
        assert c.field in event_fields, rule.id


def test_camera_rules(pack: Pack) -> None:
    rules = rules_of(pack)
    fire = rules["CAM_FIRE"].condition
    assert isinstance(fire, Event)
    assert (fire.event, fire.min_confidence, fire.min_frames) == ("smoke_fire", 0.8, 2)
    flood = rules["CAM_FLOOD"].condition
    assert isinstance(flood, Event)
    assert (flood.event, flood.for_ms) == ("flooding", 10 * 60_000)
    assert set(rules["CAM_FOOD"].select.site) == {"kitchen", "school", "market"}


def test_selectors_name_real_places_and_crops(pack: Pack) -> None:
    for rule in pack.rules:
        s = rule.select
        assert set(s.crop) <= set(CROPS), rule.id
        assert set(s.site) <= set(SITES), rule.id
        assert set(s.province) <= set(PROVINCE_BY_SLUG), rule.id
        assert set(s.district) <= DISTRICTS, rule.id
        assert not s.devices, f"{rule.id}: the default pack must not name devices"


def test_selectors_follow_the_domain(pack: Pack) -> None:
    for rule in pack.rules:
        s = rule.select
        if rule.id.startswith(("SAL_FRUIT",)):
            assert set(s.crop) == {"durian", "fruit"}
        elif rule.id.startswith("SAL_RICE"):
            assert s.crop == ("rice",)
        elif rule.id.startswith("WQ_") and rule.id != "WQ_SILENT":
            assert "pond" not in s.site, rule.id
            assert {"river", "canal"} <= set(s.site), rule.id
        elif rule.id.startswith("SH_"):
            assert (s.site, s.crop) == (("pond",), ("shrimp",)), rule.id
        elif rule.id.startswith("TRA_"):
            assert (s.site, s.crop) == (("pond",), ("pangasius",)), rule.id
        elif rule.id == "NH3_TOXIC":
            assert s.site == ("pond",)
        if rule.id.startswith("SAL_") and rule.id != "SAL_SILENT":
            assert rule.kind == "salinity"


def test_salinity_ladder(pack: Pack) -> None:
    rules = rules_of(pack)
    ladder = {"SAL_FRUIT": 0.5, "SAL_1PPT": 1.0, "SAL_RICE_2": 2.0, "SAL_RICE_3": 3.0, "SAL_4PPT": 4.0}
    for rule_id, level in ladder.items():
        c = rules[rule_id].condition
        assert isinstance(c, Threshold)
        assert (c.op, c.value, c.consecutive) == (">=", level, 2), rule_id
        assert c.clear is not None, rule_id
        assert level * 0.85 <= c.clear < level, rule_id
    safe = rules["SAL_SAFE"]
    assert [(g.field, g.trend) for g in safe.also] == [("water_level_cm", "falling")]


def test_continuous_sensor_rules_have_hysteresis(pack: Pack) -> None:
    for rule in pack.rules:
        c = rule.condition
        if rule.kind in ("salinity", "water_quality") and rule.severity > Severity.INFO:
            if isinstance(c, Threshold):
                assert c.clear not in (None, c.value), rule.id
            elif isinstance(c, Range):
                assert (c.clear_low, c.clear_high) != (None, None), rule.id


@pytest.mark.parametrize("lang", ["vi", "en"])
def test_messages_render(pack: Pack, lang: str) -> None:
    for rule in pack.rules:
        template = getattr(rule.message, lang)
        text = template.format(**SAMPLE)
        assert not re.search("[{}]", text), rule.id
        # rules.messages.render shows a missing value as "?" by replacing "nan" in the text.
        assert "nan" not in text.lower(), rule.id
        assert set(re.findall(r"\{(\w*)", template)) <= set(PLACEHOLDERS), rule.id


def test_messages_say_where_and_vietnamese_comes_with_diacritics(pack: Pack) -> None:
    for rule in pack.rules:
        vi, en = rule.message.vi, rule.message.en
        assert VIETNAMESE.search(vi), f"{rule.id}: Vietnamese text without diacritics: {vi!r}"
        assert vi != en, rule.id
        assert "{place}" in vi, rule.id
        assert "{place}" in en, rule.id
        if "{unit}" in vi + en:
            assert rule.unit, rule.id
        if rule.audience == "farmers" and not isinstance(rule.condition, NoData | Event):
            assert "{value" in vi or "{n}" in vi or rule.id == "BPH_SOW_WINDOW", f"{rule.id}: say the value"


def test_every_rule_has_a_source(pack: Pack) -> None:
    for rule in pack.rules:
        assert re.search(r"\bS \d+|\bE\b|\bU\b", rule.source), f"{rule.id}: source {rule.source!r}"


# --- loader errors ----------------------------------------------------------------------------

BASE_RULE: dict[str, Any] = {
    "id": "SAL_TEST",
    "kind": "salinity",
    "select": {"crop": ["rice"]},
    "condition": {"type": "threshold", "field": "salinity_ppt", "op": ">=", "value": 1.0, "clear": 0.9},
    "severity": "warning",
    "unit": "‰",
    "message": {"vi": "Mặn {value:.1f}{unit} tại {place}.", "en": "Salinity {value:.1f}{unit} at {place}."},
    "source": "S 10",
    "min_gap": "2h",
}


NO_DATA = {"type": "no_data", "after": "1h"}
WINDOW = {"type": "window", "field": "salinity_ppt", "stat": "mean", "window": "1h", "op": ">", "value": 1}


def _write_pack(tmp_path: Path, rules: list[dict[str, Any]]) -> Path:
    path = tmp_path / "broken.yaml"
    data = {"version": 1, "name": "test", "rules": rules}
    path.write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return path


def _rule(**changes: Any) -> dict[str, Any]:
    rule = copy.deepcopy(BASE_RULE)
    for key, value in changes.items():
        if key.startswith("condition_"):
            rule["condition"][key.removeprefix("condition_")] = value
        elif value is None:
            del rule[key]
        else:
            rule[key] = value
    return rule


def test_base_rule_is_valid(tmp_path: Path) -> None:
    assert load_pack(_write_pack(tmp_path, [_rule()])).rules[0].id == "SAL_TEST"


@pytest.mark.parametrize(
    ("rule", "problem"),
    [
        (_rule(condition_op="=>"), "op"),
        (_rule(condition_type="median"), "median"),
        (_rule(message={"vi": "Mặn tại {vị trí}.", "en": "Salinity at {place}."}), "unknown placeholder"),
        (_rule(message={"vi": "Mặn {x}‰.", "en": "Salinity {x}."}), "unknown placeholder"),
        (_rule(condition_clear=1.1), "safe side"),
        (_rule(source=None), "source"),
        (_rule(source=""), "source"),
        (_rule(condition_for="15 minutes"), "not a duration"),
        (_rule(min_gap="15 minutes"), "not a duration"),
        (_rule(severity="warn"), "severity"),
        (_rule(kind="weather"), "kind"),
        (_rule(condition={**WINDOW, "window": "30d"}), "window"),
    ],
    ids=[
        "bad-op", "unknown-condition", "placeholder-vi", "placeholder-x", "clear-wrong-side", "no-source",
        "empty-source", "bad-for", "bad-min-gap", "severity-warn", "unknown-kind", "window-too-long",
    ],
)  # fmt: skip
def test_broken_rule_names_file_rule_and_problem(tmp_path: Path, rule: dict[str, Any], problem: str) -> None:
    path = _write_pack(tmp_path, [_rule(id="SAL_OK"), rule])
    with pytest.raises(PackError) as err:
        load_pack(path)
    message = str(err.value)
    assert str(path) in message
    assert "rule SAL_TEST" in message
    assert "SAL_OK" not in message
    assert problem in message


def test_duplicate_id(tmp_path: Path) -> None:
    path = _write_pack(tmp_path, [_rule(), _rule()])
    with pytest.raises(PackError, match=r"broken\.yaml.*rule id SAL_TEST appears twice"):
        load_pack(path)


def test_error_in_the_default_pack_names_the_rule(tmp_path: Path) -> None:
    text = DEFAULT_PACK.read_text(encoding="utf-8")
    broken = text.replace('field: salinity_ppt, op: ">=", value: 4.0', 'field: salinity_ppt, op: "=>", value: 4.0')
    assert broken != text
    path = tmp_path / "mekong.yaml"
    path.write_text(broken, encoding="utf-8")
    with pytest.raises(PackError, match=r"mekong\.yaml: rule SAL_4PPT: condition\.op"):
        load_pack(path)


def test_unreadable_and_invalid_yaml(tmp_path: Path) -> None:
    with pytest.raises(PackError, match="cannot read"):
        load_pack(tmp_path / "absent.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("rules: [\n", encoding="utf-8")
    with pytest.raises(PackError, match=r"bad\.yaml: not valid YAML"):
        load_pack(bad)


# --- field and event names ----------------------------------------------------------------------

GATE = {"field": "water_level_cm", "trend": "falling", "window": "1h"}
EVENT = {"type": "event", "event": "smoke_fire", "min_confidence": 0.8}


@pytest.mark.parametrize(
    ("rule", "where", "problem"),
    [
        (
            _rule(condition_field="salnity_ppt"),
            "condition.field",
            "no field 'salnity_ppt' on salinity devices; did you mean salinity_ppt or salinity_from_ec_ppt?",
        ),
        (
            _rule(condition_field="Salinity_ppt"),
            "condition.field",
            "no field 'Salinity_ppt' on salinity devices; did you mean salinity_ppt",
        ),
        (  # a water-quality field on a salinity station
            _rule(condition_field="do_mg_l"),
            "condition.field",
            "no field 'do_mg_l' on salinity devices",
        ),
        (  # a derived field of another kind
            _rule(condition_field="nh3_mg_l"),
            "condition.field",
            "no field 'nh3_mg_l' on salinity devices",
        ),
        (  # nothing close: the valid names are listed
            _rule(condition_field="zzz"),
            "condition.field",
            "no field 'zzz' on salinity devices; use one of battery_v, cl_mg_l_est, ec_us_cm, rssi_dbm, "
            "salinity_from_ec_ppt, salinity_ppt, temp_c, water_level_cm",
        ),
        (
            _rule(condition={**WINDOW, "field": "salinity"}),
            "condition.field",
            "did you mean salinity_ppt",
        ),
        (
            _rule(also=[{**GATE, "field": "water_levl_cm"}]),
            "also.0.field",
            "no field 'water_levl_cm' on salinity devices; did you mean water_level_cm?",
        ),
        (
            _rule(kind="camera", condition={**EVENT, "event": "smoke_fier"}),
            "condition.event",
            "no camera event 'smoke_fier' that cameras report; did you mean smoke_fire?",
        ),
        (
            _rule(kind="camera", condition={**EVENT, "field": "confidance"}),
            "condition.field",
            "no field 'confidance' on camera events; did you mean confidence?",
        ),
        (
            _rule(kind="camera", condition={**EVENT, "field": "image_url"}),  # a string: nothing to compare
            "condition.field",
            "no field 'image_url' on camera events",
        ),
        (
            _rule(condition=EVENT),
            "condition.type",
            "event conditions read camera events: use kind: camera",
        ),
    ],
    ids=[
        "typo", "case", "other-kind", "derived-of-other-kind", "nothing-close", "window", "gate", "event-class",
        "event-field", "event-string-field", "event-on-salinity",
    ],
)  # fmt: skip
def test_unknown_names_are_refused_with_the_nearest_valid_ones(
    tmp_path: Path, rule: dict[str, Any], where: str, problem: str
) -> None:
    path = _write_pack(tmp_path, [_rule(id="SAL_OK"), rule])
    with pytest.raises(PackError) as err:
        load_pack(path)
    message = str(err.value)
    assert message.startswith(f"{path}: rule SAL_TEST: {where}: "), message
    assert problem in message
    assert "SAL_OK" not in message


@pytest.mark.parametrize(
    "rule",
    [
        _rule(condition_field="cl_mg_l_est"),  # derived, for salinity stations
        _rule(condition_field="salinity_from_ec_ppt"),
        _rule(condition_field="ec_us_cm", also=[GATE]),
        _rule(kind="water_quality", condition_field="nh3_mg_l"),
        _rule(kind="light_trap", condition_field="trap_night_total"),
        _rule(kind="camera", condition=EVENT),
        _rule(kind="camera", condition={**EVENT, "event": "flooding", "field": "water_above_line_cm"}),
        _rule(kind="camera", condition={"type": "threshold", "field": "fps", "op": "<", "value": 5}),
        _rule(kind="camera", condition={"type": "no_data", "after": "5m"}),
    ],
)
def test_real_and_derived_fields_load(tmp_path: Path, rule: dict[str, Any]) -> None:
    assert load_pack(_write_pack(tmp_path, [rule])).rules[0].id == "SAL_TEST"


def test_every_unknown_name_of_a_pack_is_listed() -> None:
    raw = {
        "name": "test",
        "rules": [
            _rule(id="A_1", condition_field="salnity_ppt", also=[{**GATE, "field": "level"}]),
            _rule(id="B_2", kind="camera", condition={**EVENT, "event": "fire"}),
        ],
    }
    with pytest.raises(PackError) as err:
        parse_pack(raw, "posted pack")
    lines = str(err.value).splitlines()
    assert [line.split(": ")[:3] for line in lines] == [
        ["posted pack", "rule A_1", "condition.field"],
        ["posted pack", "rule A_1", "also.0.field"],
        ["posted pack", "rule B_2", "condition.event"],
    ]


def test_a_field_must_exist_on_every_kind_a_rule_reads() -> None:
    both = set(readable_fields(["salinity", "water_quality"]))
    assert {"salinity_ppt", "ec_us_cm", "temp_c", "cl_mg_l_est", "salinity_from_ec_ppt"} <= both
    assert "water_level_cm" not in both  # salinity stations only
    assert "do_mg_l" not in both  # water quality only
    assert "nh3_mg_l" not in both  # derived for water quality only
    assert set(readable_fields(["camera", "light_trap"])) == {"rssi_dbm"}
    assert readable_fields([]) == ()


def test_the_engine_knows_every_name_the_loader_accepts() -> None:
    """What the loader accepts is what the engine and the contract can produce (no drift)."""
    for kind in Kind:
        sent = {f.name for f in TELEMETRY_FIELDS[kind] if f.numeric}
        for name in readable_fields([kind]):
            assert name in sent or kind.value in DERIVED[name].kinds, (kind, name)
    assert set(CAMERA_EVENTS) >= {"smoke_fire", "flooding"}


# Which devices a rule reads, one device at a time (the API's station and device pages ask this).


def _info(
    i: int, kind: str = "salinity", province: str = "ben_tre", site: str = "river", crop: str = "rice"
) -> DeviceInfo:
    return DeviceInfo(f"d{i}", kind, province, "ba_tri", site, crop, "Ba Tri, Bến Tre", "Ba Tri, Ben Tre")


def test_an_empty_selector_takes_every_device() -> None:
    assert Selector().takes(_info(1))
    assert Selector().takes(_info(2, kind="camera", province="an_giang", site="market", crop="none"))


def test_a_selector_takes_a_device_only_when_every_listed_tag_matches() -> None:
    s = Selector(province=("ben_tre",), crop=("rice", "durian"))  # several values of one tag: any of them
    assert s.takes(_info(1, crop="rice"))
    assert s.takes(_info(2, crop="durian"))
    assert not s.takes(_info(3, crop="shrimp"))
    assert not s.takes(_info(4, province="tra_vinh", crop="rice"))
    assert not Selector(district=("thanh_phu",)).takes(_info(5))
    assert not Selector(site=("canal",)).takes(_info(6))


def test_a_selector_listing_devices_takes_only_those() -> None:
    s = Selector(devices=("d1", "d3"))
    assert [s.takes(_info(i)) for i in range(4)] == [False, True, False, True]
    both = Selector(devices=("d1",), crop=("durian",))  # the id list and the tags must both match
    assert not both.takes(_info(1, crop="rice"))
    assert both.takes(_info(1, crop="durian"))


def test_a_rule_reads_its_kind_when_enabled() -> None:
    rule = Rule.model_validate(_rule())  # salinity, crop rice
    assert rule.reads(_info(1))
    assert not rule.reads(_info(1, crop="durian"))
    assert not rule.reads(_info(1, kind="water_quality"))
    assert not Rule.model_validate(_rule(enabled=False)).reads(_info(1))
    registered = Device(
        id="d1",
        kind=Kind.SALINITY,
        province="ben_tre",
        district="ba_tri",
        site="river",
        crop="rice",
        lat=10.0,
        lon=106.5,
    )
    assert rule.reads(registered)  # a registry device too (its kind an enum)
    assert not rule.reads(registered.model_copy(update={"kind": Kind.WATER_QUALITY}))


def test_the_scalar_check_agrees_with_the_engines_selection() -> None:
    """``Rule.reads`` device by device selects what the engine's vectorised ``_Tags.select`` does."""
    devices = [
        _info(i, kind, province, site, crop)
        for i, (kind, province, site, crop) in enumerate(
            itertools.product(("salinity", "camera"), ("ben_tre", "tra_vinh"), ("river", "pond"), ("rice", "durian"))
        )
    ]
    tags = _Tags()
    tags.update(devices, np.arange(len(devices), dtype=np.int64))
    selectors = [
        Selector(),
        Selector(province=("ben_tre",)),
        Selector(province=("tra_vinh", "ca_mau"), site=("pond",)),  # ca_mau: no device there
        Selector(crop=("durian",), site=("river", "pond")),
        Selector(district=("ba_tri",), crop=("shrimp",)),  # no device grows shrimp
        Selector(devices=("d0", "d5", "d11", "nobody")),
        Selector(devices=("d3", "d6"), province=("ben_tre",)),
    ]
    for kind in ("salinity", "camera", "light_trap"):
        for s in selectors:
            rule = Rule.model_validate(_rule(kind=kind, select=s.model_dump(), condition=NO_DATA))
            vectorised = tags.select(kind, s, devices).tolist()
            assert [rule.reads(d) for d in devices] == vectorised, (kind, s)
