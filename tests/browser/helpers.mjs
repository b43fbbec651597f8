// Shared plumbing for the browser tests: a real hubbub server per test on a
// free loopback port, Debian's Chromium through playwright-core, and UI steps
// (sign up, send) written the way a person would do them.

import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const REPO = path.resolve(HERE, '..', '..');
export const ARTIFACTS = path.join(HERE, 'artifacts');
mkdirSync(ARTIFACTS, { recursive: true });

const CHROMIUM = '/usr/bin/chromium';
const STARTUP_TIMEOUT_MS = 20_000;

function serverBinary() {
  const candidates = [process.env.HUBBUB_BIN, path.join(REPO, 'target/release/hubbub'), path.join(REPO, 'target/debug/hubbub')];
  const bin = candidates.find((p) => p && existsSync(p));
  if (!bin) throw new Error('No hubbub binary: set HUBBUB_BIN or run `cargo build --release` first.');
  return bin;
}

// Servers still running when the process exits (a crashed test) are killed too.
const running = new Set();
process.on('exit', () => {
  for (const child of running) child.kill('SIGKILL');
});

/** A fresh database path in its own temp directory, removed when the process exits. */
export function freshDb() {
  const dir = mkdtempSync(path.join(tmpdir(), 'hubbub-browser-'));
  process.on('exit', () => rmSync(dir, { recursive: true, force: true }));
  return path.join(dir, 'hubbub.db');
}

/**
 * Start the server and wait for its `listening on 127.0.0.1:PORT` line.
 * @param {{db?: string, port?: number, extraArgs?: string[], env?: object}} [opts]
 */
export async function startServer({ db = freshDb(), port = 0, extraArgs = [], env = {} } = {}) {
  const args = ['--addr', `127.0.0.1:${port}`, '--db', db, '--pbkdf2-iterations', '1000', ...extraArgs];
  // The binary embeds static/ at build time; while editing the client, HUBBUB_STATIC_DIR=static
  // (relative to the repository) tests the files on disk without a rebuild.
  if (process.env.HUBBUB_STATIC_DIR) args.push('--static-dir', path.resolve(REPO, process.env.HUBBUB_STATIC_DIR));
  const child = spawn(serverBinary(), args, { stdio: ['ignore', 'ignore', 'pipe'], env: { ...process.env, ...env } });
  running.add(child);
  let log = '';
  const exited = new Promise((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })));
  exited.then(() => running.delete(child));

  const actualPort = await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`server did not report listening within ${STARTUP_TIMEOUT_MS} ms:\n${log}`)), STARTUP_TIMEOUT_MS);
    child.stderr.setEncoding('utf8');
    child.stderr.on('data', (chunk) => {
      log += chunk;
      const m = log.match(/listening on 127\.0\.0\.1:(\d+)/);
      if (m) {
        clearTimeout(timer);
        resolve(Number(m[1]));
      }
    });
    exited.then(({ code, signal }) => {
      clearTimeout(timer);
      reject(new Error(`server exited (code ${code}, signal ${signal}) before listening:\n${log}`));
    });
  });

  return {
    port: actualPort,
    db,
    url: `http://127.0.0.1:${actualPort}`,
    log: () => log,
    /** SIGTERM (graceful: close frames, flush writes), SIGKILL if it hangs. */
    async stop() {
      if (child.exitCode !== null || child.signalCode !== null) return exited;
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 5000);
      const result = await exited;
      clearTimeout(timer);
      return result;
    },
  };
}

export function launchBrowser() {
  if (!existsSync(CHROMIUM)) throw new Error(`${CHROMIUM} is missing: apt-get install -y chromium`);
  return chromium.launch({
    executablePath: CHROMIUM,
    args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--no-first-run', '--disable-sync', '--disable-quic'],
  });
}

/**
 * A test's world: one server, one browser, and cleanup that always runs.
 * Call from inside `test(...)` with its context `t`.
 */
export async function setup(t, serverOpts) {
  const server = await startServer(serverOpts);
  let browser;
  const pages = [];
  t.after(async () => {
    await browser?.close().catch(() => {});
    await server.stop();
  });
  browser = await launchBrowser();

  /** A new person in their own browser context (own localStorage), with every page error recorded. */
  async function person(options = {}) {
    const context = await browser.newContext({ viewport: { width: 1200, height: 760 }, ...options });
    const page = await context.newPage();
    page.errors = [];
    page.on('pageerror', (err) => page.errors.push(`pageerror: ${err.message}`));
    // CSP violations ("Refused to ...") and script failures are console errors. Network
    // failures (a 401 answer, a refused WebSocket while the server is down) are expected.
    page.on('console', (msg) => {
      if (msg.type() === 'error' && !/Failed to load resource|WebSocket connection to/.test(msg.text())) page.errors.push(`console: ${msg.text()}`);
    });
    pages.push(page);
    return page;
  }

  return { server, browser, person, pages };
}

/** Sign up through the form; resolves once the chat is connected. */
export async function signUp(page, baseUrl, username, password = 'correct horse') {
  await page.goto(baseUrl);
  await page.getByRole('tab', { name: 'Sign up' }).click();
  await page.fill('#signup-username', username);
  await page.fill('#signup-email', `${username}@example.com`);
  await page.fill('#signup-password', password);
  await page.click('#signup-form button[type=submit]');
  await waitOnline(page);
}

export async function waitOnline(page) {
  await page.waitForSelector('#app:not([hidden])');
  // Attached, not visible: at phone width the status sits in the hidden sidebar.
  await page.waitForSelector('#conn-status[data-status=online]', { state: 'attached' });
}

/** Type into the composer like a person and press Enter. */
export async function sendMessage(page, text) {
  await page.click('#composer-input');
  await page.keyboard.type(text);
  await page.keyboard.press('Enter');
}

/** Until the timeline has drawn every row it has (it adds at most a few dozen a frame). */
export function waitDrawn(page) {
  return page.locator('#message-list:not([aria-busy])').waitFor({ state: 'attached' });
}

/** The stored (acknowledged) message rows of the open conversation, as {id, author, text}. */
export function messages(page) {
  return page.$$eval('#message-list li.msg', (rows) =>
    rows.map((li) => ({
      id: li.dataset.id ? Number(li.dataset.id) : null,
      author: li.querySelector('.msg-author').textContent,
      text: li.querySelector('.msg-text').textContent,
      status: li.querySelector('.msg-foot').dataset.status || '',
      grouped: li.classList.contains('grouped'),
    })),
  );
}

/** The message row whose text is exactly `text`. */
export function messageRow(page, text) {
  return page.locator('#message-list li.msg', { has: page.locator('.msg-text', { hasText: new RegExp(`^${escapeRegExp(text)}$`) }) });
}

function escapeRegExp(s) {
  return s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

/** The sidebar button for a person or a room. */
export function personButton(page, username) {
  return page.locator('#people-list .side-item', { has: page.locator('.side-name', { hasText: new RegExp(`^${escapeRegExp(username)}$`) }) });
}

export async function screenshot(page, name) {
  await page.screenshot({ path: path.join(ARTIFACTS, `${name}.png`) });
}

const AXE_SOURCE = readFileSync(path.join(HERE, 'node_modules/axe-core/axe.min.js'), 'utf8');

/**
 * axe-core's critical and serious findings on what `page` shows now, one
 * readable line each (none: an empty list). axe is evaluated over the
 * DevTools protocol, so the page's CSP (no inline scripts) stays in force.
 */
export async function axeViolations(page) {
  if (!(await page.evaluate(() => typeof window.axe === 'object'))) await page.evaluate(AXE_SOURCE);
  const { violations } = await page.evaluate(() => window.axe.run(document, { resultTypes: ['violations'] }));
  return violations
    .filter((v) => v.impact === 'critical' || v.impact === 'serious')
    .flatMap((v) => v.nodes.map((n) => `${v.impact} ${v.id} at ${n.target.join(' ')}: ${n.failureSummary.replace(/\s+/g, ' ')}`));
}

/** Fails the test with every page error seen (CSP violations included). */
export function assertNoPageErrors(assert, ...pages) {
  for (const page of pages) assert.deepEqual(page.errors, [], 'the page logged errors');
}

/**
 * Post `texts` to `room` straight over the protocol with `page`'s session (a
 * second socket, so the page's own client is untouched); resolves with the
 * number acked once every one is. Quick only with `--rate-limit 0`.
 */
export function postViaSocket(page, room, texts) {
  return page.evaluate(
    async ({ room, texts }) => {
      const { token } = JSON.parse(localStorage.getItem('hubbub.session'));
      const ws = new WebSocket(`ws://${location.host}/ws?token=${encodeURIComponent(token)}`);
      await new Promise((resolve) => (ws.onopen = resolve));
      let acks = 0;
      const done = new Promise((resolve, reject) => {
        ws.onmessage = (ev) => {
          const f = JSON.parse(ev.data);
          if (f.type === 'error') reject(new Error(`${f.code}: ${f.message}`));
          if (f.type === 'ack' && ++acks === texts.length) resolve(acks);
        };
      });
      ws.send(JSON.stringify({ type: 'join', room }));
      for (const content of texts) ws.send(JSON.stringify({ type: 'message', room, content }));
      const n = await done;
      ws.close();
      return n;
    },
    { room, texts },
  );
}

/** The timeline's bounds as the client defines them: {cap, trimBatch}. */
export function timelineLimits(page) {
  return page.evaluate(() => import('/js/conversation.js').then((m) => ({ cap: m.TIMELINE_CAP, trimBatch: m.TRIM_BATCH })));
}

/** Record in the page the most message rows #message-list ever held from now on (window.__maxRows). */
export function trackMaxRows(page) {
  return page.evaluate(() => {
    const list = document.getElementById('message-list');
    const count = () => list.querySelectorAll('li.msg').length;
    window.__maxRows = count();
    new MutationObserver(() => (window.__maxRows = Math.max(window.__maxRows, count()))).observe(list, { childList: true });
  });
}

/** The first message row at least partly on screen in the timeline: its id and its distance from the timeline's top. */
export function topVisibleRow(page) {
  return page.evaluate(() => {
    const el = document.getElementById('timeline');
    const top = el.getBoundingClientRect().top;
    const row = [...document.querySelectorAll('#message-list li.msg')].find((li) => li.getBoundingClientRect().bottom > top);
    return row ? { id: row.dataset.id, text: row.querySelector('.msg-text').textContent, offset: row.getBoundingClientRect().top - top } : null;
  });
}

/** The offset from the timeline's top of the message row with this id, or null when it is not in the DOM. */
export function rowOffset(page, id) {
  return page.evaluate((id) => {
    const row = document.querySelector(`#message-list li.msg[data-id="${id}"]`);
    return row ? row.getBoundingClientRect().top - document.getElementById('timeline').getBoundingClientRect().top : null;
  }, id);
}

/**
 * Send `frames` over a second socket with `page`'s session and resolve with
 * every frame received once `count` frames of one of the `types` came (or
 * `ms` passed). For what a person cannot do through the UI: messages older
 * than a page, a hostile reaction, a frame the client would never send.
 */
export function rawSocket(page, frames, { types = ['ack', 'error'], count = frames.length, ms = 5000, room = null } = {}) {
  return page.evaluate(
    async ({ frames, types, count, ms, room }) => {
      const { token } = JSON.parse(localStorage.getItem('hubbub.session'));
      const ws = new WebSocket(`ws://${location.host}/ws${room ? `/room/${room}` : ''}?token=${encodeURIComponent(token)}`);
      await new Promise((resolve) => (ws.onopen = resolve));
      const received = [];
      let seen = 0;
      const done = new Promise((resolve) => {
        const timer = setTimeout(resolve, ms);
        ws.onmessage = (ev) => {
          const f = JSON.parse(ev.data);
          received.push(f);
          if (types.includes(f.type) && ++seen >= count) {
            clearTimeout(timer);
            resolve();
          }
        };
      });
      for (const f of frames) ws.send(JSON.stringify(f));
      await done;
      ws.close();
      return received;
    },
    { frames, types, count, ms, room },
  );
}

/** Point at a message row like a person, so its hover toolbar shows. */
export async function hoverMessage(page, text) {
  const row = messageRow(page, text);
  await row.hover();
  await row.locator('.msg-actions').waitFor();
  return row;
}

/**
 * Route `page`'s WebSockets through a relay that the test can cut: `cut()`
 * closes the open one and refuses new ones until `restore()`.
 */
// A cut closes with 1012 ("service restart"): a code that says nothing about
// the session, as a dropped network does (4001 and 4003 end the session).
const CUT = { code: 1012, reason: 'test: network cut' };

export async function cuttableSocket(page) {
  let blocked = false;
  let open = null;
  await page.routeWebSocket(/\/ws\b/, (ws) => {
    if (blocked) return ws.close(CUT);
    const upstream = ws.connectToServer();
    open = { ws, upstream };
    ws.onMessage((m) => upstream.send(m));
    upstream.onMessage((m) => ws.send(m));
  });
  return {
    cut() {
      blocked = true;
      open?.ws.close(CUT);
      open?.upstream.close();
      open = null;
    },
    restore() {
      blocked = false;
    },
  };
}
