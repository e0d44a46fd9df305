"""Alert text for a phone: every rule of the default pack, at the fleet's longest place names and the
largest values its fields can take, fits one SMS (160 GSM-7 characters, without diacritics) and
one UCS-2 segment (70 characters, with them) — and keeps its value, its place and its action."""

from __future__ import annotations

import re
import unicodedata

import pytest
from hypothesis import given
from hypothesis import strategies as st

from contract.fields import CAMERA_EVENTS, Kind, field_specs
from ingest.devices import PROVINCE_BY_SLUG, place_name
from rules.engine import Engine, _names, _transitions
from rules.messages import render
from rules.model import DeviceInfo, State, Transition
from rules.pack import DEFAULT_PACK, Rule, load_pack
from rules.sms import (
    GSM7_BASIC,
    GSM7_EXTENSION,
    SHORT_UCS2_MAX,
    SMS_GSM7_MAX,
    SPELLED,
    cut,
    fits_sms,
    fold,
    gsm7_length,
    sms_forms,
    ucs2_length,
)

PACK = load_pack(DEFAULT_PACK)
PLACES = sorted({place_name(p.slug, d.slug) for p in PROVINCE_BY_SLUG.values() for d in p.districts}, key=len)
LONGEST = PLACES[-1]
DERIVED_MAX = {"cl_mg_l_est": 50 / 1.80655 * 1000, "nh3_mg_l": 200.0}
"""Derived fields at the largest of what they derive from (salinity 50 ‰; NH₄⁺ 200 mg/L)."""
T0 = 1_796_400_000_000


def largest(rule: Rule) -> float:
    """The largest value the rule's field can take (the contract's range), or a count's."""
    name = getattr(rule.condition, "field", None)
    specs = field_specs(Kind(rule.kind))
    if name in specs:
        return float(specs[name].hi)
    return DERIVED_MAX.get(str(name), 1_000_000.0)


def device(rule: Rule) -> DeviceInfo:
    return DeviceInfo("bt-trap-market1", rule.kind, "tien_giang", "go_cong_dong", "pond", "shrimp", LONGEST, LONGEST)


def transition(engine: Engine, rule: Rule, d: int, state: State, ts: int, value: float) -> Transition:
    """The transition ``engine`` records for ``rule`` and its device ``d``, its texts as the engine renders them."""
    return _transitions(rule, _names(rule), [(state, d, ts, value)], engine.devices)[0]


@pytest.mark.parametrize("rule", PACK.rules, ids=lambda r: r.id)
def test_every_rule_fits_one_segment_and_keeps_value_place_and_action(rule: Rule) -> None:
    assert rule.short is not None, "the default pack gives every rule its short text"
    value = largest(rule)
    engine = Engine(PACK, [device(rule)], event_classes=CAMERA_EVENTS, start_ms=T0)
    for state in (State.FIRING, State.RESOLVED):
        t = transition(engine, rule, 0, state, T0, value)
        assert ucs2_length(t.message_short) <= SHORT_UCS2_MAX, t.message_short
        assert gsm7_length(t.message_sms) is not None, t.message_sms
        assert gsm7_length(t.message_sms) <= SMS_GSM7_MAX, t.message_sms  # type: ignore[operator]
        assert LONGEST in t.message_short
        assert fold(LONGEST) in t.message_sms
        if "{value" in rule.short.vi or "{n}" in rule.short.vi:
            shown = render(re.search(r"\{(value|n)[^}]*\}", rule.short.vi).group(0), device=device(rule),  # type: ignore[union-attr]
                           value=value, unit="", ts_ms=T0, vietnamese=True)  # fmt: skip
            assert shown in t.message_short, (shown, t.message_short)
            if state is State.FIRING:  # (an all-clear's SMS is its full text, showing the value its own way)
                assert fold(shown) in t.message_sms or t.message_sms == fold(t.message_vi)
        if state is State.FIRING:
            assert t.message_short.endswith(f" – {rule.short.action}"), t.message_short
            # the SMS is the full text (its action after the dash) when it fits, else the short one
            full = t.message_sms == fold(t.message_vi) and " - " in t.message_sms
            assert full or t.message_sms.endswith(f" - {fold(rule.short.action)}"), t.message_sms
        else:
            assert t.message_short.startswith("Hết cảnh báo: ")


def test_folding_to_plain_gsm7() -> None:
    assert fold("Mặn 4,1‰ tại Gò Công Đông, Tiền Giang – ngưng lấy nước") == (
        "Man 4,1%o tai Go Cong Dong, Tien Giang - ngung lay nuoc"
    )
    assert fold("NH₃ 0,05 mg/L; 29,5°C · “đỉnh”") == 'NH3 0,05 mg/L; 29,5C - "dinh"'
    assert fits_sms(fold("Ơ ư Ư ạ Ỵ đ Đ"))
    assert gsm7_length("a{b") == 4  # an extension character counts two
    assert gsm7_length("é") == 1
    assert gsm7_length("ệ") is None
    assert ucs2_length("Mặn 😀") == 6  # beyond the BMP: two units


def folded_whole(text: str) -> str:
    """:func:`fold` as first written: spelled, decomposed and stripped of combining marks as a whole."""
    spelled = "".join(SPELLED.get(c, c) for c in text)
    bare = "".join(c for c in unicodedata.normalize("NFD", spelled) if not unicodedata.combining(c))
    return "".join(c if c.isascii() and (c.isprintable() or c == "\n") else "?" for c in bare)


VIETNAMESE = st.sampled_from(
    sorted("ăâđêôơưĂÂĐÊÔƠƯáàảãạấầẩẫậắằẳẵặéèẻẽẹếềểễệíìỉĩịóòỏõọốồổỗộớờởỡợúùủũụứừửữựýỳỷỹỵ‰°–“”µ₃\u0301\u0323")
)


@given(text=st.text(st.characters() | VIETNAMESE | st.sampled_from(sorted(SPELLED)), max_size=60))
def test_folding_a_character_at_a_time_is_folding_the_whole_text(text: str) -> None:
    assert fold(text) == folded_whole(text)


@given(text=st.text(st.characters(max_codepoint=0x3FF) | st.sampled_from(sorted(GSM7_EXTENSION)), max_size=40))
def test_gsm7_length_counts_septets(text: str) -> None:
    septets = [1 if c in GSM7_BASIC else 2 if c in GSM7_EXTENSION else None for c in text]
    assert gsm7_length(text) == (None if None in septets else sum(s for s in septets if s is not None))


def test_a_pack_without_short_text_is_cut_to_one_segment() -> None:
    long_vi = "Nước " + "rất " * 40 + "mặn – ngưng lấy nước"
    sms, short = sms_forms(long_vi, long_vi)
    assert ucs2_length(short) <= SHORT_UCS2_MAX
    assert short.endswith("…")
    assert fits_sms(sms)
    assert cut("ngắn", 70) == "ngắn"


def test_a_webhook_carries_both_sms_texts(tmp_path: object) -> None:
    """The engine's texts reach the subscriber's webhook body as they were rendered."""
    import json
    from pathlib import Path

    from alerts.store import AlertStore
    from tests.unit.test_alerts_store import AT_ONCE

    rule = next(r for r in PACK.rules if r.id == "SAL_4PPT")
    info = device(rule)
    t = transition(Engine(PACK, [info], event_classes=CAMERA_EVENTS, start_ms=T0), rule, 0, State.FIRING, T0, 4.1)
    with AlertStore(Path(str(tmp_path)) / "alerts.db") as store:
        sub = store.add_subscription("https://93.184.215.14/hook", language="vi", pacing=AT_ONCE)
        [event] = store.apply([t], [info])
        store.dispatch()
        body = json.loads(store.outbox(subscription_id=sub.id)[0].body)
        assert (event.message_sms, event.message_short) == (t.message_sms, t.message_short)
        assert store.events(event.alert_id)[0].message_short == t.message_short
    assert body["message_short"] == f"Mặn 4,1‰ tại {LONGEST} – không lấy nước vào ruộng"
    assert body["message_sms"] == fold(t.message_vi)
    assert body["message_sms"].startswith("Man 4,1%o tai Go Cong Dong, Tien Giang - ")


def test_template_params_and_a_template_webhook(tmp_path: object) -> None:
    """A subscription naming a template gets it and the event's named parameters in every webhook."""
    import json
    from pathlib import Path

    from alerts.errors import InvalidSubscription
    from alerts.store import AlertStore
    from rules.messages import local_time
    from tests.unit.test_alerts_store import AT_ONCE

    rule = next(r for r in PACK.rules if r.id == "SAL_4PPT")
    info = device(rule)
    engine = Engine(PACK, [info], event_classes=CAMERA_EVENTS, start_ms=T0)
    fired = transition(engine, rule, 0, State.FIRING, T0, 4.1)
    assert fired.params == {"place": LONGEST, "value": "4,1", "unit": "‰", "action": "không lấy nước vào ruộng",
                            "time": local_time(T0)}  # fmt: skip
    over = transition(engine, rule, 0, State.RESOLVED, T0 + 3_600_000, 0.42)
    assert (over.params["value"], over.params["action"]) == ("0,4", "hết cảnh báo")
    silent = next(r for r in PACK.rules if r.id == "SAL_SILENT")
    quiet = transition(engine, silent, 0, State.FIRING, T0, float("nan"))
    assert (quiet.params["value"], quiet.params["unit"]) == ("", "")
    with AlertStore(Path(str(tmp_path)) / "alerts.db") as store:
        zns = store.add_subscription("https://93.184.215.14/zns", template="ioc_alert_v1", pacing=AT_ONCE)
        plain = store.add_subscription("https://93.184.215.14/sms", pacing=AT_ONCE)
        [event] = store.apply([fired], [info])
        store.dispatch()
        assert store.events(event.alert_id)[0].params == fired.params
        bodies = {e.subscription_id: json.loads(e.body) for e in store.outbox(limit=None)}
        assert (bodies[zns.id]["template"], bodies[zns.id]["params"]) == ("ioc_alert_v1", dict(fired.params))
        assert "template" not in bodies[plain.id]
        assert bodies[zns.id]["message_short"] == bodies[plain.id]["message_short"]  # the texts stay too
        assert store.update_subscription(zns.id, template=None).template is None
        assert store.update_subscription(zns.id, description="x").template is None
        with pytest.raises(InvalidSubscription, match="template id"):
            store.add_subscription("https://93.184.215.14/x", template="có dấu", pacing=AT_ONCE)
