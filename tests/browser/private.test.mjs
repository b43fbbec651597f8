// A private conversation: sent → delivered → read receipts, unread badges
// (live and from the `unread` frame after a reload), and history after reload.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { setup, signUp, sendMessage, messages, messageRow, personButton, screenshot, assertNoPageErrors, waitOnline } from './helpers.mjs';

const footOf = (page, text) => messageRow(page, text).locator('.msg-foot');

test('a private message is delivered, then read, and survives a reload', async (t) => {
  const { server, person } = await setup(t);
  const alice = await person();
  const bob = await person();
  await signUp(alice, server.url, 'alice');
  await signUp(bob, server.url, 'bob');

  // Alice opens a conversation from the people list.
  await personButton(alice, 'bob').click();
  await alice.locator('#conv-name', { hasText: 'bob' }).waitFor();
  await alice.locator('#empty-state:not([hidden])', { hasText: 'Say hello to bob' }).waitFor();

  // Bob is online but looking at #general: the message is delivered, not read.
  await sendMessage(alice, 'hi bob, got a minute?');
  await footOf(alice, 'hi bob, got a minute?').and(alice.locator('[data-status=delivered]')).waitFor();
  assert.equal(await footOf(alice, 'hi bob, got a minute?').locator('.receipt').textContent(), 'Delivered');

  // Bob sees an unread badge on alice, and the tab title counts it.
  await personButton(bob, 'alice').locator('.badge', { hasText: '1' }).waitFor();
  assert.match(await bob.title(), /^\(1\)/);
  await screenshot(bob, 'private-unread-badge');

  // Bob opens it: alice's message turns to read, bob's badge goes away.
  await personButton(bob, 'alice').click();
  await messageRow(bob, 'hi bob, got a minute?').waitFor();
  await footOf(alice, 'hi bob, got a minute?').and(alice.locator('[data-status=read]')).waitFor();
  assert.equal(await personButton(bob, 'alice').locator('.badge').count(), 0);
  await sendMessage(bob, 'sure, what is up?');
  await messageRow(alice, 'sure, what is up?').waitFor();
  await screenshot(alice, 'private-read');

  // A reload keeps the history (fetched from the server again).
  await alice.reload();
  await waitOnline(alice);
  await alice.locator('#conv-name', { hasText: 'bob' }).waitFor();
  await messageRow(alice, 'sure, what is up?').waitFor();
  assert.deepEqual(
    (await messages(alice)).map((m) => [m.author, m.text]),
    [
      ['alice', 'hi bob, got a minute?'],
      ['bob', 'sure, what is up?'],
    ],
  );

  // Bob goes to #general; a message arriving meanwhile is still unread after his reload.
  await bob.locator('#room-list .side-item', { hasText: 'general' }).click();
  await sendMessage(alice, 'one more thing');
  await personButton(bob, 'alice').locator('.badge', { hasText: '1' }).waitFor();
  await bob.reload();
  await waitOnline(bob);
  await personButton(bob, 'alice').locator('.badge', { hasText: '1' }).waitFor();

  assertNoPageErrors(assert, alice, bob);
});
