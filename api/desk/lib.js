// Pure helpers of the alert desk: no DOM, no network, so each can be tested on its own.

/** Severity labels, least to most urgent (as the API names them). */
export const SEVERITIES = ["info", "warning", "critical"];

/** 0 for none/unknown, 1 info, 2 warning, 3 critical. */
export function severityRank(label) {
  return SEVERITIES.indexOf(label) + 1;
}

/** The most severe label among `labels` ("none" when there is none). */
export function worstSeverity(labels) {
  let best = 0;
  for (const label of labels) best = Math.max(best, severityRank(label));
  return best === 0 ? "none" : SEVERITIES[best - 1];
}

/** Map device id → worst severity of its active alerts (devices without one are absent). */
export function worstByDevice(alerts) {
  const out = new Map();
  for (const a of alerts) {
    if (!a.active) continue;
    const prev = out.get(a.device_id) || "none";
    if (severityRank(a.severity) > severityRank(prev)) out.set(a.device_id, a.severity);
  }
  return out;
}

/** Most severe first, then most recently fired first, then by id (a stable, total order). */
export function compareAlerts(a, b) {
  return (
    severityRank(b.severity) - severityRank(a.severity) ||
    b.fired_at_ms - a.fired_at_ms ||
    (a.id < b.id ? -1 : a.id > b.id ? 1 : 0)
  );
}

/** A sorted copy of `alerts` (see compareAlerts). */
export function sortAlerts(alerts) {
  return [...alerts].sort(compareAlerts);
}

/** The alerts passing the filters: province and kind ("" = any), minimum severity ("" = any). */
export function filterAlerts(alerts, { province = "", kind = "", severity = "" } = {}) {
  const min = severity ? severityRank(severity) : 0;
  return alerts.filter(
    (a) =>
      (!province || a.province === province) &&
      (!kind || a.kind === kind) &&
      severityRank(a.severity) >= min,
  );
}

/**
 * An incremental Server-Sent Events parser (the WHATWG event-stream rules): feed it text as it
 * arrives, in chunks cut anywhere; it returns the events completed by that chunk as
 * {event, data, id} (event defaults to "message"). `retry:` updates `parser.retry` (ms);
 * comments (": keep-alive") are ignored; `id:` persists as `parser.lastEventId`.
 */
export class SseParser {
  constructor() {
    this.buffer = "";
    this.pendingCR = false;
    this.reset();
    this.lastEventId = "";
    this.retry = null;
  }

  reset() {
    this.eventType = "";
    this.dataLines = [];
    this.sawId = false;
  }

  /** Parse a chunk; return the events it completes. */
  feed(chunk) {
    if (!chunk) return []; // an empty read (e.g. half a character) must not forget a pending "\r"
    let text = chunk;
    // A "\r\n" may be split between chunks: drop the "\n" that follows a "\r" already seen.
    if (this.pendingCR && text.startsWith("\n")) text = text.slice(1);
    this.pendingCR = false;
    this.buffer += text;
    const events = [];
    for (;;) {
      const m = /\r\n|\r|\n/.exec(this.buffer);
      if (!m) break;
      // A lone "\r" at the end of the buffer might be the start of "\r\n".
      if (m[0] === "\r" && m.index === this.buffer.length - 1) this.pendingCR = true;
      const line = this.buffer.slice(0, m.index);
      this.buffer = this.buffer.slice(m.index + m[0].length);
      const ev = this.line(line);
      if (ev) events.push(ev);
    }
    return events;
  }

  /** One line: a field, a comment, or the blank line that dispatches an event. */
  line(line) {
    if (line === "") {
      const ev =
        this.dataLines.length || this.eventType
          ? { event: this.eventType || "message", data: this.dataLines.join("\n"), id: this.lastEventId }
          : null;
      this.reset();
      return ev;
    }
    if (line.startsWith(":")) return null; // a comment, e.g. keep-alive
    const colon = line.indexOf(":");
    const field = colon < 0 ? line : line.slice(0, colon);
    let value = colon < 0 ? "" : line.slice(colon + 1);
    if (value.startsWith(" ")) value = value.slice(1);
    if (field === "event") this.eventType = value;
    else if (field === "data") this.dataLines.push(value);
    else if (field === "id") {
      if (!value.includes("\0")) this.lastEventId = value;
    } else if (field === "retry") {
      if (/^\d+$/.test(value)) this.retry = Number(value);
    }
    return null;
  }
}

/** Reconnection delay (ms) after `attempt` failures in a row: base·2^n, capped, with ±20 % jitter. */
export function backoffMs(attempt, baseMs = 3000, maxMs = 30000, random = Math.random) {
  const raw = Math.min(maxMs, baseMs * 2 ** Math.max(0, attempt));
  return Math.round(raw * (0.8 + 0.4 * random()));
}

/** The bounds of points [{lat, lon}] (ignoring missing ones), widened to at least `minSpan` degrees. */
export function bounds(points, minSpan = 0.05) {
  let s = Infinity, n = -Infinity, w = Infinity, e = -Infinity;
  for (const p of points) {
    if (!Number.isFinite(p.lat) || !Number.isFinite(p.lon)) continue;
    s = Math.min(s, p.lat); n = Math.max(n, p.lat);
    w = Math.min(w, p.lon); e = Math.max(e, p.lon);
  }
  if (!Number.isFinite(s)) { s = 8.5; n = 11.0; w = 104.4; e = 106.8; } // the Mekong Delta
  if (n - s < minSpan) { const c = (n + s) / 2; s = c - minSpan / 2; n = c + minSpan / 2; }
  if (e - w < minSpan) { const c = (e + w) / 2; w = c - minSpan / 2; e = c + minSpan / 2; }
  return { south: s, north: n, west: w, east: e };
}

/**
 * An equirectangular projection fitted to `points`: x = lon·cos(mid latitude), y = −lat, scaled so
 * that the fleet's box plus a margin (a share of its size on each side) is `width` units wide.
 * Returns {project(lat, lon) → [x, y], width, height}; all stations fall inside [0,width]×[0,height].
 */
export function fitEquirectangular(points, { width = 1000, margin = 0.08 } = {}) {
  const b = bounds(points);
  const k = Math.cos(((b.north + b.south) / 2) * Math.PI / 180);
  const w = (b.east - b.west) * k, h = b.north - b.south;
  const scale = width / (w * (1 + 2 * margin));
  const height = h * scale + 2 * margin * w * scale;
  const pad = margin * w * scale;
  return {
    width,
    height,
    project: (lat, lon) => [pad + (lon - b.west) * k * scale, pad + (b.north - lat) * scale],
  };
}

/** Web-mercator world pixel coordinates of (lat, lon) at zoom `z` (256-pixel tiles). */
export function mercatorPixel(lat, lon, z) {
  const size = 256 * 2 ** z;
  const phi = Math.max(-85.0511, Math.min(85.0511, lat)) * Math.PI / 180;
  return [((lon + 180) / 360) * size, ((1 - Math.log(Math.tan(phi) + 1 / Math.cos(phi)) / Math.PI) / 2) * size];
}

/**
 * A web-mercator projection fitted to `points` for a tiled base map: the zoom is the largest at which
 * the fleet's box is at most `maxPixels` wide and tall; coordinates are tile pixels at that zoom,
 * shifted so the box plus margin starts at 0. Returns {project, width, height, z, tiles}, with
 * tiles [{x, y, z, left, top}] (256 × 256 each) covering the view.
 */
export function fitMercator(points, { margin = 0.08, maxPixels = 1200, maxZoom = 16 } = {}) {
  const b = bounds(points);
  let z = 0;
  for (let t = maxZoom; t >= 0; t--) {
    const [x0, y0] = mercatorPixel(b.north, b.west, t), [x1, y1] = mercatorPixel(b.south, b.east, t);
    if (x1 - x0 <= maxPixels && y1 - y0 <= maxPixels) { z = t; break; }
  }
  const [x0, y0] = mercatorPixel(b.north, b.west, z), [x1, y1] = mercatorPixel(b.south, b.east, z);
  const pad = margin * Math.max(x1 - x0, y1 - y0);
  const ox = x0 - pad, oy = y0 - pad;
  const width = x1 - x0 + 2 * pad, height = y1 - y0 + 2 * pad;
  const tiles = [];
  const n = 2 ** z;
  for (let ty = Math.floor(oy / 256); ty <= Math.floor((oy + height) / 256); ty++) {
    if (ty < 0 || ty >= n) continue;
    for (let tx = Math.floor(ox / 256); tx <= Math.floor((ox + width) / 256); tx++) {
      tiles.push({ z, x: ((tx % n) + n) % n, y: ty, left: tx * 256 - ox, top: ty * 256 - oy });
    }
  }
  return {
    width, height, z, tiles,
    project: (lat, lon) => { const [x, y] = mercatorPixel(lat, lon, z); return [x - ox, y - oy]; },
  };
}

/** A tile URL from a template with {z}, {x}, {y} (and {s}, a subdomain: "a"). */
export function tileUrl(template, t) {
  return template.replace("{z}", t.z).replace("{x}", t.x).replace("{y}", t.y).replace("{s}", "a");
}

/** Round ticks (steps of 1, 2 or 5 × 10^n, about `count` of them) and the domain [lo, hi] they span. */
export function niceTicks(lo, hi, count = 5) {
  if (!(hi > lo)) { const d = Math.abs(lo) * 0.1 || 1; lo -= d; hi += d; }
  const raw = (hi - lo) / Math.max(1, count);
  const mag = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 5, 10].map((m) => m * mag).find((s) => s >= raw * (1 - 1e-9));
  const first = Math.floor(lo / step + 1e-9), last = Math.ceil(hi / step - 1e-9);
  const ticks = [];
  for (let i = first; i <= last; i++) ticks.push(Number((i * step).toPrecision(12)));
  return { ticks, step, lo: ticks[0], hi: ticks[ticks.length - 1] };
}

/** The URL of rel="next" in an RFC 8288 Link header, or null. */
export function nextLink(header) {
  if (!header) return null;
  for (const part of header.split(",")) {
    const m = /<([^>]*)>\s*;\s*rel="?next"?/i.exec(part);
    if (m) return m[1];
  }
  return null;
}
