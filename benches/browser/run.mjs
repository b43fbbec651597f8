// The web client's benchmark: headless Chromium against the real server.
//
//   node benches/browser/run.mjs [--compare REV] [--only flood|scroll]
//   cargo bench --bench browser            (the same, with this crate's binary)
//
// Two scenarios, each with a fresh server (`--rate-limit 0`) and browser:
//
// - flood: the client is open on #general, at the bottom, while another user
//   (a WebSocket from this script) posts RATE messages a second for FLOOD_SECS.
// - scroll: a room of ARCHIVE messages (posted over a WebSocket beforehand),
//   opened at the bottom and scrolled to the very top with the mouse wheel.
//
// What is measured, inside the page (probe.js has the method):
// - arrival → paint: from the frame's arrival in the socket's message event
//   to the end of the first frame that shows its row; and send → paint, from
//   the sender's clock (the poster writes it into the message; the page's
//   clock is matched to this script's), which also counts any time the
//   message waited in the page's task queue before the socket event ran.
//   Messages never painted count as infinitely late.
// - the worst frame: the longest Long Animation Frame (main-thread work of one
//   frame, reported when over 50 ms) and the longest interval between two
//   animation frames. Forced garbage collections are left out.
// - JS heap (after a forced GC) and DOM size (elements in the document; all
//   live nodes as Chromium counts them) after the first minute and at the end.
//
// --compare REV also measures the client in git revision REV's static/ (the
// old client), in the same run, alternating old and new. Results: a table on
// stdout, bench-results/browser.json and bench-results/browser.md.
//
// Knobs (environment): HUBBUB_BIN (server binary; default target/release/hubbub),
// HUBBUB_BROWSER_BENCH_SECS (flood seconds, default 120: the minute,
// then a second one to show heap and DOM stay flat), HUBBUB_BROWSER_BENCH_RATE
// (messages/s, default 100), HUBBUB_BROWSER_BENCH_ARCHIVE (messages in the
// scrolled room, default 10000).

import { execFileSync, spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir, cpus, loadavg } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

// Node 20 has WebSocket behind a flag (21+ by default): run again with it.
if (typeof WebSocket === 'undefined') {
  const r = spawnSync(process.execPath, ['--experimental-websocket', ...process.argv.slice(1)], { stdio: 'inherit' });
  process.exit(r.status ?? 1);
}

const { startServer, freshDb } = await import('../../tests/browser/helpers.mjs');

const HERE = path.dirname(fileURLToPath(import.meta.url));
const REPO = path.resolve(HERE, '..', '..');
const PROBE = readFileSync(path.join(HERE, 'probe.js'), 'utf8');
const RESULTS = path.join(REPO, 'bench-results');

const num = (name, fallback) => (process.env[name] ? Number(process.env[name]) : fallback);
const FLOOD_SECS = num('HUBBUB_BROWSER_BENCH_SECS', 120);
const RATE = num('HUBBUB_BROWSER_BENCH_RATE', 100);
const ARCHIVE = num('HUBBUB_BROWSER_BENCH_ARCHIVE', 10_000);
// After the flood, how long painting may still catch up before the rest counts as never painted.
const DRAIN_SECS = 20;
// Heap and DOM are read this often during the flood; the forced-GC readings at the first minute and at the end.
const SAMPLE_EVERY_S = 10;
// (A shortened run, for trying the script out, takes its reading halfway.)
const FIRST_MINUTE_S = Math.min(60, Math.floor(FLOOD_SECS / 2 / SAMPLE_EVERY_S) * SAMPLE_EVERY_S || SAMPLE_EVERY_S);
// The scroll: a wheel notch this big this often (12,000 px/s, a fast flick), for at most this long.
const WHEEL_PX = 600;
const WHEEL_EVERY_MS = 50;
const SCROLL_LIMIT_S = 180;
// Messages posted in flight while filling the archive room.
const FILL_WINDOW = 500;
// Targets from issue 14.
const TARGET_P99_MS = 100;
const TARGET_FRAME_MS = 50;
// "Flat": the end reading within this factor of the first-minute one.
const FLAT_HEAP = 1.1;
const FLAT_DOM = 1.02;

const VIEWPORT = { width: 1200, height: 760 };
const PASSWORD = 'correct horse';
// Chat-like lines of different lengths, one with a link, cycled through.
const LINES = [
  'ok',
  'sounds good to me',
  'did anyone look at the deploy from this morning?',
  'the build is green again, see https://example.com/ci/builds/4821 for the log',
  'I think we should split the migration into two steps so the rollback stays simple and nobody has to wait on the big table',
  'lunch?',
  'pushed a fix, can someone review it before the release train leaves at three',
  'thanks!',
];

// ---- the server side --------------------------------------------------------

async function api(base, method, p, body, token) {
  const res = await fetch(base + p, {
    method,
    headers: { 'Content-Type': 'application/json', ...(token ? { Authorization: `Bearer ${token}` } : {}) },
    body: body && JSON.stringify(body),
  });
  if (!res.ok) throw new Error(`${method} ${p}: ${res.status} ${await res.text()}`);
  return res.json();
}

/** Sign up (if new) and log in; the session object the client keeps in localStorage. */
async function account(base, username) {
  await api(base, 'POST', '/api/signup', { username, email: `${username}@example.com`, password: PASSWORD }).catch(() => {});
  const r = await api(base, 'POST', '/api/login', { username, password: PASSWORD });
  return { token: r.token, expiresAt: Date.parse(r.expires_at), user: r.user };
}

/** A protocol client (the other user): join a room, post, count acks. */
async function poster(base, session, room) {
  const ws = new WebSocket(`${base.replace('http', 'ws')}/ws?token=${encodeURIComponent(session.token)}`);
  await new Promise((resolve, reject) => {
    ws.onopen = resolve;
    ws.onerror = reject;
  });
  const p = { ws, acks: 0, onAck: null };
  ws.onmessage = (ev) => {
    const f = JSON.parse(ev.data);
    if (f.type === 'ack') {
      p.acks += 1;
      p.onAck?.();
    } else if (f.type === 'error') {
      throw new Error(`poster got an error: ${ev.data}`);
    }
  };
  ws.send(JSON.stringify({ type: 'join', room }));
  p.post = (n, prefix) => ws.send(JSON.stringify({ type: 'message', room, content: `${prefix} ${n} t=${(performance.timeOrigin + performance.now()).toFixed(3)} ${LINES[n % LINES.length]}` }));
  return p;
}

async function fillRoom(p, count) {
  let sent = 0;
  await new Promise((resolve) => {
    const more = () => {
      while (sent < count && sent - p.acks < FILL_WINDOW) p.post(++sent, 'archive');
      if (p.acks >= count) resolve();
    };
    p.onAck = more;
    more();
  });
  p.onAck = null;
}

// ---- the browser side ---------------------------------------------------------

// The test suite's Chromium flags, plus exact (not bucketed) performance.memory.
async function launch() {
  const { chromium } = await import(path.join(REPO, 'tests/browser/node_modules/playwright-core/index.mjs'));
  return chromium.launch({
    executablePath: '/usr/bin/chromium',
    args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--no-first-run', '--disable-sync', '--disable-quic', '--enable-precise-memory-info'],
  });
}

/** A promise's value, or `fallback` when the page is too busy to answer within `ms`. */
function within(ms, promise, fallback = null) {
  return Promise.race([promise.catch(() => fallback), new Promise((r) => setTimeout(() => r(fallback), ms))]);
}

async function openClient(browser, base, session, rooms, active) {
  const context = await browser.newContext({ viewport: VIEWPORT });
  const user = session.user.username.toLowerCase();
  await context.addInitScript(
    ({ s, u, r, a }) => {
      localStorage.setItem('hubbub.session', JSON.stringify(s));
      localStorage.setItem(`hubbub.${u}.rooms`, JSON.stringify(r));
      localStorage.setItem(`hubbub.${u}.active`, JSON.stringify(a));
    },
    { s: session, u: user, r: rooms, a: active },
  );
  // What the probe reports, accumulated here as it comes.
  const data = { rows: [], frameTimes: [], loaf: [], history: [], last: null, excluded: [] };
  await context.exposeFunction('__benchPush', (d) => {
    for (const k of ['rows', 'frameTimes', 'loaf', 'history']) for (const x of d[k]) data[k].push(x);
    data.last = d;
  });
  await context.addInitScript(PROBE);
  const page = await context.newPage();
  const errors = [];
  page.on('pageerror', (e) => errors.push(e.message));
  const cdp = await context.newCDPSession(page);
  await cdp.send('Performance.enable');
  await page.goto(base);
  await page.waitForSelector('#conn-status[data-status=online]', { state: 'attached' });
  // The page's clock against this script's (both count from the epoch): the
  // reading with the shortest round trip.
  let best = { rtt: Infinity, offset: 0 };
  for (let i = 0; i < 5; i++) {
    const before = performance.timeOrigin + performance.now();
    const there = await page.evaluate(() => performance.timeOrigin + performance.now());
    const after = performance.timeOrigin + performance.now();
    if (after - before < best.rtt) best = { rtt: after - before, offset: there - (before + after) / 2 };
  }
  const pageTimeOrigin = await page.evaluate(() => performance.timeOrigin);
  return {
    context,
    page,
    cdp,
    errors,
    data,
    /** A page timestamp (performance.now()) as epoch ms on this script's clock, and back. */
    toLocal: (t) => pageTimeOrigin + t - best.offset,
    toPage: (epoch) => epoch + best.offset - pageTimeOrigin,
  };
}

/**
 * Heap and DOM size now. With `gc`, after a forced collection, whose time is
 * left out of the frame figures. null parts: the page did not answer in time.
 */
async function sample(client, gc) {
  const { page, cdp, data } = client;
  let heapMB = null;
  let nodes = null;
  if (gc) {
    // The window is taken on this script's clock: a busy page may not answer at all.
    const from = client.toPage(performance.timeOrigin + performance.now());
    gc = await within(10_000, cdp.send('HeapProfiler.collectGarbage').then(() => true), false);
    data.excluded.push([from, client.toPage(performance.timeOrigin + performance.now()) + 100]);
  }
  const metrics = await within(5000, cdp.send('Performance.getMetrics'));
  let busy = null;
  if (metrics) {
    const m = Object.fromEntries(metrics.metrics.map((x) => [x.name, x.value]));
    heapMB = m.JSHeapUsedSize / 2 ** 20;
    nodes = m.Nodes;
    // Cumulative main-thread seconds: what the page cost, whatever else ran on the machine.
    busy = { task: m.TaskDuration, script: m.ScriptDuration, layout: m.LayoutDuration, style: m.RecalcStyleDuration, wall: performance.now() / 1000 };
  }
  const dom = await within(5000, page.evaluate(() => ({ elements: document.getElementsByTagName('*').length, rows: document.querySelectorAll('#message-list li.msg').length })));
  // A page too busy to answer: the probe's last report (heap without a GC).
  const last = data.last;
  return {
    gc,
    busy,
    heapMB: heapMB ?? (last ? last.heap / 2 ** 20 : NaN),
    nodes: nodes ?? NaN,
    elements: dom?.elements ?? last?.elements ?? NaN,
    rows: dom?.rows ?? last?.messageRows ?? NaN,
    answered: !!dom,
  };
}

async function collect(client) {
  await within(10_000, client.page.evaluate(() => window.__bench.stop()));
  return client.data;
}

const overlaps = (a0, a1, windows) => windows.some(([w0, w1]) => a0 < w1 && a1 > w0);

function frameFigures(raw) {
  const loaf = raw.loaf.filter((e) => !overlaps(e.start, e.start + e.duration, raw.excluded));
  let maxGap = 0;
  for (let i = 1; i < raw.frameTimes.length; i++) {
    const [t0, t1] = [raw.frameTimes[i - 1], raw.frameTimes[i]];
    if (!overlaps(t0, t1, raw.excluded)) maxGap = Math.max(maxGap, t1 - t0);
  }
  const worst = loaf.reduce((w, e) => (!w || e.duration > w.duration ? e : w), null);
  return {
    worstFrame: worst,
    longFrameList: loaf.map((e) => `${Math.round(e.start)}: ${Math.round(e.duration)} ms (script ${Math.round(e.script)}, layout ${Math.round(e.layout)}) ${e.culprit}`),
    worstFrameMs: worst ? worst.duration : 0,
    longFrames: loaf.length,
    longFrameMs: loaf.reduce((s, e) => s + e.duration, 0),
    maxFrameGapMs: maxGap,
    frames: raw.frameTimes.length,
  };
}

/** Main-thread milliseconds per second between two samples: all tasks, scripts, layout, style. */
function busyPerSecond(a, b) {
  if (!a?.busy || !b?.busy) return null;
  const secs = b.busy.wall - a.busy.wall;
  const per = (k) => ((b.busy[k] - a.busy[k]) * 1000) / secs;
  return { task: per('task'), script: per('script'), layout: per('layout'), style: per('style') };
}

function percentile(sorted, p) {
  if (!sorted.length) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)];
}

/** p50/p99/max over all `total` messages; those never painted count as infinitely late. */
function latency(values, total) {
  const v = values.slice().sort((a, b) => a - b);
  while (v.length < total) v.push(Infinity);
  return { p50: percentile(v, 50), p99: percentile(v, 99), max: v.at(-1) };
}

// ---- scenarios ---------------------------------------------------------------

async function flood(variant) {
  const server = await startServer({ db: freshDb(), extraArgs: ['--rate-limit', '0', '--static-dir', variant.dir] });
  const browser = await launch();
  const timers = [];
  try {
    const reader = await account(server.url, 'reader');
    const client = await openClient(browser, server.url, reader, ['general'], '#general');
    await client.page.locator('#empty-state:not([hidden])').waitFor();
    const p = await poster(server.url, await account(server.url, 'poster'), 'general');
    // A second subscriber in this process stamps when the server delivered
    // each message: the server's share of the latency, apart from the page's.
    const watcher = await poster(server.url, await account(server.url, 'watcher'), 'general');
    const delivered = new Map();
    const serverLat = []; // the poster's send to the watcher's receipt
    watcher.ws.onmessage = (ev) => {
      const now = performance.timeOrigin + performance.now();
      if (!ev.data.includes('"type":"message"')) return;
      const id = ev.data.match(/"id":(\d+)/);
      const t = ev.data.match(/ t=(\d+(?:\.\d+)?)/);
      if (!id || !t) return;
      delivered.set(Number(id[1]), now);
      serverLat.push(now - Number(t[1]));
    };
    await new Promise((r) => setTimeout(r, 1000));
    const begin = await sample(client, false);
    await client.page.evaluate(() => window.__bench.start());

    const total = Math.round(FLOOD_SECS * RATE);
    const sentAt = new Map();
    let sent = 0;
    const t0 = performance.now();
    // The poster keeps its rate whatever the page does: its own timer, never awaiting the page.
    await new Promise((resolve) => {
      const tick = setInterval(() => {
        const due = Math.min(total, Math.floor(((performance.now() - t0) / 1000) * RATE));
        while (sent < due) p.post(++sent, 'flood');
        if (sent >= total) {
          clearInterval(tick);
          resolve();
        }
      }, 5);
      timers.push(tick);
      // Heap and DOM meanwhile, without holding the poster up.
      process.stdout.write(`  flood ${variant.name}: `);
      (async () => {
        for (let at = SAMPLE_EVERY_S; at <= FLOOD_SECS; at += SAMPLE_EVERY_S) {
          const wait = t0 + at * 1000 - performance.now();
          if (wait > 0) await new Promise((r) => setTimeout(r, wait));
          const s = { at, ...(await sample(client, at === FIRST_MINUTE_S)) };
          client.samples = [...(client.samples || []), s];
          process.stdout.write(`${at}s:${s.rows} `);
        }
      })();
    });
    // Let painting catch up, up to DRAIN_SECS; what is not painted by then never was.
    const drainEnd = performance.now() + DRAIN_SECS * 1000;
    while (performance.now() < drainEnd && client.data.rows.length < total) await new Promise((r) => setTimeout(r, 250));
    const end = { at: Math.round((performance.now() - t0) / 1000), ...(await sample(client, true)) };
    const raw = await collect(client);
    console.log(`end:${end.rows} painted ${raw.rows.length}/${total}`);
    const samples = client.samples || [];
    const firstMinute = samples.find((s) => s.at === FIRST_MINUTE_S) || null;
    const arrivalToPaint = raw.rows.map(([, , arrival, , paint]) => paint - arrival);
    const deliveryToPaint = raw.rows.filter(([id]) => delivered.has(id)).map(([id, , , , paint]) => client.toLocal(paint) - delivered.get(id));
    const sendToPaint = raw.rows.map(([, sent0, , , paint]) => client.toLocal(paint) - sent0);
    return {
      scenario: 'flood',
      variant: variant.name,
      load: loadavg()[0],
      sent: total,
      painted: raw.rows.length,
      arrivalToPaint: latency(arrivalToPaint, total),
      deliveryToPaint: latency(deliveryToPaint, total),
      sendToPaint: latency(sendToPaint, total),
      serverDelivery: latency(serverLat, serverLat.length),
      ...frameFigures(raw),
      busy: busyPerSecond(begin, end),
      firstMinute,
      end,
      samples,
      pageErrors: client.errors,
    };
  } finally {
    for (const t of timers) clearInterval(t);
    await browser.close().catch(() => {});
    await server.stop();
  }
}

async function scroll(variant, db, fill) {
  const server = await startServer({ db, extraArgs: ['--rate-limit', '0', '--static-dir', variant.dir] });
  const browser = await launch();
  try {
    const reader = await account(server.url, 'reader');
    if (fill) {
      const p = await poster(server.url, await account(server.url, 'poster'), 'archive');
      const t = performance.now();
      await fillRoom(p, ARCHIVE);
      p.ws.close();
      console.log(`  filled #archive with ${ARCHIVE} messages in ${((performance.now() - t) / 1000).toFixed(1)} s`);
    }
    const client = await openClient(browser, server.url, reader, ['archive'], '#archive');
    const { page } = client;
    await page.locator('#message-list li.msg').last().waitFor();
    await page.waitForTimeout(500);
    const box = await page.locator('#timeline').boundingBox();
    await page.mouse.move(box.x + box.width / 2, box.y + box.height / 2);
    const start = await sample(client, true);
    await page.evaluate(() => window.__bench.start());

    const t0 = performance.now();
    const atTop = () =>
      within(
        5000,
        page.evaluate(() => document.getElementById('timeline').scrollTop === 0 && document.getElementById('history-status').textContent.startsWith('This is the beginning')),
        false,
      );
    let reached = false;
    process.stdout.write(`  scroll ${variant.name}: `);
    let lastReport = t0;
    while ((performance.now() - t0) / 1000 < SCROLL_LIMIT_S) {
      await within(5000, page.mouse.wheel(0, -WHEEL_PX));
      await new Promise((r) => setTimeout(r, WHEEL_EVERY_MS));
      if (await atTop()) {
        reached = true;
        break;
      }
      if (performance.now() - lastReport > 10_000) {
        lastReport = performance.now();
        process.stdout.write(`${Math.round((performance.now() - t0) / 1000)}s `);
      }
    }
    const secs = (performance.now() - t0) / 1000;
    const raw = await collect(client);
    const end = await sample(client, true);
    const top = await within(5000, page.evaluate(() => document.querySelector('#message-list li.msg .msg-text')?.textContent || ''), '');
    console.log(`${reached ? 'top' : 'gave up'} after ${secs.toFixed(1)} s, ${raw.history.length} pages`);
    const pageLat = raw.history.map((h) => h.paint - h.arrival);
    const roundTrip = raw.history.map((h) => h.paint - h.sentAt);
    return {
      scenario: 'scroll',
      variant: variant.name,
      load: loadavg()[0],
      messages: ARCHIVE,
      reachedTop: reached,
      seconds: secs,
      pages: raw.history.length,
      firstShown: top.split(' t=')[0],
      historyArrivalToPaint: latency(pageLat, pageLat.length),
      historyRequestToPaint: latency(roundTrip, roundTrip.length),
      ...frameFigures(raw),
      busy: busyPerSecond(start, end),
      start,
      end,
      pageErrors: client.errors,
    };
  } finally {
    await browser.close().catch(() => {});
    await server.stop();
  }
}

// ---- report ---------------------------------------------------------------------

const ms = (v) => (Number.isFinite(v) ? `${v.toFixed(v < 10 ? 1 : 0)} ms` : 'never');
const mb = (v) => (Number.isFinite(v) ? `${v.toFixed(1)} MB` : 'no answer');
// A reading the page was too busy to take after a GC (or at all) says so.
const heapOf = (s) => `${mb(s.heapMB)}${s.gc ? '' : ' (no GC: page busy)'}`;
const count = (v) => (Number.isFinite(v) ? v.toLocaleString() : 'no answer');

function table(results) {
  const lines = ['| scenario | client | figure | value | target | met |', '|---|---|---|---|---|---|'];
  const row = (r, figure, value, target = '', met = '') => lines.push(`| ${r.scenario} | ${r.variant} | ${figure} | ${value} | ${target} | ${met} |`);
  const yes = (b) => (b ? 'yes' : 'NO');
  for (const r of results) {
    if (r.scenario === 'flood') {
      row(r, 'messages painted', `${r.painted.toLocaleString()} / ${r.sent.toLocaleString()}`);
      row(r, 'arrival → paint p50 / p99 / max', `${ms(r.arrivalToPaint.p50)} / ${ms(r.arrivalToPaint.p99)} / ${ms(r.arrivalToPaint.max)}`, `p99 ≤ ${TARGET_P99_MS} ms`, yes(r.arrivalToPaint.p99 <= TARGET_P99_MS));
      row(r, 'delivery → paint p50 / p99 / max', `${ms(r.deliveryToPaint.p50)} / ${ms(r.deliveryToPaint.p99)} / ${ms(r.deliveryToPaint.max)}`, `p99 ≤ ${TARGET_P99_MS} ms`, yes(r.deliveryToPaint.p99 <= TARGET_P99_MS));
      row(r, 'server: send → delivery p50 / p99', `${ms(r.serverDelivery.p50)} / ${ms(r.serverDelivery.p99)}`);
      row(r, 'send → paint p50 / p99 / max', `${ms(r.sendToPaint.p50)} / ${ms(r.sendToPaint.p99)} / ${ms(r.sendToPaint.max)}`);
    } else {
      row(r, 'reached the top', `${r.reachedTop ? 'yes' : 'no'}, ${r.seconds.toFixed(1)} s, ${r.pages} pages; first row "${r.firstShown}"`);
      row(r, 'history reply → paint p50 / p99 / max', `${ms(r.historyArrivalToPaint.p50)} / ${ms(r.historyArrivalToPaint.p99)} / ${ms(r.historyArrivalToPaint.max)}`);
      row(r, 'history request → paint p50 / p99', `${ms(r.historyRequestToPaint.p50)} / ${ms(r.historyRequestToPaint.p99)}`);
    }
    row(r, 'worst frame (LoAF) / frames over 50 ms', `${ms(r.worstFrameMs)} / ${r.longFrames} (${ms(r.longFrameMs)} in all)`, `≤ ${TARGET_FRAME_MS} ms`, yes(r.worstFrameMs <= TARGET_FRAME_MS));
    if (r.worstFrame) row(r, '… worst frame: scripts / style+layout+paint; longest script', `${ms(r.worstFrame.script)} / ${ms(r.worstFrame.layout)}; ${r.worstFrame.culprit || '–'}`);
    row(r, 'longest interval between frames', ms(r.maxFrameGapMs));
    if (r.busy) row(r, 'main thread busy, ms per s: all tasks / script / layout / style', [r.busy.task, r.busy.script, r.busy.layout, r.busy.style].map((v) => v.toFixed(0)).join(' / '));
    const first = (r.scenario === 'flood' ? r.firstMinute : r.start) || r.end;
    const label = r.scenario === 'flood' ? `${FIRST_MINUTE_S} s → end (${r.end.at} s)` : 'bottom → top';
    row(r, `JS heap after GC, ${label}`, `${heapOf(first)} → ${heapOf(r.end)}`, r.scenario === 'flood' ? `flat (≤ ×${FLAT_HEAP})` : '', r.scenario === 'flood' ? yes(r.end.heapMB <= first.heapMB * FLAT_HEAP) : '');
    row(r, `DOM elements / all nodes, ${label}`, `${count(first.elements)} / ${count(first.nodes)} → ${count(r.end.elements)} / ${count(r.end.nodes)}`, r.scenario === 'flood' ? `flat (≤ ×${FLAT_DOM})` : '', r.scenario === 'flood' ? yes(r.end.elements <= first.elements * FLAT_DOM) : '');
    row(r, `message rows in the DOM, ${label}`, `${count(first.rows)} → ${count(r.end.rows)}`);
    row(r, 'load average (1 min) at the end', r.load.toFixed(2));
    if (r.pageErrors.length) row(r, 'page errors', r.pageErrors.slice(0, 3).join('; '));
  }
  return lines.join('\n');
}

async function main() {
  const args = process.argv.slice(2).filter((a) => a !== '--bench');
  const compare = args.includes('--compare') ? args[args.indexOf('--compare') + 1] : process.env.HUBBUB_BROWSER_BENCH_COMPARE;
  const only = args.includes('--only') ? args[args.indexOf('--only') + 1] : null;
  // The server is given each client with --static-dir, so one binary serves both.
  delete process.env.HUBBUB_STATIC_DIR;
  const variants = [];
  let oldDir = null;
  if (compare) {
    oldDir = mkdtempSync(path.join(tmpdir(), 'hubbub-old-client-'));
    const tar = execFileSync('git', ['-C', REPO, 'archive', compare, 'static'], { maxBuffer: 64 << 20 });
    execFileSync('tar', ['-x', '-C', oldDir], { input: tar });
    const rev = execFileSync('git', ['-C', REPO, 'rev-parse', '--short', compare]).toString().trim();
    variants.push({ name: `old (${compare} ${rev})`, dir: path.join(oldDir, 'static') });
  }
  variants.push({ name: 'new', dir: path.join(REPO, 'static') });

  const cpu = cpus()[0]?.model || 'unknown CPU';
  console.log(`browser benchmark: ${cpus().length} × ${cpu}; flood ${RATE}/s for ${FLOOD_SECS} s; scroll through ${ARCHIVE.toLocaleString()} messages`);
  const results = [];
  try {
    if (!only || only === 'flood') for (const v of variants) results.push(await flood(v));
    if (!only || only === 'scroll') {
      // One archive, filled once, scrolled by each client in turn.
      const db = freshDb();
      let fill = true;
      for (const v of variants) {
        results.push(await scroll(v, db, fill));
        fill = false;
      }
    }
  } finally {
    if (oldDir) rmSync(oldDir, { recursive: true, force: true });
  }
  const md = table(results);
  console.log(`\n${md}\n`);
  mkdirSync(RESULTS, { recursive: true });
  writeFileSync(path.join(RESULTS, 'browser.json'), JSON.stringify({ machine: { cpus: cpus().length, cpu }, config: { FLOOD_SECS, RATE, ARCHIVE }, results }, null, 2));
  writeFileSync(path.join(RESULTS, 'browser.md'), `${md}\n`);
  console.log(`written: ${path.relative(process.cwd(), path.join(RESULTS, 'browser.json'))}, browser.md`);
}

await main();
process.exit(0);
