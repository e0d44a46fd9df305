// The station map in SVG: projected from lat/lon, optional web-mercator tiles underneath.

import { fitEquirectangular, fitMercator, severityRank, tileUrl } from "./lib.js";
import { nameOf, severityName, t } from "./i18n.js";
import { svg } from "./svg.js";

/** Fill and glyph colour per severity (as in desk.css), and the shape that also tells it apart. */
export const SEVERITY_STYLE = {
  none: { fill: "#2e7d32", ink: "#ffffff", glyph: "", shape: "circle" },
  info: { fill: "#4da3ff", ink: "#000000", glyph: "i", shape: "circle" },
  warning: { fill: "#ffb300", ink: "#000000", glyph: "!", shape: "triangle" },
  critical: { fill: "#c62828", ink: "#ffffff", glyph: "!!", shape: "diamond" },
};
const OFFLINE = "#9aa7b4";

/** The marker of one severity, centred on 0,0 with size r (used by the map and the legend). */
export function marker(severity, offline, r) {
  const s = SEVERITY_STYLE[severity] || SEVERITY_STYLE.none;
  const hollow = offline && severity === "none";
  const paint = { fill: hollow ? "#0b1a26" : s.fill, stroke: offline ? OFFLINE : "#0b1a26", "stroke-width": r * 0.22 };
  const parts = [];
  if (s.shape === "triangle") {
    parts.push(svg("polygon", { class: "shape", points: `0,${-1.3 * r} ${1.2 * r},${0.85 * r} ${-1.2 * r},${0.85 * r}`, ...paint }));
  } else if (s.shape === "diamond") {
    parts.push(svg("polygon", { class: "shape", points: `0,${-1.3 * r} ${1.3 * r},0 0,${1.3 * r} ${-1.3 * r},0`, ...paint }));
  } else {
    parts.push(svg("circle", { class: "shape", r, ...paint }));
  }
  if (s.glyph && !hollow) parts.push(glyph(s.glyph, r, s.shape === "triangle" ? r * 0.15 : 0, s.ink));
  if (offline) {
    // a dashed ring and a cross: offline is never told by colour alone
    parts.push(svg("circle", { class: "offline-ring", r: r * 1.6, fill: "none", stroke: OFFLINE, "stroke-width": r * 0.2, "stroke-dasharray": `${r * 0.5} ${r * 0.35}` }));
    const d = r * 0.6;
    parts.push(svg("path", { class: "offline-cross", d: `M${-d},${-d}L${d},${d}M${d},${-d}L${-d},${d}`, stroke: hollow ? OFFLINE : s.ink, "stroke-width": r * 0.25 }));
  }
  return parts;
}

/** "!", "!!" or "i" drawn as shapes (no text in a button's picture), centred at (0, dy). */
function glyph(kind, r, dy, ink) {
  const w = r * 0.28, top = dy - r * 0.6, bottom = dy + r * 0.6;
  const marks = kind === "!!" ? [-r * 0.3, r * 0.3] : [0];
  const d = marks
    .map((x) =>
      kind === "i"
        ? `M${x - w / 2},${top + r * 0.4}h${w}v${bottom - top - r * 0.4}h${-w}z M${x - w / 2},${top}h${w}v${w}h${-w}z`
        : `M${x - w / 2},${top}h${w}v${(bottom - top) * 0.62}h${-w}z M${x - w / 2},${bottom - w}h${w}v${w}h${-w}z`,
    )
    .join(" ");
  return svg("path", { class: "glyph", d, fill: ink });
}

/** The station map: draw(devices) once, then update(id, severity) as alerts come and go. */
export class StationMap {
  constructor(node, { tileTemplate = null, onOpen = () => {} } = {}) {
    this.node = node;
    this.tileTemplate = tileTemplate;
    this.onOpen = onOpen;
    this.stations = new Map(); // device id → {group, device, severity}
    this.r = 10;
    this.selected = null;
  }

  /** Fit the projection to `devices` and draw them, coloured by `worst` (id → severity). */
  draw(devices, worst) {
    const fit = this.tileTemplate ? fitMercator(devices) : fitEquirectangular(devices);
    const { width, height } = fit;
    this.node.replaceChildren();
    this.node.setAttribute("viewBox", `0 0 ${width.toFixed(1)} ${height.toFixed(1)}`);
    this.node.setAttribute("aria-label", t("map_label", { n: devices.length }));
    this.node.dataset.projection = this.tileTemplate ? "mercator" : "equirectangular";
    this.r = Math.max(width, height) / 80;
    if (this.tileTemplate) {
      const tiles = svg("g", { class: "tiles", "aria-hidden": "true" });
      for (const tile of fit.tiles) {
        tiles.append(svg("image", { href: tileUrl(this.tileTemplate, tile), x: tile.left, y: tile.top, width: 256, height: 256, preserveAspectRatio: "none" }));
      }
      this.node.append(tiles);
    }
    this.layer = svg("g", { class: "stations" });
    this.node.append(this.layer);
    this.stations.clear();
    const placed = declutter(
      devices.filter((d) => Number.isFinite(d.lat) && Number.isFinite(d.lon)).map((d) => [d, ...fit.project(d.lat, d.lon)]),
      this.r * 2.8,
    );
    for (const [d, x, y] of placed) {
      const group = svg("g", { class: "station", tabindex: 0, role: "button", transform: `translate(${x.toFixed(1)} ${y.toFixed(1)})`, "data-device-id": d.id });
      group.addEventListener("click", () => this.onOpen(d.id));
      group.addEventListener("keydown", (ev) => {
        if (ev.key === "Enter" || ev.key === " ") {
          ev.preventDefault();
          this.onOpen(d.id);
        }
      });
      this.stations.set(d.id, { group, device: d, severity: worst.get(d.id) || "none" });
      this.paint(d.id);
    }
    this.restack();
  }

  /** Redraw one station's marker, tooltip and data attributes. */
  paint(id) {
    const s = this.stations.get(id);
    if (!s) return;
    const { group, device: d, severity } = s;
    const offline = d.status === "offline";
    group.dataset.severity = severity;
    group.dataset.status = offline ? "offline" : d.status === "online" ? "online" : "unknown";
    const label = `${d.id} — ${d.district_name}, ${d.province_name} — ${nameOf(d.kind)} — ${severityName(severity)} — ${t(offline ? "offline" : d.status === "online" ? "online" : "unknown")}`;
    group.setAttribute("aria-label", label);
    group.classList.toggle("selected", this.selected === id);
    group.replaceChildren(svg("title", {}, [label]), svg("circle", { class: "ring", r: this.r * 2.1, "stroke-width": this.r * 0.35 }), ...marker(severity, d.status !== "online", this.r));  // never heard from: not drawn as online
  }

  /** Draw the most severe stations last (on top). */
  restack() {
    const order = [...this.stations.values()].sort((a, b) => severityRank(a.severity) - severityRank(b.severity));
    for (const s of order) this.layer.append(s.group);
  }

  /** A station's worst active severity changed (or nothing changed: cheap). */
  update(id, severity) {
    const s = this.stations.get(id);
    if (!s || s.severity === severity) return;
    s.severity = severity;
    this.paint(id);
    this.restack();
  }

  /** Retranslate every tooltip (after a language switch). */
  relabel(count) {
    this.node.setAttribute("aria-label", t("map_label", { n: count }));
    for (const id of this.stations.keys()) this.paint(id);
  }

  select(id) {
    const prev = this.selected;
    this.selected = id;
    if (prev) this.paint(prev);
    if (id) this.paint(id);
  }
}

/**
 * Spread stations that would sit on one another: pairs closer than `minDist` are pushed apart
 * (a few rounds, neighbours found through a grid), so each marker can be seen and clicked.
 * Stations at one spot start on a small circle. Takes and returns [device, x, y] triples.
 */
export function declutter(points, minDist, rounds = 40) {
  const pts = points.map(([d, x, y]) => [d, x, y]);
  const seen = new Map();
  for (const p of pts) {
    const key = `${p[1].toFixed(3)},${p[2].toFixed(3)}`;
    const n = seen.get(key) || 0;
    seen.set(key, n + 1);
    if (n) { // the golden angle: same-spot stations fan out evenly
      p[1] += 0.3 * minDist * Math.cos(n * 2.39996);
      p[2] += 0.3 * minDist * Math.sin(n * 2.39996);
    }
  }
  for (let round = 0; round < rounds; round++) {
    const grid = new Map();
    pts.forEach((p, i) => {
      const key = `${Math.floor(p[1] / minDist)},${Math.floor(p[2] / minDist)}`;
      if (!grid.has(key)) grid.set(key, []);
      grid.get(key).push(i);
    });
    let moved = false;
    pts.forEach((p, i) => {
      const gx = Math.floor(p[1] / minDist), gy = Math.floor(p[2] / minDist);
      for (let dx = -1; dx <= 1; dx++) for (let dy = -1; dy <= 1; dy++) {
        for (const j of grid.get(`${gx + dx},${gy + dy}`) || []) {
          if (j <= i) continue;
          const q = pts[j];
          const vx = q[1] - p[1], vy = q[2] - p[2];
          const dist = Math.hypot(vx, vy) || 1e-6;
          if (dist >= minDist) continue;
          const push = (minDist - dist) / 2 / dist;
          p[1] -= vx * push; p[2] -= vy * push;
          q[1] += vx * push; q[2] += vy * push;
          moved = true;
        }
      }
    });
    if (!moved) break;
  }
  return pts;
}

/** The legend: one entry per severity and one for offline or never heard from, as marker + words. */
export function drawLegend(node) {
  node.replaceChildren();
  node.setAttribute("aria-label", t("legend"));
  const entries = [
    ...["critical", "warning", "info", "none"].map((s) => [s, false, severityName(s)]),
    ["none", true, t("offline_legend")],
  ];
  for (const [severity, offline, text] of entries) {
    const icon = svg("svg", { viewBox: "-20 -20 40 40", "aria-hidden": "true" }, marker(severity, offline, 9));
    const item = document.createElement("span");
    item.className = "item";
    item.append(icon, text);
    node.append(item);
  }
}
