"""Turn a results dict (``bench/results/latest.json``) into ratios, targets, a table and a chart.

Nothing here is hand-edited: ``docs/benchmarks.md`` and ``docs/benchmarks.png`` are written from
the JSON by :func:`write`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.procstat import PARTS

NATIVE_FORMAT = "ioc_v1"
FORMAT_TARGET = 0.8
"""Issue 13: every payload format's end-to-end readings/s ≥ this × the native contract's (same run)."""
LATENCY_P50_MS = 20.0
LATENCY_P99_MS = 100.0
"""Issue 15: publish → stored at 5k readings/s, in (a) and in (b)."""
RSS_GOAL_MIB = round(120e6 / 2**20, 1)
"""Issue 15: ingest's peak RSS in (a) ≤ 120 MB; the bench records MiB (120 MB = 114.4 MiB)."""
PEERS_A = ("paho_batched", "node_red", "paho_naive", "paho_count", "mosquitto_sub")


def _median(results: dict[str, Any], workload: str, name: str, key: str = "loss_free_rate") -> float | None:
    try:
        value = results["workloads"][workload]["contenders"][name]["summary"][key]["median"]
    except KeyError:
        return None
    return None if value is None else float(value)


def _ratio(a: float | None, b: float | None) -> float | None:
    """``a`` ÷ ``b`` to 4 decimals: targets are judged on it (0.797 is not 0.8), and shown to 3."""
    if a is None or b is None or b == 0:
        return None
    return round(a / b, 4)


def ratios(results: dict[str, Any]) -> dict[str, Any]:
    """ours / theirs on the median loss-free rate, per workload, plus the store-only share."""
    out: dict[str, Any] = {}
    for workload in results.get("workloads", {}):
        ours = _median(results, workload, "ours")
        out[workload] = {
            f"ours/{name}": _ratio(ours, _median(results, workload, name))
            for name in results["workloads"][workload]["contenders"]
            if name != "ours"
        }
    store = results.get("store_only", {}).get("summary", {}).get("readings_per_s", {}).get("median")
    if "b" in out:
        out["b"]["ours/store_only"] = _ratio(_median(results, "b", "ours"), store)
    rules = results.get("rules", {})
    if rules:
        out["rules"] = {
            "engine/reference": _round(rules.get("ratio_engine_reference")),
            "engine in ingest-sized batches/reference": _round(rules.get("ratio_engine_batched_reference")),
        }
    formats = _format_ratios(results)
    if formats:
        out["formats"] = formats
    return out


def _format_ratios(results: dict[str, Any]) -> dict[str, float | None]:
    """Each payload format's end-to-end readings/s ÷ the native contract's, in the same run (paired
    drains: :func:`_format_ratio`)."""
    section = results.get("formats", {})
    rows = section.get("rows", [])
    native = next((r.get("end_to_end_rate") for r in rows if r["format"] == NATIVE_FORMAT), None)
    return {
        f"{r['format']}/{NATIVE_FORMAT}": _format_ratio(section, r, native)
        for r in rows
        if r["format"] != NATIVE_FORMAT
    }


def _format_ratio(section: dict[str, Any], row: dict[str, Any], native: float | None) -> float | None:
    """The row's ratio: paired with the native drains beside its own (``paired`` sections), else its
    rate ÷ the native contract's (results from before the pairing)."""
    if section.get("paired"):
        return row.get("ratio")
    return _ratio(row.get("end_to_end_rate"), native)


def _round(v: Any) -> float | None:
    return None if v is None else round(float(v), 2)


def _rate(rules: dict[str, Any], key: str) -> float | None:
    got = rules.get(key)
    return None if not isinstance(got, dict) else float(got["median"])


def _target(name: str, value: float | None, op: str, goal: float, unit: str = "") -> dict[str, Any]:
    met = None if value is None or math.isnan(value) else (value >= goal if op == ">=" else value <= goal)
    return {"target": name, "value": value, "op": op, "goal": goal, "unit": unit, "met": met}


def targets(results: dict[str, Any]) -> list[dict[str, Any]]:
    """The issues' targets (15 for throughput, latency, memory and scaling), each with this run's value."""
    r = results.get("ratios", ratios(results))
    a, b = r.get("a", {}), r.get("b", {})
    out = [
        _target("(a) ours / DIY batched", a.get("ours/paho_batched"), ">=", 1.5, "×"),
        _target("(a) ours / Node-RED", a.get("ours/node_red"), ">=", 8, "×"),
        _target("(a) ours / naive paho", a.get("ours/paho_naive"), ">=", 20, "×"),
        _target("(a) ours / bare paho subscriber", a.get("ours/paho_count"), ">=", 1.0, "×"),
        _target("(b) ours, readings/s end to end", _median(results, "b", "ours"), ">=", 100_000, "/s"),
        _target("(b) ours / store-only limit", b.get("ours/store_only"), ">=", 0.8, "×"),
    ]
    rules = results.get("rules", {})
    if rules:
        ratio = _round(rules.get("ratio_engine_reference"))
        out.append(_target("rule engine / per-reading Python", ratio, ">=", 50, "×"))
        out.append(_target("rule engine, readings × rules /s", _rate(rules, "engine_rr_per_s"), ">=", 10_000_000, "/s"))
        growth = rule_growth(rules.get("scaling", {}))
        if growth is not None:
            few, many, value = growth
            out.append(_target(f"rule engine time per reading × rule, {many} vs {few} rules", value, "<=", 1.1, "×"))
    for wl in ("a", "b"):
        p50 = _median(results, wl, "ours", "latency_p50_ms")
        p99 = _median(results, wl, "ours", "latency_p99_ms")
        out.append(_target(f"({wl}) ours publish → stored p50 at 5k/s", p50, "<=", LATENCY_P50_MS, "ms"))
        out.append(_target(f"({wl}) ours publish → stored p99 at 5k/s", p99, "<=", LATENCY_P99_MS, "ms"))
    rss = _median(results, "a", "ours", "peak_rss_mib")
    out.append(_target("(a) ingest peak RSS (120 MB = 114.4 MiB)", rss, "<=", RSS_GOAL_MIB, "MiB"))
    hook = results.get("webhook", {})
    if hook:
        out.append(_target("publish → webhook p99 at 5k/s", hook.get("p99_ms"), "<=", 2000, "ms"))
    goal = results.get("formats", {}).get("target", FORMAT_TARGET)
    for key, ratio in _format_ratios(results).items():
        out.append(_target(f"formats: {key.split('/')[0]} ÷ {NATIVE_FORMAT}, end to end", ratio, ">=", goal, "×"))
    sizes = {row["devices"]: row for row in results.get("registry", {}).get("sizes", [])}
    if 100_000 in sizes:
        big = sizes[100_000]
        out += [
            _target("registry: import 100k devices (CSV)", big["import_s"], "<=", 30, "s"),
            _target("registry: ingest ready with 100k devices", big["ready_s"], "<=", 3, "s"),
            _target("registry: ingest RSS growth 1k → 100k", big["rss_growth_mib"], "<=", 100 / 1.048576, "MiB"),
            _target("registry: GET /v1/devices?limit=100 at 100k", big["api_page_ms"], "<=", 100, "ms"),
        ]
    return out


def rule_growth(scaling: dict[str, Any]) -> tuple[int, int, float] | None:
    """(fewest rules, most rules, ns per reading × rule of the most ÷ of the fewest) at the largest batch
    size of the rule-count scaling rows; None without two rule counts there."""
    rows = scaling.get("rows", []) if scaling else []
    if not rows:
        return None
    largest = max(row["batch_readings"] for row in rows)
    at = {row["rules"]: row["ns_per_reading_rule"] for row in rows if row["batch_readings"] == largest}
    if len(at) < 2:
        return None
    few, many = min(at), max(at)
    value = _ratio(at[many], at[few])
    return None if value is None else (few, many, value)


def _fmt(v: Any, digits: int = 0) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "–"
    if isinstance(v, float | int):
        return f"{v:,.{digits}f}"
    return str(v)


def _mmm(s: dict[str, Any] | None, digits: int = 0) -> str:
    if not s or s.get("median") is None:
        return "–"
    if s["min"] == s["max"]:
        return _fmt(s["median"], digits)
    return f"{_fmt(s['median'], digits)} ({_fmt(s['min'], digits)}–{_fmt(s['max'], digits)})"


def table(results: dict[str, Any]) -> str:
    """The markdown tables: one per workload, then limits, rules, webhook, targets."""
    lines: list[str] = []
    for wl, data in results.get("workloads", {}).items():
        lines += [f"### Workload {data['title']}", ""]
        lines += [
            "| contender | loss-free readings/s | ours ÷ it | lost | p50 ms | p99 ms | CPU s / 100k | peak RSS MiB |",
            "|---|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for name, row in data["contenders"].items():
            s = row["summary"]
            ratio = results.get("ratios", {}).get(wl, {}).get(f"ours/{name}")
            bound = " ¹" if s.get("publisher_bound") else ""
            lat = "p50_ms" in str(s)
            lines.append(
                f"| {row['label']} | {_mmm(s['loss_free_rate'])}{bound} | {_fmt(ratio, 2) if ratio else ''} "
                f"| {_mmm(s['lost'])} | {_mmm(s.get('latency_p50_ms'), 1) if lat else 'n/a'} "
                f"| {_p99(s) if lat else 'n/a'} | {_mmm(s['cpu_s_per_100k'], 2)} | {_mmm(s['peak_rss_mib'], 1)} |"
            )
        lines.append("")
    store = results.get("store_only")
    if store:
        lines += ["### Limit: store only (pre-formed line protocol, 10,000-line batches, 2 writers)", "",
                  f"{_mmm(store['summary']['readings_per_s'])} readings/s.", ""]  # fmt: skip
    rules = results.get("rules")
    if rules:
        when = f" (measured {rules['date']} at {rules['commit']})" if "date" in rules else ""
        lines += [f"### Rule engine alone{when}", "", _rules_text(rules), ""]
    hook = results.get("webhook")
    if hook:
        lines += ["### Publish → webhook", "",
                  f"`{hook['rule']}` firing under {_fmt(hook['background_rate'])} readings/s of background: "
                  f"p50 {_fmt(hook['p50_ms'], 1)} ms, p99 {_fmt(hook['p99_ms'], 1)} ms, "
                  f"max {_fmt(hook['max_ms'], 1)} ms "
                  f"({hook['delivered']} of {hook['probes']} firings delivered).", ""]  # fmt: skip
    registry = results.get("registry")
    if registry:
        when = f" (measured {registry['date']} at {registry['commit']})" if "date" in registry else ""
        lines += [f"### The registry at scale{when}", "",
                  "| devices | import s | ingest ready s | ingest RSS MiB | growth MiB | GET 100 devices ms |",
                  "|---:|---:|---:|---:|---:|---:|"]  # fmt: skip
        for row in registry["sizes"]:
            lines.append(
                f"| {row['devices']:,} | {_fmt(row['import_s'], 2)} | {_fmt(row['ready_s'], 2)} "
                f"| {_fmt(row['ingest_rss_mib'], 1)} | {_fmt(row['rss_growth_mib'], 1)} "
                f"| {_fmt(row['api_page_ms'], 1)} |"
            )
        lines.append("")
    scaled = results.get("scaling", {}).get("registry")
    if scaled:
        lines += _registry_scaling_table(scaled)
    if rules and rules.get("scaling"):
        lines += _rules_scaling_table(rules["scaling"])
    formats = results.get("formats")
    if formats:
        lines += _formats_table(formats)
    lines += _cores_table(results)
    lines += ["### Targets", "", "| target | measured | goal | met |", "|---|---:|---:|:---:|"]
    for t in results.get("targets", []):
        met = {True: "yes", False: "**no**", None: "–"}[t["met"]]
        digits = {"×": 3, "ms": 1, "MiB": 1, "s": 2}.get(t["unit"], 0)
        goal = f"{t['op']} {_fmt(t['goal'], digits)}"
        lines.append(f"| {t['target']} | {_fmt(t['value'], digits)} {t['unit']} | {goal} | {met} |")
    return "\n".join(lines)


def limit_steps(rounds: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The steps at a contender's limit, of its median round (the lower one of an even count): its
    last passing step and the step after it (the one that failed; none when the publisher was the
    limit). Empty when the round recorded no cores (results older than the cores' split)."""
    ranked = sorted((r for r in rounds if r.get("steps")), key=lambda r: r["loss_free_rate"])
    if not ranked:
        return []
    steps = ranked[(len(ranked) - 1) // 2]["steps"]
    passed = [i for i, step in enumerate(steps) if step["kept_up"] and step["drained"]]
    if not passed:
        return []
    return [step for step in steps[passed[-1] : passed[-1] + 2] if step.get("cores")]


def _cores_table(results: dict[str, Any]) -> list[str]:
    rows = []
    for wl, data in results.get("workloads", {}).items():
        contenders = list(data["contenders"].values())
        for row, name in zip(contenders, _shorts([row["label"] for row in contenders]), strict=True):
            for step in limit_steps(row.get("rounds", [])):
                cores = step["cores"]
                passed = "passed" if step["kept_up"] and step["drained"] else "failed"
                rows.append(
                    f"| ({wl}) | {name} | {passed} | {_fmt(step['achieved'])} | "
                    + " | ".join(_fmt(cores.get(part), 2) for part in PARTS)
                    + f" | {_fmt(sum(cores.values()), 2)} |"
                )
    if not rows:
        return []
    n = results.get("machine", {}).get("cores")
    of = f"{n} in all; " if n else ""
    return [
        "### Where the cores went at each contender's limit", "",
        f"Cores each part of the machine used ({of}CPU seconds from `/proc` ÷ seconds) in the second half of the "
        "median round's last passing ramp step and, when there is one, of the step after it, which failed. "
        "Readings/s: what the publisher offered and the broker acknowledged in that step.", "",
        "| workload | contender | step | published readings/s | contender | broker | database | publisher | total |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|", *rows, "",
    ]  # fmt: skip


def _formats_table(section: dict[str, Any]) -> list[str]:
    when = f", measured {section['date']} at {section['commit']}" if "date" in section else ""
    goal = section.get("target", FORMAT_TARGET)
    paired = (
        " (÷ ioc_v1: each drain against the ioc_v1 drains right before and after it; two drains per format, "
        "in order and then in reverse; rates and CPU are the means of a format's drains)"
        if section.get("paired") else ""
    )  # fmt: skip
    lines = [
        f"### Payload formats (ioc ingest --sources; {_fmt(section['readings'])} readings per format{when})", "",
        f"Each format's readings of the same {', '.join(section.get('kinds', []))} devices, queued on the broker "
        "for ingest's persistent session and drained: end to end is readings ÷ the time from the first message "
        f"received to the last reading stored{paired}; decode only is the same messages through the router in one "
        f"process (best of 3, {_fmt(section.get('decode_messages'))} messages). Target: ≥ {goal:g} × `ioc_v1`.", "",
        "| format | readings/message | end to end readings/s | ÷ ioc_v1 | decode only readings/s "
        f"| CPU s / 100k | payload bytes | ≥ {goal:g} × ioc_v1 |",
        "|---|---:|---:|---:|---:|---:|---:|:---:|",
    ]  # fmt: skip
    native = next((r.get("end_to_end_rate") for r in section["rows"] if r["format"] == NATIVE_FORMAT), None)
    for r in section["rows"]:
        ratio = _format_ratio(section, r, native)
        met = "–" if ratio is None or r["format"] == NATIVE_FORMAT else ("yes" if ratio >= goal else "**no**")
        rate = _fmt(r.get("end_to_end_rate")) if "error" not in r else "failed"
        lines.append(
            f"| `{r['format']}` | {_fmt(r.get('readings_per_message'), 0)} | {rate} | {_fmt(ratio, 3)} "
            f"| {_fmt(r.get('decode_rate'))} | {_fmt(r.get('cpu_s_per_100k'), 2)} "
            f"| {_fmt(r.get('mean_payload_bytes'))} | {met} |"
        )
    return [*lines, ""]


def _registry_scaling_table(section: dict[str, Any]) -> list[str]:
    rows = section["rows"]
    base = rows[0].get("end_to_end_rate") if rows else None
    lines = [
        "### Scaling: registry size", "",
        f"`ioc ingest --registry-url` (ours' defaults) with a SQLite registry of each size. End to end: a backlog of "
        f"{_fmt(section['readings'])} readings in gateway messages of {section['readings_per_message']} readings "
        "(workload (b)'s payload), each message from another device spread over the whole registry, drained "
        "(readings ÷ the time from the first message received to the last reading stored; median of "
        f"{section['rounds']}). Publish → stored at {_fmt(section['latency_rate'])} readings/s "
        "(workload (b)'s publisher, devices spread over the registry). Peak RSS: ingest's `VmHWM` over a drain. "
        "On a shared host CPU s / 100k varies less from run to run than the wall-clock rate.", "",
        "| devices | devices published | end to end readings/s | ÷ smallest | CPU s / 100k | p50 ms | p99 ms "
        "| peak RSS MiB |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]  # fmt: skip
    for row in rows:
        rate = row.get("end_to_end_rate")
        lines.append(
            f"| {row['devices']:,} | {_fmt(row.get('devices_published'))} | {_fmt(rate)} "
            f"| {_fmt(_ratio(rate, base), 2)} | {_fmt(row.get('cpu_s_per_100k'), 2)} "
            f"| {_fmt(row.get('latency_p50_ms'), 1)} | {_fmt(row.get('latency_p99_ms'), 1)} "
            f"| {_fmt(row.get('peak_rss_mib'), 1)} |"
        )
    return [*lines, ""]


def _rules_scaling_table(scaling: dict[str, Any]) -> list[str]:
    lines = ["### Scaling: rule count", ""]
    if scaling.get("note"):
        lines += [str(scaling["note"]), ""]
    lines += [
        "| rules | readings per batch | batches | ms per batch | ns per reading × rule |",
        "|---:|---:|---:|---:|---:|",
    ]
    for row in sorted(scaling.get("rows", []), key=lambda r: (r["batch_readings"], r["rules"])):
        lines.append(
            f"| {row['rules']} | {_fmt(row['batch_readings'])} | {_fmt(row.get('batches'))} "
            f"| {_fmt(row['seconds_per_batch'] * 1000, 2)} | {_fmt(row['ns_per_reading_rule'], 1)} |"
        )
    growth = rule_growth(scaling)
    linear = {True: "yes", False: "**no**", None: "–"}[scaling.get("linear")]
    lines += ["", f"Time per batch no faster than linear in readings × rules: {linear}."]
    if growth is not None:
        lines[-1] += f" {growth[1]} ÷ {growth[0]} rules, per reading × rule: {growth[2]:.2f}×."
    return [*lines, ""]


def _p99(s: dict[str, Any]) -> str:
    text = _mmm(s.get("latency_p99_ms"), 1)
    unstored = (s.get("latency_unstored") or {}).get("max")
    if unstored:
        text += " ²"
    return text


def _rules_text(rules: dict[str, Any]) -> str:
    eng, batched = _rate(rules, "engine_rr_per_s"), _rate(rules, "engine_batched_rr_per_s")
    ref = _rate(rules, "reference_rr_per_s")
    return (
        f"{rules.get('rules')} rules, {_fmt(rules.get('readings'))} simulated readings of "
        f"{rules.get('devices')} devices "
        f"({rules.get('span_h')} h): the numpy engine {_fmt(eng)} readings × rules /s in one batch, {_fmt(batched)} "
        f"in {_fmt(rules.get('batch_readings'))}-reading batches as ingest feeds it; a per-reading Python evaluation "
        f"of the same pack (`bench/rules_reference.py`) {_fmt(ref)}. Engine ÷ reference "
        f"{_fmt(rules.get('ratio_engine_reference'), 1)}× "
        f"(batched {_fmt(rules.get('ratio_engine_batched_reference'), 1)}×); "
        f"identical alert transitions: {rules.get('transitions_equal')} ({rules.get('engine_transitions')} each)."
    )


def console(results: dict[str, Any]) -> str:
    return table(results)


def _short(label: str) -> str:
    return label.split(" (")[0].split(" + ")[0]


def _shorts(labels: list[str]) -> list[str]:
    """The chart's labels: short, but one that two contenders would share keeps the gist of its
    parentheses (``ioc ingest (ours, defaults)``, ``ioc ingest (ours, public MQTT path)``)."""
    short = [_short(label) for label in labels]
    shared = {s for s in short if short.count(s) > 1}
    return [
        f"{s} ({label.split(' (', 1)[1].rstrip(')').split(':')[0]})" if s in shared and " (" in label else s
        for s, label in zip(short, labels, strict=True)
    ]


def chart(results: dict[str, Any], path: Path) -> None:
    """Throughput (log scale) and latency per contender, one column per workload; then, when measured, the
    scaling sections (registry size: readings/s, latency, RSS; rule count) and the payload formats ÷ ioc_v1."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    workloads = list(results.get("workloads", {}).items())
    extras: list[Callable[[Any, dict[str, Any]], None]] = []
    if results.get("scaling", {}).get("registry", {}).get("rows"):
        extras += [_registry_rate_panel, _registry_latency_panel, _registry_rss_panel]
    if results.get("rules", {}).get("scaling", {}).get("rows"):
        extras.append(_rules_scaling_panel)
    if results.get("formats", {}).get("rows"):
        extras.append(_formats_panel)
    cols = max(3, len(workloads)) if extras else max(1, len(workloads))
    extra_rows = math.ceil(len(extras) / cols)
    fig, axes = plt.subplots(
        2 + extra_rows, cols, figsize=(6.0 * cols, 4.2 * (2 + extra_rows)), squeeze=False, layout="constrained"
    )
    for col, (wl, data) in enumerate(workloads):
        _workload_panels(axes[0][col], axes[1][col], data, goals=wl in ("a", "b"))
    for col in range(len(workloads), cols):
        axes[0][col].axis("off")
        axes[1][col].axis("off")
    for i in range(extra_rows * cols):
        ax = axes[2 + i // cols][i % cols]
        if i < len(extras):
            extras[i](ax, results)
        else:
            ax.axis("off")
    fig.suptitle(f"Mekong IOC benchmarks — {results.get('date')}, {results['machine']['cores']} cores", fontsize=11)
    fig.savefig(path, dpi=100, bbox_inches="tight", pad_inches=0.2)
    plt.close(fig)


def _workload_panels(ax: Any, ax2: Any, data: dict[str, Any], *, goals: bool) -> None:
    names = list(data["contenders"])
    labels = _shorts([data["contenders"][n]["label"] for n in names])
    colors = ["#c0392b" if n == "ours" else ("#7f8c8d" if data["contenders"][n]["group"] == "limit" else "#2980b9")
              for n in names]  # fmt: skip
    rates = [data["contenders"][n]["summary"]["loss_free_rate"] for n in names]
    med = [r["median"] or 0 for r in rates]
    low = [m - (r["min"] or 0) for m, r in zip(med, rates, strict=True)]
    high = [(r["max"] or 0) - m for m, r in zip(med, rates, strict=True)]
    ax.barh(labels, med, xerr=[low, high], color=colors)
    ax.set_xscale("log")
    from matplotlib.ticker import NullFormatter

    ax.xaxis.set_minor_formatter(NullFormatter())  # a narrow log range labels its minor ticks, overlapping
    ax.set_title(f"{data['title']}\nloss-free readings/s (median, min–max)", fontsize=9)
    ax.invert_yaxis()
    lat_names = [n for n in names if "latency_p99_ms" in data["contenders"][n]["summary"]]
    p99 = [data["contenders"][n]["summary"]["latency_p99_ms"]["median"] or 0 for n in lat_names]
    p50 = [data["contenders"][n]["summary"]["latency_p50_ms"]["median"] or 0 for n in lat_names]
    lat_labels = _shorts([data["contenders"][n]["label"] for n in lat_names])
    ax2.barh(lat_labels, p99, color="#e67e22", label="p99")
    ax2.barh(lat_labels, p50, color="#27ae60", label="p50")
    if goals and lat_names:
        ax2.axvline(LATENCY_P50_MS, color="#27ae60", ls="--", lw=0.8, label=f"p50 goal {LATENCY_P50_MS:g} ms")
        ax2.axvline(LATENCY_P99_MS, color="#e67e22", ls="--", lw=0.8, label=f"p99 goal {LATENCY_P99_MS:g} ms")
    ax2.set_xscale("log")
    ax2.set_title(f"{data['title']}\npublish → stored latency, ms (at 5k readings/s)", fontsize=9)
    ax2.invert_yaxis()
    if lat_names:
        ax2.legend(fontsize=8)


def _registry_rows(results: dict[str, Any]) -> tuple[list[int], list[dict[str, Any]]]:
    rows = results["scaling"]["registry"]["rows"]
    return [row["devices"] for row in rows], rows


def _devices_axis(ax: Any, devices: list[int], title: str) -> None:
    ax.set_xscale("log")
    ax.set_xticks(devices, [f"{d:,}" for d in devices])
    ax.minorticks_off()
    ax.margins(x=0.1)
    ax.set_xlabel("registered devices", fontsize=8)
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)


def _from_zero(ax: Any, values: list[float]) -> None:
    """A y axis from 0 with room above the highest point."""
    highest = max((v for v in values if not math.isnan(v)), default=1.0)
    ax.set_ylim(0, 1.15 * highest)


def _registry_rate_panel(ax: Any, results: dict[str, Any]) -> None:
    devices, rows = _registry_rows(results)
    rates = [row.get("end_to_end_rate") or math.nan for row in rows]
    ax.plot(devices, rates, "o-", color="#c0392b")
    _from_zero(ax, rates)
    _devices_axis(ax, devices, "Scaling: registry size\n(b)-style backlog drained, readings/s end to end")


def _registry_latency_panel(ax: Any, results: dict[str, Any]) -> None:
    devices, rows = _registry_rows(results)
    ax.plot(devices, [row.get("latency_p99_ms") or math.nan for row in rows], "o-", color="#e67e22", label="p99")
    ax.plot(devices, [row.get("latency_p50_ms") or math.nan for row in rows], "o-", color="#27ae60", label="p50")
    ax.axhline(LATENCY_P99_MS, color="#e67e22", ls="--", lw=0.8, label=f"p99 goal {LATENCY_P99_MS:g} ms")
    ax.axhline(LATENCY_P50_MS, color="#27ae60", ls="--", lw=0.8, label=f"p50 goal {LATENCY_P50_MS:g} ms")
    highest = max((row.get("latency_p99_ms") or 0.0 for row in rows), default=0.0)
    ax.set_ylim(0, 1.15 * max(highest, LATENCY_P99_MS))
    ax.legend(fontsize=7)
    rate = results["scaling"]["registry"].get("latency_rate", 5000)
    _devices_axis(ax, devices, f"Scaling: registry size\npublish → stored ms, (b) at {rate:,} readings/s")


def _registry_rss_panel(ax: Any, results: dict[str, Any]) -> None:
    devices, rows = _registry_rows(results)
    rss = [row.get("peak_rss_mib") or math.nan for row in rows]
    ax.plot(devices, rss, "o-", color="#8e44ad")
    _from_zero(ax, rss)
    _devices_axis(ax, devices, "Scaling: registry size\ningest peak RSS, MiB (over a drain)")


def _rules_scaling_panel(ax: Any, results: dict[str, Any]) -> None:
    rows = results["rules"]["scaling"]["rows"]
    for n_rules in sorted({row["rules"] for row in rows}):
        mine = sorted((row for row in rows if row["rules"] == n_rules), key=lambda row: row["batch_readings"])
        x = [row["batch_readings"] for row in mine]
        ax.plot(x, [row["ns_per_reading_rule"] for row in mine], "o-", label=f"{n_rules} rules")
    sizes = sorted({row["batch_readings"] for row in rows})
    ax.set_xscale("log")
    ax.set_xticks(sizes, [f"{s:,}" for s in sizes])
    ax.minorticks_off()
    ax.margins(x=0.1)
    ax.set_ylim(bottom=0)
    ax.set_xlabel("readings per batch", fontsize=8)
    ax.set_title("Scaling: rule count\nengine ns per reading × rule (flat or falling = linear at most)", fontsize=9)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)


def _formats_panel(ax: Any, results: dict[str, Any]) -> None:
    section = results["formats"]
    goal = section.get("target", FORMAT_TARGET)
    native = next((r.get("end_to_end_rate") for r in section["rows"] if r["format"] == NATIVE_FORMAT), None)
    names = [r["format"] for r in section["rows"]]
    values = [_format_ratio(section, r, native) or 0.0 for r in section["rows"]]
    colors = ["#7f8c8d" if n == NATIVE_FORMAT else ("#27ae60" if v >= goal else "#c0392b")
              for n, v in zip(names, values, strict=True)]  # fmt: skip
    ax.barh(names, values, color=colors)
    ax.axvline(goal, color="black", ls="--", lw=0.8)
    ax.invert_yaxis()
    ax.set_title(f"Payload formats\nend to end readings/s ÷ {NATIVE_FORMAT} (dashed: goal {goal:g}×)", fontsize=9)


def write(results: dict[str, Any], md_path: Path, png_path: Path) -> None:
    """Write ``docs/benchmarks.md`` (header from the template below, tables from the results) and the chart."""
    chart(results, png_path)
    m, v, p = results["machine"], results["versions"], results["plan"]
    versions = ", ".join(f"{k} {val}" for k, val in v.items())
    text = f"""# Benchmarks

Written by `make bench` from `bench/results/latest.json`; do not edit by hand (see
[How it is measured](#how-it-is-measured)).

- **Date:** {results["date"]}; whole run {results["seconds"] / 60:.0f} min.
- **Machine:** {m["cpu"]}, {m["cores"]} cores, {m["memory_gib"]} GiB, Linux {m["kernel"]}. Broker, database,
  publisher and consumer share the {m["cores"]} cores.
- **Versions:** {versions}.
- **Plan:** {p["rounds"]} rounds interleaved (every contender in turn, then again), ramp steps of
  {p["step_s"]:g} s rising ×{p["factor"]} (×1.5 in round 1), latency runs of {p["latency_s"]:g} s at
  {p["latency_rate"]:,} readings/s, fleet of {results["devices"]:,} devices. Each figure: median (min–max)
  over the rounds.

![throughput and latency per contender, scaling and payload formats](benchmarks.png)

{table(results)}

¹ the publisher could not offer more: the contender kept up with everything offered.
² some readings were still not stored after the latency run's drain (the contender cannot keep up with
5k readings/s); its p99 is of the readings that were stored.

## How it is measured

See [`bench/README.md`](../bench/README.md): what each contender is, the pass rule of a ramp
step, how latency is read from the database, and what limited each contender in this run.
"""
    md_path.write_text(text, encoding="utf-8")
