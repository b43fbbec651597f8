// Mentions counted in the sidebar (live from `mention` frames, and from the
// `unread` frame after a reload, also for a room the user never joined), and
// while the tab is hidden: a "(N)" title count of mentions and private
// messages, and notifications shown by the service worker once the user
// turned them on in Settings (never asked on load): one per conversation,
// routed to it on a click, closed once it is read here or on another device.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { setup, signUp, sendMessage, messageRow, personButton, waitOnline, screenshot, assertNoPageErrors } from './helpers.mjs';

const roomItem = (page, name) => page.locator('#room-list .side-item', { has: page.locator('.side-name', { hasText: new RegExp(`^${name}$`) }) });

/** Count the permission prompts the page makes (none may come on load). */
function countPermissionAsks() {
  window.__asked = 0;
  const ask = Notification.requestPermission.bind(Notification);
  Notification.requestPermission = (...args) => {
    window.__asked += 1;
    return ask(...args);
  };
}

/** The notifications the service worker shows now, as {tag, title, body, data}. */
function shown(page) {
  return page.evaluate(async () => {
    const reg = await navigator.serviceWorker.ready;
    return (await reg.getNotifications()).map((n) => ({ tag: n.tag, title: n.title, body: n.body, data: n.data }));
  });
}

/** As a browser does when the user switches tabs. */
function setHidden(page, hidden) {
  return page.evaluate((hidden) => {
    Object.defineProperty(document, 'visibilityState', { configurable: true, get: () => (hidden ? 'hidden' : 'visible') });
    Object.defineProperty(document, 'hidden', { configurable: true, get: () => hidden });
    document.dispatchEvent(new Event('visibilitychange'));
  }, hidden);
}

test('mentions are counted per room, live and after a reload', async (t) => {
  const { server, person } = await setup(t);
  const alice = await person();
  const bob = await person();
  await signUp(alice, server.url, 'alice');
  await signUp(bob, server.url, 'bob');

  // Bob looks at another room; alice mentions him in #general.
  await bob.click('#join-room-btn');
  await bob.fill('#join-name', 'random');
  await bob.click('#join-form button[type=submit]');
  await bob.locator('#conv-name', { hasText: '#random' }).waitFor();
  await sendMessage(alice, 'hey @bob, can you look at this?');
  await sendMessage(alice, 'no mention here');
  const badge = roomItem(bob, 'general').locator('.badge-mention');
  await badge.filter({ hasText: '@1' }).waitFor();
  await roomItem(bob, 'general').locator('.badge:not(.badge-mention)', { hasText: '2' }).waitFor();
  await screenshot(bob, 'mention-badge');

  // Alice mentions him in a room he never joined: it appears in his sidebar with the count.
  await alice.click('#join-room-btn');
  await alice.fill('#join-name', 'ops');
  await alice.click('#join-form button[type=submit]');
  await alice.locator('#conv-name', { hasText: '#ops' }).waitFor();
  await sendMessage(alice, '@bob the ops room needs you');
  await roomItem(bob, 'ops').locator('.badge-mention', { hasText: '@1' }).waitFor();

  // After a reload the counts come from the server's `unread` frame.
  await bob.reload();
  await waitOnline(bob);
  await badge.filter({ hasText: '@1' }).waitFor();
  await roomItem(bob, 'ops').locator('.badge-mention', { hasText: '@1' }).waitFor();

  // Opening the room clears its mention badge.
  await roomItem(bob, 'general').click();
  await messageRow(bob, 'hey @bob, can you look at this?').waitFor();
  await badge.waitFor({ state: 'detached' });
  assert.equal(await messageRow(bob, 'hey @bob, can you look at this?').locator('.mention-me').textContent(), '@bob');
  assertNoPageErrors(assert, alice, bob);
});

test('a hidden tab counts mentions and private messages; the worker notifies once per conversation, routes a click, and closes what was read', async (t) => {
  const { server, person } = await setup(t);
  const alice = await person();
  const bob = await person();
  await bob.context().grantPermissions(['notifications'], { origin: server.url });
  await bob.addInitScript(countPermissionAsks);
  await signUp(alice, server.url, 'alice');
  await signUp(bob, server.url, 'bob');
  await bob.waitForFunction(() => navigator.serviceWorker.controller);

  // Nothing is asked on load. Keyboard only: the gear opens Settings, Space turns the switch on, Escape closes.
  assert.equal(await bob.evaluate(() => window.__asked), 0, 'no permission prompt on load');
  await bob.focus('#settings-btn');
  await bob.keyboard.press('Enter');
  const toggle = bob.locator('#notify-toggle');
  await bob.locator('#settings-dialog[open]').waitFor();
  // The dialog focuses its first control (the profile picture's button);
  // Tab walks on to the switch past the account settings, as a keyboard
  // user would.
  assert.ok(await bob.evaluate(() => document.querySelector('#settings-dialog').contains(document.activeElement)), 'the dialog takes the focus');
  for (let i = 0; i < 40 && (await bob.evaluate(() => document.activeElement.id)) !== 'notify-toggle'; i++) {
    await bob.keyboard.press('Tab');
  }
  assert.equal(await bob.evaluate(() => document.activeElement.id), 'notify-toggle', 'Tab reaches the switch');
  assert.equal(await toggle.isChecked(), false);
  await bob.keyboard.press('Space');
  await bob.locator('#notify-state', { hasText: 'On for this browser.' }).waitFor();
  assert.equal(await toggle.isChecked(), true);
  await screenshot(bob, 'settings-notifications-on');
  // Enter toggles a switch too (and does not close the dialog).
  await bob.keyboard.press('Enter');
  assert.equal(await toggle.isChecked(), false);
  await bob.keyboard.press('Enter');
  assert.equal(await toggle.isChecked(), true);
  await bob.keyboard.press('Escape');
  await bob.locator('#settings-dialog:not([open])').waitFor({ state: 'attached' });
  assert.equal(await bob.evaluate(() => document.activeElement.id), 'settings-btn', 'the focus returns to the gear');

  // Bob switches to another tab. A plain message does not count; three mentions are one notification.
  await setHidden(bob, true);
  await sendMessage(alice, 'just chatting');
  await messageRow(bob, 'just chatting').waitFor();
  for (const n of [1, 2, 3]) await sendMessage(alice, `@bob are you there? (${n})`);
  await bob.waitForFunction(() => document.title.startsWith('(3) '));
  await bob.waitForFunction(async () => (await (await navigator.serviceWorker.ready).getNotifications())[0]?.data.count === 3);
  const mentionedId = Number(await messageRow(bob, '@bob are you there? (3)').getAttribute('data-id'));
  assert.deepEqual(await shown(bob), [
    {
      tag: 'hubbub:#general',
      title: 'alice mentioned you in #general',
      body: '@bob are you there? (3)\n(and 2 more)',
      data: { key: '#general', id: mentionedId, count: 3 },
    },
  ]);

  // A private message is a notification of its own.
  await personButton(alice, 'bob').click();
  await alice.locator('#conv-name', { hasText: 'bob' }).waitFor();
  await sendMessage(alice, 'psst, a private word');
  await bob.waitForFunction(() => document.title.startsWith('(4) '));
  await bob.waitForFunction(async () => (await (await navigator.serviceWorker.ready).getNotifications()).length === 2);
  const note = (await shown(bob)).find((n) => n.tag === 'hubbub:@alice');
  assert.equal(note.title, 'alice');
  assert.equal(note.body, 'psst, a private word');

  // Clicking it brings bob's window to that conversation. (No DevTools call makes a real click: the
  // worker gets the click event from the test, so only focusing the window, which needs a real one, is untested.)
  const worker = bob.context().serviceWorkers().find((w) => w.url().endsWith('/sw.js'));
  assert.ok(worker, 'the worker runs');
  await worker.evaluate(async () => {
    const [n] = await self.registration.getNotifications({ tag: 'hubbub:@alice' });
    // Dispatched by script, the event refuses waitUntil; the handler has routed the click by then.
    self.addEventListener('error', (ev) => ev.preventDefault(), { once: true });
    try {
      self.dispatchEvent(new NotificationEvent('notificationclick', { notification: n }));
    } catch {
      // waitUntil's InvalidStateError on an untrusted event
    }
  });
  await bob.locator('#conv-name', { hasText: 'alice' }).waitFor();
  await messageRow(bob, 'psst, a private word').waitFor();
  assert.deepEqual((await shown(bob)).map((n) => n.tag), ['hubbub:#general'], 'a clicked notification closes');

  // Bob reads #general on his phone: the server's `read` frame closes the desktop's notification for it.
  const phone = await person({ viewport: { width: 390, height: 760 } });
  await phone.goto(server.url);
  await phone.fill('#login-username', 'bob');
  await phone.fill('#login-password', 'correct horse');
  await phone.click('#login-form button[type=submit]');
  await waitOnline(phone);
  await messageRow(phone, '@bob are you there? (3)').waitFor();
  await bob.waitForFunction(async () => (await (await navigator.serviceWorker.ready).getNotifications()).length === 0);
  await screenshot(bob, 'notification-opened');

  // Turned off, a hidden tab still counts but shows no notification.
  await setHidden(bob, false);
  await bob.click('#settings-btn');
  await toggle.uncheck();
  await bob.keyboard.press('Escape');
  await roomItem(bob, 'general').click();
  await setHidden(bob, true);
  await sendMessage(alice, 'another private word');
  await bob.waitForFunction(() => document.title.startsWith('(1) '));
  await bob.waitForTimeout(300);
  assert.deepEqual(await shown(bob), []);
  assertNoPageErrors(assert, alice, bob, phone);
});

test('the browser asks for permission only when the switch is turned on', async (t) => {
  const { server, person } = await setup(t);
  const alice = await person();
  await alice.addInitScript(countPermissionAsks);
  await signUp(alice, server.url, 'alice');
  await alice.waitForTimeout(300);
  assert.equal(await alice.evaluate(() => window.__asked), 0, 'nothing asked on load');
  await alice.click('#settings-btn');
  await alice.locator('#notify-toggle').click();
  // Headless Chromium leaves the prompt unanswered: the switch says what it waits for.
  await alice.locator('#notify-state', { hasText: 'Allow notifications in the browser’s prompt' }).waitFor();
  assert.equal(await alice.evaluate(() => window.__asked), 1, 'asked once, from the switch');
  assertNoPageErrors(assert, alice);
});

test('a notification opens its conversation in a new window when none is open', async (t) => {
  const { server, person } = await setup(t);
  const alice = await person();
  const bob = await person();
  await signUp(alice, server.url, 'alice');
  await signUp(bob, server.url, 'bob');
  await sendMessage(alice, 'the message to show');
  await messageRow(bob, 'the message to show').and(bob.locator('[data-id]')).waitFor();
  const id = Number(await messageRow(bob, 'the message to show').getAttribute('data-id'));
  await roomItem(bob, 'general').waitFor();
  await personButton(bob, 'alice').click();
  await bob.locator('#conv-name', { hasText: 'alice' }).waitFor();

  // Bob closes the tab; the worker opens a window at the conversation's address
  // (clients.openWindow needs a real click, so the test opens that address itself).
  const context = bob.context();
  await bob.close();
  const win = await context.newPage();
  await win.goto(`${server.url}/#${new URLSearchParams({ open: '#general', message: String(id) })}`);
  await waitOnline(win);
  await win.locator('#conv-name', { hasText: '#general' }).waitFor();
  await messageRow(win, 'the message to show').and(win.locator('.flash')).waitFor();
  assert.equal(new URL(win.url()).hash, '', 'the request is read once and leaves the address');
  assertNoPageErrors(assert, alice);
});
