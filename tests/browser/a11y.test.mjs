// axe-core on every screen of the client, in the light and the dark theme:
// no critical or serious violation anywhere (what axe finds is fixed in the
// client, never waived here). Each screen is reached the way a person gets
// there, and photographed.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  setup,
  startServer,
  signUp,
  sendMessage,
  messageRow,
  personButton,
  hoverMessage,
  waitOnline,
  screenshot,
  axeViolations,
  assertNoPageErrors,
} from './helpers.mjs';

/** Collects each screen's findings so one run reports them all. */
function auditor() {
  const found = {};
  return {
    async check(page, screen) {
      await screenshot(page, `a11y-${screen}`);
      const lines = await axeViolations(page);
      if (lines.length) found[screen] = lines;
    },
    found,
  };
}

test('axe finds no critical or serious violation on any screen', async (t) => {
  const { server, person } = await setup(t);
  const audit = auditor();
  const alice = await person();
  const bob = await person({ colorScheme: 'dark' });

  // Logging in and signing up, in both themes.
  for (const [page, theme] of [
    [alice, 'light'],
    [bob, 'dark'],
  ]) {
    await page.goto(server.url);
    await page.locator('#login-form:not([hidden])').waitFor();
    await audit.check(page, `login-${theme}`);
    await page.getByRole('tab', { name: 'Sign up' }).click();
    // A refused form shows its errors next to the fields.
    await page.click('#signup-form button[type=submit]');
    await page.locator('#signup-username-error', { hasText: /./ }).waitFor();
    await audit.check(page, `signup-errors-${theme}`);
  }
  await signUp(alice, server.url, 'alice');
  await signUp(bob, server.url, 'bob');

  // The chat: messages, a mention, a reply, a reaction, a join notice, unread badges.
  await sendMessage(bob, 'hello @alice, a **bold** start with `code`');
  await messageRow(alice, 'hello @alice, a bold start with code').waitFor();
  const row = await hoverMessage(alice, 'hello @alice, a bold start with code');
  await row.getByRole('button', { name: 'Reply' }).click();
  await alice.keyboard.type('a reply');
  await alice.keyboard.press('Enter');
  await messageRow(bob, 'a reply').waitFor();
  await (await hoverMessage(bob, 'a reply')).getByRole('button', { name: 'Add reaction' }).click();
  await bob.getByRole('button', { name: 'React with 👍' }).click();
  await alice.locator('.chip', { hasText: '👍' }).waitFor();
  await personButton(bob, 'alice').click();
  await sendMessage(bob, 'a private word');
  await personButton(alice, 'bob').locator('.badge').waitFor();
  await audit.check(alice, 'chat-light');
  await audit.check(bob, 'private-chat-dark');

  // The hover toolbar and the emoji picker.
  await (await hoverMessage(alice, 'a reply')).getByRole('button', { name: 'Add reaction' }).click();
  await alice.locator('.emoji-picker:not([hidden])').waitFor();
  await audit.check(alice, 'emoji-picker');
  await alice.keyboard.press('Escape');

  // Mention autocomplete in the composer.
  await alice.click('#composer-input');
  await alice.keyboard.type('@b');
  await alice.locator('#mention-list:not([hidden])').waitFor();
  await audit.check(alice, 'mention-autocomplete');
  await alice.keyboard.press('Escape');
  await alice.fill('#composer-input', '');

  // Every dialog.
  await alice.click('#join-room-btn');
  await alice.locator('#join-dialog[open]').waitFor();
  await audit.check(alice, 'join-dialog');
  await alice.keyboard.press('Escape');
  await alice.click('#new-private-btn');
  await alice.locator('#private-dialog[open]').waitFor();
  await audit.check(alice, 'private-dialog');
  await alice.fill('#private-name', 'plans');
  await alice.getByRole('checkbox', { name: 'bob' }).check();
  await alice.click('#private-form button[type=submit]');
  await alice.locator('#conv-name', { hasText: 'plans' }).waitFor();
  await alice.click('#members-btn');
  await alice.locator('#members-dialog[open]').waitFor();
  await audit.check(alice, 'members-dialog');
  await alice.keyboard.press('Escape');
  await alice.locator('#room-list .side-item', { hasText: 'general' }).click();
  await (await hoverMessage(alice, 'a reply')).getByRole('button', { name: 'Delete' }).click();
  await alice.locator('#delete-dialog[open]').waitFor();
  await audit.check(alice, 'delete-dialog');
  await alice.keyboard.press('Escape');
  for (const [page, theme] of [
    [alice, 'light'],
    [bob, 'dark'],
  ]) {
    await page.click('#settings-btn');
    await page.locator('#settings-dialog[open]').waitFor();
    await audit.check(page, `settings-dialog-${theme}`);
    await page.keyboard.press('Escape');
  }

  // Search, with results and with none.
  await alice.click('#search-input');
  await alice.keyboard.type('reply');
  await alice.keyboard.press('Enter');
  await alice.locator('#search-results .result').first().waitFor();
  await audit.check(alice, 'search-results');
  await alice.fill('#search-input', 'zebra');
  await alice.press('#search-input', 'Enter');
  await alice.locator('#search-status', { hasText: 'No messages match.' }).waitFor();
  await audit.check(alice, 'search-empty');
  await alice.press('#search-input', 'Escape');

  // Phone width, with the sidebar open.
  await bob.setViewportSize({ width: 390, height: 760 });
  await bob.click('#menu-btn');
  await bob.locator('#sidebar.open').waitFor();
  // Once it has slid in: axe judges what is on screen.
  await bob.waitForFunction(() => document.getElementById('sidebar').getBoundingClientRect().left >= 0);
  await audit.check(bob, 'phone-menu-dark');
  await bob.keyboard.press('Escape');
  await bob.setViewportSize({ width: 1200, height: 760 });

  // Offline: the banner, and a message waiting to be sent.
  await server.stop();
  await alice.locator('#offline-banner:not([hidden])', { hasText: 'You are offline' }).waitFor();
  await sendMessage(alice, 'written offline');
  await messageRow(alice, 'written offline').and(alice.locator('.pending')).waitFor();
  await audit.check(alice, 'offline');
  const again = await startServer({ db: server.db, port: server.port });
  t.after(() => again.stop());
  await waitOnline(alice);
  await messageRow(alice, 'written offline').and(alice.locator('[data-id]')).waitFor();

  assert.deepEqual(audit.found, {}, 'axe found critical or serious violations');
  assertNoPageErrors(assert, alice, bob);
});
