// The composer counts characters as the server does (Unicode scalar values
// after trimming, 1-4000), not UTF-16 units: emoji outside the Basic
// Multilingual Plane count once, so 3,000 of them (6,000 UTF-16 units) go out,
// and exactly 4,000 scalar values is the limit, whatever they are made of.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { setup, signUp, messageRow, screenshot, assertNoPageErrors } from './helpers.mjs';

const PARTY = '🎉'; // one scalar value, two UTF-16 units
const FAMILY = '👩‍👩‍👧'; // five scalar values (three emoji, two zero-width joiners), eight UTF-16 units

const scalars = (s) => [...s].length;

test('a message of 3,000 emoji is accepted, and the limit is 4,000 characters as the server counts them', async (t) => {
  const { server, person } = await setup(t);
  const alice = await person();
  const bob = await person();
  await signUp(alice, server.url, 'alice');
  await signUp(bob, server.url, 'bob');
  const count = alice.locator('#composer-count');
  const send = alice.locator('#composer button[type=submit]');

  // 3,000 emoji: 6,000 UTF-16 units, 3,000 characters.
  const party = PARTY.repeat(3000);
  assert.equal(party.length, 6000);
  await alice.fill('#composer-input', party);
  // 1,000 left: far from the limit, so no counter yet, and the button is on.
  assert.equal(await count.textContent(), '1,000 left');
  assert.ok(await count.isHidden());
  assert.ok(await send.isEnabled());
  assert.equal(await alice.inputValue('#composer-input'), party, 'nothing was cut off');
  await screenshot(alice, 'emoji-3000-in-composer');
  await alice.press('#composer-input', 'Enter');
  await messageRow(alice, party).and(alice.locator('[data-id]')).waitFor();
  const received = messageRow(bob, party);
  await received.waitFor();
  assert.equal(scalars(await received.locator('.msg-text').textContent()), 3000);
  assert.equal(await alice.inputValue('#composer-input'), '', 'sent and cleared');
  assert.ok(await count.isHidden(), 'the counter goes with the text');
  await screenshot(bob, 'emoji-3000-received');

  // Exactly 4,000 scalar values of joined emoji (8,000 UTF-16 units): the server takes it too.
  const families = FAMILY.repeat(800);
  assert.equal(scalars(families), 4000);
  await alice.fill('#composer-input', families);
  await count.filter({ hasText: '0 left' }).waitFor();
  await alice.press('#composer-input', 'Enter');
  await messageRow(alice, families).and(alice.locator('[data-id]')).waitFor();
  await messageRow(bob, families).waitFor();

  // One more family is 4,005: refused before it leaves, with the text kept and the reason shown.
  const over = FAMILY.repeat(801) + '  ';
  await alice.fill('#composer-input', over);
  await count.filter({ hasText: '5 over the limit' }).waitFor();
  assert.ok(await send.isDisabled(), 'the send button is off');
  await alice.press('#composer-input', 'Enter');
  await alice.waitForTimeout(300);
  assert.equal(await alice.inputValue('#composer-input'), over, 'the text stays for the user to shorten');
  assert.equal(await alice.locator('#message-list li.msg.pending').count(), 0, 'nothing was queued');
  await screenshot(alice, 'emoji-over-limit');

  // Shortened back to the limit, it goes.
  await alice.fill('#composer-input', FAMILY.repeat(800));
  await count.filter({ hasText: '0 left' }).waitFor();
  assert.ok(await send.isEnabled());
  assertNoPageErrors(assert, alice, bob);
});
