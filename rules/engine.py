"""The engine: every enabled rule of a pack against each batch of readings, vectorised.

State lives in arrays, one set per rule, with one slot per device the rule selects (rule × selected
device): rules sharing a selector (kind and tags) share the map from the engine's device indexes to
their slots. A batch is sorted by (device, time) once per kind; each selector picks its rows once,
and each rule runs its condition on them with numpy. Python loops run over rules and over the
(rare) alert transitions only. Transitions name devices by the engine's index; their texts are
rendered when first read (by whoever records or sends them), not here.

Alert state per (rule, device) is kept here too: one active alert at a time; after a resolve, a
new fire waits ``min_gap`` (flapping suppression) and happens at the first later reading that
still meets the condition.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from operator import attrgetter

import numpy as np
import numpy.typing as npt

from rules.conditions import (
    AfterPeakEval,
    ChangeEval,
    Changes,
    Evaluator,
    EventEval,
    Groups,
    NoDataEval,
    Rows,
    SurgeEval,
    ThresholdEval,
    TrendGate,
    WindowEval,
)
from rules.derived import DERIVED, compute
from rules.errors import RulesError
from rules.kernels import Bools, Floats, Ints, group_firsts, grow
from rules.messages import alert_texts
from rules.model import DeviceInfo, Readings, Severity, State, Transition
from rules.pack import AfterPeak, Change, Event, NoData, Pack, Range, Rule, Selector, Surge, Threshold, Window
from storage.layout import STATUS_MEASUREMENT, STATUS_ONLINE

EVENTS_KEY = "camera_event"
"""The ``action`` parameter of an all-clear's template message."""
NEVER = np.iinfo(np.int64).min // 2


@dataclass(slots=True)
class _Picked:
    """The rows of one kind's batch that a selection takes, with their devices' slots."""

    rows: Ints
    """Their positions in the batch as given, where their fields are: each field is gathered once, right there."""
    slot: Ints
    ts: Ints
    groups: Groups
    """Each device's run of rows (contiguous, in time order), by slot."""
    values: dict[str, Floats] = dataclasses.field(default_factory=dict)
    nan: dict[str, bool] = dataclasses.field(default_factory=dict)

    def has_nan(self, name: str, values: Floats) -> bool:
        """Whether ``values`` (field ``name`` on these rows) misses a value on any row."""
        nan = self.nan.get(name)
        if nan is None:
            nan = self.nan[name] = bool(np.isnan(values).any())
        return nan


@dataclass(slots=True)
class _Sorted:
    """One kind's readings sorted by (device, ts); fields gathered, and derived ones computed, on demand."""

    ts: Ints
    order: Ints
    raw: Mapping[str, Floats]
    starts: Ints
    """Where each device's run of rows starts; ``sizes`` its rows, ``devices`` its device."""
    sizes: Ints
    devices: Ints
    shared: Collection[str]
    """The derived fields several selections read: computed once on every row, not on each selection's."""
    derived: dict[str, Floats] = dataclasses.field(default_factory=dict)
    """The ``shared`` ones computed, in the batch's order."""
    picked: dict[_Selection, _Picked] = dataclasses.field(default_factory=dict)

    @classmethod
    def of(cls, cols: Readings, n_devices: int, shared: Collection[str]) -> _Sorted:
        """``cols`` sorted; their device indexes are below ``n_devices``."""
        unsorted, ts = np.asarray(cols.device), np.asarray(cols.ts_ms, dtype=np.int64)
        order = _order(unsorted, ts, n_devices)
        device = unsorted[order]
        ts = ts[order]
        starts = np.flatnonzero(group_firsts(device))
        sizes = np.diff(starts, append=len(device))
        return cls(ts, order, cols.fields, starts, sizes, device[starts].astype(np.int64), shared)

    def pick(self, sel: _Selection) -> _Picked:
        """The rows of devices ``sel`` selects now (computed once per batch and selection)."""
        p = self.picked.get(sel)
        if p is None:
            taken = sel.mask[self.devices]  # by device run: the rows follow
            if taken.all():  # views, no copies
                starts, sizes, devices, rows, ts = self.starts, self.sizes, self.devices, self.order, self.ts
            else:
                runs = np.flatnonzero(taken)
                sizes, devices = self.sizes[runs], self.devices[runs]
                starts = np.cumsum(sizes) - sizes  # where the runs start among the rows taken
                by_row = np.repeat(taken, self.sizes)
                rows, ts = self.order[by_row], self.ts[by_row]
            n = len(ts)
            head = sel.local[devices].astype(np.int64)
            lasts = starts + sizes - 1
            first, last = np.zeros(n, dtype=bool), np.zeros(n, dtype=bool)
            first[starts], last[lasts] = True, True
            groups = Groups(first, last, starts, lasts, head, ts[starts], ts[lasts])
            p = self.picked[sel] = _Picked(rows, np.repeat(head, sizes), ts, groups)
        return p

    def values(self, p: _Picked, name: str) -> Floats:
        """Field ``name`` on the rows ``p`` picked (one gather per batch, selection and field); NaN if none.

        A derived field is computed on those rows alone (row by row, so the same values), unless it is
        ``shared``.
        """
        v = p.values.get(name)
        if v is None:
            raw = self.raw.get(name)
            if raw is not None:
                v = np.asarray(raw)[p.rows]
            elif name not in DERIVED or not any(f in self.raw for f in DERIVED[name].inputs):
                v = np.full(len(p.ts), np.nan)  # a batch without its inputs has no rows to compute it on
            elif name in self.shared:
                every = self.derived.get(name)
                if every is None:
                    every = self.derived[name] = compute(name, self.raw)
                v = every[p.rows]
            else:
                v = compute(name, {f: self.values(p, f) for f in DERIVED[name].inputs if f in self.raw})
            p.values[name] = v
        return v


def _order(device: npt.NDArray[np.integer], ts: Ints, n_devices: int) -> Ints:
    """``np.lexsort((ts, device))``: stable sorts by time then device, radix on small device indexes."""
    n = len(ts)
    by_ts = None if n < 2 or bool(np.all(ts[1:] >= ts[:-1])) else np.argsort(ts, kind="stable")
    dev = device if by_ts is None else device[by_ts]
    if n_devices <= np.iinfo(np.uint16).max + 1:
        dev = dev.astype(np.uint16)  # numpy sorts 16-bit keys stably by radix
    order: Ints = np.argsort(dev, kind="stable")
    return order if by_ts is None else by_ts[order]


TAGS = ("kind", "province", "district", "site", "crop")


class _Tags:
    """The devices' selector tags as integer codes (one array per tag), to select with numpy."""

    def __init__(self) -> None:
        self.tables: dict[str, dict[str, int]] = {t: {} for t in TAGS}
        self.codes: dict[str, npt.NDArray[np.int32]] = {t: np.empty(0, np.int32) for t in TAGS}

    def update(self, devices: Sequence[DeviceInfo], idx: Ints) -> None:
        """Code the tags of ``devices[idx]``; the arrays grow to ``len(devices)`` (new devices must be in ``idx``)."""
        chosen = [devices[i] for i in idx.tolist()]
        for tag in TAGS:
            table = self.tables[tag]
            codes = grow(self.codes[tag], len(devices), -1)
            values = map(attrgetter(tag), chosen)
            codes[idx] = np.fromiter((table.setdefault(v, len(table)) for v in values), np.int32, len(chosen))
            self.codes[tag] = codes

    def select(self, kind: str, s: Selector, devices: Sequence[DeviceInfo], idx: Ints | None = None) -> Bools:
        """Which devices (all, or those of ``idx``) are of ``kind`` and match every tag ``s`` lists."""

        def matches(tag: str, values: Iterable[str]) -> Bools:
            codes = self.codes[tag] if idx is None else self.codes[tag][idx]
            table = self.tables[tag]
            return np.isin(codes, np.array([table[v] for v in values if v in table], np.int32))

        mask = matches("kind", (kind,))
        for tag in TAGS[1:]:
            values = getattr(s, tag)
            if values:
                mask &= matches(tag, values)
        if s.devices:  # a short list of ids; only rules that name devices look at them
            ids = set(s.devices)
            chosen = devices if idx is None else [devices[i] for i in idx.tolist()]
            mask &= np.fromiter((d.id in ids for d in chosen), bool, len(mask))
        return mask


class _Selection:
    """The devices one selector (kind and tags) takes, and the state slots of the rules sharing it.

    Slot ``k`` of every such rule's arrays is device ``members[k]``; ``local[device]`` is its slot,
    -1 for none. A device gets a slot when first selected and keeps it: one that leaves the selection
    keeps its state (``mask`` leaves it out), and finds it again if it comes back.
    """

    def __init__(self, kind: str, select: Selector, mask: Bools) -> None:
        self.kind, self.select = kind, select
        self.mask = mask
        self.members: Ints = np.flatnonzero(mask).astype(np.int64)
        self.local = np.full(len(mask), -1, dtype=np.int32)
        self.local[self.members] = np.arange(len(self.members), dtype=np.int32)
        self.rules: list[_CompiledRule] = []

    def add(self, devices: Ints, now_ms: int) -> None:
        """Give slots to those of ``devices`` (distinct, ascending) without one; grow the rules' state."""
        new = devices[self.local[devices] < 0]
        if not len(new):
            return
        m = len(self.members)
        self.local[new] = np.arange(m, m + len(new), dtype=np.int32)
        self.members = np.concatenate([self.members, new])
        for r in self.rules:
            r.resize(len(self.members), now_ms)

    def slot(self, device: int, now_ms: int) -> int:
        """The device's slot, given now if it has none."""
        self.add(np.array([device], dtype=np.int64), now_ms)
        return int(self.local[device])

    def set_devices(self, devices: Sequence[DeviceInfo], tags: _Tags, changed: Ints, now_ms: int) -> None:
        """Grow to ``len(devices)``; reselect the ``changed`` devices (new ones included).

        Newly selected devices without a slot get one; see :meth:`Engine.set_devices`.
        """
        n = len(devices)
        self.local, self.mask = grow(self.local, n, -1), grow(self.mask, n, False)
        now = tags.select(self.kind, self.select, devices, changed)
        was = self.mask[changed]
        self.add(changed[now], now_ms)
        self.mask[changed] = now
        left = self.local[changed[was & ~now]].astype(np.int64)
        selected = self.mask[self.members]
        for r in self.rules:
            r.reselect(left, selected, now_ms)


_Names = tuple[str, int, str, str, bool]


def _names(rule: Rule) -> _Names:
    """A rule's transitions' family, rank and titles; and whether its danger lies above its level."""
    title_vi, title_en = (rule.title.vi, rule.title.en) if rule.title else (rule.id, rule.id)
    return rule.family or "", rule.rank, title_vi, title_en, getattr(rule.condition, "op", ">") in (">", ">=")


def _transitions(
    rule: Rule, names: _Names, events: Iterable[tuple[State, int, int, float]], devices: Sequence[DeviceInfo]
) -> list[Transition]:
    """``rule``'s transitions of (state, engine device, time, value) ``events``; their texts are rendered when
    first read (:func:`~rules.messages.alert_texts`)."""
    rule_id, usual, critical = rule.id, rule.severity, rule.critical_above
    family, rank, title_vi, title_en, upward = names
    deferred = Transition.deferred
    out: list[Transition] = []
    for state, g, ts, value in events:
        beyond = (
            critical is not None and state is State.FIRING and not math.isnan(value)
            and (value >= critical if upward else value <= critical)
        )  # fmt: skip
        device = devices[g]
        fields = (rule_id, g, device.id, state, ts, value, Severity.CRITICAL if beyond else usual,
                  family, rank, title_vi, title_en)  # fmt: skip
        out.append(deferred(fields, alert_texts, (rule, device, state, ts, value)))
    return out


class _CompiledRule:
    """A rule and its state: every per-device array has one slot per device of its selection."""

    def __init__(self, rule: Rule, sel: _Selection, event_classes: Sequence[str], start_ms: int) -> None:
        self.rule = rule
        self.sel = sel
        n = len(sel.members)
        c = rule.condition
        self.field: str = getattr(c, "field", "")
        self.key = EVENTS_KEY if isinstance(c, Event) else rule.kind
        self.names = _names(rule)
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
            self.no_data = NoDataEval(c, n, np.ones(n, dtype=bool), start_ms)
            self.evaluator = self.no_data
        else:
            if c.event not in event_classes:
                raise RulesError(f"rule {rule.id}: unknown camera event {c.event!r}")
            self.evaluator = EventEval(c, n, list(event_classes).index(c.event))
        sel.rules.append(self)

    def reads(self) -> Iterator[tuple[str, str]]:
        """The (kind, field) of each reading field the rule reads."""
        if self.no_data is None:
            yield self.key, self.field
        for gate in self.gates:
            yield self.rule.kind, gate.gate.field

    @property
    def members(self) -> Ints:
        """The engine's device index of each slot."""
        return self.sel.members

    @property
    def local(self) -> npt.NDArray[np.int32]:
        """Each engine device's slot, -1 for none."""
        return self.sel.local

    def resize(self, n: int, now_ms: int) -> None:
        """Grow every per-slot array to ``n`` slots; the new ones start as at construction, unselected."""
        self.last_ts, self.last_resolve = grow(self.last_ts, n, NEVER), grow(self.last_resolve, n, NEVER)
        self.alert_on, self.pending = grow(self.alert_on, n, False), grow(self.pending, n, False)
        for gate in self.gates:
            gate.grow(n)
        self.evaluator.grow(n, now_ms)

    def reselect(self, left: Ints, selected: Bools, now_ms: int) -> None:
        """The selection changed: ``left`` are the slots of devices it lost, ``selected`` the slots it holds now.

        A device the rule no longer selects keeps its alert state; only a fire still held back is dropped.
        """
        self.pending[left] = False
        if self.no_data is not None:
            self.no_data.select(selected, now_ms)

    def rows(self, batch: Mapping[str, _Sorted]) -> Rows:
        data = batch.get(self.key)
        if isinstance(self.rule.condition, Event):
            return self._event_rows(data, batch.get(self.rule.kind))
        if data is None or self.no_data is not None:  # (silence reads no field: no rows)
            return Rows(np.empty(0, np.int64), np.empty(0, np.int64), np.empty(0))
        p = data.pick(self.sel)
        value = data.values(p, self.field)
        g = p.groups
        if not p.has_nan(self.field, value) and bool(np.all(g.head_ts > self.last_ts[g.head])):
            # Every row counts (none missing; each device's oldest is newer than the rule has seen): views.
            return Rows(p.slot, p.ts, value, groups=g)
        keep = ~np.isnan(value) & (p.ts > self.last_ts[p.slot])
        return Rows(p.slot[keep], p.ts[keep], value[keep])

    def _event_rows(self, events: _Sorted | None, heartbeats: _Sorted | None) -> Rows:
        """The camera's events as rows; its heartbeats (which only move its clock on) as each device's newest."""
        seen = None
        if heartbeats is not None:
            h = heartbeats.pick(self.sel)
            seen = (h.groups.head, h.groups.tail_ts)
        if events is None:
            return Rows(np.empty(0, np.int64), np.empty(0, np.int64), np.empty(0), seen=seen)
        p = events.pick(self.sel)
        extra = {k: events.values(p, k) for k in ("event_code", "frames", "confidence")}
        return Rows(p.slot, p.ts, events.values(p, self.field), extra, groups=p.groups, seen=seen)

    def evaluate(self, batch: Mapping[str, _Sorted], now_ms: int) -> Changes:
        """The condition changes of one batch, by slot."""
        if self.no_data is not None:
            data = batch.get(self.rule.kind)
            if data is not None:
                p = data.pick(self.sel)
                self.no_data.seen(p.groups.head, now_ms)  # a device's rows are contiguous: one each
            status = batch.get(STATUS_MEASUREMENT)
            if status is not None:
                p = status.pick(self.sel)
                self.no_data.status(p.slot, status.values(p, STATUS_ONLINE))
        rows = self.rows(batch)
        for gate in self.gates:
            data = batch.get(self.rule.kind)
            if data is not None:
                p = data.pick(self.sel)
                v = data.values(p, gate.gate.field)
                if p.has_nan(gate.gate.field, v):
                    ok = ~np.isnan(v)
                    gate.update(p.slot[ok], p.ts[ok], v[ok])
                else:
                    gate.update(p.slot, p.ts, v)
        if len(rows):  # each device's rows are contiguous and in time order: its newest is its last
            g = rows.groups()
            self.last_ts[g.head] = np.maximum(self.last_ts[g.head], g.tail_ts)
        if rows.seen is not None:
            d, newest = rows.seen
            self.last_ts[d] = np.maximum(self.last_ts[d], newest)
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
        self._start_ms = start_ms
        self._tags = _Tags()
        self._tags.update(self.devices, np.arange(len(self.devices), dtype=np.int64))
        selections: dict[tuple[object, ...], _Selection] = {}
        self._rules: list[_CompiledRule] = []
        for r in pack.rules:
            if not r.enabled:
                continue
            key = (r.kind, *(getattr(r.select, t) for t in (*TAGS[1:], "devices")))
            sel = selections.get(key)
            if sel is None:
                sel = selections[key] = _Selection(r.kind, r.select, self._tags.select(r.kind, r.select, self.devices))
            self._rules.append(_CompiledRule(r, sel, event_classes, start_ms))
        self._selections = list(selections.values())
        # A derived field several selections read is computed once per batch on every row (_Sorted.values).
        readers: dict[tuple[str, str], set[_Selection]] = {}
        for c in self._rules:
            for kind, name in c.reads():
                if name in DERIVED:
                    readers.setdefault((kind, name), set()).add(c.sel)
        self._shared: dict[str, set[str]] = {}
        for (kind, name), sels in readers.items():
            if len(sels) > 1:
                self._shared.setdefault(kind, set()).add(name)

    @property
    def rules(self) -> tuple[Rule, ...]:
        return tuple(r.rule for r in self._rules)

    def evaluate(self, columns: Mapping[str, Readings], *, now_ms: int) -> list[Transition]:
        """Run every rule over one batch; return the alert transitions, oldest first.

        ``columns`` holds readings by kind (:class:`~contract.fields.Kind` value), camera events under
        :data:`EVENTS_KEY` and status reports (field ``online``) under their measurement's name,
        :data:`~storage.layout.STATUS_MEASUREMENT`.
        """
        n = len(self.devices)
        batch = {k: _Sorted.of(v, n, self._shared.get(k, ())) for k, v in columns.items() if len(v.device)}
        out: list[Transition] = []
        for compiled in self._rules:
            out.extend(self._alerts(compiled, compiled.evaluate(batch, now_ms)))
        out.sort(key=Transition.order)
        return out

    def set_devices(self, devices: Sequence[DeviceInfo], *, now_ms: int) -> None:
        """Follow a live registry: ``devices`` is the new full list, in the same order, new ones appended.

        A rule's state grows by a slot for each device it newly selects; those start as in a new
        engine, except that a no-data rule counts their silence from ``now_ms``. Devices whose tags
        changed are selected by the rules that match them now; a device a rule no longer selects
        keeps its slot and alert state, and finds them again if it is selected once more.
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
        self._tags.update(new, changed_or_new)
        for sel in self._selections:
            sel.set_devices(new, self._tags, changed_or_new, now_ms)
        self.devices = new

    def restore_active(self, active: Iterable[tuple[str, str]]) -> int:
        """Mark (rule id, device id) alerts that a store still holds as active; returns how many.

        Their conditions count as on, so the next reading past the clear level resolves them; a camera
        event's episode counts as seen at the engine's start, so it ends ``resolve_after`` later unless
        the camera sees it again.
        """
        rules = {c.rule.id: c for c in self._rules}
        index = {d.id: i for i, d in enumerate(self.devices)}
        restored = 0
        for rule_id, device_id in active:
            c, d = rules.get(rule_id), index.get(device_id)
            if c is None or d is None:
                continue
            slot = c.sel.slot(d, self._start_ms)  # a device the rule does not select now gets one too
            c.alert_on[slot] = True
            c.evaluator.on[slot] = True
            if isinstance(c.evaluator, EventEval):  # its episode counts as seen at the restart
                c.evaluator.last_match[slot] = c.evaluator.episode_start[slot] = self._start_ms
            restored += 1
        return restored

    def tick(self, now_ms: int) -> list[Transition]:
        """Time passing without readings (no-data rules)."""
        return self.evaluate({}, now_ms=now_ms)

    def _alerts(self, c: _CompiledRule, ch: Changes) -> list[Transition]:
        """Alert transitions from one rule's condition changes (``d``: a slot; ``g``: its engine device)."""
        if not len(ch.device) and not len(ch.on_device):
            return []
        gap = c.rule.min_gap_ms
        members = c.members
        events: list[tuple[State, int, int, float]] = []
        gates_ok: dict[int, bool] = {}
        if c.gates and len(ch.device):
            devs = np.unique(ch.device)
            ok = np.ones(len(devs), dtype=bool)
            for g in c.gates:
                ok &= g.passes(devs, c.last_ts[devs])
            gates_ok = dict(zip(devs.tolist(), ok.tolist(), strict=True))
        if len(ch.device):  # few, as a rule: their state read and written in place
            alert_on, pending, last_resolve = c.alert_on, c.pending, c.last_resolve
            add = events.append
            changes = zip(
                ch.device.tolist(), members[ch.device].tolist(), ch.ts.tolist(), ch.value.tolist(), ch.on.tolist(),
                strict=True,
            )  # fmt: skip
            for d, g, t, v, on in changes:
                if on:
                    if alert_on[d]:
                        continue
                    if t - last_resolve[d] < gap or not gates_ok.get(d, True):
                        pending[d] = True
                        continue
                    alert_on[d], pending[d] = True, False
                    add((State.FIRING, g, t, v))
                else:
                    pending[d] = False
                    if alert_on[d]:
                        alert_on[d] = False
                        last_resolve[d] = t
                        add((State.RESOLVED, g, t, v))
        # Fires held back by min_gap or a gate: due once the gap has passed and the gate opens.
        if c.pending.any() and len(ch.on_device):
            due = c.pending[ch.on_device] & (ch.on_ts - c.last_resolve[ch.on_device] >= gap)
            if c.gates and due.any():
                for g in c.gates:
                    due &= g.passes(ch.on_device, ch.on_ts)
            slots = ch.on_device[due]
            c.alert_on[slots], c.pending[slots] = True, False
            fired = zip(members[slots].tolist(), ch.on_ts[due].tolist(), ch.on_value[due].tolist(), strict=True)
            events.extend((State.FIRING, g, t, v) for g, t, v in fired)
        return _transitions(c.rule, c.names, events, self.devices)
