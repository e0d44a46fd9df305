"""Turn a results dict (``bench/results/latest.json``) into ratios, targets, a table and a chart.

Nothing here is hand-edited: ``docs/benchmarks.md`` and ``docs/benchmarks.png`` are written from
the JSON by :func:`write`.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

NATIVE_FORMAT = "ioc_v1"
FORMAT_TARGET = 0.8
"""Issue 13: every payload format's end-to-end readings/s ≥ this × the native contract's (same run)."""
PEERS_A = ("paho_batched", "node_red", "paho_naive", "paho_count", "mosquitto_sub")


def _median(results: dict[str, Any], workload: str, name: str, key: str = "loss_free_rate") -> float | None:
    try:
        value = results["workloads"][workload]["contenders"][name]["summary"][key]["median"]
    except KeyError:
        return None
    return None if value is None else float(value)


def _ratio(a: float | None, b: float | None) -> float | None:
    if a is None or b is None or b == 0:
        return None
    return round(a / b, 2)


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
    """Each payload format's end-to-end readings/s ÷ the native contract's, in the same run."""
    rows = results.get("formats", {}).get("rows", [])
    native = next((r.get("end_to_end_rate") for r in rows if r["format"] == NATIVE_FORMAT), None)
    return {
        f"{r['format']}/{NATIVE_FORMAT}": _ratio(r.get("end_to_end_rate"), native)
        for r in rows
        if r["format"] != NATIVE_FORMAT
    }


def _round(v: Any) -> float | None:
    return None if v is None else round(float(v), 2)


def _rate(rules: dict[str, Any], key: str) -> float | None:
    got = rules.get(key)
    return None if not isinstance(got, dict) else float(got["median"])


def _target(name: str, value: float | None, op: str, goal: float, unit: str = "") -> dict[str, Any]:
    met = None if value is None or math.isnan(value) else (value >= goal if op == ">=" else value <= goal)
    return {"target": name, "value": value, "op": op, "goal": goal, "unit": unit, "met": met}


def targets(results: dict[str, Any]) -> list[dict[str, Any]]:
    """The issue's targets, each with the value measured in this run."""
    r = results.get("ratios", ratios(results))
    a, b = r.get("a", {}), r.get("b", {})
    out = [
        _target("(a) ours / DIY batched", a.get("ours/paho_batched"), ">=", 1.5, "×"),
        _target("(a) ours / Node-RED", a.get("ours/node_red"), ">=", 8, "×"),
        _target("(a) ours / naive paho", a.get("ours/paho_naive"), ">=", 20, "×"),
        _target("(a) ours / bare paho subscriber", a.get("ours/paho_count"), ">=", 0.7, "×"),
        _target("(b) ours, readings/s end to end", _median(results, "b", "ours"), ">=", 100_000, "/s"),
        _target("(b) ours / store-only limit", b.get("ours/store_only"), ">=", 0.5, "×"),
    ]
    rules = results.get("rules", {})
    if rules:
        ratio = _round(rules.get("ratio_engine_reference"))
        out.append(_target("rule engine / per-reading Python", ratio, ">=", 50, "×"))
        out.append(_target("rule engine, readings × rules /s", _rate(rules, "engine_rr_per_s"), ">=", 10_000_000, "/s"))
    out.append(_target("(a) ours publish → stored p99 at 5k/s", _median(results, "a", "ours", "latency_p99_ms"),
                       "<=", 1500, "ms"))  # fmt: skip
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
        lines += ["### Rule engine alone", "", _rules_text(rules), ""]
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
    formats = results.get("formats")
    if formats:
        lines += _formats_table(formats)
    lines += ["### Targets", "", "| target | measured | goal | met |", "|---|---:|---:|:---:|"]
    for t in results.get("targets", []):
        met = {True: "yes", False: "**no**", None: "–"}[t["met"]]
        digits = 2 if t["unit"] == "×" else 0
        goal = f"{t['op']} {_fmt(t['goal'], digits)}"
        lines.append(f"| {t['target']} | {_fmt(t['value'], digits)} {t['unit']} | {goal} | {met} |")
    return "\n".join(lines)


def _formats_table(section: dict[str, Any]) -> list[str]:
    when = f", measured {section['date']} at {section['commit']}" if "date" in section else ""
    goal = section.get("target", FORMAT_TARGET)
    lines = [
        f"### Payload formats (ioc ingest --sources; {_fmt(section['readings'])} readings per format{when})", "",
        f"Each format's readings of the same {', '.join(section.get('kinds', []))} devices, queued on the broker "
        "for ingest's persistent session and drained: end to end is readings ÷ the time from the first message "
        "received to the last reading stored; decode only is the same messages through the router in one "
        f"process (best of 3, {_fmt(section.get('decode_messages'))} messages). Target: ≥ {goal:g} × `ioc_v1`.", "",
        "| format | readings/message | end to end readings/s | ÷ ioc_v1 | decode only readings/s "
        f"| CPU s / 100k | payload bytes | ≥ {goal:g} × ioc_v1 |",
        "|---|---:|---:|---:|---:|---:|---:|:---:|",
    ]  # fmt: skip
    native = next((r.get("end_to_end_rate") for r in section["rows"] if r["format"] == NATIVE_FORMAT), None)
    for r in section["rows"]:
        ratio = _ratio(r.get("end_to_end_rate"), native)
        met = "–" if ratio is None or r["format"] == NATIVE_FORMAT else ("yes" if ratio >= goal else "**no**")
        rate = _fmt(r.get("end_to_end_rate")) if "error" not in r else "failed"
        lines.append(
            f"| `{r['format']}` | {_fmt(r.get('readings_per_message'), 0)} | {rate} | {_fmt(ratio, 2)} "
            f"| {_fmt(r.get('decode_rate'))} | {_fmt(r.get('cpu_s_per_100k'), 2)} "
            f"| {_fmt(r.get('mean_payload_bytes'))} | {met} |"
        )
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


def chart(results: dict[str, Any], path: Path) -> None:
    """Loss-free throughput (log scale) and p99 latency per contender, one panel per workload."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    workloads = list(results.get("workloads", {}).items())
    fig, axes = plt.subplots(2, len(workloads), figsize=(5.2 * len(workloads), 8), squeeze=False)
    for col, (_wl, data) in enumerate(workloads):
        names = list(data["contenders"])
        labels = [data["contenders"][n]["label"].split(" (")[0] for n in names]
        colors = ["#c0392b" if n == "ours" else ("#7f8c8d" if data["contenders"][n]["group"] == "limit" else "#2980b9")
                  for n in names]  # fmt: skip
        rates = [data["contenders"][n]["summary"]["loss_free_rate"] for n in names]
        med = [r["median"] or 0 for r in rates]
        low = [m - (r["min"] or 0) for m, r in zip(med, rates, strict=True)]
        high = [(r["max"] or 0) - m for m, r in zip(med, rates, strict=True)]
        err = [low, high]
        ax = axes[0][col]
        ax.barh(labels, med, xerr=err, color=colors)
        ax.set_xscale("log")
        ax.set_title(f"{data['title']}\nloss-free readings/s (median, min–max)", fontsize=9)
        ax.invert_yaxis()
        ax2 = axes[1][col]
        lat_names = [n for n in names if "latency_p99_ms" in data["contenders"][n]["summary"]]
        p99 = [data["contenders"][n]["summary"]["latency_p99_ms"]["median"] or 0 for n in lat_names]
        p50 = [data["contenders"][n]["summary"]["latency_p50_ms"]["median"] or 0 for n in lat_names]
        lat_labels = [data["contenders"][n]["label"].split(" (")[0] for n in lat_names]
        ax2.barh(lat_labels, p99, color="#e67e22", label="p99")
        ax2.barh(lat_labels, p50, color="#27ae60", label="p50")
        ax2.set_xscale("log")
        ax2.set_title("publish → stored latency, ms (at 5k readings/s)", fontsize=9)
        ax2.invert_yaxis()
        ax2.legend(fontsize=8)
    fig.suptitle(f"Mekong IOC benchmarks — {results.get('date')}, {results['machine']['cores']} cores", fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


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

![throughput and latency per contender](benchmarks.png)

{table(results)}

¹ the publisher could not offer more: the contender kept up with everything offered.
² some readings were still not stored after the latency run's drain (the contender cannot keep up with
5k readings/s); its p99 is of the readings that were stored.

## How it is measured

See [`bench/README.md`](../bench/README.md): what each contender is, the pass rule of a ramp
step, how latency is read from the database, and what limited each contender in this run.
"""
    md_path.write_text(text, encoding="utf-8")
