// Replies: "reply" in the toolbar puts a quote bar over the composer (× or
// Escape cancels), the sent message quotes its parent (author and first
// line) for everyone, and clicking the quote scrolls to the parent and
// highlights it — loading older history first when the parent is not loaded,
// and saying so when it was deleted (seen live, or found missing).

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { setup, signUp, sendMessage, messageRow, hoverMessage, rawSocket, waitOnline, screenshot, assertNoPageErrors } from './helpers.mjs';

test('a reply quotes its parent, and the quote leads back to it', async (t) => {
  const { server, person } = await setup(t);
  const alice = await person();
  const bob = await person();
  await signUp(alice, server.url, 'alice');
  await signUp(bob, server.url, 'bob');
  await bob.click('#composer-input');
  await bob.keyboard.type('who owns the release notes?');
  await bob.keyboard.press('Shift+Enter');
  await bob.keyboard.type('asking for the 2.0 launch');
  await bob.keyboard.press('Enter');
  await sendMessage(bob, 'something else entirely');
  await messageRow(alice, 'something else entirely').waitFor();

  // Reply, then think better of it: × and Escape both cancel.
  const parent = 'who owns the release notes?\nasking for the 2.0 launch';
  await (await hoverMessage(alice, parent)).locator('.tool-reply').click();
  const bar = alice.locator('#reply-bar');
  await bar.waitFor();
  assert.equal(await bar.locator('.reply-what strong').textContent(), 'bob');
  assert.equal(await bar.locator('.reply-text').textContent(), 'who owns the release notes?');
  await alice.click('#reply-cancel');
  await bar.waitFor({ state: 'hidden' });
  await (await hoverMessage(alice, parent)).locator('.tool-reply').click();
  await bar.waitFor();
  assert.ok(await alice.evaluate(() => document.activeElement.id === 'composer-input'), 'the composer has the focus');
  await alice.keyboard.press('Escape');
  await bar.waitFor({ state: 'hidden' });

  await (await hoverMessage(alice, parent)).locator('.tool-reply').click();
  await alice.keyboard.type('I do, draft by Friday');
  await screenshot(alice, 'reply-composer-bar');
  await alice.keyboard.press('Enter');
  await bar.waitFor({ state: 'hidden' });

  for (const page of [alice, bob]) {
    const quote = messageRow(page, 'I do, draft by Friday').locator('.msg-quote');
    await quote.waitFor();
    assert.equal(await quote.locator('.quote-author').textContent(), 'bob');
    assert.equal(await quote.locator('.quote-text').textContent(), 'who owns the release notes?');
  }
  await screenshot(bob, 'reply-quote');

  // The quote scrolls to the parent and highlights it for a moment.
  await messageRow(bob, 'I do, draft by Friday').locator('.msg-quote').click();
  await messageRow(bob, parent).and(bob.locator('.flash')).waitFor();
  await messageRow(bob, parent).and(bob.locator(':not(.flash)')).waitFor({ timeout: 5000 });

  // The parent is deleted: the quote says so.
  await (await hoverMessage(bob, parent)).locator('.tool-delete').click();
  await bob.locator('#delete-dialog').getByRole('button', { name: 'Delete' }).click();
  const gone = messageRow(alice, 'I do, draft by Friday').locator('.msg-quote');
  await gone.filter({ hasText: 'The original message was deleted' }).waitFor();
  assert.ok(await gone.isDisabled());
  assertNoPageErrors(assert, alice, bob);
});

test('a quote of a parent not loaded loads older messages until it is found', async (t) => {
  const { server, person } = await setup(t, { extraArgs: ['--rate-limit', '0'] });
  const alice = await person();
  const bob = await person();
  await signUp(alice, server.url, 'alice');
  await signUp(bob, server.url, 'bob');

  // The parent, then 120 messages, then a reply to it: the reply is on the first page, its parent is not.
  const first = await rawSocket(bob, [{ type: 'message', room: 'general', content: 'the very old question', client_id: 'parent-1' }], { room: 'general' });
  const ack = first.find((f) => f.type === 'ack');
  assert.ok(ack, `the parent was stored: ${JSON.stringify(first)}`);
  const filler = Array.from({ length: 120 }, (_, i) => ({ type: 'message', room: 'general', content: `filler ${i + 1}` }));
  await rawSocket(bob, filler, { room: 'general', ms: 20000 });
  await rawSocket(bob, [{ type: 'message', room: 'general', content: 'answering that old question', reply_to: ack.id }], { room: 'general' });

  await alice.reload();
  await waitOnline(alice);
  const quote = messageRow(alice, 'answering that old question').locator('.msg-quote');
  await quote.filter({ hasText: 'not loaded' }).waitFor();
  assert.equal(await messageRow(alice, 'the very old question').count(), 0, 'the parent is not on the first page');
  await screenshot(alice, 'reply-parent-not-loaded');

  await quote.click();
  await messageRow(alice, 'the very old question').and(alice.locator('.flash')).waitFor({ timeout: 15000 });
  // The parent is on screen, and the quote now shows it.
  const box = await messageRow(alice, 'the very old question').boundingBox();
  const timeline = await alice.locator('#timeline').boundingBox();
  assert.ok(box.y >= timeline.y && box.y + box.height <= timeline.y + timeline.height, 'the parent is scrolled into view');
  await screenshot(alice, 'reply-parent-found');
  assert.equal(await quote.locator('.quote-text').textContent(), 'the very old question');

  // Deleted while alice was not looking, and not loaded after a reload: the search says it is gone.
  await rawSocket(bob, [{ type: 'delete', id: ack.id }], { types: ['message_deleted', 'error'], count: 1 });
  await alice.reload();
  await waitOnline(alice);
  await quote.filter({ hasText: 'not loaded' }).click();
  await quote.filter({ hasText: 'The original message was deleted' }).waitFor({ timeout: 15000 });
  await alice.locator('.toast', { hasText: 'deleted' }).waitFor();
  assertNoPageErrors(assert, alice, bob);
});
