// The operators' alert desk: key, live alerts (Server-Sent Events over fetch), map, station panel.

import { SseParser, backoffMs, filterAlerts, nextLink, sortAlerts, worstByDevice } from "./lib.js";
import { fieldName, formatNumber, formatTime, getLang, nameOf, setLang, severityName, t } from "./i18n.js";
import { StationMap, drawLegend } from "./map.js";
import { drawChart } from "./chart.js";
import { h, svg } from "./svg.js";

const KEY_STORE = "ioc.key";
const LANG_STORE = "ioc.lang";
const DEVICE_REFRESH_MS = 60_000; // status and battery on the map; alerts come live
const CHART_CONCURRENCY = 4;
const $ = (id) => document.getElementById(id);

const state = {
  key: null,
  config: { tile_url: null, stream_path: "/v1/alerts/stream", version: "" },
  devices: new Map(), // id → DeviceOut
  alerts: new Map(), // id → AlertOut, active only
  ackErrors: new Map(), // alert id → text key of the last failed acknowledgement
  items: new Map(), // alert id → its li
  fresh: new Set(), // alert ids that arrived live (highlighted once)
  station: null, // {id, detail, latest, thresholds, history, camera, charts: Map field → History|Error}
  map: null,
  stream: { gen: 0, abort: null, timer: null, attempt: 0, retryMs: 3000 },
  deviceTimer: null,
  configReady: null, // the promise of /v1/desk/config
};

class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

/** The ApiError of a failed response, with the API's own one-line reason when it sent one. */
async function errorOf(res) {
  let reason = `HTTP ${res.status}`;
  try {
    const body = await res.json();
    if (body && body.error) reason = body.error;
  } catch { /* not JSON */ }
  return new ApiError(res.status, reason);
}

/** A call to our API with the key; JSON back, or an ApiError with the API's own one-line reason. */
async function api(path, { method = "GET" } = {}) {
  const res = await fetch(path, { method, headers: { Authorization: `Bearer ${state.key}`, Accept: "application/json" } });
  if (!res.ok) throw await errorOf(res);
  return { data: await res.json(), res };
}

// ---------------------------------------------------------------- language

/** Put every static text (data-i18n) in the current language. */
function applyStaticTexts() {
  const lang = getLang();
  document.documentElement.lang = lang;
  document.title = `${t("title")} — Mekong IOC`;
  for (const node of document.querySelectorAll("[data-i18n]")) node.textContent = t(node.dataset.i18n);
  for (const node of document.querySelectorAll("[data-i18n-aria]")) node.setAttribute("aria-label", t(node.dataset.i18nAria));
  const toggle = $("lang-toggle");
  toggle.textContent = t("lang_toggle");
  toggle.lang = lang === "vi" ? "en" : "vi";
  setLive($("live-status").dataset.state, state.stream.nextInS);
}

function switchLanguage() {
  setLang(getLang() === "vi" ? "en" : "vi");
  localStorage.setItem(LANG_STORE, getLang());
  applyStaticTexts();
  if (!state.key || !state.map) return;
  fillFilters();
  drawLegend($("legend"));
  state.map.relabel(state.devices.size);
  state.items.clear();
  $("alerts").replaceChildren();
  renderAlerts();
  if (state.station) renderStation();
}

// ---------------------------------------------------------------- key

function showKeyForm(error) {
  $("key-form").hidden = false;
  for (const id of ["map-panel", "alerts-panel", "station-panel", "jump"]) $(id).hidden = true;
  $("logout").hidden = true;
  const err = $("key-error");
  err.hidden = !error;
  err.textContent = error || "";
  $("key-input").focus();
}

/** Try a key: it is kept (sessionStorage) and the form hidden once a call with it succeeds. */
async function signIn(key) {
  state.key = key;
  try {
    await state.configReady; // the tile URL decides the projection
    await loadDevices();
  } catch (e) {
    state.key = null;
    const auth = e instanceof ApiError && (e.status === 401 || e.status === 403);
    if (auth) sessionStorage.removeItem(KEY_STORE); // an unreachable API does not make the key wrong
    showKeyForm(t(auth ? "key_rejected" : "key_unreachable", { reason: e.message }));
    return;
  }
  sessionStorage.setItem(KEY_STORE, key);
  $("key-form").hidden = true;
  $("key-error").hidden = true;
  $("key-input").value = "";
  for (const id of ["map-panel", "alerts-panel", "station-panel", "jump"]) $(id).hidden = false;
  $("logout").hidden = false;
  state.map = new StationMap($("map"), { tileTemplate: state.config.tile_url, onOpen: openStation });
  // until the stream's snapshot comes, each station shows the worst severity the device list gave
  const worst = new Map([...state.devices.values()].filter((d) => d.worst_severity).map((d) => [d.id, d.worst_severity]));
  state.map.draw([...state.devices.values()], worst);
  drawLegend($("legend"));
  fillFilters();
  renderAlerts();
  connect();
  clearInterval(state.deviceTimer);
  state.deviceTimer = setInterval(refreshDevices, DEVICE_REFRESH_MS);
}

function signOut() {
  sessionStorage.removeItem(KEY_STORE);
  state.key = null;
  stopStream();
  clearInterval(state.deviceTimer);
  state.alerts.clear();
  state.items.clear();
  state.devices.clear();
  state.station = null;
  $("alerts").replaceChildren();
  $("announcer").replaceChildren();
  $("map").replaceChildren();
  closeStation();
  state.map = null;
  setLive("closed");
  showKeyForm(null);
}

/** A 401 mid-session: the key was revoked. Back to the form, saying why. */
function keyLost(error) {
  signOut();
  showKeyForm(t("key_rejected", { reason: error.message }));
}

// ---------------------------------------------------------------- devices

/** Every visible device, a page at a time (following the Link header). */
async function loadDevices() {
  const out = new Map();
  let url = "/v1/devices?limit=1000";
  for (let page = 0; url && page < 200; page++) {
    const { data, res } = await api(url);
    for (const d of data) out.set(d.id, d);
    url = nextLink(res.headers.get("link"));
  }
  state.devices = out;
}

async function refreshDevices() {
  try {
    await loadDevices();
  } catch (e) {
    if (e instanceof ApiError && e.status === 401 && state.key) keyLost(e);
    return;
  }
  if (!state.key || !state.map) return; // signed out while the devices loaded
  for (const [id, d] of state.devices) {
    const s = state.map.stations.get(id);
    if (s && s.device.status !== d.status) {
      s.device = d;
      state.map.paint(id);
    }
  }
}

// ---------------------------------------------------------------- live stream

function setLive(stateName, seconds) {
  const node = $("live-status");
  node.dataset.state = stateName;
  const text = node.querySelector(".text");
  text.removeAttribute("data-i18n");
  text.textContent =
    stateName === "open" ? t("live_open")
      : stateName === "connecting" ? t("live_connecting")
        : seconds ? t("live_closed", { s: seconds }) : t("live_closed_plain");
}

function stopStream() {
  const s = state.stream;
  s.gen++;
  clearTimeout(s.timer);
  if (s.abort) s.abort.abort();
  s.abort = null;
}

/** Open the stream; read it until it ends; then reconnect with backoff (at once after a reset). */
async function connect() {
  stopStream();
  const s = state.stream;
  const gen = s.gen;
  const ctrl = new AbortController();
  s.abort = ctrl;
  setLive("connecting");
  let reset = false;
  try {
    const res = await fetch(state.config.stream_path, {
      headers: { Authorization: `Bearer ${state.key}`, Accept: "text/event-stream" },
      signal: ctrl.signal,
      cache: "no-store",
    });
    if (res.status === 401) {
      const error = await errorOf(res);
      if (gen === s.gen) keyLost(error); // the API's own reason, e.g. a revoked key
      return;
    }
    if (!res.ok || !res.body) throw new Error(`HTTP ${res.status}`);
    const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
    const parser = new SseParser();
    read: for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      for (const ev of parser.feed(value)) {
        if (gen !== s.gen) break read;
        if (ev.event === "reset") {
          reset = true;
          break read;
        }
        onEvent(ev);
      }
      if (parser.retry) s.retryMs = parser.retry;
    }
    ctrl.abort();
  } catch {
    /* network error or aborted: reconnect below unless we were stopped */
  }
  if (gen !== s.gen) return; // stopped, or a newer connection took over
  const delay = reset ? 200 : backoffMs(s.attempt++, s.retryMs);
  s.nextInS = Math.ceil(delay / 1000);
  setLive("closed", s.nextInS);
  s.timer = setTimeout(connect, delay);
}

function onEvent(ev) {
  if (ev.event === "snapshot") {
    const list = JSON.parse(ev.data);
    state.stream.attempt = 0;
    state.stream.nextInS = 0;
    state.alerts = new Map(list.filter((a) => a.active).map((a) => [a.id, a]));
    setLive("open");
    recolourAll();
    fillFilters(); // the alerts may name a province no device of ours is in
    renderAlerts();
  } else if (ev.event === "alert") {
    onAlert(JSON.parse(ev.data));
  }
}

/** One alert opened, changed, resolved or acknowledged: update it in place. */
function onAlert(a) {
  const known = state.alerts.has(a.id);
  if (a.active) state.alerts.set(a.id, a);
  else state.alerts.delete(a.id);
  if (a.active && !known && a.state === "firing" && !a.acknowledged_by) {
    state.fresh.add(a.id);
    announce(t("new_alert", { sev: severityName(a.severity), place: placeOf(a), msg: messageOf(a) }));
  }
  recolour(a.device_id);
  if (a.active && (!hasOption($("filter-province"), a.province) || !hasOption($("filter-kind"), a.kind))) fillFilters();
  renderAlerts();
  const st = state.station;
  if (st && st.id === a.device_id && st.history) {
    const rest = st.history.filter((x) => x.id !== a.id);
    st.history = [a, ...rest].sort((x, y) => y.fired_at_ms - x.fired_at_ms);
    renderStationAlerts();
    const field = ruleFields(st).get(a.rule_id);
    if (field && st.charts.has(field)) renderChart(field); // its span on its field's chart
  }
}

function announce(text) {
  const node = $("announcer");
  const p = h("p", { text });
  node.append(p);
  while (node.childElementCount > 5) node.firstElementChild.remove();
}

function recolour(deviceId) {
  if (!state.map) return;
  const worst = worstByDevice([...state.alerts.values()].filter((a) => a.device_id === deviceId));
  state.map.update(deviceId, worst.get(deviceId) || "none");
}

function recolourAll() {
  if (!state.map) return;
  const worst = worstByDevice(state.alerts.values());
  for (const id of state.map.stations.keys()) state.map.update(id, worst.get(id) || "none");
}

// ---------------------------------------------------------------- alert list

const placeOf = (a) => (getLang() === "vi" ? a.place_vi : a.place_en) || a.device_id;
const messageOf = (a) => (getLang() === "vi" ? a.message_vi : a.message_en);

const KINDS = ["water_quality", "salinity", "light_trap", "camera"];

/** The filters' choices: the provinces and kinds of the devices and of the alerts seen so far. */
function fillFilters() {
  const provinces = new Map();
  for (const d of state.devices.values()) provinces.set(d.province, d.province_name || d.province);
  for (const a of state.alerts.values()) {
    // a province no device of ours is in: named as the alert's place names it ("District, Province")
    if (!provinces.has(a.province)) provinces.set(a.province, String(placeOf(a)).split(", ").pop() || a.province);
  }
  const sorted = [...provinces].sort((x, y) => x[1].localeCompare(y[1], "vi"));
  const kinds = new Set(KINDS);
  for (const d of state.devices.values()) kinds.add(d.kind);
  for (const a of state.alerts.values()) kinds.add(a.kind);
  fillSelect($("filter-province"), [["", t("any")], ...sorted]);
  fillSelect($("filter-kind"), [["", t("any")], ...[...kinds].map((k) => [k, nameOf(k)])]);
  fillSelect($("filter-severity"), [["", t("any")], ...["info", "warning", "critical"].map((s) => [s, severityName(s)])]);
}

const hasOption = (select, value) => [...select.options].some((o) => o.value === value);

function fillSelect(select, options) {
  const value = select.value;
  select.replaceChildren(...options.map(([v, text]) => h("option", { value: v, text })));
  select.value = options.some(([v]) => v === value) ? value : "";
}

function currentFilters() {
  return { province: $("filter-province").value, kind: $("filter-kind").value, severity: $("filter-severity").value };
}

/** Show the active alerts passing the filters, sorted; existing items are updated, not rebuilt. */
function renderAlerts() {
  const list = $("alerts");
  const shown = sortAlerts(filterAlerts([...state.alerts.values()], currentFilters()));
  const keep = new Set(shown.map((a) => a.id));
  for (const [id, li] of state.items) {
    if (!keep.has(id)) {
      li.remove();
      state.items.delete(id);
    }
  }
  shown.forEach((a, i) => {
    let li = state.items.get(a.id);
    if (!li) {
      li = h("li", { class: "alert" });
      state.items.set(a.id, li);
    }
    fillAlertItem(li, a);
    if (list.children[i] !== li) list.insertBefore(li, list.children[i] || null);
  });
  $("alert-count").textContent = String(shown.length);
  $("alert-total").textContent = shown.length !== state.alerts.size ? t("alerts_of_total", { total: state.alerts.size }) : "";
  const empty = $("alerts-empty");
  empty.hidden = shown.length > 0;
  empty.textContent = t("alerts_none");
}

/** (Re)fill one li.alert; only touched when what it shows changed. */
function fillAlertItem(li, a) {
  const ackError = state.ackErrors.get(a.id) || "";
  const signature = [getLang(), a.severity, a.state, a.fired_at_ms, a.acknowledged_by, a.message_vi, a.value, ackError, li.dataset.busy].join("|");
  if (li.dataset.signature === signature) return;
  li.dataset.signature = signature;
  li.dataset.alertId = a.id;
  li.dataset.severity = a.severity;
  li.dataset.province = a.province;
  li.dataset.kind = a.kind;
  li.dataset.deviceId = a.device_id;
  li.dataset.acknowledged = String(Boolean(a.acknowledged_by));
  if (state.fresh.delete(a.id)) li.classList.add("fresh");
  const place = h("button", { type: "button", class: "place", title: t("open_station", { id: a.device_id }), text: placeOf(a) });
  place.addEventListener("click", () => openStation(a.device_id));
  const children = [
    h("div", { class: "row" }, [
      h("span", { class: "sev", "data-severity": a.severity, text: severityName(a.severity) }),
      place,
      h("span", { class: "device", text: `${a.device_id} · ${nameOf(a.kind)}` }),
      h("time", { datetime: a.fired_at, text: formatTime(a.fired_at_ms) }),
    ]),
    h("p", { class: "message", text: messageOf(a) }),
  ];
  if (a.acknowledged_by) {
    children.push(h("p", { class: "acked", text: t("ack_by", { who: a.acknowledged_by, at: formatTime(a.acknowledged_at_ms) }) }));
  } else {
    const button = h("button", { type: "button", class: "ack", text: t("ack"), disabled: li.dataset.busy === "1" });
    button.addEventListener("click", () => acknowledge(a.id, li));
    children.push(button);
  }
  if (ackError) children.push(h("p", { class: "ack-error", role: "alert", text: ackError }));
  li.replaceChildren(...children);
}

async function acknowledge(id, li) {
  li.dataset.busy = "1";
  state.ackErrors.delete(id);
  renderAlerts();
  try {
    const { data } = await api(`/v1/alerts/${encodeURIComponent(id)}/acknowledge`, { method: "POST" });
    if (data.active) state.alerts.set(data.id, data);
  } catch (e) {
    if (e instanceof ApiError && e.status === 401) return keyLost(e);
    state.ackErrors.set(id, e instanceof ApiError && e.status === 403 ? t("ack_needs_operate") : t("ack_failed", { reason: e.message }));
  } finally {
    delete li.dataset.busy;
  }
  renderAlerts();
  if (state.station && state.station.history) renderStationAlerts();
}

// ---------------------------------------------------------------- station

function closeStation() {
  state.station = null;
  $("station").hidden = true;
  $("station").removeAttribute("data-device-id");
  $("station-pick").hidden = false;
  if (state.map) state.map.select(null);
}

/** Open a station: its facts, latest readings, alert history, camera events, and 72 h charts. */
async function openStation(id) {
  const device = state.devices.get(id);
  const st = { id, device, detail: null, latest: undefined, thresholds: [], history: null, camera: null, charts: new Map() };
  state.station = st;
  const section = $("station");
  section.dataset.deviceId = id;
  section.hidden = false;
  $("station-pick").hidden = true;
  if (state.map) state.map.select(id);
  renderStation();
  const heading = $("station-heading");
  heading.tabIndex = -1;
  heading.focus({ preventScroll: true });
  if (matchMedia("(max-width: 1099px)").matches) $("station-panel").scrollIntoView({ block: "start" }); // stacked layout

  const q = encodeURIComponent(id);
  const live = () => state.station === st;
  const [detail, latest, thresholds, history, camera] = await Promise.allSettled([
    api(`/v1/devices/${q}`),
    api(`/v1/readings/latest?device_id=${q}`),
    api(`/v1/devices/${q}/thresholds`),
    api(`/v1/alerts?device_id=${q}&limit=100`),
    device && device.kind === "camera" ? api(`/v1/devices/${q}/camera-events?hours=72`) : Promise.resolve({ data: [] }),
  ]);
  if (!live()) return;
  for (const r of [detail, latest, history]) {
    if (r.status === "rejected" && r.reason instanceof ApiError && r.reason.status === 401) return keyLost(r.reason);
  }
  st.detail = detail.status === "fulfilled" ? detail.value.data : null;
  st.error = detail.status === "rejected" ? detail.reason.message : null;
  st.latest = latest.status === "fulfilled" ? latest.value.data[0] || null : null;
  // thresholds: 404 (route not there yet, or none) means none to draw
  st.thresholds = thresholds.status === "fulfilled" ? thresholds.value.data : [];
  st.history = history.status === "fulfilled" ? history.value.data : [];
  st.camera = camera.status === "fulfilled" ? camera.value.data : [];
  renderStation();
  if (st.detail) loadCharts(st);
}

/** Each field's last 72 h, a few requests at a time; each chart is drawn when its data comes. */
async function loadCharts(st) {
  const fields = st.detail.fields.map((f) => f.name);
  const q = encodeURIComponent(st.id);
  let next = 0;
  const worker = async () => {
    while (next < fields.length && state.station === st) {
      const field = fields[next++];
      try {
        const { data } = await api(`/v1/readings/${q}/${encodeURIComponent(field)}?from=-72h&to=now&every=15m`);
        st.charts.set(field, data);
      } catch (e) {
        st.charts.set(field, e);
      }
      if (state.station === st) renderChart(field);
    }
  };
  await Promise.all(Array.from({ length: CHART_CONCURRENCY }, worker));
}

function renderStation() {
  const st = state.station;
  if (!st) return;
  const d = st.detail || st.device || { id: st.id };
  $("station-heading").textContent = d.province_name ? `${st.id} — ${d.district_name}, ${d.province_name}` : st.id;
  const worst = worstByDevice([...state.alerts.values()].filter((a) => a.device_id === st.id)).get(st.id) || "none";
  const status = d.status === "offline" ? "offline" : d.status === "online" ? "online" : "unknown";
  const down = status !== "online"; // never heard from is not online either
  const facts = [
    ["kind", nameOf(d.kind)],
    ["site", d.crop && d.crop !== "none" ? `${nameOf(d.site)} · ${t("crop")}: ${nameOf(d.crop)}` : nameOf(d.site)],
    ["status", h("span", { class: down ? "sev status-offline" : "sev", "data-severity": down ? null : "none", "data-status": status, text: t(status) })],
    ["worst", h("span", { class: "sev", "data-severity": worst, text: severityName(worst) })],
    ["battery", d.battery_v === null || d.battery_v === undefined ? "—" : `${formatNumber(d.battery_v)} V`],
    ["last_seen", formatTime(d.last_seen_ms, "full")],
  ];
  $("station-facts").replaceChildren(...facts.flatMap(([k, v]) => [h("dt", { text: t(k) }), h("dd", {}, [v])]));
  if (st.error) $("station-facts").append(h("dt", { text: "!" }), h("dd", { class: "error", text: t("load_error", { reason: st.error }) }));
  renderLatest();
  renderStationAlerts();
  renderCamera();
  const fields = st.detail ? st.detail.fields : [];
  $("charts").replaceChildren(
    ...fields.map((f) =>
      h("figure", { class: "chart-box", "data-field": f.name }, [
        h("figcaption", {}, [h("h5", { text: `${fieldName(f.name)} (${f.unit})` })]),
        svg("svg", { class: "chart", "data-field": f.name, viewBox: "0 0 560 220", role: "img", "aria-label": fieldName(f.name), "aria-busy": "true" }),
      ]),
    ),
  );
  for (const f of fields) if (st.charts.has(f.name)) renderChart(f.name);
}

/** rule id → the field it watches, from the station's thresholds (rules without one: absent). */
function ruleFields(st) {
  return new Map(st.thresholds.map((th) => [th.rule_id, th.field]));
}

function renderChart(field) {
  const st = state.station;
  const node = $("charts").querySelector(`svg.chart[data-field="${CSS.escape(field)}"]`);
  if (!node) return;
  const data = st.charts.get(field);
  node.removeAttribute("aria-busy");
  if (data instanceof Error) {
    node.dataset.points = "0";
    node.replaceChildren(svg("text", { x: 280, y: 110, "text-anchor": "middle", fill: "#ff8a80" }, [t("chart_error", { reason: data.message })]));
    return;
  }
  const rules = ruleFields(st);
  const alerts = (st.history || []).map((a) => state.alerts.get(a.id) || a).filter((a) => rules.get(a.rule_id) === field);
  drawChart(node, data, st.thresholds.filter((th) => th.field === field), fieldName(field), alerts);
}

function renderLatest() {
  const st = state.station;
  const tbody = $("latest").tBodies[0];
  const units = new Map((st.detail ? st.detail.fields : []).map((f) => [f.name, f.unit]));
  const values = st.latest ? st.latest.values : {};
  tbody.replaceChildren(
    ...Object.entries(values).map(([field, value]) => {
      const unit = units.get(field) === "0/1" ? "" : units.get(field) || ""; // a 0/1 state has no unit to show
      return h("tr", { "data-field": field }, [
        h("th", { scope: "row", text: fieldName(field) }),
        h("td", { class: "num", text: `${formatNumber(value, 3)}${unit ? ` ${unit}` : ""}` }),
      ]);
    }),
  );
  $("latest-note").textContent =
    st.latest === undefined ? "…" : st.latest ? t("latest_at", { at: formatTime(st.latest.time_ms, "full") }) : t("latest_none");
}

function renderStationAlerts() {
  const st = state.station;
  const list = $("station-alerts");
  // the note says "loading" or "none"; the list holds only alerts
  $("station-alerts-note").textContent = !st.history ? "…" : st.history.length ? "" : t("station_alerts_none");
  list.replaceChildren();
  if (!st.history) return;
  const rules = ruleFields(st);
  const charted = new Set((st.detail ? st.detail.fields : []).map((f) => f.name));
  list.replaceChildren(
    ...st.history.map((a) => {
      const live = state.alerts.get(a.id) || a;
      const field = rules.get(live.rule_id);
      const when = live.active
        ? t("fired_at", { at: formatTime(live.fired_at_ms) })
        : `${t("fired_at", { at: formatTime(live.fired_at_ms) })} · ${t("resolved_at", { at: formatTime(live.resolved_at_ms) })}`;
      return h("li", { "data-alert-id": live.id, "data-severity": live.severity, "data-state": live.state, "data-field": field }, [
        h("span", { class: "sev", "data-severity": live.severity, text: severityName(live.severity) }),
        " ",
        h("strong", { text: t(live.active ? "state_firing" : "state_resolved") }),
        h("div", { class: "when", text: when }),
        h("div", { text: messageOf(live) }),
        field && charted.has(field) ? h("div", { class: "when", text: t("on_chart", { field: fieldName(field) }) }) : null,
        live.acknowledged_by ? h("div", { class: "when", text: t("ack_by", { who: live.acknowledged_by, at: formatTime(live.acknowledged_at_ms) }) }) : null,
      ]);
    }),
  );
}

function renderCamera() {
  const st = state.station;
  const isCamera = (st.detail || st.device || {}).kind === "camera";
  $("camera-block").hidden = !isCamera;
  const list = $("camera-events");
  $("camera-note").textContent = !st.camera ? "…" : st.camera.length ? "" : t("camera_none");
  list.replaceChildren();
  if (!isCamera || !st.camera) return;
  list.replaceChildren(
    ...st.camera.map((e) =>
      h("li", { "data-event": e.event, "data-confidence": e.confidence }, [
        h("strong", { text: nameOf(e.event) }),
        ` — ${t("confidence", { p: formatNumber(e.confidence * 100, 0) })} — `,
        h("time", { datetime: e.ts, text: formatTime(e.ts_ms) }),
      ]),
    ),
  );
}

// ---------------------------------------------------------------- start

async function loadConfig() {
  try {
    const res = await fetch("/v1/desk/config", { headers: { Accept: "application/json" } });
    if (res.ok) Object.assign(state.config, await res.json());
  } catch { /* defaults: no tiles, the standard stream path */ }
}

async function main() {
  setLang(localStorage.getItem(LANG_STORE) || "vi");
  applyStaticTexts();
  $("lang-toggle").addEventListener("click", switchLanguage);
  $("logout").addEventListener("click", signOut);
  $("station-close").addEventListener("click", closeStation);
  $("key-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    const key = $("key-input").value.trim();
    if (key) signIn(key);
  });
  for (const id of ["filter-province", "filter-kind", "filter-severity"]) $(id).addEventListener("change", renderAlerts);
  state.configReady = loadConfig();
  const key = sessionStorage.getItem(KEY_STORE);
  if (key) await signIn(key);
  else showKeyForm(null);
}

main();
