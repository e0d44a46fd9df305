"""The engine: every enabled rule of a pack against each batch of readings, vectorised.

State lives in arrays indexed by device, one set per rule (rule × device). A batch is sorted by
(device, time) once per kind; each rule then selects its rows with a boolean mask and runs its
condition with numpy. Python loops run over rules and over the (rare) alert transitions only.

Alert state per (rule, device) is kept here too: one active alert at a time; after a resolve, a
new fire waits ``min_gap`` (flapping suppression) and happens at the first later reading that
still meets the condition.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from rules.conditions import (
    AfterPeakEval,
    ChangeEval,
    Changes,
    Evaluator,
    EventEval,
    NoDataEval,
    Rows,
    SurgeEval,
    ThresholdEval,
    TrendGate,
    WindowEval,
)
from rules.derived import DERIVED, compute
from rules.errors import RulesError
from rules.kernels import Floats, Ints, grow
from rules.messages import render, resolved_text
from rules.model import DeviceInfo, Readings, Severity, State, Transition
from rules.pack import AfterPeak, Change, Event, NoData, Pack, Range, Rule, Surge, Threshold, Window

EVENTS_KEY = "camera_event"
STATUS_KEY = "device_status"
NEVER = np.iinfo(np.int64).min // 2


@dataclass(slots=True)
class _Sorted:
    """One kind's readings sorted by (device, ts), with derived fields computed on demand."""

    device: Ints
    ts: Ints
    fields: dict[str, Floats]

    @classmethod
    def of(cls, cols: Readings) -> _Sorted:
        device = np.asarray(cols.device, dtype=np.int64)
        ts = np.asarray(cols.ts_ms, dtype=np.int64)
        order = np.lexsort((ts, device))
        return cls(device[order], ts[order], {k: np.asarray(v)[order] for k, v in cols.fields.items()})

    def field(self, name: str) -> Floats:
        if name not in self.fields:
            if name not in DERIVED:
                return np.full(len(self.device), np.nan)
            self.fields[name] = compute(name, self.fields)
        return self.fields[name]


def _selector_mask(rule: Rule, devices: Sequence[DeviceInfo]) -> np.ndarray:
    s = rule.select
    return np.array(
        [
            d.kind == rule.kind
            and (not s.province or d.province in s.province)
            and (not s.district or d.district in s.district)
            and (not s.site or d.site in s.site)
            and (not s.crop or d.crop in s.crop)
            and (not s.devices or d.id in s.devices)
            for d in devices
        ],
        dtype=bool,
    )


class _CompiledRule:
    def __init__(self, rule: Rule, devices: Sequence[DeviceInfo], event_classes: Sequence[str], start_ms: int) -> None:
        self.rule = rule
        n = len(devices)
        self.mask = _selector_mask(rule, devices)
        c = rule.condition
        self.field: str = getattr(c, "field", "")
        self.key = EVENTS_KEY if isinstance(c, Event) else rule.kind
        self.last_ts = np.full(n, NEVER, dtype=np.int64)
        self.alert_on = np.zeros(n, dtype=bool)
        self.pending = np.zeros(n, dtype=bool)
        self.last_resolve = np.full(n, NEVER, dtype=np.int64)
        self.gates = [TrendGate(g, n) for g in rule.also]
        self.no_data: NoDataEval | None = None
        self.evaluator: Evaluator
        if isinstance(c, Threshold | Range):
            self.evaluator = ThresholdEval(c, n)
        elif isinstance(c, Window):
            self.evaluator = WindowEval(c, n)
        elif isinstance(c, Change):
            self.evaluator = ChangeEval(c, n)
        elif isinstance(c, Surge):
            self.evaluator = SurgeEval(c, n)
        elif isinstance(c, AfterPeak):
            self.evaluator = AfterPeakEval(c, n)
        elif isinstance(c, NoData):
            self.no_data = NoDataEval(c, n, self.mask, start_ms)
            self.evaluator = self.no_data
        else:
            if c.event not in event_classes:
                raise RulesError(f"rule {rule.id}: unknown camera event {c.event!r}")
            self.evaluator = EventEval(c, n, list(event_classes).index(c.event))

    def set_devices(self, devices: Sequence[DeviceInfo], changed: Ints, now_ms: int) -> None:
        """Grow every per-device array to ``len(devices)``; reselect the ``changed`` devices (new ones included).

        A device the rule no longer selects keeps its alert state; only a fire still held back is dropped.
        """
        n = len(devices)
        self.last_ts, self.last_resolve = grow(self.last_ts, n, NEVER), grow(self.last_resolve, n, NEVER)
        self.alert_on, self.pending = grow(self.alert_on, n, False), grow(self.pending, n, False)
        for gate in self.gates:
            gate.grow(n)
        self.evaluator.grow(n, now_ms)
        was = grow(self.mask, n, False)
        mask = was.copy()
        mask[changed] = _selector_mask(self.rule, [devices[i] for i in changed.tolist()])
        self.pending[was & ~mask] = False  # no held-back fire for a device it left
        self.mask = mask
        if self.no_data is not None:
            self.no_data.select(mask, now_ms)

    def rows(self, batch: Mapping[str, _Sorted]) -> Rows:
        data = batch.get(self.key)
        if isinstance(self.rule.condition, Event):
            return self._event_rows(data, batch.get(self.rule.kind))
        if data is None:
            return Rows(np.empty(0, np.int64), np.empty(0, np.int64), np.empty(0))
        value = data.field(self.field)
        keep = self.mask[data.device] & ~np.isnan(value) & (data.ts > self.last_ts[data.device])
        return Rows(data.device[keep], data.ts[keep], value[keep])

    def _event_rows(self, events: _Sorted | None, heartbeats: _Sorted | None) -> Rows:
        parts = []
        for data, is_event in ((events, True), (heartbeats, False)):
            if data is None:
                continue
            keep = self.mask[data.device]
            n = int(keep.sum())
            code = data.field("event_code")[keep] if is_event else np.full(n, -1.0)
            frames = data.field("frames")[keep] if is_event else np.zeros(n)
            confidence = data.field("confidence")[keep] if is_event else np.zeros(n)
            value = data.field(self.field)[keep] if is_event else np.zeros(n)
            parts.append((data.device[keep], data.ts[keep], value, code, frames, confidence))
        if not parts:
            return Rows(np.empty(0, np.int64), np.empty(0, np.int64), np.empty(0))
        dev, ts, value, code, frames, confidence = (np.concatenate(p) for p in zip(*parts, strict=True))
        order = np.lexsort((ts, dev))
        extra = {"event_code": code[order], "frames": frames[order], "confidence": confidence[order]}
        return Rows(dev[order], ts[order], value[order], extra)

    def evaluate(self, batch: Mapping[str, _Sorted], now_ms: int) -> Changes:
        if self.no_data is not None:
            data = batch.get(self.rule.kind)
            if data is not None:
                self.no_data.seen(np.unique(data.device[self.mask[data.device]]), now_ms)
            status = batch.get(STATUS_KEY)
            if status is not None:
                sel = self.mask[status.device]
                self.no_data.status(status.device[sel], status.field("online")[sel])
        rows = self.rows(batch)
        for gate in self.gates:
            data = batch.get(self.rule.kind)
            if data is not None:
                v = data.field(gate.gate.field)
                ok = self.mask[data.device] & ~np.isnan(v)
                gate.update(data.device[ok], data.ts[ok], v[ok])
        if len(rows):
            np.maximum.at(self.last_ts, rows.device, rows.ts)
        return self.evaluator.changes(rows, now_ms)


class Engine:
    """Evaluates a rule pack over batches of readings; see the module docstring."""

    def __init__(
        self,
        pack: Pack,
        devices: Sequence[DeviceInfo],
        *,
        event_classes: Sequence[str] = (),
        start_ms: int = 0,
    ) -> None:
        self.pack = pack
        self.devices = tuple(devices)
        self._rules = [_CompiledRule(r, self.devices, event_classes, start_ms) for r in pack.rules if r.enabled]

    @property
    def rules(self) -> tuple[Rule, ...]:
        return tuple(r.rule for r in self._rules)

    def evaluate(self, columns: Mapping[str, Readings], *, now_ms: int) -> list[Transition]:
        """Run every rule over one batch; return the alert transitions, oldest first."""
        batch = {k: _Sorted.of(v) for k, v in columns.items() if len(v.device)}
        out: list[Transition] = []
        for compiled in self._rules:
            out.extend(self._alerts(compiled, compiled.evaluate(batch, now_ms)))
        out.sort(key=lambda t: (t.ts_ms, t.rule_id, t.device))
        return out

    def set_devices(self, devices: Sequence[DeviceInfo], *, now_ms: int) -> None:
        """Follow a live registry: ``devices`` is the new full list, in the same order, new ones appended.

        Every rule's per-device state grows; new devices start as in a new engine, except that a
        no-data rule counts their silence from ``now_ms``. Devices whose tags changed are selected
        by the rules that match them now; alert state already held is left as it is.
        """
        new = tuple(devices)
        old = self.devices
        if len(new) < len(old):
            raise RulesError(f"set_devices: {len(new)} devices for {len(old)}; devices are never removed")
        pairs = list(enumerate(zip(old, new[: len(old)], strict=True)))
        moved = next((i for i, (a, b) in pairs if a.id != b.id), None)
        if moved is not None:
            was, now = old[moved].id, new[moved].id
            raise RulesError(f"set_devices: device {moved} was {was!r}, now {now!r}; indexes must not change")
        if len({d.id for d in new}) != len(new):
            raise RulesError("set_devices: duplicate device ids")
        changed = [i for i, (a, b) in pairs if a is not b and a != b]
        changed_or_new = np.array(changed + list(range(len(old), len(new))), dtype=np.int64)
        for compiled in self._rules:
            compiled.set_devices(new, changed_or_new, now_ms)
        self.devices = new

    def restore_active(self, active: Iterable[tuple[str, str]]) -> int:
        """Mark (rule id, device id) alerts that a store still holds as active; returns how many.

        Their conditions count as on, so the next reading past the clear level resolves them.
        """
        rules = {c.rule.id: c for c in self._rules}
        index = {d.id: i for i, d in enumerate(self.devices)}
        restored = 0
        for rule_id, device_id in active:
            c, d = rules.get(rule_id), index.get(device_id)
            if c is None or d is None:
                continue
            c.alert_on[d] = True
            c.evaluator.on[d] = True
            restored += 1
        return restored

    def tick(self, now_ms: int) -> list[Transition]:
        """Time passing without readings (no-data rules)."""
        return self.evaluate({}, now_ms=now_ms)

    def _alerts(self, c: _CompiledRule, ch: Changes) -> list[Transition]:
        rule = c.rule
        gap = rule.min_gap_ms
        out: list[Transition] = []
        gates_ok: dict[int, bool] = {}
        if c.gates and len(ch.device):
            devs = np.unique(ch.device)
            ok = np.ones(len(devs), dtype=bool)
            for g in c.gates:
                ok &= g.passes(devs, c.last_ts[devs])
            gates_ok = dict(zip(devs.tolist(), ok.tolist(), strict=True))
        for d, t, v, on in zip(ch.device.tolist(), ch.ts.tolist(), ch.value.tolist(), ch.on.tolist(), strict=True):
            if on:
                if c.alert_on[d]:
                    continue
                if t - c.last_resolve[d] < gap or not gates_ok.get(d, True):
                    c.pending[d] = True
                    continue
                c.alert_on[d], c.pending[d] = True, False
                out.append(self._transition(rule, d, State.FIRING, t, v))
            else:
                c.pending[d] = False
                if c.alert_on[d]:
                    c.alert_on[d] = False
                    c.last_resolve[d] = t
                    out.append(self._transition(rule, d, State.RESOLVED, t, v))
        # Fires held back by min_gap or a gate: due once the gap has passed and the gate opens.
        if c.pending.any() and len(ch.on_device):
            due = c.pending[ch.on_device] & (ch.on_ts - c.last_resolve[ch.on_device] >= gap)
            if c.gates and due.any():
                for g in c.gates:
                    due &= g.passes(ch.on_device, ch.on_ts)
            for d, t, v in zip(
                ch.on_device[due].tolist(), ch.on_ts[due].tolist(), ch.on_value[due].tolist(), strict=True
            ):
                c.alert_on[d], c.pending[d] = True, False
                out.append(self._transition(rule, d, State.FIRING, t, v))
        return out

    def _transition(self, rule: Rule, d: int, state: State, ts: int, value: float) -> Transition:
        device = self.devices[d]
        severity = rule.severity
        unit_vi = rule.unit_vi or rule.unit
        if state is State.FIRING:
            if rule.critical_above is not None and not math.isnan(value):
                upward = getattr(rule.condition, "op", ">") in (">", ">=")
                beyond = value >= rule.critical_above if upward else value <= rule.critical_above
                if beyond:
                    severity = Severity.CRITICAL
            vi = render(rule.message.vi, device=device, value=value, unit=unit_vi, ts_ms=ts, vietnamese=True)
            en = render(rule.message.en, device=device, value=value, unit=rule.unit, ts_ms=ts, vietnamese=False)
        else:
            title_vi, title_en = (rule.title.vi, rule.title.en) if rule.title else (rule.id, rule.id)
            vi = resolved_text(device, title_vi, value=value, unit=unit_vi, ts_ms=ts, vietnamese=True)
            en = resolved_text(device, title_en, value=value, unit=rule.unit, ts_ms=ts, vietnamese=False)
        return Transition(rule.id, d, device.id, state, ts, value, severity, vi, en)
