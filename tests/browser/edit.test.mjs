// Editing and deleting messages: the hover toolbar offers edit and delete on
// one's own messages only (and delete to a private room's owner), editing is
// in place (Enter saves, Escape cancels, Up in an empty composer edits the
// last one), the other person sees the new text marked "(edited)", a delete is
// confirmed and the message goes for everyone, and a client that was away
// catches up with edits, deletes and reactions made meanwhile; all of it in a
// private conversation too.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { setup, signUp, sendMessage, messages, messageRow, hoverMessage, cuttableSocket, personButton, waitOnline, screenshot, assertNoPageErrors } from './helpers.mjs';

const acked = (page, text) => messageRow(page, text).and(page.locator('[data-id]')).waitFor();

test('people edit and delete their own messages, and others see it', async (t) => {
  const { server, person } = await setup(t);
  const alice = await person();
  const bob = await person();
  await signUp(alice, server.url, 'alice');
  await signUp(bob, server.url, 'bob');

  await sendMessage(alice, 'frist draft');
  await sendMessage(bob, 'a reply from bob');
  await acked(alice, 'frist draft');
  await messageRow(alice, 'a reply from bob').waitFor();
  await messageRow(bob, 'frist draft').waitFor();

  // Bob's toolbar on alice's message has no edit or delete; alice's on her own has both.
  let bar = (await hoverMessage(bob, 'frist draft')).locator('.msg-actions');
  assert.equal(await bar.locator('.tool-edit').isVisible(), false);
  assert.equal(await bar.locator('.tool-delete').isVisible(), false);
  assert.equal(await bar.locator('.tool-react').isVisible(), true);
  assert.equal(await bar.locator('.tool-reply').isVisible(), true);
  bar = (await hoverMessage(alice, 'frist draft')).locator('.msg-actions');
  assert.equal(await bar.locator('.tool-edit').isVisible(), true);
  assert.equal(await bar.locator('.tool-delete').isVisible(), true);
  await screenshot(alice, 'edit-hover-toolbar');
  // ...and none of it on bob's message.
  bar = (await hoverMessage(alice, 'a reply from bob')).locator('.msg-actions');
  assert.equal(await bar.locator('.tool-edit').isVisible(), false);

  // Edit, then Escape: nothing changes.
  await (await hoverMessage(alice, 'frist draft')).locator('.tool-edit').click();
  const editor = alice.locator('#message-list .edit-input');
  await editor.waitFor();
  assert.equal(await editor.inputValue(), 'frist draft');
  await alice.keyboard.type(' typo');
  await alice.keyboard.press('Escape');
  await editor.waitFor({ state: 'detached' });
  await messageRow(alice, 'frist draft').waitFor();

  // Up in the empty composer edits her last message; Enter saves.
  await alice.click('#composer-input');
  await alice.keyboard.press('ArrowUp');
  await editor.waitFor();
  await editor.fill('first draft, **fixed**');
  await screenshot(alice, 'edit-in-place');
  await alice.keyboard.press('Enter');
  await editor.waitFor({ state: 'detached' });

  for (const page of [bob, alice]) {
    const row = page.locator('#message-list li.msg', { hasText: 'first draft, fixed' });
    await row.waitFor();
    assert.equal(await row.locator('.msg-text strong').textContent(), 'fixed');
    const mark = row.locator('.msg-edited');
    assert.equal(await mark.textContent(), '(edited)');
    assert.match(await mark.getAttribute('title'), /^Edited .*\d/);
  }
  assert.equal(await messageRow(bob, 'frist draft').count(), 0);
  await screenshot(bob, 'edit-seen-by-other');

  // Delete asks first; Cancel keeps it, Delete removes it for both.
  await (await hoverMessage(alice, 'first draft, fixed')).locator('.tool-delete').click();
  const dialog = alice.locator('#delete-dialog');
  await dialog.waitFor();
  assert.match(await dialog.locator('.delete-preview').textContent(), /first draft, fixed/);
  await screenshot(alice, 'delete-confirm');
  await dialog.getByRole('button', { name: 'Cancel' }).click();
  await dialog.waitFor({ state: 'hidden' });
  await (await hoverMessage(alice, 'first draft, fixed')).locator('.tool-delete').click();
  await dialog.getByRole('button', { name: 'Delete' }).click();
  for (const page of [alice, bob]) {
    await page.locator('#message-list li.msg', { hasText: 'first draft, fixed' }).waitFor({ state: 'detached' });
    assert.deepEqual((await messages(page)).map((m) => m.text), ['a reply from bob']);
  }

  // Gone after a reload too (history leaves deleted messages out).
  await bob.reload();
  await waitOnline(bob);
  await messageRow(bob, 'a reply from bob').waitFor();
  assert.deepEqual((await messages(bob)).map((m) => m.text), ['a reply from bob']);
  assertNoPageErrors(assert, alice, bob);
});

test("a private room's owner may delete anyone's message there", async (t) => {
  const { server, person } = await setup(t);
  const alice = await person();
  const bob = await person();
  await signUp(alice, server.url, 'alice');
  await signUp(bob, server.url, 'bob');
  await alice.locator('#people-list .side-name', { hasText: 'bob' }).waitFor();

  await alice.click('#new-private-btn');
  await alice.fill('#private-name', 'ops');
  await alice.getByRole('checkbox', { name: 'bob' }).check();
  await alice.click('#private-form button[type=submit]');
  await alice.locator('#conv-name', { hasText: 'ops' }).waitFor();
  await bob.locator('#private-list .side-item', { hasText: 'ops' }).click();
  await bob.locator('#conv-name', { hasText: 'ops' }).waitFor();
  await sendMessage(bob, 'spam from bob');
  await sendMessage(alice, 'owner speaking');
  await messageRow(alice, 'spam from bob').waitFor();
  await acked(alice, 'owner speaking');
  await messageRow(bob, 'owner speaking').waitFor();

  // Bob (a member) may not delete the owner's message; alice (the owner) may delete his, not edit it.
  const bar = (await hoverMessage(bob, 'owner speaking')).locator('.msg-actions');
  assert.equal(await bar.locator('.tool-delete').isVisible(), false);
  const own = (await hoverMessage(alice, 'spam from bob')).locator('.msg-actions');
  assert.equal(await own.locator('.tool-edit').isVisible(), false);
  await own.locator('.tool-delete').click();
  await alice.locator('#delete-dialog').getByRole('button', { name: 'Delete' }).click();
  await messageRow(bob, 'spam from bob').waitFor({ state: 'detached' });
  await messageRow(alice, 'spam from bob').waitFor({ state: 'detached' });
  assertNoPageErrors(assert, alice, bob);
});

test('a client that was away shows the edits, deletes and reactions made meanwhile', async (t) => {
  const { server, person } = await setup(t);
  const alice = await person();
  const bob = await person();
  const net = await cuttableSocket(bob);
  await signUp(alice, server.url, 'alice');
  await signUp(bob, server.url, 'bob');

  for (const text of ['keep me', 'change me', 'delete me']) await sendMessage(alice, text);
  await acked(alice, 'delete me');
  await messageRow(bob, 'delete me').waitFor();

  net.cut();
  await bob.locator('#conn-status:not([data-status=online])').waitFor({ state: 'attached' });

  await (await hoverMessage(alice, 'change me')).locator('.tool-edit').click();
  await alice.locator('#message-list .edit-input').fill('changed while bob was away');
  await alice.keyboard.press('Enter');
  await messageRow(alice, 'changed while bob was away').waitFor();
  await (await hoverMessage(alice, 'delete me')).locator('.tool-delete').click();
  await alice.locator('#delete-dialog').getByRole('button', { name: 'Delete' }).click();
  await messageRow(alice, 'delete me').waitFor({ state: 'detached' });
  await (await hoverMessage(alice, 'keep me')).locator('.tool-react').click();
  await alice.locator('.emoji-picker .emoji-btn', { hasText: '🎉' }).click();
  await messageRow(alice, 'keep me').locator('.chip', { hasText: '🎉' }).waitFor();

  net.restore();
  await waitOnline(bob);
  await messageRow(bob, 'changed while bob was away').waitFor();
  await messageRow(bob, 'delete me').waitFor({ state: 'detached' });
  await messageRow(bob, 'keep me').locator('.chip', { hasText: '🎉1' }).waitFor();
  assert.deepEqual((await messages(bob)).map((m) => m.text), ['keep me', 'changed while bob was away']);
  assertNoPageErrors(assert, alice, bob);
});

test('in a private conversation too: edit, react, reply and delete reach the other person', async (t) => {
  const { server, person } = await setup(t);
  const alice = await person();
  const bob = await person();
  await signUp(alice, server.url, 'alice');
  await signUp(bob, server.url, 'bob');
  await personButton(alice, 'bob').click();
  await sendMessage(alice, 'lunch at 12?');
  await acked(alice, 'lunch at 12?');
  await personButton(bob, 'alice').click();
  await messageRow(bob, 'lunch at 12?').waitFor();

  await alice.click('#composer-input');
  await alice.keyboard.press('ArrowUp');
  await alice.locator('#message-list .edit-input').fill('lunch at 12:30?');
  await alice.keyboard.press('Enter');
  await messageRow(bob, 'lunch at 12:30?').locator('.msg-edited').waitFor();

  await (await hoverMessage(bob, 'lunch at 12:30?')).locator('.tool-react').click();
  await bob.locator('.emoji-picker .emoji-btn', { hasText: '👍' }).click();
  await messageRow(alice, 'lunch at 12:30?').locator('.chip', { hasText: '👍1' }).waitFor();

  await (await hoverMessage(bob, 'lunch at 12:30?')).locator('.tool-reply').click();
  await bob.keyboard.type('works for me');
  await bob.keyboard.press('Enter');
  await messageRow(alice, 'works for me').locator('.msg-quote', { hasText: 'lunch at 12:30?' }).waitFor();

  await (await hoverMessage(alice, 'lunch at 12:30?')).locator('.tool-delete').click();
  await alice.locator('#delete-dialog').getByRole('button', { name: 'Delete' }).click();
  await messageRow(bob, 'lunch at 12:30?').waitFor({ state: 'detached' });
  await messageRow(bob, 'works for me').locator('.msg-quote', { hasText: 'The original message was deleted' }).waitFor();
  assertNoPageErrors(assert, alice, bob);
});
