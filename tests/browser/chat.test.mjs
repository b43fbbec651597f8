// Two people in a room: messages both ways, typing, presence, grouping,
// multi-line messages, and joining a new (empty) room.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { setup, signUp, sendMessage, messages, messageRow, personButton, screenshot, assertNoPageErrors } from './helpers.mjs';

test('two people chat in a room with typing and presence', async (t) => {
  const { server, person } = await setup(t);
  const alice = await person();
  const bob = await person({ colorScheme: 'dark' });

  await signUp(alice, server.url, 'alice');
  await signUp(bob, server.url, 'bob');

  // Both start in #general; alice sees bob arrive, online, with the room count.
  await alice.locator('.notice-line', { hasText: 'bob joined #general' }).waitFor();
  await alice.locator('#conv-sub', { hasText: '2 online' }).waitFor();
  await personButton(alice, 'bob').and(alice.locator('.online')).waitFor();
  assert.equal(await alice.textContent('#conv-name'), '#general');

  // Typing shows on the other side, then the message arrives.
  await alice.click('#composer-input');
  await alice.keyboard.type('Hello bob');
  await bob.locator('#typing-line', { hasText: 'alice is typing…' }).waitFor();
  await alice.keyboard.press('Enter');
  await messageRow(bob, 'Hello bob').waitFor();
  await bob.locator('#typing-line:empty').waitFor();
  assert.equal(await alice.inputValue('#composer-input'), '', 'Enter sent and cleared the box');

  // The sender's copy is acknowledged (it gets its server id).
  await messageRow(alice, 'Hello bob').and(alice.locator('[data-id]')).waitFor();

  // Shift+Enter adds a line; Enter sends one two-line message.
  await bob.click('#composer-input');
  await bob.keyboard.type('line one');
  await bob.keyboard.press('Shift+Enter');
  await bob.keyboard.type('line two');
  await bob.keyboard.press('Enter');
  await messageRow(alice, 'line one\nline two').waitFor();

  // Consecutive messages from one sender are grouped under one header.
  await sendMessage(bob, 'and a third line');
  await messageRow(alice, 'and a third line').waitFor();
  const seen = await messages(alice);
  assert.deepEqual(
    seen.map((m) => [m.author, m.text, m.grouped]),
    [
      ['alice', 'Hello bob', false],
      ['bob', 'line one\nline two', false],
      ['bob', 'and a third line', true],
    ],
  );
  assert.ok(seen.every((m) => Number.isInteger(m.id)), 'every message has its server id');

  // A typing line without a new typing frame disappears on its own.
  await bob.click('#composer-input');
  await bob.keyboard.type('hmm');
  await alice.locator('#typing-line', { hasText: 'bob is typing…' }).waitFor();
  await screenshot(alice, 'chat-light');
  await screenshot(bob, 'chat-dark');
  await alice.locator('#typing-line:empty').waitFor({ timeout: 6000 });

  // Join a new room: an empty state invites the first message.
  await alice.click('#join-room-btn');
  await alice.fill('#join-name', 'Bad Name!');
  await alice.click('#join-form button[type=submit]');
  assert.match(await alice.textContent('#join-name-error'), /lowercase/);
  await alice.fill('#join-name', 'random');
  await alice.click('#join-form button[type=submit]');
  await alice.locator('#conv-name', { hasText: '#random' }).waitFor();
  await alice.locator('#empty-state:not([hidden])', { hasText: 'Welcome to #random' }).waitFor();
  await screenshot(alice, 'empty-room');

  // Bob leaves: alice sees him go offline with a last-seen time.
  await bob.context().close();
  await personButton(alice, 'bob').and(alice.locator(':not(.online)')).waitFor();
  assert.match(await personButton(alice, 'bob').locator('.side-sub').textContent(), /Last seen/);

  assertNoPageErrors(assert, alice);
});
