"""Replay stored readings from InfluxDB through a rule pack: what would have fired, how often.

Readings are read back with InfluxQL (``/query``: InfluxDB 1.x natively, 2.x/3.x through the v1
API) one time slice at a time, turned into the same columns ingest hands the engine live, and
evaluated in time order. No-data rules see the slice end as "now".
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import numpy as np

from contract.fields import CAMERA_EVENTS, Kind
from contract.fleet import Fleet
from ingest.batch import EVENTS, Columns
from ingest.devices import device_infos
from rules.engine import Engine
from rules.model import State, Transition
from rules.pack import Pack
from storage.influxql import query
from storage.layout import DEVICE_ID, DEVICE_TAGS, EVENT, KIND_MEASUREMENTS, STATUS_MEASUREMENT, STATUS_ONLINE

SLICE_MS = 3_600_000
_SKIP = {"time", *DEVICE_TAGS, EVENT, "seq", "image_url"}


@dataclass
class BacktestReport:
    """What a pack would have done over a time range."""

    readings: int = 0
    transitions: list[Transition] = field(default_factory=list)

    def fired(self) -> Counter[tuple[str, str]]:
        """Firings per (rule, device)."""
        return Counter((t.rule_id, t.device_id) for t in self.transitions if t.state is State.FIRING)

    def summary(self) -> dict[str, Any]:
        per_rule: Counter[str] = Counter()
        devices: dict[str, set[str]] = {}
        for (rule, device), n in self.fired().items():
            per_rule[rule] += n
            devices.setdefault(rule, set()).add(device)
        return {
            "readings": self.readings,
            "firings": sum(per_rule.values()),
            "rules": {
                r: {"firings": n, "devices": len(devices[r]), "top_devices": self._top(r)}
                for r, n in per_rule.most_common()
            },
        }

    def _top(self, rule: str) -> list[list[Any]]:
        counts = Counter({d: n for (r, d), n in self.fired().items() if r == rule})
        return [[d, n] for d, n in counts.most_common(5)]


def _columns(series: list[dict[str, Any]], index: dict[str, int], events: bool) -> Columns | None:
    rows: list[dict[str, Any]] = []
    for s in series:
        cols = s["columns"]
        rows.extend(dict(zip(cols, values, strict=True)) for values in s["values"])
    rows = [r for r in rows if r.get(DEVICE_ID) in index and (r.get(EVENT) is not None) == events]
    if not rows:
        return None
    names = sorted({k for r in rows for k, v in r.items() if k not in _SKIP and isinstance(v, int | float)})
    fields = {
        n: np.array([r.get(n) if r.get(n) is not None else np.nan for r in rows], dtype=np.float64) for n in names
    }
    if events:
        codes = {e: i for i, e in enumerate(CAMERA_EVENTS)}
        fields["event_code"] = np.array([codes.get(r[EVENT], -1) for r in rows], dtype=np.float64)
    return Columns(
        np.array([index[r[DEVICE_ID]] for r in rows], dtype=np.int32),
        np.array([r["time"] for r in rows], dtype=np.int64),
        np.zeros(len(rows), dtype=np.int64),
        fields,
    )


def read_slices(
    url: str, db: str, fleet: Fleet, start_ms: int, end_ms: int
) -> Iterator[tuple[int, dict[str, Columns]]]:
    """(slice end, columns by kind) for each hour of stored readings in [start, end)."""
    index = {d.id: i for i, d in enumerate(fleet.devices)}
    with httpx.Client(base_url=url, timeout=60) as client:
        t = start_ms
        while t < end_ms:
            stop = min(t + SLICE_MS, end_ms)
            where = f"time >= {t}ms AND time < {stop}ms"
            batch: dict[str, Columns] = {}
            for kind, measurement in KIND_MEASUREMENTS.items():
                series = query(client, f'SELECT * FROM "{measurement}" WHERE {where}', db=db)
                telemetry = _columns(series, index, events=False)
                if telemetry is not None:
                    batch[kind.value] = telemetry
                if kind is Kind.CAMERA:
                    ev = _columns(series, index, events=True)
                    if ev is not None:
                        batch[EVENTS] = ev
            status_series = query(client, f'SELECT "{STATUS_ONLINE}" FROM "{STATUS_MEASUREMENT}" WHERE {where}', db=db)
            status = _columns(status_series, index, False)
            if status is not None:
                batch[STATUS_MEASUREMENT] = status
            yield stop, batch
            t = stop


def backtest(pack: Pack, fleet: Fleet, *, url: str, db: str, start_ms: int, end_ms: int) -> BacktestReport:
    """Evaluate ``pack`` over the readings stored in [start, end)."""
    engine = Engine(pack, device_infos(fleet), event_classes=CAMERA_EVENTS, start_ms=start_ms)
    report = BacktestReport()
    for slice_end, batch in read_slices(url, db, fleet, start_ms, end_ms):
        report.readings += sum(len(c.device) for k, c in batch.items() if k != STATUS_MEASUREMENT)
        report.transitions.extend(engine.evaluate(batch, now_ms=slice_end))
    return report
