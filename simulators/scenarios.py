"""Scripted field scenarios: the situations farmers must hear about, with exact values.

The stochastic model (:mod:`simulators.model`) makes a realistic fleet; these scripts make one
situation happen on cue, so tests and demos can check the exact alerts it raises. Each returns
(device id, channel, reading) tuples in time order, with device timestamps ending at ``end_ms``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final

from contract.fields import Kind
from contract.fleet import Device, Fleet
from contract.topics import Channel
from simulators.signals import ec25_from_salinity

MIN: Final = 60_000
HOUR: Final = 60 * MIN
DAY: Final = 24 * HOUR
LOCAL: Final = 7 * HOUR

Message = tuple[str, Channel, dict[str, Any]]


def scenario_fleet() -> Fleet:
    """One device per scenario, in the places where each situation happens."""

    def dev(id_: str, kind: Kind, province: str, district: str, site: str, crop: str, lat: float, lon: float,
            km: float) -> Device:  # fmt: skip
        return Device(id=id_, kind=kind, province=province, district=district, site=site,
                      crop=crop, lat=lat, lon=lon, km_from_sea=km)  # fmt: skip

    return Fleet(devices=(
        dev("tg-sal-durian", Kind.SALINITY, "tien_giang", "chau_thanh_tg", "river", "durian", 10.38, 106.28, 50),
        dev("st-wq-shrimp", Kind.WATER_QUALITY, "soc_trang", "tran_de", "pond", "shrimp", 9.52, 106.2, 5),
        dev("dt-trap-rice", Kind.LIGHT_TRAP, "dong_thap", "thap_muoi", "field", "rice", 10.55, 105.83, 150),
        dev("bt-cam-market", Kind.CAMERA, "ben_tre", "ba_tri", "market", "none", 10.04, 106.6, 10),
        dev("la-sal-rice", Kind.SALINITY, "long_an", "can_duoc", "canal", "rice", 10.51, 106.6, 25),
    ))  # fmt: skip


def _local_midnight(ts_ms: int) -> int:
    return (ts_ms + LOCAL) // DAY * DAY - LOCAL


def within_one_day(end_ms: int, span_ms: int) -> int:
    """``end_ms``, or the minute before its local midnight when the ``span_ms`` before ``end_ms``
    straddles that midnight. Day-over-day rules (SAL_RISE: today's peak against yesterday's)
    rightly fire on a script split across two days; a test that expects the same alerts at every
    hour plays the script where it lies in one."""
    midnight = _local_midnight(end_ms)
    return end_ms if end_ms - span_ms >= midnight else midnight - MIN


SALINITY_INTRUSION_SPAN_MS: Final = 30 * 10 * MIN


def salinity_intrusion(end_ms: int) -> list[Message]:
    """A spring-tide salt front reaches a durian orchard's river for about two hours, then ebbs.

    Every 10 minutes over 5 hours: 0.30 ‰ rising to a 1.32 ‰ peak and back to 0.25 ‰.
    """
    values = [0.30, 0.34, 0.39, 0.44, 0.52, 0.61, 0.72, 0.85, 0.97, 1.08, 1.19, 1.28, 1.32, 1.27, 1.14,
              0.98, 0.86, 0.74, 0.63, 0.52, 0.44, 0.38, 0.33, 0.30, 0.28, 0.27, 0.26, 0.25, 0.25, 0.25]  # fmt: skip
    start = end_ms - SALINITY_INTRUSION_SPAN_MS
    return [
        (
            "tg-sal-durian",
            Channel.TELEMETRY,
            {
                "ts": start + i * 10 * MIN,
                "seq": i,
                "salinity_ppt": v,
                "ec_us_cm": round(float(ec25_from_salinity(v)), 1),
                "temp_c": 29.5,
                "battery_v": 12.6,
            },
        )
        for i, v in enumerate(values)
    ]


def shrimp_dawn_oxygen_crash(end_ms: int) -> list[Message]:
    """A shrimp pond's oxygen sinks through the night to 2.4 mg/L at dawn, then the sun brings it back.

    Every 15 minutes from 01:00 to 09:45 local time on the day of ``end_ms`` (or the day before).
    """
    values = [5.2, 5.0, 4.9, 4.7, 4.6, 4.4, 4.3, 4.1, 4.0, 3.9, 3.8, 3.6, 3.4, 3.2, 3.0, 2.9, 2.7, 2.6,
              2.5, 2.4, 2.5, 2.7, 3.0, 3.4, 3.9, 4.4, 4.9, 5.4, 5.9, 6.3, 6.7, 7.0, 7.2, 7.4, 7.5, 7.6]  # fmt: skip
    day = _local_midnight(end_ms)
    if day + HOUR + len(values) * 15 * MIN > end_ms:
        day -= DAY
    start = day + HOUR
    return [
        (
            "st-wq-shrimp",
            Channel.TELEMETRY,
            {
                "ts": start + i * 15 * MIN,
                "seq": i,
                "do_mg_l": v,
                "ph": 7.8,
                "temp_c": 28.4,
                "nh4_mg_l": 0.1,
                "salinity_ppt": 15.0,
                "battery_v": 12.4,
            },
        )
        for i, v in enumerate(values)
    ]


def planthopper_migration(end_ms: int) -> list[Message]:
    """Fourteen nights of brown planthopper totals at a rice-field light trap: a migration wave
    peaks at 1,240 a night, then falls away — the window for escape sowing (gieo sạ né rầy)."""
    nights = [30, 45, 38, 52, 41, 36, 48, 260, 1240, 980, 420, 180, 90, 60]
    last_dawn = _local_midnight(end_ms) + 6 * HOUR
    if last_dawn > end_ms:
        last_dawn -= DAY
    first = last_dawn - (len(nights) - 1) * DAY
    return [
        (
            "dt-trap-rice",
            Channel.TELEMETRY,
            {
                "ts": first + i * DAY,
                "seq": i,
                "bph_night": n,
                "wbph_night": n // 10,
                "glh_night": 5,
                "leaffolder_night": 3,
                "stemborer_night": 2,
                "interval_s": 3600,
                "lamp_on": 0,
                "battery_v": 12.8,
            },
        )
        for i, n in enumerate(nights)
    ]


def market_smoke(end_ms: int) -> list[Message]:
    """A market camera sees smoke for a few minutes; its heartbeats go on for an hour."""
    start = end_ms - HOUR
    out: list[Message] = [
        ("bt-cam-market", Channel.TELEMETRY, {"ts": start + i * 5 * MIN, "seq": 2 * i, "video_ok": 1, "fps": 12.0})
        for i in range(13)
    ]
    for k, (minute, conf, frames) in enumerate([(11, 0.62, 1), (12, 0.93, 3), (14, 0.97, 8)]):
        out.append(("bt-cam-market", Channel.EVENT, {
            "ts": start + minute * MIN, "seq": 2 * k + 1, "event": "smoke_fire", "confidence": conf,
            "frames": frames, "image_url": f"https://cam.example.invalid/bt-cam-market/{minute}.jpg",
        }))  # fmt: skip
    out.sort(key=lambda m: int(m[2]["ts"]))
    return out


def quiet_rice_canal(end_ms: int) -> list[Message]:
    """A rice-canal salinity station reporting fresh water before it goes offline (its will)."""
    return [
        ("la-sal-rice", Channel.TELEMETRY, {"ts": end_ms - (6 - i) * 10 * MIN, "seq": i, "salinity_ppt": 0.21,
                                            "ec_us_cm": 430.0, "battery_v": 3.4})
        for i in range(6)
    ]  # fmt: skip


SCENARIOS: Final[dict[str, Callable[[int], list[Message]]]] = {
    "salinity_intrusion": salinity_intrusion,
    "shrimp_dawn_oxygen_crash": shrimp_dawn_oxygen_crash,
    "planthopper_migration": planthopper_migration,
    "market_smoke": market_smoke,
    "quiet_rice_canal": quiet_rice_canal,
}

CUES: Final[dict[str, int]] = {
    "salinity_intrusion": 5,  # 0.61 ‰, the second reading above 0.5 ‰ and 250 mg/L chloride
    "shrimp_dawn_oxygen_crash": 10,  # 3.8 mg/L, the second reading below 4
    "planthopper_migration": 7,  # 260 a night, over three times the week's median
    "market_smoke": 4,  # smoke seen in 3 frames at 0.93
    "quiet_rice_canal": 5,  # its last reading: then it goes silent (its will, in the demo)
}
"""Each scenario's cue: the index of the message at which its first alert fires (for the silent
station, its last reading). ``tests/unit/test_scenario_cues.py`` checks them with the rule engine."""


def cued(name: str, cue_ms: int) -> list[Message]:
    """Scenario ``name`` shifted so that its cue happens at ``cue_ms``: played at ``cue_ms = now``,
    the messages before the cue are recent history and those after it lie ahead — what a demo plays
    live, so the situation's first alert reaches the farmer as it happens."""
    messages = SCENARIOS[name](cue_ms)
    shift = cue_ms - int(messages[CUES[name]][2]["ts"])
    return [(device, channel, {**reading, "ts": int(reading["ts"]) + shift}) for device, channel, reading in messages]


# --- Situations that measure what farmers hear (alerts.notify): a ladder at one station, a front ---


def ladder_fleet() -> Fleet:
    """A rice-canal salinity station, and ten river stations of one coastal district."""
    rice = Device(id="la-sal-canal", kind=Kind.SALINITY, province="long_an", district="can_duoc", site="canal",
                  crop="rice", lat=10.52, lon=106.61, km_from_sea=25)  # fmt: skip
    front = tuple(
        Device(
            id=f"tg-sal-front{k:02d}",
            kind=Kind.SALINITY,
            province="tien_giang",
            district="go_cong_dong",
            site="river",
            crop="rice" if k % 2 == 0 else "fruit",
            lat=10.36 + k * 0.01,
            lon=106.70 - k * 0.01,
            km_from_sea=5 + 2 * k,
        )
        for k in range(10)
    )
    return Fleet(devices=(rice, *front))


def _salinity(device_id: str, ts: int, seq: int, value: float) -> Message:
    ec = round(float(ec25_from_salinity(value)), 1)
    reading = {"ts": ts, "seq": seq, "salinity_ppt": value, "ec_us_cm": ec, "battery_v": 12.6}
    return device_id, Channel.TELEMETRY, reading


def rice_salt_intrusion(end_ms: int) -> list[Message]:
    """A spring tide pushes the salt front into a rice canal: fresh water, then 3.9–4.6 ‰ for an hour
    and a half (the whole ladder, from drinking water to 4 ‰), then the ebb. Every 15 minutes."""
    values = [0.30, 0.30, 0.31, 0.30, 3.9, 4.4, 4.6, 4.5, 4.2, 3.9, 2.1, 0.6, 0.3, 0.3, 0.3]
    start = end_ms - (len(values) - 1) * 15 * MIN
    return [_salinity("la-sal-canal", start + i * 15 * MIN, i, v) for i, v in enumerate(values)]


def district_salt_front(end_ms: int) -> list[Message]:
    """A salt front moves up a river of Gò Công Đông: ten stations, one every six minutes, reach
    1.4 ‰ (an hour for all ten), stay salty three hours, and freshen in the same order. Every 10 minutes."""
    steps = 5 * 60 // 10 + 1
    start = end_ms - (steps - 1) * 10 * MIN
    out: list[Message] = []
    for i in range(steps):
        minute = i * 10
        for k in range(10):
            arrived = k * 6 <= minute < k * 6 + 180
            out.append(_salinity(f"tg-sal-front{k:02d}", start + minute * MIN, i, 1.4 if arrived else 0.3))
    return out


LADDER_SITUATIONS: Final[dict[str, Callable[[int], list[Message]]]] = {
    "rice_salt_intrusion": rice_salt_intrusion,
    "district_salt_front": district_salt_front,
}
"""Situations on :func:`ladder_fleet` whose messages per subscriber ``bench/alert_messages.py`` counts."""
