"""The pacing policy (alerts.notify) and composed texts (alerts.compose): table tests, no I/O."""

from __future__ import annotations

import pytest

from alerts.compose import Item, deescalated, digest, group
from alerts.errors import InvalidSubscription
from alerts.notify import HOUR_MS, MINUTE_MS, Level, Notice, Pacing, QuietHours, family_notice, rate_block
from rules.model import Severity
from rules.sms import SHORT_UCS2_MAX, fits_sms, ucs2_length

# 2026-03-10 00:00 local (UTC+7) = 2026-03-09 17:00 UTC
MIDNIGHT_LOCAL = 1_773_075_600_000


@pytest.mark.parametrize(
    ("before", "after", "notice"),
    [
        (None, None, None),
        (None, Level("a", 1), Notice.OPENED),
        (None, Level("a", 6), Notice.OPENED),
        (Level("a", 1), Level("b", 3), Notice.ESCALATED),
        (Level("b", 3), Level("a", 1), Notice.DEESCALATED),
        (Level("b", 3), None, Notice.CLEARED),
        (Level("b", 3), Level("b", 3), Notice.INHIBITED),
        (Level("b", 3), Level("c", 3), Notice.INHIBITED),
    ],
)
def test_family_notice(before: Level | None, after: Level | None, notice: Notice | None) -> None:
    assert family_notice(before, after) is notice


def test_quiet_hours_across_midnight() -> None:
    quiet = QuietHours.parse("21:00-05:30")
    assert str(quiet) == "21:00-05:30"
    at = {h: MIDNIGHT_LOCAL + int(h * 60) * MINUTE_MS for h in (0, 5.49, 5.5, 12, 20.99, 21, 23.5)}
    assert [quiet.contains(t) for t in at.values()] == [True, True, False, False, False, True, True]
    # the end after 22:00 is 05:30 the next morning; after 03:00 it is 05:30 the same morning
    assert quiet.end_after(MIDNIGHT_LOCAL + 22 * HOUR_MS) == MIDNIGHT_LOCAL + 24 * HOUR_MS + 330 * MINUTE_MS
    assert quiet.end_after(MIDNIGHT_LOCAL + 3 * HOUR_MS) == MIDNIGHT_LOCAL + 330 * MINUTE_MS


def test_quiet_hours_within_a_day() -> None:
    quiet = QuietHours.parse("12:00-13:30")
    assert quiet.contains(MIDNIGHT_LOCAL + 12 * HOUR_MS)
    assert not quiet.contains(MIDNIGHT_LOCAL + 810 * MINUTE_MS)
    assert quiet.end_after(MIDNIGHT_LOCAL + 12 * HOUR_MS) == MIDNIGHT_LOCAL + 810 * MINUTE_MS


@pytest.mark.parametrize(
    ("text", "problem"),
    [("21:00", "START-END"), ("25:00-05:00", "start must be HH:MM"), ("21:00-5", "end must be HH:MM"),
     ("06:00-06:00", "same time")],
)  # fmt: skip
def test_quiet_hours_refused(text: str, problem: str) -> None:
    with pytest.raises(InvalidSubscription, match=problem):
        QuietHours.parse(text)


def test_pacing_checks_values() -> None:
    assert Pacing.make() == Pacing(60, 1800, None, None)
    assert Pacing.make(quiet="22:00-05:00", max_per_hour=4).describe() == "group 60s/1800s quiet 22:00-05:00 ≤4/h"
    with pytest.raises(InvalidSubscription, match="group_wait_s must be between 0 and 21600"):
        Pacing.make(group_wait_s=-1)
    with pytest.raises(InvalidSubscription, match="max_per_hour must be between 1 and 3600"):
        Pacing.make(max_per_hour=0)


def test_due_times() -> None:
    p = Pacing.make(group_wait_s=60, group_interval_s=1800)
    # a new group waits group_wait after its first notice
    assert p.due_ms(first_pending_ms=1_000, last_sent_ms=None, live=False, urgent=False) == 61_000
    # an update of a live group waits for the interval since its last message
    assert p.due_ms(first_pending_ms=100_000, last_sent_ms=90_000, live=True, urgent=False) == 1_890_000
    # ... unless it escalates to critical
    assert p.due_ms(first_pending_ms=100_000, last_sent_ms=90_000, live=True, urgent=True) == 160_000
    # a group that ended starts afresh
    assert p.due_ms(first_pending_ms=100_000, last_sent_ms=90_000, live=False, urgent=False) == 160_000


def test_rate_block() -> None:
    now = 10 * HOUR_MS
    assert rate_block([], now, None) is None
    assert rate_block([now - 1, now - 2], now, None) is None
    sent = [now - 50 * MINUTE_MS, now - 30 * MINUTE_MS, now - 10 * MINUTE_MS]
    assert rate_block(sent, now, 4) is None
    assert rate_block(sent, now, 3) == now + 10 * MINUTE_MS  # when the oldest leaves the hour
    assert rate_block(sent, now, 2) == now + 30 * MINUTE_MS
    assert rate_block([now - 2 * HOUR_MS, *sent], now, 3) == now + 10 * MINUTE_MS  # older ones do not count


def _item(device: str, notice: Notice, value: float, rank: int = 6, *, place: str = "Gò Công Đông, Tiền Giang") -> Item:
    title = {6: ("mặn vượt 4‰", "salinity above 4 ‰"), 3: ("mặn vượt 1‰", "salinity above 1 ‰")}[rank]
    action = "hết cảnh báo" if notice is Notice.CLEARED else {6: "không lấy nước vào ruộng", 3: "ngưng bơm nước"}[rank]
    return Item(notice=notice, device_id=device, severity=Severity.CRITICAL if rank == 6 else Severity.WARNING,
                rank=rank, place_vi=place, place_en="Go Cong Dong, Tien Giang", value=value,
                value_vi=f"{value:.1f}".replace(".", ","), unit="‰", action=action, title_vi=title[0],
                title_en=title[1], ts_ms=MIDNIGHT_LOCAL + 14 * HOUR_MS)  # fmt: skip


def _fits(vi: str, sms: str, short: str) -> None:
    assert fits_sms(sms), sms
    assert ucs2_length(short) <= SHORT_UCS2_MAX, short


def test_group_names_every_station_and_fits_a_phone() -> None:
    items = [_item(f"tg-sal-{i:04d}", Notice.OPENED, 4.0 + i / 10) for i in range(10)]
    items.append(_item("tg-sal-0003", Notice.CLEARED, 3.4))
    texts = group(items)
    for i in range(10):
        if i != 3:
            assert f"tg-sal-{i:04d} {4 + i / 10:.1f}‰".replace(".", ",") in texts.vi
    assert texts.vi.startswith("Cảnh báo tại 9 trạm ở Gò Công Đông, Tiền Giang: tg-sal-0009 4,9‰")
    assert "Cao nhất: mặn vượt 4‰ – không lấy nước vào ruộng." in texts.vi
    assert "Hết cảnh báo tại 1 trạm: tg-sal-0003 3,4‰." in texts.vi
    assert "at 9 stations in Go Cong Dong, Tien Giang: tg-sal-0009 4.9‰" in texts.en
    assert texts.short == "9 trạm Gò Công Đông, Tiền Giang đến 4,9‰ – không lấy nước vào ruộng"
    assert texts.params == {"place": "Gò Công Đông, Tiền Giang", "value": "4,9", "unit": "‰",
                            "action": "không lấy nước vào ruộng", "time": "14:00 10/03", "stations": "9"}  # fmt: skip
    _fits(texts.vi, texts.sms, texts.short)
    assert "khong lay nuoc vao ruong" in texts.sms


def test_group_all_clear() -> None:
    texts = group([_item("a", Notice.CLEARED, 0.8, rank=3), _item("b", Notice.CLEARED, 0.4, rank=3)])
    assert texts.vi == "Hết cảnh báo: mặn vượt 1‰ tại 2 trạm ở Gò Công Đông, Tiền Giang: a 0,8‰, b 0,4‰."
    assert texts.params["action"] == "hết cảnh báo"
    _fits(texts.vi, texts.sms, texts.short)


def test_deescalated_names_the_level_still_active() -> None:
    now = _item("a", Notice.DEESCALATED, 3.2)
    remaining = _item("a", Notice.OPENED, 1.4, rank=3)
    texts = deescalated(now, remaining)
    assert texts.vi == ("Giảm mức: còn mặn vượt 1‰ tại Gò Công Đông, Tiền Giang, hiện 3,2‰ (lúc 14:00 10/03)"
                        " – ngưng bơm nước.")  # fmt: skip
    assert texts.short == "Giảm còn 3,2‰ tại Gò Công Đông, Tiền Giang – ngưng bơm nước"
    assert texts.params["action"] == "ngưng bơm nước"
    _fits(texts.vi, texts.sms, texts.short)


def test_digest_fits_and_counts() -> None:
    groups = [group([_item(f"d{i}-{k}", Notice.OPENED, 4.5) for k in range(3)]) for i in range(6)]
    texts = digest(groups, held_by="quiet", count=18)
    assert texts.vi.startswith("Trong giờ nghỉ: 18 cảnh báo. ")
    assert all(g.vi in texts.vi for g in groups)
    assert texts.params["count"] == "18"
    _fits(texts.vi, texts.sms, texts.short)
    assert digest(groups[:1], held_by="rate", count=3).en.startswith("Held back by the message limit: 3 alert")
    many = digest([group([_item(f"d{i}-{k}", Notice.OPENED, 4.5) for k in range(3)]) for i in range(40)],
                  held_by="quiet", count=120)  # fmt: skip
    _fits(many.vi, many.sms, many.short)
    assert many.sms.endswith("...")
