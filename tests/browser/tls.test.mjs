// The web client served over HTTPS by the server's own TLS (--tls-cert /
// --tls-key): the page loads, the chat runs over wss:// on the same port, and
// every response carries HSTS. The certificate is made for this test with
// Debian's openssl and trusted by the browser context only.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { freshDb, launchBrowser, startServer, signUp, sendMessage, messageRow, screenshot, assertNoPageErrors } from './helpers.mjs';

/** A self-signed P-256 certificate for 127.0.0.1, valid for a day: {cert, key} paths. */
function makeCertificate() {
  const dir = mkdtempSync(path.join(tmpdir(), 'hubbub-tls-'));
  process.on('exit', () => rmSync(dir, { recursive: true, force: true }));
  const cert = path.join(dir, 'cert.pem');
  const key = path.join(dir, 'key.pem');
  execFileSync('openssl', [
    'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes',
    '-keyout', key, '-out', cert, '-days', '1', '-subj', '/CN=127.0.0.1',
    '-addext', 'subjectAltName=IP:127.0.0.1',
  ], { stdio: 'ignore' });
  return { cert, key };
}

test('the web client runs over https and wss on the built-in TLS', async (t) => {
  const { cert, key } = makeCertificate();
  const server = await startServer({ db: freshDb(), extraArgs: ['--tls-cert', cert, '--tls-key', key] });
  const browser = await launchBrowser();
  t.after(async () => {
    await browser.close().catch(() => {});
    await server.stop();
  });
  const base = `https://127.0.0.1:${server.port}`;

  const people = [];
  const sockets = [];
  const hsts = [];
  for (const name of ['alice', 'bob']) {
    const context = await browser.newContext({ ignoreHTTPSErrors: true, viewport: { width: 1200, height: 760 } });
    const page = await context.newPage();
    page.errors = [];
    page.on('pageerror', (err) => page.errors.push(`pageerror: ${err.message}`));
    page.on('websocket', (ws) => sockets.push(ws.url()));
    page.on('response', (r) => {
      if (r.url().startsWith(base)) hsts.push(r.headers()['strict-transport-security'] ?? null);
    });
    await signUp(page, base, name);
    people.push(page);
  }
  const [alice, bob] = people;

  await sendMessage(alice, 'sealed in transit');
  await messageRow(bob, 'sealed in transit').waitFor();
  await messageRow(alice, 'sealed in transit').and(alice.locator('[data-id]')).waitFor();

  assert.ok(sockets.length >= 2, 'each page opened its chat socket');
  for (const url of sockets) assert.match(url, new RegExp(`^wss://127\\.0\\.0\\.1:${server.port}/ws`), 'the socket is wss:// on the same port');
  assert.ok(hsts.length > 0 && hsts.every((h) => /max-age=\d+/.test(h ?? '')), `every HTTPS response carries HSTS: ${JSON.stringify(hsts)}`);
  await screenshot(bob, 'tls-chat');
  assertNoPageErrors(assert, alice, bob);
});
