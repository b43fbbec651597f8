// Web Push in the browser: Settings subscribes this browser with the
// server's key (permission asked only from the switch, keyboard only); the
// server pushes a mention to the subscription's endpoint (here a push
// service on 127.0.0.1 that decrypts the body with the subscription's keys,
// RFC 8291, as the browser's push service would hand it on); the message
// is delivered to the service worker over the DevTools protocol
// (ServiceWorker.deliverPushMessage), which shows it with the client's
// notification functions and routes its click; with "Show message text"
// off the next push says only that something came.
//
// Headless Chromium cannot reach a real push service, so PushManager's
// subscribe/getSubscription are replaced by a subscription to the local one
// whose keys the test holds; everything after that is the real path.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import crypto from 'node:crypto';
import { setup, signUp, sendMessage, waitOnline, screenshot, assertNoPageErrors, personButton } from './helpers.mjs';

const b64url = (buf) => Buffer.from(buf).toString('base64url');

/** A push service on 127.0.0.1 that records each request with its body. */
async function pushService() {
  const received = [];
  const waiters = [];
  const server = http.createServer((req, res) => {
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => {
      received.push({ path: req.url, headers: req.headers, body: Buffer.concat(chunks) });
      res.writeHead(201).end();
      while (waiters.length) waiters.shift()();
    });
  });
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  return {
    origin: `http://127.0.0.1:${server.address().port}`,
    async next(ms = 5000) {
      const deadline = Date.now() + ms;
      while (!received.length) {
        if (Date.now() > deadline) throw new Error('no push arrived');
        await new Promise((r) => {
          waiters.push(r);
          setTimeout(r, 100);
        });
      }
      return received.shift();
    },
    close: () => server.close(),
  };
}

/** A subscription's keys (RFC 8291: the user agent's side). */
function userAgentKeys() {
  const ecdh = crypto.createECDH('prime256v1');
  ecdh.generateKeys();
  return { ecdh, auth: crypto.randomBytes(16) };
}

/** RFC 8291 §3-4 and RFC 8188: the body decrypted with the user agent's keys. */
function decrypt(body, { ecdh, auth }) {
  const salt = body.subarray(0, 16);
  const idlen = body[20];
  const asPublic = body.subarray(21, 21 + idlen);
  const record = body.subarray(21 + idlen);
  const shared = ecdh.computeSecret(asPublic);
  const info = Buffer.concat([Buffer.from('WebPush: info\0'), ecdh.getPublicKey(), asPublic]);
  const ikm = Buffer.from(crypto.hkdfSync('sha256', shared, auth, info, 32));
  const cek = Buffer.from(crypto.hkdfSync('sha256', ikm, salt, Buffer.from('Content-Encoding: aes128gcm\0'), 16));
  const nonce = Buffer.from(crypto.hkdfSync('sha256', ikm, salt, Buffer.from('Content-Encoding: nonce\0'), 12));
  const decipher = crypto.createDecipheriv('aes-128-gcm', cek, nonce);
  decipher.setAuthTag(record.subarray(record.length - 16));
  const padded = Buffer.concat([decipher.update(record.subarray(0, record.length - 16)), decipher.final()]);
  // The last record ends with the delimiter 0x02, then optional zero padding.
  const end = padded.lastIndexOf(2);
  return JSON.parse(padded.subarray(0, end).toString('utf8'));
}

/**
 * Replaces PushManager with one whose subscription is `sub` (run in each of the
 * context's pages). The browser's subscription outlives a page: here, the
 * origin's storage says whether there is one.
 */
function fakePushManager(sub) {
  const SUBSCRIBED = 'test.push-subscribed';
  window.__subscribeCalls = 0;
  const subscription = () => ({
    endpoint: sub.endpoint,
    options: { applicationServerKey: new Uint8Array(JSON.parse(localStorage.getItem(SUBSCRIBED))).buffer },
    toJSON: () => sub,
    unsubscribe: async () => {
      localStorage.removeItem(SUBSCRIBED);
      return true;
    },
  });
  PushManager.prototype.getSubscription = async () => (localStorage.getItem(SUBSCRIBED) ? subscription() : null);
  PushManager.prototype.subscribe = async (options) => {
    window.__subscribeCalls += 1;
    localStorage.setItem(SUBSCRIBED, JSON.stringify([...new Uint8Array(options.applicationServerKey)]));
    return subscription();
  };
}

/** The registration id of the page's service worker, from the DevTools protocol. */
async function registrationId(cdp, scope) {
  const found = new Promise((resolve) => {
    cdp.on('ServiceWorker.workerRegistrationUpdated', ({ registrations }) => {
      const r = registrations.find((x) => x.scopeURL === scope && !x.isDeleted);
      if (r) resolve(r.registrationId);
    });
  });
  await cdp.send('ServiceWorker.enable');
  return found;
}

/** Until the server says `name` has no connection (no push is sent while one is open). */
function waitOffline(page, name) {
  return page.waitForFunction(async (name) => {
    const token = JSON.parse(localStorage.getItem('hubbub.session')).token;
    const r = await fetch('/api/users', { headers: { Authorization: `Bearer ${token}` } });
    return (await r.json()).users.some((u) => u.username === name && !u.online);
  }, name);
}

function shown(worker) {
  return worker.evaluate(async () =>
    (await self.registration.getNotifications()).map((n) => ({ tag: n.tag, title: n.title, body: n.body, data: n.data })),
  );
}

test('a push reaches the closed app: subscribed from Settings, encrypted by the server, shown by the worker, clicked to its conversation', async (t) => {
  const service = await pushService();
  t.after(() => service.close());
  const { server, person } = await setup(t, { extraArgs: ['--push-allow-insecure', '--presence-grace', '0'] });
  const keys = userAgentKeys();
  const sub = {
    endpoint: `${service.origin}/push/bob`,
    expirationTime: null,
    keys: { p256dh: b64url(keys.ecdh.getPublicKey()), auth: b64url(keys.auth) },
  };
  const alice = await person();
  const bob = await person();
  await bob.context().grantPermissions(['notifications'], { origin: server.url });
  await bob.context().addInitScript(fakePushManager, sub);
  await signUp(alice, server.url, 'alice');
  await signUp(bob, server.url, 'bob');
  await bob.waitForFunction(() => navigator.serviceWorker.controller);
  assert.equal(await bob.evaluate(() => window.__subscribeCalls), 0, 'nothing subscribed on load');

  // Keyboard only: the gear, Tab to the push switch, Space.
  await bob.focus('#settings-btn');
  await bob.keyboard.press('Enter');
  await bob.locator('#settings-dialog[open]').waitFor();
  await bob.focus('#push-toggle');
  await bob.keyboard.press('Space');
  await bob.locator('#push-state', { hasText: 'On for this browser, even when hubbub is closed.' }).waitFor();
  assert.equal(await bob.locator('#push-toggle').isChecked(), true);
  assert.equal(await bob.locator('#push-text-toggle').isChecked(), true, 'text is shown by default');
  await screenshot(bob, 'settings-push-on');
  await bob.keyboard.press('Escape');
  // He was last in his private conversation with alice: hubbub reopens there, not in #general.
  await personButton(bob, 'alice').click();
  await bob.locator('#conv-name', { hasText: 'alice' }).waitFor();

  // Bob closes hubbub; the worker stays registered in his browser.
  const context = bob.context();
  const blank = await context.newPage();
  const worker = context.serviceWorkers().find((w) => w.url().endsWith('/sw.js'));
  assert.ok(worker, 'the worker runs');
  await bob.close();
  await waitOffline(alice, 'bob');

  await sendMessage(alice, '@bob the release is out');
  const pushed = await service.next();
  assert.equal(pushed.path, '/push/bob');
  assert.equal(pushed.headers['content-encoding'], 'aes128gcm');
  assert.match(pushed.headers.authorization, /^vapid t=[\w-]+\.[\w-]+\.[\w-]+, k=[\w-]{87}$/);
  const payload = decrypt(pushed.body, keys);
  assert.equal(payload.title, 'alice mentioned you in #general');
  assert.equal(payload.body, '@bob the release is out');
  assert.equal(payload.key, '#general');

  // The push service hands it to the browser: the worker shows it.
  const cdp = await context.newCDPSession(blank);
  const id = await registrationId(cdp, `${server.url}/`);
  await cdp.send('ServiceWorker.deliverPushMessage', { origin: server.url, registrationId: id, data: JSON.stringify(payload) });
  await worker.evaluate(async () => {
    for (let i = 0; i < 100 && !(await self.registration.getNotifications()).length; i++) await new Promise((r) => setTimeout(r, 50));
  });
  assert.deepEqual(await shown(worker), [
    { tag: 'hubbub:#general', title: 'alice mentioned you in #general', body: '@bob the release is out', data: { key: '#general', id: payload.id, count: 1 } },
  ]);

  // Bob opens hubbub, which reopens where he left off (#general stays unread, its notification stays);
  // a click on the notification routes that window to #general.
  const win = await context.newPage();
  await win.goto(server.url);
  await waitOnline(win);
  await win.locator('#conv-name', { hasText: 'alice' }).waitFor();
  assert.deepEqual((await shown(worker)).map((n) => n.tag), ['hubbub:#general']);
  await worker.evaluate(async () => {
    const [n] = await self.registration.getNotifications({ tag: 'hubbub:#general' });
    self.addEventListener('error', (ev) => ev.preventDefault(), { once: true });
    try {
      self.dispatchEvent(new NotificationEvent('notificationclick', { notification: n }));
    } catch {
      // waitUntil's InvalidStateError on an untrusted event
    }
  });
  await win.locator('#conv-name', { hasText: '#general' }).waitFor();
  assert.deepEqual(await shown(worker), [], 'a clicked notification closes');

  // "Show message text" off: the next push says only that something came.
  await win.click('#settings-btn');
  await win.locator('#push-toggle:checked').waitFor();
  assert.equal(await win.evaluate(() => window.__subscribeCalls), 0, "the browser's subscription is registered again, not made anew");
  await win.locator('#push-text-toggle').uncheck();
  await win.waitForFunction(async () => {
    const r = await fetch('/api/push/settings', { headers: { Authorization: `Bearer ${JSON.parse(localStorage.getItem('hubbub.session')).token}` } });
    return (await r.json()).show_text === false;
  });
  await screenshot(win, 'settings-push-text-off');
  await win.close();
  await waitOffline(alice, 'bob');
  await personButton(alice, 'bob').click();
  await sendMessage(alice, 'the launch code is 1234');
  const hidden = decrypt((await service.next()).body, keys);
  assert.deepEqual(hidden, { key: null, title: 'hubbub', body: 'You have a new message', id: null, count: 1 });
  await cdp.send('ServiceWorker.deliverPushMessage', { origin: server.url, registrationId: id, data: JSON.stringify(hidden) });
  await worker.evaluate(async () => {
    for (let i = 0; i < 100 && !(await self.registration.getNotifications()).length; i++) await new Promise((r) => setTimeout(r, 50));
  });
  assert.deepEqual(await shown(worker), [{ tag: 'hubbub:*', title: 'hubbub', body: 'You have a new message', data: { key: null, id: null, count: 1 } }]);

  // A push the worker cannot read still shows that something came (browsers require a notification).
  await cdp.send('ServiceWorker.deliverPushMessage', { origin: server.url, registrationId: id, data: 'not json' });
  await worker.evaluate(async () => {
    for (let i = 0; i < 100; i++) {
      const [n] = await self.registration.getNotifications({ tag: 'hubbub:*' });
      if (n?.data.count === 2) return;
      await new Promise((r) => setTimeout(r, 50));
    }
  });
  assert.equal((await shown(worker))[0].body, 'You have a new message\n(and 1 more)');
  assertNoPageErrors(assert, alice);
});
