"""How the demo receiver shows an alert to a farmer (the HTTP side is in the integration tests)."""

from __future__ import annotations

import json

from alerts.receiver import farmer_text
from alerts.store import render_body
from tests.unit.test_alerts_store import AT_ONCE, DEVICES, URL, fire, open_store, resolve


def test_vietnamese_first_then_english_in_vietnam_time(tmp_path: object) -> None:
    store = open_store(tmp_path)  # type: ignore[arg-type]
    [e] = store.apply([fire(device=1)], DEVICES)
    text = farmer_text(json.loads(render_body(e.alert, e, "vi")))
    vi, en = text.index("Độ mặn"), text.index("Salinity")
    assert vi < en
    assert "[CẢNH BÁO] Gò Công Đông, Tiền Giang · 07:00 ngày 01/03/2024" in text
    assert "[WARNING ALERT] Go Cong Dong, Tien Giang · 07:00 on 01 Mar 2024 (UTC+7)" in text
    [r] = store.apply([resolve(device=1, ts=e.ts_ms + 3_600_000)], DEVICES)
    done = farmer_text(json.loads(render_body(r.alert, r, "en")))
    assert done.startswith("[ĐÃ HẾT CẢNH BÁO]")
    assert "[RESOLVED]" in done
    assert "08:00" in done
    store.close()


def test_odd_payloads_do_not_break_printing() -> None:
    assert "?" in farmer_text({})
    assert "KHẨN CẤP" in farmer_text({"type": "alert.firing", "severity": "critical", "ts": "bad"})


def test_a_subscription_test_event_reads_as_a_test(tmp_path: object) -> None:
    from api.routes.subscriptions import test_body

    store = open_store(tmp_path)  # type: ignore[arg-type]
    sub = store.add_subscription(URL, language="vi", pacing=AT_ONCE)
    store.close()
    text = farmer_text(json.loads(test_body(sub, "evt_test_1", 1_709_251_200_000)))
    assert text.startswith("[TIN THỬ / TEST] Tin thử từ Mekong IOC")
    assert "Test event from Mekong IOC" in text
    assert "?" not in text


def test_a_group_and_a_lower_level_read_as_such() -> None:
    group = {
        "type": "alert.group", "notice": "group", "severity": "warning", "timestamp": "2024-03-01T05:30:00.000Z",
        "place_vi": "Gò Công Đông, Tiền Giang", "place_en": "Go Cong Dong, Tien Giang",
        "message_vi": "Cảnh báo mặn vượt 1‰ tại 2 trạm", "message_en": "Alert: salinity above 1 ‰ at 2 stations",
        "devices": ["tg-1", "tg-2"], "alerts": [{"device_id": "tg-1", "rule_id": "SAL_1PPT"},
                                                {"device_id": "tg-2", "rule_id": "SAL_1PPT"}],
    }  # fmt: skip
    text = farmer_text(group)
    assert text.startswith("[CẢNH BÁO] Gò Công Đông, Tiền Giang · 12:30 ngày 01/03/2024\n")
    assert text.endswith("(thiết bị / device tg-1, tg-2, SAL_1PPT)")
    lower = farmer_text({**group, "type": "alert.updated", "notice": "deescalated"})
    assert lower.startswith("[GIẢM MỨC] ")
    assert "\n[LOWER LEVEL] " in lower
