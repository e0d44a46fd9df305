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
