// Private rooms: create with members, a name that is taken, chat inside, add
// and remove members (the removed person loses the room at once).

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { setup, signUp, sendMessage, messageRow, screenshot, assertNoPageErrors } from './helpers.mjs';

const privateRoom = (page, name) => page.locator('#private-list .side-item', { hasText: name });

test('private rooms: create, chat, add and remove members', async (t) => {
  const { server, person } = await setup(t);
  const alice = await person();
  const bob = await person();
  const carol = await person();
  await signUp(alice, server.url, 'alice');
  await signUp(bob, server.url, 'bob');
  await signUp(carol, server.url, 'carol');
  await alice.locator('#people-list .side-name', { hasText: 'carol' }).waitFor();

  // Alice creates #plans with bob.
  await alice.click('#new-private-btn');
  await alice.fill('#private-name', 'plans');
  await alice.getByRole('checkbox', { name: 'bob' }).check();
  await alice.click('#private-form button[type=submit]');
  await alice.locator('#private-dialog:not([open])').waitFor({ state: 'attached' });
  await alice.locator('#conv-name', { hasText: 'plans' }).waitFor();
  await alice.locator('#conv-sub', { hasText: '2 members' }).waitFor();

  // Bob gets it in his sidebar right away; carol does not.
  await privateRoom(bob, 'plans').click();
  await sendMessage(bob, 'just between us');
  await messageRow(alice, 'just between us').waitFor();
  assert.equal(await privateRoom(carol, 'plans').count(), 0);

  // The same name again is refused by the server, shown next to the name.
  await alice.click('#new-private-btn');
  await alice.fill('#private-name', 'plans');
  await alice.click('#private-form button[type=submit]');
  await alice.locator('#private-name-error:not(:empty)').waitFor();
  await alice.keyboard.press('Escape');

  // The owner manages members: add carol, remove bob.
  await alice.click('#members-btn');
  await alice.locator('#members-dialog[open]').waitFor();
  await alice.fill('#members-input', 'nobody');
  await alice.keyboard.press('Enter');
  await alice.locator('#members-error:not(:empty)').waitFor();
  await alice.fill('#members-input', 'carol');
  await alice.keyboard.press('Enter');
  await alice.locator('#members-list .member-name', { hasText: 'carol' }).waitFor();
  await privateRoom(carol, 'plans').waitFor();
  await screenshot(alice, 'private-room-members');

  await alice.getByRole('button', { name: 'Remove bob' }).click();
  await alice.locator('#members-list .member-name', { hasText: 'bob' }).waitFor({ state: 'detached' });
  await privateRoom(bob, 'plans').waitFor({ state: 'detached' });
  await bob.locator('.toast', { hasText: 'removed from #plans' }).waitFor();
  assert.notEqual(await bob.textContent('#conv-name'), 'plans', 'bob was moved out of the room');
  await alice.keyboard.press('Escape');

  // Carol, now a member, reads the history and can write.
  await privateRoom(carol, 'plans').click();
  await messageRow(carol, 'just between us').waitFor();
  await sendMessage(carol, 'thanks for adding me');
  await messageRow(alice, 'thanks for adding me').waitFor();
  assert.equal(await carol.locator('#members-btn').isVisible(), true, 'members can see the member list');
  await carol.click('#members-btn');
  assert.equal(await carol.locator('#members-add').isVisible(), false, 'only the owner can add people');
  assertNoPageErrors(assert, alice, bob, carol);
});
