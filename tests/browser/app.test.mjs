// The client as an app: Chromium finds it installable (manifest, icons,
// service worker), the app shell loads from the worker's cache while the
// server is unreachable and says it is offline, and a new version of the
// client is picked up once the server has one.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';
import { setup, startServer, signUp, sendMessage, messageRow, waitOnline, screenshot, assertNoPageErrors } from './helpers.mjs';

const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');

/** Until the service worker controls `page` (after its first load, once it has claimed it). */
function workerControls(page) {
  return page.waitForFunction(() => navigator.serviceWorker.controller?.state === 'activated');
}

test('Chromium finds the client installable: manifest, icons and service worker', async (t) => {
  const server = await startServer();
  // Incognito contexts are never installable: a profile on disk, as a person has.
  const profile = mkdtempSync(path.join(tmpdir(), 'hubbub-profile-'));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: '/usr/bin/chromium',
    args: ['--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-sync'],
  });
  t.after(async () => {
    await context.close().catch(() => {});
    await server.stop();
    rmSync(profile, { recursive: true, force: true });
  });
  const page = context.pages()[0] || (await context.newPage());
  await page.goto(server.url);
  await page.locator('#login-form:not([hidden])').waitFor();
  await page.evaluate(() => navigator.serviceWorker.ready);
  const cdp = await context.newCDPSession(page);
  const manifest = await cdp.send('Page.getAppManifest');
  assert.deepEqual(manifest.errors, [], 'the manifest parses cleanly');
  assert.match(manifest.url, /\/manifest\.webmanifest$/);
  // Chromium checks the icons, the worker and the rest once the page has loaded.
  const { installabilityErrors } = await cdp.send('Page.getInstallabilityErrors');
  assert.deepEqual(installabilityErrors, [], 'Chromium would offer to install it');
  const { theme, background } = await page.evaluate(async () => {
    const m = await (await fetch('/manifest.webmanifest')).json();
    return { theme: m.theme_color, background: m.background_color };
  });
  // The colours are the sidebar's and the page's (app.css), so the title bar and splash match.
  const css = readFileSync(path.join(REPO, 'static/app.css'), 'utf8');
  assert.ok(css.includes(`--side-bg: ${theme};`), `theme_color ${theme} is the sidebar's colour`);
  assert.ok(css.includes(`--bg: ${background};`), `background_color ${background} is the page's colour`);
});

test('the app shell loads from the worker cache while the server is down, and says it is offline', async (t) => {
  const { server, person } = await setup(t);
  const alice = await person();
  await signUp(alice, server.url, 'alice');
  await sendMessage(alice, 'hello before the outage');
  await messageRow(alice, 'hello before the outage').and(alice.locator('[data-id]')).waitFor();
  await workerControls(alice);
  const cached = await alice.evaluate(async () => {
    const keys = await caches.keys();
    const cache = await caches.open(keys[0]);
    return { keys, index: !!(await cache.match('/index.html')), main: !!(await cache.match('/js/main.js')) };
  });
  assert.equal(cached.keys.length, 1, 'one cache, named by the version');
  assert.match(cached.keys[0], /^hubbub-shell-[0-9a-f]{16}$/);
  assert.ok(cached.index && cached.main, 'the shell is cached');

  await server.stop();
  // A reload, and a new tab: both come up from the cache, signed in, and say they are offline.
  await alice.reload();
  await alice.locator('#app:not([hidden])').waitFor();
  await alice.locator('#conn-status[data-status=offline]').waitFor();
  await alice.locator('#offline-banner:not([hidden])', { hasText: 'You are offline' }).waitFor();
  assert.equal(await alice.locator('#conn-status .conn-text').textContent(), 'Offline');
  await screenshot(alice, 'app-offline-reload');
  const tab = await alice.context().newPage();
  await tab.goto(server.url);
  await tab.locator('#offline-banner:not([hidden])', { hasText: 'You are offline' }).waitFor();
  await tab.close();

  // The server is back: the same page reconnects by itself and shows the conversation.
  const again = await startServer({ db: server.db, port: server.port });
  t.after(() => again.stop());
  await waitOnline(alice);
  await messageRow(alice, 'hello before the outage').waitFor();
  assert.ok(await alice.locator('#offline-banner').isHidden());
  assertNoPageErrors(assert, alice);
});

test('a new version of the client is installed by the worker and offered for a reload', async (t) => {
  // The client from a directory, so the test can change it under a running server.
  const dir = mkdtempSync(path.join(tmpdir(), 'hubbub-static-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  cpSync(path.join(REPO, 'static'), dir, { recursive: true });
  const { server, person } = await setup(t, { extraArgs: ['--static-dir', dir] });
  const alice = await person();
  await signUp(alice, server.url, 'alice');
  await workerControls(alice);
  const before = await alice.evaluate(() => caches.keys());
  // No offer on the first install: there was nothing to update.
  assert.equal(await alice.locator('#update-toast').count(), 0);

  // A new client is deployed: a changed stylesheet.
  writeFileSync(path.join(dir, 'app.css'), `${readFileSync(path.join(dir, 'app.css'), 'utf8')}\n/* version two */\n`);
  await alice.evaluate(async () => (await navigator.serviceWorker.getRegistration()).update());
  const offer = alice.locator('#update-toast');
  await offer.waitFor();
  assert.match(await offer.textContent(), /A new version of hubbub is ready/);
  await screenshot(alice, 'app-update-offered');
  // The new worker took over as it activated; it drops the old cache as it finishes.
  await alice.waitForFunction(async () => (await caches.keys()).length === 1);
  const after = await alice.evaluate(() => caches.keys());
  assert.notDeepEqual(after, before, 'a new cache, named by the new version');

  // The offer's button (keyboard: it takes focus, Enter presses it) reloads onto the new version.
  await offer.getByRole('button', { name: 'Reload' }).focus();
  await Promise.all([alice.waitForEvent('load'), alice.keyboard.press('Enter')]);
  await waitOnline(alice);
  const css = await alice.evaluate(async () => (await fetch('/app.css')).text());
  assert.ok(css.includes('/* version two */'), 'the page runs the new version');
  assertNoPageErrors(assert, alice);
});
