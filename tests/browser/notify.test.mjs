// Mentions counted in the sidebar (live from `mention` frames, and from the
// `unread` frame after a reload, also for a room the user never joined), and
// while the tab is hidden: a "(N)" title count of mentions and private
// messages, and desktop notifications once the user turned them on with the
// bell (never asked on load), whose click opens the conversation.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { setup, signUp, sendMessage, messageRow, personButton, waitOnline, screenshot, assertNoPageErrors } from './helpers.mjs';

const roomItem = (page, name) => page.locator('#room-list .side-item', { has: page.locator('.side-name', { hasText: new RegExp(`^${name}$`) }) });

/** Record every Notification the page makes (and the permission asked), keeping the real one's behaviour. */
function recordNotifications() {
  window.__notes = [];
  window.__asked = 0;
  const Real = window.Notification;
  class Recorded extends Real {
    constructor(title, opts = {}) {
      super(title, opts);
      window.__notes.push({ title, body: opts.body, note: this });
    }
    static get permission() {
      return Real.permission;
    }
    static requestPermission(...args) {
      window.__asked += 1;
      return Real.requestPermission(...args);
    }
  }
  window.Notification = Recorded;
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

test('a hidden tab counts mentions and private messages in its title and notifies', async (t) => {
  const { server, person } = await setup(t);
  const alice = await person();
  const bob = await person();
  await bob.context().grantPermissions(['notifications'], { origin: server.url });
  await bob.addInitScript(recordNotifications);
  await signUp(alice, server.url, 'alice');
  await signUp(bob, server.url, 'bob');

  // Nothing is asked on load; the bell turns notifications on.
  assert.equal(await bob.evaluate(() => window.__asked), 0, 'no permission prompt on load');
  const bell = bob.locator('#notify-btn');
  assert.equal(await bell.getAttribute('aria-pressed'), 'false');
  await bell.click();
  await bob.locator('#notify-btn[aria-pressed=true]').waitFor();

  // Bob switches to another tab. A plain message does not count; a mention and a private message do.
  await setHidden(bob, true);
  await sendMessage(alice, 'just chatting');
  await sendMessage(alice, 'still chatting');
  await messageRow(bob, 'still chatting').waitFor();
  await sendMessage(alice, '@bob are you there?');
  await personButton(alice, 'bob').click();
  await alice.locator('#conv-name', { hasText: 'bob' }).waitFor();
  await sendMessage(alice, 'psst, a private word');
  await bob.waitForFunction(() => window.__notes.length === 2);
  await bob.waitForFunction(() => document.title.startsWith('(2) '));
  const notes = await bob.evaluate(() => window.__notes.map((n) => ({ title: n.title, body: n.body })));
  assert.deepEqual(notes, [
    { title: 'alice mentioned you in #general', body: '@bob are you there?' },
    { title: 'alice', body: 'psst, a private word' },
  ]);
  assert.match(await bob.title(), /^\(2\) .*hubbub$/);

  // Clicking the private message's notification brings bob to that conversation.
  await bob.evaluate(() => window.__notes[1].note.onclick());
  await bob.locator('#conv-name', { hasText: 'alice' }).waitFor();
  await messageRow(bob, 'psst, a private word').waitFor();

  // Back on the tab: the count of what came while away goes; the title shows the unread
  // messages again, as a visible tab always does (three in #general), until they are read.
  await setHidden(bob, false);
  await bob.waitForFunction(() => document.title === '(3) alice · hubbub');
  await screenshot(bob, 'notification-opened');
  await roomItem(bob, 'general').click();
  await bob.waitForFunction(() => document.title === '#general · hubbub');

  // Turned off, a hidden tab still counts but makes no notification.
  await bell.click();
  await bob.locator('#notify-btn[aria-pressed=false]').waitFor();
  await setHidden(bob, true);
  await sendMessage(alice, 'another private word');
  await bob.waitForFunction(() => document.title.startsWith('(1) '));
  assert.equal(await bob.evaluate(() => window.__notes.length), 2);
  assertNoPageErrors(assert, alice, bob);
});
