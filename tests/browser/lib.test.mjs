// The desk's pure helpers (api/desk/lib.js) under `node --test`, run from pytest by
// tests/integration/test_desk_lib.py. lib.js is an ES module of the page, imported by its file URL.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { fileURLToPath, pathToFileURL } from 'node:url';

const LIB = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..', 'api', 'desk', 'lib.js');

async function load() {
  try {
    return await import(pathToFileURL(LIB).href);
  } catch {
    // Node < 20.19 does not detect ES module syntax in a .js file outside a "type": "module" package
    // (a SyntaxError there): import the same text as an .mjs file (a real error shows again there).
    const copy = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'desk-lib-')), 'lib.mjs');
    fs.copyFileSync(LIB, copy);
    return import(pathToFileURL(copy).href);
  }
}

const lib = await load();

// -- SseParser ------------------------------------------------------------------------------------

const STREAM = [
  'retry: 3000',
  '',
  ': keep-alive',
  '',
  'event: snapshot',
  'id: 7',
  'data: [{"id":"a1","message_vi":"Độ mặn cao"}]',
  '',
  'event: alert',
  'id: 8',
  'data: {"id":"a2"}',
  'data:second line',
  '',
  ': keep-alive',
  'data: no type',
  '',
  '',
].join('\n');

const EXPECTED = [
  { event: 'snapshot', data: '[{"id":"a1","message_vi":"Độ mặn cao"}]', id: '7' },
  { event: 'alert', data: '{"id":"a2"}\nsecond line', id: '8' },
  { event: 'message', data: 'no type', id: '8' }, // the last id persists
];

function parseChunks(chunks) {
  const parser = new lib.SseParser();
  const events = [];
  for (const chunk of chunks) events.push(...parser.feed(chunk));
  return { events, parser };
}

for (const [name, eol] of [['LF', '\n'], ['CRLF', '\r\n'], ['CR', '\r']]) {
  const text = STREAM.replaceAll('\n', eol);

  test(`SseParser: the whole ${name} stream in one chunk`, () => {
    const { events, parser } = parseChunks([text]);
    assert.deepEqual(events, EXPECTED);
    assert.equal(parser.retry, 3000);
    assert.equal(parser.lastEventId, '8');
  });

  test(`SseParser: the ${name} stream cut into two or three chunks anywhere`, () => {
    for (let i = 0; i <= text.length; i++) {
      assert.deepEqual(parseChunks([text.slice(0, i), text.slice(i)]).events, EXPECTED, `cut at ${i}`);
      for (let j = i + 1; j <= text.length; j += 3) {
        const chunks = [text.slice(0, i), text.slice(i, j), text.slice(j)];
        assert.deepEqual(parseChunks(chunks).events, EXPECTED, `cut at ${i} and ${j}`);
      }
    }
  });

  test(`SseParser: the ${name} stream one character at a time`, () => {
    assert.deepEqual(parseChunks([...text]).events, EXPECTED);
  });
}

test('SseParser: a CRLF split between chunks is one line end, not a blank line', () => {
  // Were the "\n" of a split "\r\n" read as a blank line, "a" and "b" would be two events.
  const { events } = parseChunks(['data: a\r', '\ndata: b\r', '\n\r', '\n']);
  assert.deepEqual(events, [{ event: 'message', data: 'a\nb', id: '' }]);
});

test('SseParser: an empty chunk between the "\\r" and the "\\n" of a CRLF changes nothing', () => {
  // A read can decode to "" (an empty buffer, or a lone byte of a multi-byte character).
  const { events } = parseChunks(['data: a\r', '', '\ndata: b\r\n', '', '\r\n']);
  assert.deepEqual(events, [{ event: 'message', data: 'a\nb', id: '' }]);
});

test('SseParser: an event waits for its blank line', () => {
  const parser = new lib.SseParser();
  assert.deepEqual(parser.feed('event: alert\ndata: {"id":"x"}\n'), []);
  assert.deepEqual(parser.feed('\n'), [{ event: 'alert', data: '{"id":"x"}', id: '' }]);
});

test('SseParser: a bad retry is ignored, comments carry nothing', () => {
  const { events, parser } = parseChunks(['retry: 3000\n\nretry: soon\n\n: data: x\n\n']);
  assert.deepEqual(events, []);
  assert.equal(parser.retry, 3000);
});

// -- ordering and severities ----------------------------------------------------------------------

const ALERTS = [
  { id: 'i-old', severity: 'info', fired_at_ms: 1000 },
  { id: 'w-new', severity: 'warning', fired_at_ms: 5000 },
  { id: 'c-old', severity: 'critical', fired_at_ms: 2000 },
  { id: 'w-old', severity: 'warning', fired_at_ms: 3000 },
  { id: 'c-new-b', severity: 'critical', fired_at_ms: 4000 },
  { id: 'c-new-a', severity: 'critical', fired_at_ms: 4000 },
  { id: 'i-new', severity: 'info', fired_at_ms: 6000 },
];
const ORDER = ['c-new-a', 'c-new-b', 'c-old', 'w-new', 'w-old', 'i-new', 'i-old'];

test('sortAlerts: most severe first, then newest first, then by id', () => {
  const input = ALERTS.slice();
  assert.deepEqual(lib.sortAlerts(input).map((a) => a.id), ORDER);
  assert.deepEqual(input, ALERTS, 'the input is not reordered');
});

test('compareAlerts: a total order, whatever the input order', () => {
  let seed = 16;
  const random = () => ((seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31);
  for (let round = 0; round < 50; round++) {
    const shuffled = ALERTS.map((a) => [random(), a]).sort((x, y) => x[0] - y[0]).map((x) => x[1]);
    assert.deepEqual(shuffled.sort(lib.compareAlerts).map((a) => a.id), ORDER);
  }
  for (const a of ALERTS) {
    assert.equal(lib.compareAlerts(a, a), 0);
    for (const b of ALERTS) assert.equal(Math.sign(lib.compareAlerts(a, b)) + Math.sign(lib.compareAlerts(b, a)), 0);
  }
});

test('worstSeverity: the most severe label, "none" for none', () => {
  assert.equal(lib.worstSeverity([]), 'none');
  assert.equal(lib.worstSeverity(['info']), 'info');
  assert.equal(lib.worstSeverity(['info', 'critical', 'warning']), 'critical');
  assert.equal(lib.worstSeverity(['warning', 'info', 'warning']), 'warning');
  assert.equal(lib.worstSeverity(['none', 'bogus']), 'none');
  assert.equal(lib.worstSeverity(new Set(['info', 'warning'])), 'warning'); // any iterable
});

// -- reconnection ---------------------------------------------------------------------------------

test('backoffMs: doubles from the base, capped, within ±20 % jitter', () => {
  const base = 3000;
  const cap = 30000;
  for (let attempt = -2; attempt <= 40; attempt++) {
    const raw = Math.min(cap, base * 2 ** Math.max(0, attempt));
    for (const r of [0, 0.25, 0.5, 0.75, 0.999999]) {
      const ms = lib.backoffMs(attempt, base, cap, () => r);
      assert.ok(ms >= Math.floor(0.8 * raw) && ms <= Math.ceil(1.2 * raw), `attempt ${attempt}, random ${r}: ${ms}`);
      assert.ok(ms <= 1.2 * cap);
    }
    assert.equal(lib.backoffMs(attempt, base, cap, () => 0.5), raw, 'no jitter at the middle');
  }
  assert.equal(lib.backoffMs(0, base, cap, () => 0.5), 3000);
  assert.equal(lib.backoffMs(3, base, cap, () => 0.5), 24000);
  assert.equal(lib.backoffMs(4, base, cap, () => 0.5), 30000);
  for (let i = 0; i < 1000; i++) {
    const ms = lib.backoffMs(i % 12); // the defaults, with Math.random
    assert.ok(ms >= 2400 && ms <= 36000, String(ms));
  }
});

// -- the map's projection -------------------------------------------------------------------------

function inside(fit, points) {
  for (const p of points) {
    if (!Number.isFinite(p.lat) || !Number.isFinite(p.lon)) continue;
    const [x, y] = fit.project(p.lat, p.lon);
    assert.ok(x >= 0 && x <= fit.width && y >= 0 && y <= fit.height, `${JSON.stringify(p)} → ${x},${y} outside ${fit.width}×${fit.height}`);
  }
}

test('fitEquirectangular: every station falls inside the drawing', () => {
  let seed = 7;
  const random = () => ((seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31);
  const delta = Array.from({ length: 200 }, () => ({ lat: 8.5 + random() * 2.5, lon: 104.4 + random() * 2.4 }));
  for (const options of [{}, { width: 300 }, { width: 1000, margin: 0 }, { width: 640, margin: 0.2 }]) {
    const fit = lib.fitEquirectangular(delta, options);
    assert.equal(fit.width, options.width ?? 1000);
    assert.ok(fit.height > 0);
    inside(fit, delta);
  }
  // a tall, thin fleet; one station; stations on one meridian; a station without a position
  inside(lib.fitEquirectangular([{ lat: 8.6, lon: 105 }, { lat: 10.9, lon: 105.01 }]), [{ lat: 8.6, lon: 105 }, { lat: 10.9, lon: 105.01 }]);
  const one = [{ lat: 10.03, lon: 105.78 }];
  inside(lib.fitEquirectangular(one), one);
  const meridian = [{ lat: 9, lon: 106 }, { lat: 10, lon: 106 }, { lat: null, lon: undefined }];
  const fit = lib.fitEquirectangular(meridian);
  assert.ok(Number.isFinite(fit.height));
  inside(fit, meridian);
  // the west-most station is left of the east-most, the north-most above the south-most
  const [xw] = fit.project(9, 105.9), [xe] = fit.project(9, 106.1);
  const [, yn] = fit.project(10, 106), [, ys] = fit.project(9, 106);
  assert.ok(xw < xe && yn < ys);
});
