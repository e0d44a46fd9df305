// Drive the operators' desk (api/desk/) in Debian's Chromium with playwright-core, for
// tests/integration/test_desk_browser.py.
//
// A line protocol, so that pytest can act on the stack between browser steps: each line on stdin
// is one JSON command {"op": ..., ...}; each answer is one JSON line on stdout, {"ok": true, ...}
// or {"ok": false, "error": "..."}. The page's hooks are those of the desk's contract (ids,
// classes and data- attributes); nothing here knows how the page builds them.
import fs from 'node:fs';
import path from 'node:path';
import readline from 'node:readline';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const here = path.dirname(fileURLToPath(import.meta.url));
const AXE = path.join(here, 'node_modules', 'axe-core', 'axe.min.js');
// The flags Chromium needs on these machines: no sandbox as root, and no background connections
// (the network is closed: they would fail, many at a time).
const ARGS = [
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];

let browser = null;
let context = null;
let page = null;
const pageErrors = [];
const requests = []; // [{method, path, key}] of every request the page made (drained by "requests")
const origins = new Set(); // the origin of every http(s)/ws(s) request of the session (never drained)

// When each alert first showed in the list, and each map station's severity changed (the page's
// clock, epoch ms): window.__iocSeen {alert id: ms}, window.__iocPaint {device id: [[severity, ms]]}.
const SEEN_SCRIPT = `(() => {
  const seen = (window.__iocSeen = window.__iocSeen || {});
  const paint = (window.__iocPaint = window.__iocPaint || {});
  const scan = () => {
    const now = Date.now();
    for (const li of document.querySelectorAll('ul#alerts li.alert[data-alert-id]')) {
      const id = li.dataset.alertId;
      if (!(id in seen)) seen[id] = now;
    }
    for (const dot of document.querySelectorAll('svg#map .station[data-device-id]')) {
      const changes = (paint[dot.dataset.deviceId] = paint[dot.dataset.deviceId] || []);
      const severity = dot.dataset.severity;
      if (!changes.length || changes[changes.length - 1][0] !== severity) changes.push([severity, now]);
    }
  };
  const start = () => {
    scan();
    new MutationObserver(scan).observe(document.documentElement, {
      subtree: true, childList: true, attributes: true, attributeFilter: ['data-alert-id', 'data-severity'],
    });
  };
  if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', start);
  else start();
})();`;

async function open({ url, width, height }) {
  if (!browser) {
    browser = await chromium.launch({ executablePath: '/usr/bin/chromium', headless: true, args: ARGS });
  }
  if (context) await context.close();
  context = await browser.newContext({ viewport: { width, height }, deviceScaleFactor: 1 });
  await context.addInitScript(SEEN_SCRIPT);
  page = await context.newPage();
  page.on('pageerror', (err) => pageErrors.push(String(err)));
  page.on('request', (req) => {
    const url = new URL(req.url());
    requests.push({ method: req.method(), path: url.pathname, key: 'authorization' in req.headers() });
    if (/^(https?|wss?):$/.test(url.protocol)) origins.add(url.origin);
  });
  await page.goto(url, { waitUntil: 'load' });
  return { lang: await page.getAttribute('html', 'lang'), title: await page.title() };
}

const visible = (selector) => page.locator(selector).first().isVisible();

async function login({ key, expect = 'accepted', timeout_ms = 10000 }) {
  await page.locator('form#key-form').waitFor({ state: 'visible', timeout: timeout_ms });
  await page.fill('input#key-input', key);
  await page.locator('form#key-form [type=submit]').click();
  const wanted = expect === 'accepted'
    ? page.locator('form#key-form').waitFor({ state: 'hidden', timeout: timeout_ms })
    : page.waitForFunction(
      () => {
        const error = document.querySelector('#key-error');
        return error && !error.hidden && error.getClientRects().length > 0 && error.textContent.trim() !== '';
      },
      null,
      { timeout: timeout_ms },
    );
  await wanted.catch(() => null); // the state below says what happened instead
  return {
    form_visible: await visible('form#key-form'),
    error_visible: await visible('#key-error'),
    error_text: ((await page.locator('#key-error').textContent()) ?? '').trim(),
    input_type: await page.getAttribute('input#key-input', 'type'),
    session_key: await page.evaluate(() => sessionStorage.getItem('ioc.key')),
  };
}

async function logout() {
  await page.locator('button#logout').click();
  await page.locator('form#key-form').waitFor({ state: 'visible', timeout: 5000 });
  return { session_key: await page.evaluate(() => sessionStorage.getItem('ioc.key')) };
}

async function reload() {
  await page.reload({ waitUntil: 'load' });
  return { session_key: await page.evaluate(() => sessionStorage.getItem('ioc.key')) };
}

async function stations({ count, timeout_ms = 15000 }) {
  await page.waitForFunction(
    (n) => document.querySelectorAll('svg#map .station[data-device-id]').length >= n,
    count,
    { timeout: timeout_ms },
  );
  return {
    stations: await page.$$eval('svg#map .station[data-device-id]', (els) =>
      els.map((el) => ({
        id: el.dataset.deviceId,
        status: el.dataset.status,
        severity: el.dataset.severity,
        title: (el.querySelector('title')?.textContent ?? '').trim(),
      })),
    ),
  };
}

async function liveState({ state = 'open', timeout_ms = 10000 }) {
  await page.locator(`#live-status[data-state="${state}"]`).waitFor({ state: 'attached', timeout: timeout_ms });
  return { state };
}

function alertItem(id) {
  return page.locator(`ul#alerts li.alert[data-alert-id="${id}"]`);
}

async function describe(id) {
  const li = alertItem(id);
  return {
    text: ((await li.textContent()) ?? '').replace(/\s+/g, ' ').trim(),
    acknowledged: await li.getAttribute('data-acknowledged'),
    severity: await li.getAttribute('data-severity'),
    province: await li.getAttribute('data-province'),
    kind: await li.getAttribute('data-kind'),
    has_ack_button: (await li.locator('button.ack').count()) > 0,
    ack_error: (await li.locator('.ack-error').count()) > 0
      ? ((await li.locator('.ack-error').first().textContent()) ?? '').trim()
      : null,
  };
}

async function waitAlert({ alert_id, timeout_ms = 10000 }) {
  await alertItem(alert_id).waitFor({ state: 'attached', timeout: timeout_ms });
  const seen = await page.evaluate((id) => (window.__iocSeen || {})[id] ?? null, alert_id);
  const order = await page.$$eval('ul#alerts li.alert', (els) =>
    els.map((el) => ({ id: el.dataset.alertId, severity: el.dataset.severity })),
  );
  const count = ((await page.locator('#alert-count').textContent()) ?? '').trim();
  return { seen_ms: seen, order, count, ...(await describe(alert_id)) };
}

async function ack({ alert_id, expect, timeout_ms = 10000 }) {
  const li = alertItem(alert_id);
  await li.locator('button.ack').click();
  if (expect === 'error') {
    await li.locator('.ack-error').waitFor({ state: 'visible', timeout: timeout_ms });
  } else {
    await page.locator(`ul#alerts li.alert[data-alert-id="${alert_id}"][data-acknowledged="true"]`).waitFor({
      state: 'attached',
      timeout: timeout_ms,
    });
  }
  return describe(alert_id);
}

const RANKS = { none: 0, info: 1, warning: 2, critical: 3 };

/** Set the three filters; wait until the list shows `expect_ids` (the ids the filters should leave). */
async function filter({ province = '', kind = '', severity = '', expect_ids, timeout_ms = 5000 }) {
  await page.selectOption('select#filter-province', province);
  await page.selectOption('select#filter-kind', kind);
  await page.selectOption('select#filter-severity', severity);
  if (!expect_ids) throw new Error('filter needs expect_ids: the alert ids the filters should leave');
  await page
    .waitForFunction(
      (wanted) => {
        const ids = [...document.querySelectorAll('ul#alerts li.alert')].map((el) => el.dataset.alertId).sort();
        const count = (document.querySelector('#alert-count')?.textContent ?? '').trim();
        return JSON.stringify(ids) === JSON.stringify(wanted) && count === String(wanted.length);
      },
      [...expect_ids].sort(),
      { timeout: timeout_ms },
    )
    .catch(() => null); // the state below says what the page shows instead
  return {
    items: await page.$$eval('ul#alerts li.alert', (els) =>
      els.map((el) => ({
        id: el.dataset.alertId,
        province: el.dataset.province,
        kind: el.dataset.kind,
        severity: el.dataset.severity,
      })),
    ),
    count: ((await page.locator('#alert-count').textContent()) ?? '').trim(),
  };
}

/**
 * Open a station from the map. With `field`: the API's history answer for that field's chart, the
 * chart's drawn point count, threshold lines and alert spans (waiting for `span_alert_id`'s span,
 * if given, until `timeout_ms`).
 */
async function station({ device_id, field = null, camera = false, span_alert_id = null, timeout_ms = 15000 }) {
  const wanted = field ? new RegExp(`/v1/readings/${device_id}/${field}(\\?|$)`) : null;
  const answered = wanted
    ? page.waitForResponse((res) => wanted.test(new URL(res.url()).pathname + new URL(res.url()).search), { timeout: timeout_ms })
    : null;
  answered?.catch(() => null); // awaited below
  const dot = page.locator(`svg#map .station[data-device-id="${device_id}"]`).first();
  await dot.scrollIntoViewIfNeeded();
  await dot.click({ force: true });
  await page.locator(`section#station[data-device-id="${device_id}"]`).waitFor({ state: 'visible', timeout: timeout_ms });
  await page.locator('section#station table#latest tr[data-field]').first().waitFor({ state: 'attached', timeout: timeout_ms });
  if (camera) {
    await page.locator('section#station ul#camera-events li').first().waitFor({ state: 'visible', timeout: timeout_ms });
  }
  let points = null;
  let thresholds = [];
  let spans = [];
  const got = [];
  if (field) {
    const res = await answered;
    got.push({ url: res.url(), status: res.status(), body: await res.json().catch(() => null) });
    // drawn: renderChart clears aria-busy once it drew the answer
    const chart = page.locator(`section#station svg.chart[data-field="${field}"][data-points]:not([aria-busy])`);
    await chart.waitFor({ state: 'attached', timeout: timeout_ms });
    if (span_alert_id) {
      await chart
        .locator(`rect.alert-span[data-alert-id="${span_alert_id}"]`)
        .first()
        .waitFor({ state: 'attached', timeout: timeout_ms })
        .catch(() => null); // the spans below say what is drawn instead
    }
    points = Number(await chart.getAttribute('data-points'));
    thresholds = await chart.locator('line.threshold[data-rule-id]').evaluateAll((els) => els.map((e) => e.dataset.ruleId));
    spans = await chart
      .locator('rect.alert-span[data-alert-id]')
      .evaluateAll((els) => els.map((e) => ({ id: e.dataset.alertId, severity: e.dataset.severity ?? null })));
  }
  return {
    points,
    thresholds,
    spans,
    history_ids: await page.$$eval('section#station ul#station-alerts li[data-alert-id]', (els) => els.map((e) => e.dataset.alertId)),
    charts: await page.$$eval('section#station svg.chart[data-field]', (els) => els.map((e) => e.dataset.field)),
    latest_fields: await page.$$eval('section#station table#latest tr[data-field]', (els) => els.map((e) => e.dataset.field)),
    history_items: await page.locator('section#station ul#station-alerts li').count(),
    camera_events: await page.$$eval('section#station ul#camera-events li', (els) =>
      els.map((e) => e.textContent.replace(/\s+/g, ' ').trim()),
    ),
    requests: got,
  };
}

async function toggleLanguage({ selector }) {
  const before = await page.getAttribute('html', 'lang');
  await page.locator('button#lang-toggle').click();
  await page.waitForFunction((lang) => document.documentElement.lang !== lang, before, { timeout: 5000 }).catch(() => null);
  return {
    lang: await page.getAttribute('html', 'lang'),
    text: selector ? ((await page.locator(selector).first().textContent()) ?? '').replace(/\s+/g, ' ').trim() : null,
    stored: await page.evaluate(() => localStorage.getItem('ioc.lang')),
  };
}

async function text({ selector }) {
  return { text: ((await page.locator(selector).first().textContent()) ?? '').replace(/\s+/g, ' ').trim() };
}

async function screenshot({ file, width, height }) {
  await page.setViewportSize({ width, height });
  // laid out at the new size: the window has it, and two frames were drawn since (the map is SVG
  // scaled by CSS: it follows the layout, nothing is redrawn by script)
  await page.waitForFunction(([w, h]) => window.innerWidth === w && window.innerHeight === h, [width, height], { timeout: 5000 });
  await page.evaluate(() => new Promise((done) => requestAnimationFrame(() => requestAnimationFrame(done))));
  fs.mkdirSync(path.dirname(file), { recursive: true });
  await page.screenshot({ path: file });
  const size = await page.evaluate(() => ({
    scroll_width: document.scrollingElement.scrollWidth,
    inner_width: window.innerWidth,
    inner_height: window.innerHeight,
  }));
  return { file, ...size };
}

async function axe() {
  // Evaluated through the DevTools protocol: the desk's Content-Security-Policy (script-src 'self')
  // stays in force, as operators get it; a script tag would be refused by it.
  if (!(await page.evaluate(() => typeof window.axe === 'object'))) await page.evaluate(fs.readFileSync(AXE, 'utf8'));
  const result = await page.evaluate(() => window.axe.run(document, { resultTypes: ['violations'] }));
  return {
    violations: result.violations.map((v) => ({
      id: v.id,
      impact: v.impact,
      help: v.help,
      nodes: v.nodes.slice(0, 5).map((n) => ({ target: n.target.join(' '), summary: n.failureSummary })),
    })),
  };
}

/**
 * Wait until the map paints `device_id` at least `at_least` severe; when it first did (epoch ms,
 * the page's clock, from the init script's record) and its severity now.
 */
async function painted({ device_id, at_least, timeout_ms = 10000 }) {
  const rank = RANKS[at_least];
  await page
    .waitForFunction(
      ([id, min, ranks]) => {
        const dot = document.querySelector(`svg#map .station[data-device-id="${id}"]`);
        return dot !== null && (ranks[dot.dataset.severity] ?? 0) >= min;
      },
      [device_id, rank, RANKS],
      { timeout: timeout_ms },
    )
    .catch(() => null); // the answer says what the map shows instead
  const changes = await page.evaluate((id) => (window.__iocPaint || {})[id] ?? [], device_id);
  const first = changes.find(([severity]) => (RANKS[severity] ?? 0) >= rank);
  return {
    severity: await page.getAttribute(`svg#map .station[data-device-id="${device_id}"]`, 'data-severity'),
    painted_ms: first ? first[1] : null,
    changes,
  };
}

/**
 * Every node marked for translation (data-i18n: its text, data-i18n-aria: its aria-label) with
 * the text the page's own table (STRINGS of /desk/i18n.js, as the page loaded it) has for it in
 * `lang`; plus the document's title and the language button.
 */
async function i18n({ lang }) {
  return page.evaluate(async (wanted) => {
    const { STRINGS } = await import('/desk/i18n.js');
    const norm = (text) => (text ?? '').replace(/\s+/g, ' ').trim();
    const entry = (key) => (key in STRINGS ? STRINGS[key][wanted] : null);
    return {
      lang: document.documentElement.lang,
      title: document.title,
      expected_title: entry('title'),
      toggle: norm(document.querySelector('button#lang-toggle')?.textContent),
      expected_toggle: entry('lang_toggle'),
      texts: [...document.querySelectorAll('[data-i18n]')].map((el) => ({
        key: el.dataset.i18n,
        text: norm(el.textContent),
        expected: entry(el.dataset.i18n),
      })),
      labels: [...document.querySelectorAll('[data-i18n-aria]')].map((el) => ({
        key: el.dataset.i18nAria,
        text: norm(el.getAttribute('aria-label')),
        expected: entry(el.dataset.i18nAria),
      })),
    };
  }, lang);
}

async function evaluate({ expression }) {
  return { value: await page.evaluate(expression) };
}

const OPS = {
  open,
  login,
  logout,
  reload,
  stations,
  live: liveState,
  wait_alert: waitAlert,
  ack,
  filter,
  station,
  lang: toggleLanguage,
  text,
  screenshot,
  axe,
  eval: evaluate,
  painted,
  i18n,
  origins: async () => ({ origins: [...origins].sort() }),
  errors: async () => ({ errors: pageErrors.slice() }),
  requests: async () => ({ requests: requests.splice(0) }),
};

const lines = readline.createInterface({ input: process.stdin });
for await (const line of lines) {
  if (!line.trim()) continue;
  const command = JSON.parse(line);
  if (command.op === 'close') break;
  let answer;
  try {
    const op = OPS[command.op];
    if (!op) throw new Error(`unknown op ${command.op}`);
    answer = { ok: true, ...(await op(command)) };
  } catch (err) {
    answer = { ok: false, error: String(err && err.stack ? err.stack : err).slice(0, 4000) };
  }
  process.stdout.write(JSON.stringify(answer) + '\n');
}
if (browser) await browser.close();
