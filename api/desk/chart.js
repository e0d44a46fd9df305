// A 72 h line chart of one field in SVG: axes, unit, the mean per bucket, threshold lines, and the
// spans of the alerts its rules raised (fired → resolved, or → now while still firing).

import { niceTicks, severityRank } from "./lib.js";
import { formatNumber, formatTime, getLang, severityName, t } from "./i18n.js";
import { svg } from "./svg.js";

const W = 560, H = 220;
const M = { left: 64, right: 16, top: 28, bottom: 30 };
const HOUR = 3_600_000, LOCAL_OFFSET = 7 * HOUR; // the Mekong Delta is UTC+7 all year
const AXIS_LABEL_W = 72; // "05/12 12h" at 14 px
const SPAN_MIN_W = 4; // an alert fired and resolved within one pixel still shows
const SPAN_LANES = 3; // rows of span labels before they repeat
const GLYPH = { info: "i", warning: "!", critical: "!!" };
let chartSeq = 0; // pattern ids must be unique in the page: one set per chart

/**
 * The part of each alert's fired → resolved span inside [fromMs, toMs] (a still-firing alert runs
 * to toMs; one fired after toMs sits at toMs), most severe last so it is drawn on top; alerts
 * resolved before the window are left out.
 * Returns [{alert, from, to, lane}], lane = the first label row free at its start.
 */
export function alertSpans(alerts, fromMs, toMs) {
  const spans = [];
  for (const a of alerts) {
    const end = a.active || a.resolved_at_ms === null || a.resolved_at_ms === undefined ? toMs : a.resolved_at_ms;
    if (end < fromMs) continue;
    // one that fired after the chart was loaded (a live alert) shows at its right edge
    const from = Math.min(toMs, Math.max(fromMs, a.fired_at_ms));
    spans.push({ alert: a, from, to: Math.max(from, Math.min(toMs, end)), lane: 0 });
  }
  spans.sort((x, y) => x.from - y.from);
  const laneEnds = [];
  for (const s of spans) {
    let lane = laneEnds.findIndex((end) => end < s.from);
    if (lane < 0) lane = laneEnds.length;
    laneEnds[lane] = s.to;
    s.lane = lane;
  }
  return spans.sort((x, y) => severityRank(x.alert.severity) - severityRank(y.alert.severity) || x.from - y.from);
}

/** Hatch patterns, one per severity, so a span's severity is told by its texture, not colour alone. */
function spanPatterns(prefix) {
  const line = (d, cls) => svg("path", { class: cls, d });
  return svg("defs", {}, [
    svg("pattern", { id: `${prefix}-critical`, class: "hatch", "data-severity": "critical", width: 8, height: 8, patternUnits: "userSpaceOnUse" }, [
      svg("rect", { class: "hatch-bg", width: 8, height: 8 }),
      line("M0,8L8,0M-2,2L2,-2M6,10L10,6", "hatch-line"),
      line("M0,0L8,8M-2,6L2,10M6,-2L10,2", "hatch-line"),
    ]),
    svg("pattern", { id: `${prefix}-warning`, class: "hatch", "data-severity": "warning", width: 8, height: 8, patternUnits: "userSpaceOnUse" }, [
      svg("rect", { class: "hatch-bg", width: 8, height: 8 }),
      line("M0,8L8,0M-2,2L2,-2M6,10L10,6", "hatch-line"),
    ]),
    svg("pattern", { id: `${prefix}-info`, class: "hatch", "data-severity": "info", width: 8, height: 8, patternUnits: "userSpaceOnUse" }, [
      svg("rect", { class: "hatch-bg", width: 8, height: 8 }),
      svg("circle", { class: "hatch-dot", cx: 4, cy: 4, r: 1.3 }),
    ]),
  ]);
}

/** Local (UTC+7) midnights and noons between from and to, for the time axis. */
export function timeTicks(fromMs, toMs, stepMs = 12 * HOUR) {
  const out = [];
  for (let v = Math.ceil((fromMs + LOCAL_OFFSET) / stepMs) * stepMs - LOCAL_OFFSET; v <= toMs; v += stepMs) out.push(v);
  return out;
}

/** Runs of consecutive points with a value (a bucket without readings breaks the line). */
export function segments(points) {
  const runs = [];
  let run = [];
  for (const p of points) {
    if (p.mean === null || p.mean === undefined) {
      if (run.length) runs.push(run);
      run = [];
    } else run.push(p);
  }
  if (run.length) runs.push(run);
  return runs;
}

/**
 * Draw `history` (the API's History: points with time_ms and mean) into `node` (an svg.chart),
 * with a dashed line.threshold per threshold of this field and a rect.alert-span per alert of
 * `alerts` (AlertOut, those of this field's rules) in the window. Sets data-points to the points drawn.
 */
export function drawChart(node, history, thresholds, label, alerts = []) {
  node.replaceChildren();
  node.setAttribute("viewBox", `0 0 ${W} ${H}`);
  const points = history.points.filter((p) => p.mean !== null && p.mean !== undefined);
  node.dataset.points = String(points.length);
  const x0 = history.from_ms, x1 = history.to_ms;
  const values = [];
  for (const p of points) values.push(p.mean, p.min ?? p.mean, p.max ?? p.mean);
  for (const th of thresholds) values.push(th.value);
  const y = niceTicks(values.length ? Math.min(...values) : 0, values.length ? Math.max(...values) : 1, 4);
  const sx = (ms) => M.left + ((ms - x0) / (x1 - x0)) * (W - M.left - M.right);
  const sy = (v) => H - M.bottom - ((v - y.lo) / (y.hi - y.lo)) * (H - M.top - M.bottom);
  const spans = alertSpans(alerts, x0, x1);
  let title = t("chart_label", { field: label, unit: history.unit, n: points.length });
  if (spans.length) title += ` · ${t("chart_alerts", { n: spans.length })}`;
  node.setAttribute("role", "img");
  node.setAttribute("aria-label", title);
  node.append(svg("title", {}, [title]));

  // Grid and axes
  for (const v of y.ticks) {
    node.append(svg("line", { class: "grid", x1: M.left, x2: W - M.right, y1: sy(v), y2: sy(v) }));
    node.append(svg("text", { x: M.left - 6, y: sy(v) + 4, "text-anchor": "end" }, [formatNumber(v, 3)]));
  }
  for (const ms of timeTicks(x0, x1)) {
    node.append(svg("line", { class: "grid", x1: sx(ms), x2: sx(ms), y1: M.top, y2: H - M.bottom }));
    // a label is centred on its tick, or left out where it would not fit (at the edges)
    if (sx(ms) - AXIS_LABEL_W / 2 < M.left - 24 || sx(ms) + AXIS_LABEL_W / 2 > W - 2) continue;
    node.append(svg("text", { x: sx(ms), y: H - M.bottom + 18, "text-anchor": "middle" }, [formatTime(ms, "axis")]));
  }
  node.append(svg("line", { class: "axis", x1: M.left, x2: M.left, y1: M.top, y2: H - M.bottom }));
  node.append(svg("line", { class: "axis", x1: M.left, x2: W - M.right, y1: H - M.bottom, y2: H - M.bottom }));
  node.append(svg("text", { class: "unit", x: 4, y: 16 }, [history.unit]));

  // Alert history: each alert's span, hatched by severity, with its severity as a label
  if (spans.length) {
    const prefix = `hatch-${++chartSeq}`;
    node.append(spanPatterns(prefix));
    const layer = svg("g", { class: "alert-spans" });
    for (const { alert: a, from, to, lane } of spans) {
      let left = sx(from), width = Math.max(SPAN_MIN_W, sx(to) - left);
      left = Math.min(left, W - M.right - width);
      const when = a.active || !a.resolved_at_ms
        ? t("span_firing", { from: formatTime(a.fired_at_ms) })
        : t("span_resolved", { from: formatTime(a.fired_at_ms), to: formatTime(a.resolved_at_ms) });
      const text = `${severityName(a.severity)} — ${when} — ${getLang() === "vi" ? a.message_vi : a.message_en}`;
      layer.append(
        svg("rect", {
          class: "alert-span", "data-alert-id": a.id, "data-severity": a.severity, "data-state": a.active ? "firing" : "resolved",
          x: left.toFixed(1), y: M.top, width: width.toFixed(1), height: H - M.top - M.bottom, fill: `url(#${prefix}-${a.severity})`,
        }, [svg("title", {}, [text])]),
      );
      const name = severityName(a.severity);
      const word = width >= name.length * 7.5 + 6 ? name : GLYPH[a.severity] || "?";
      const inside = left + 3 + word.length * 7.5 <= W - M.right; // else just left of the span (at the right edge)
      layer.append(svg("text", {
        class: "span-label", "data-severity": a.severity, x: (inside ? left + 3 : left - 3).toFixed(1), y: M.top + 13 + 15 * (lane % SPAN_LANES),
        "text-anchor": inside ? "start" : "end", "aria-hidden": "true",
      }, [word]));
    }
    node.append(layer);
  }

  // Min–max band and the mean line, broken where buckets are empty
  for (const run of segments(history.points)) {
    if (run.length === 1) {
      node.append(svg("circle", { class: "series-dot", cx: sx(run[0].time_ms), cy: sy(run[0].mean), r: 3, fill: "#8fd1ff" }));
      continue;
    }
    const top = run.map((p) => `${sx(p.time_ms).toFixed(1)},${sy(p.max ?? p.mean).toFixed(1)}`);
    const bottom = run.map((p) => `${sx(p.time_ms).toFixed(1)},${sy(p.min ?? p.mean).toFixed(1)}`).reverse();
    node.append(svg("polygon", { class: "band", points: [...top, ...bottom].join(" ") }));
    node.append(svg("polyline", { class: "series", points: run.map((p) => `${sx(p.time_ms).toFixed(1)},${sy(p.mean).toFixed(1)}`).join(" ") }));
  }
  if (!points.length) {
    node.append(svg("text", { x: W / 2, y: H / 2, "text-anchor": "middle" }, [t("chart_empty")]));
  }

  // Thresholds of the rules that apply to this device
  for (const th of thresholds) {
    const ty = sy(th.value);
    const name = (getLang() === "vi" ? th.name_vi : th.name_en) || th.rule_id;
    const text = t("threshold", { rule: name, op: th.op, value: formatNumber(th.value, 3), sev: severityName(th.severity) });
    node.append(
      svg("line", { class: "threshold", "data-rule-id": th.rule_id, "data-severity": th.severity, x1: M.left, x2: W - M.right, y1: ty, y2: ty }, [
        svg("title", {}, [text]),
      ]),
    );
    node.append(svg("text", { class: "tlabel", "data-severity": th.severity, x: W - M.right - 2, y: ty - 4, "text-anchor": "end" }, [
      `${th.op} ${formatNumber(th.value, 3)} · ${severityName(th.severity)}`,
    ]));
  }
  return points.length;
}
