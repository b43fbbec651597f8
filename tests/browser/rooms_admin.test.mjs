// Archiving and deleting rooms from the web client: an admin archives a room
// and a member in it loses the composer to a read-only banner at once (and
// still after a reload, from GET /api/rooms); unarchiving brings the composer
// back; deleting, after a confirm dialog that says what is lost, takes the
// room out of the member's sidebar and sends them to #general. Members see
// none of these controls, and #general offers none.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { setup, signUp, waitOnline, sendMessage, messageRow, screenshot, axeViolations, assertNoPageErrors } from './helpers.mjs';

const sideRoom = (page, name) => page.locator('#room-list .side-item', { hasText: name });

async function joinRoom(page, name) {
  await page.click('#join-room-btn');
  await page.fill('#join-name', name);
  await page.click('#join-form button[type=submit]');
  await page.locator('#conv-name', { hasText: `#${name}` }).waitFor();
}

test('rooms: archive makes a room read-only live, unarchive reopens it, delete removes it', async (t) => {
  const { server, person } = await setup(t);
  const alice = await person();
  const bob = await person();
  await signUp(alice, server.url, 'alice');
  await signUp(bob, server.url, 'bob');

  // #general is neither archived nor deleted, and a member gets no such controls.
  assert.equal(await alice.isHidden('#archive-btn'), true, 'no archive button in #general');
  assert.equal(await alice.isHidden('#delete-room-btn'), true, 'no delete button in #general');
  await joinRoom(alice, 'lounge');
  await joinRoom(bob, 'lounge');
  await sendMessage(bob, 'before the archive');
  await messageRow(alice, 'before the archive').waitFor();
  assert.equal(await bob.isHidden('#archive-btn'), true, 'a member has no archive button');
  assert.equal(await bob.isHidden('#delete-room-btn'), true, 'a member has no delete button');
  assert.equal(await alice.textContent('#archive-btn'), 'Archive room');

  // Archived: bob's composer gives way to the banner, live; the history stays.
  await alice.click('#archive-btn');
  await alice.locator('#archive-btn', { hasText: 'Unarchive room' }).waitFor();
  await bob.locator('#archived-banner', { hasText: 'This room is archived' }).waitFor();
  assert.equal(await bob.isHidden('#composer'), true, 'no composer in an archived room');
  await alice.locator('#archived-banner', { hasText: 'This room is archived' }).waitFor();
  await bob.locator('#conv-sub', { hasText: 'archived' }).waitFor();
  await messageRow(bob, 'before the archive').waitFor();
  await screenshot(bob, 'room-archived');
  assert.deepEqual(await axeViolations(bob), [], 'an archived room');

  // Another room is not affected.
  await sideRoom(bob, 'general').click();
  await bob.locator('#composer').waitFor();
  assert.equal(await bob.isHidden('#archived-banner'), true, '#general keeps its composer');

  // After a reload the archived state comes from GET /api/rooms.
  await sideRoom(bob, 'lounge').click();
  await bob.reload();
  await waitOnline(bob);
  await bob.locator('#conv-name', { hasText: '#lounge' }).waitFor();
  await bob.locator('#archived-banner', { hasText: 'This room is archived' }).waitFor();
  assert.equal(await bob.isHidden('#composer'), true, 'still read-only after a reload');

  // Unarchived: the composer is back and works.
  await alice.click('#archive-btn');
  await alice.locator('#archive-btn', { hasText: /^Archive room$/ }).waitFor();
  await bob.locator('#composer').waitFor();
  assert.equal(await bob.isHidden('#archived-banner'), true, 'no banner once unarchived');
  await sendMessage(bob, 'open again');
  await messageRow(alice, 'open again').waitFor();

  // Delete: the dialog says what is lost; cancel keeps the room.
  await alice.click('#delete-room-btn');
  await alice.locator('#room-delete-dialog[open]').waitFor();
  assert.match(await alice.textContent('#room-delete-text'), /history.*file.*lost/);
  await screenshot(alice, 'room-delete-dialog');
  assert.deepEqual(await axeViolations(alice), [], 'the delete room dialog');
  await alice.keyboard.press('Escape');
  await alice.locator('#room-delete-dialog:not([open])').waitFor({ state: 'attached' });
  assert.equal(await sideRoom(bob, 'lounge').count(), 1, 'cancel deletes nothing');

  await alice.click('#delete-room-btn');
  await alice.click('#room-delete-confirm');
  await sideRoom(bob, 'lounge').waitFor({ state: 'detached' });
  await bob.locator('#conv-name', { hasText: '#general' }).waitFor();
  await bob.locator('.toast', { hasText: '#lounge was deleted' }).waitFor();
  await sideRoom(alice, 'lounge').waitFor({ state: 'detached' });
  await alice.locator('#conv-name', { hasText: '#general' }).waitFor();
  await screenshot(bob, 'room-deleted');

  // The name is free again and the room starts empty.
  await joinRoom(bob, 'lounge');
  await bob.locator('#empty-state:not([hidden])').waitFor();
  assert.equal(await messageRow(bob, 'open again').count(), 0, 'the old history is gone');
  assertNoPageErrors(assert, alice, bob);
});
