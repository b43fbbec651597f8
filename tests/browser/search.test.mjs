// Search: the box in the header lists matching messages (author, where,
// when, a snippet with the matched words marked) from rooms and private
// conversations, and clicking a result opens it with the message in context,
// scrolled to and highlighted, even when it is far older than the loaded page.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { setup, signUp, sendMessage, messageRow, personButton, rawSocket, screenshot, assertNoPageErrors, waitOnline } from './helpers.mjs';

test('search finds messages everywhere and a result opens in context', async (t) => {
  const { server, person } = await setup(t, { extraArgs: ['--rate-limit', '0'] });
  const alice = await person();
  const bob = await person();
  await signUp(alice, server.url, 'alice');
  await signUp(bob, server.url, 'bob');

  // An old message in #general, buried under 300 newer ones; a private one; a recent one.
  await rawSocket(bob, [{ type: 'message', room: 'general', content: 'The Deploy checklist lives in the wiki, step 4 is the rollback' }], { room: 'general' });
  const filler = Array.from({ length: 300 }, (_, i) => ({ type: 'message', room: 'general', content: `chatter ${i + 1}` }));
  await rawSocket(bob, filler, { room: 'general', ms: 20000 });
  await personButton(bob, 'alice').click();
  await sendMessage(bob, 'can you deploy tonight? the checklist is ready');
  await messageRow(bob, 'can you deploy tonight? the checklist is ready').and(bob.locator('[data-id]')).waitFor();
  await bob.locator('#room-list .side-item', { hasText: 'general' }).click();
  await sendMessage(bob, 'unrelated news');
  await messageRow(alice, 'unrelated news').waitFor();
  // Freshly loaded, alice has only the newest page: the old message is not in it.
  await alice.reload();
  await waitOnline(alice);
  await messageRow(alice, 'unrelated news').waitFor();
  assert.equal(await messageRow(alice, 'chatter 200').count(), 0);

  // Two words, any order, any case: both messages, newest first.
  await alice.click('#search-input');
  await alice.keyboard.type('checklist DEPLOY');
  await alice.keyboard.press('Enter');
  const results = alice.locator('#search-results .result');
  await results.nth(1).waitFor();
  assert.equal(await results.count(), 2);
  assert.deepEqual(await results.locator('.result-author').allTextContents(), ['bob', 'bob']);
  assert.deepEqual(await results.locator('.result-where').allTextContents(), ['with bob', '#general']);
  assert.match(await results.nth(0).locator('.result-time').textContent(), /Today \d/);
  assert.deepEqual(await results.nth(1).locator('mark').allTextContents(), ['Deploy', 'checklist']);
  assert.equal(await results.nth(1).locator('.result-snippet').textContent(), 'The Deploy checklist lives in the wiki, step 4 is the rollback');
  await screenshot(alice, 'search-results');

  // The old one: #general opens at that message, highlighted, with older and newer context around it.
  await results.nth(1).click();
  const target = messageRow(alice, 'The Deploy checklist lives in the wiki, step 4 is the rollback');
  await target.and(alice.locator('.flash')).waitFor();
  assert.equal(await alice.textContent('#conv-name'), '#general');
  const box = await target.boundingBox();
  const timeline = await alice.locator('#timeline').boundingBox();
  assert.ok(box.y >= timeline.y && box.y + box.height <= timeline.y + timeline.height, 'the result is on screen');
  // Context on both sides: what came just before and just after it.
  await messageRow(alice, 'chatter 1').waitFor();
  assert.ok((await messageRow(alice, 'chatter 1').boundingBox()).y > box.y, 'the next message is below it');
  // A way back to the newest messages.
  await alice.locator('#new-messages-btn', { hasText: 'Jump to newest' }).waitFor();
  await screenshot(alice, 'search-result-in-context');

  // The panel made way; back in the box, the results are there again.
  assert.ok(await alice.locator('#search-panel').isHidden());
  await alice.click('#new-messages-btn');
  await messageRow(alice, 'unrelated news').waitFor();
  await alice.click('#search-input');
  await results.nth(0).click();
  await alice.locator('#conv-name', { hasText: 'bob' }).waitFor();
  await messageRow(alice, 'can you deploy tonight? the checklist is ready').and(alice.locator('.flash')).waitFor();

  // Nothing found, and Escape closes the panel.
  await alice.fill('#search-input', 'zebra');
  await alice.press('#search-input', 'Enter');
  await alice.locator('#search-status', { hasText: 'No messages match.' }).waitFor();
  assert.equal(await results.count(), 0);
  await alice.press('#search-input', 'Escape');
  await alice.locator('#search-panel').waitFor({ state: 'hidden' });
  assertNoPageErrors(assert, alice, bob);
});
