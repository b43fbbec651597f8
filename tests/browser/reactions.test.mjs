// Reactions: the picker from the hover toolbar, chips with counts under the
// message for everyone, who reacted in the chip's tooltip, the user's own
// highlighted, and a click on a chip toggling the user's reaction.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { setup, signUp, sendMessage, messageRow, hoverMessage, rawSocket, screenshot, assertNoPageErrors } from './helpers.mjs';

const chip = (page, text, emoji) => messageRow(page, text).locator('.chip:not(.chip-add)', { hasText: emoji });

test('people react with the picker and toggle reactions with the chips', async (t) => {
  const { server, person } = await setup(t);
  const alice = await person();
  const bob = await person({ colorScheme: 'dark' });
  await signUp(alice, server.url, 'alice');
  await signUp(bob, server.url, 'bob');
  await sendMessage(bob, 'we shipped it');
  await messageRow(alice, 'we shipped it').waitFor();

  // Alice opens the picker from the toolbar and picks 🎉.
  await (await hoverMessage(alice, 'we shipped it')).locator('.tool-react').click();
  const picker = alice.locator('.emoji-picker');
  await picker.waitFor();
  assert.ok((await picker.locator('.emoji-btn').count()) >= 12, 'a dozen common emoji');
  await screenshot(alice, 'reactions-picker');
  await picker.locator('.emoji-btn', { hasText: '🎉' }).click();
  await picker.waitFor({ state: 'hidden' });

  // Both see one 🎉; alice's is hers (highlighted), bob's is not.
  await chip(bob, 'we shipped it', '🎉').filter({ hasText: '1' }).waitFor();
  await chip(alice, 'we shipped it', '🎉').and(alice.locator('.mine')).waitFor();
  assert.equal(await chip(bob, 'we shipped it', '🎉').getAttribute('aria-pressed'), 'false');
  assert.equal(await chip(bob, 'we shipped it', '🎉').getAttribute('title'), 'alice reacted with 🎉');

  // Bob clicks the chip: two, his now too; the tooltip names both.
  await chip(bob, 'we shipped it', '🎉').click();
  await chip(alice, 'we shipped it', '🎉').filter({ hasText: '2' }).waitFor();
  await chip(bob, 'we shipped it', '🎉').and(bob.locator('.mine')).waitFor();
  assert.equal(await chip(alice, 'we shipped it', '🎉').getAttribute('title'), 'You and bob reacted with 🎉');

  // A second emoji from the "+" beside the chips; picked with the keyboard.
  await messageRow(bob, 'we shipped it').hover();
  await messageRow(bob, 'we shipped it').locator('.chip-add').click();
  await bob.locator('.emoji-picker').waitFor();
  await bob.keyboard.press('ArrowRight'); // ❤️ is second
  await bob.keyboard.press('Enter');
  await chip(alice, 'we shipped it', '❤️').filter({ hasText: '1' }).waitFor();
  await bob.mouse.move(600, 100);
  await screenshot(bob, 'reactions-chips');

  // Clicking one's own chip takes the reaction back; at zero the chip goes.
  await chip(bob, 'we shipped it', '🎉').click();
  await chip(alice, 'we shipped it', '🎉').filter({ hasText: '1' }).waitFor();
  await chip(bob, 'we shipped it', '🎉').and(bob.locator(':not(.mine)')).waitFor();
  await chip(alice, 'we shipped it', '🎉').click();
  await chip(bob, 'we shipped it', '🎉').waitFor({ state: 'detached' });
  await chip(alice, 'we shipped it', '🎉').waitFor({ state: 'detached' });
  assert.equal(await chip(alice, 'we shipped it', '❤️').textContent(), '❤️1');

  // From the keyboard alone: Up in the timeline focuses the last message, Tab reaches its toolbar.
  await sendMessage(alice, 'keyboard people welcome');
  await messageRow(bob, 'keyboard people welcome').waitFor();
  await bob.focus('#timeline');
  await bob.keyboard.press('ArrowUp');
  const focused = messageRow(bob, 'keyboard people welcome');
  await focused.locator('.msg-actions').waitFor();
  assert.ok(await focused.evaluate((li) => li === document.activeElement), 'the newest message has the focus');
  await bob.keyboard.press('ArrowUp');
  assert.ok(await messageRow(bob, 'we shipped it').evaluate((li) => li === document.activeElement), 'Up again: the one before');
  await bob.keyboard.press('ArrowDown');
  await bob.keyboard.press('Tab');
  assert.equal(await bob.evaluate(() => document.activeElement.getAttribute('aria-label')), 'Add reaction');
  await bob.keyboard.press('Enter');
  await bob.keyboard.press('Enter'); // 👍, the first in the picker
  await chip(alice, 'keyboard people welcome', '👍').filter({ hasText: '1' }).waitFor();

  // Past the server's limit (20 different emoji on a message) the refusal is shown, not swallowed.
  const id = Number(await messageRow(alice, 'keyboard people welcome').getAttribute('data-id'));
  const more = [...'😀😁🤣😃😄😅😆😉😊😋😎😍😘🥰😗😙😚🙂🤗'];
  await rawSocket(bob, more.map((emoji) => ({ type: 'react', id, emoji })), { types: ['reaction', 'error'], count: more.length });
  await messageRow(alice, 'keyboard people welcome').locator('.chip:not(.chip-add)').nth(19).waitFor();
  await (await hoverMessage(alice, 'keyboard people welcome')).locator('.tool-react').click();
  await alice.locator('.emoji-picker .emoji-btn', { hasText: '🔥' }).click();
  await alice.locator('.toast', { hasText: 'Could not react to that message' }).waitFor();
  assert.equal(await messageRow(alice, 'keyboard people welcome').locator('.chip', { hasText: '🔥' }).count(), 0);

  // Reactions are kept: a reload shows them from history.
  await alice.reload();
  await chip(alice, 'we shipped it', '❤️').filter({ hasText: '1' }).waitFor();
  assert.equal(await chip(alice, 'we shipped it', '❤️').getAttribute('title'), 'bob reacted with ❤️');
  assertNoPageErrors(assert, alice, bob);
});
