// Running a community from the web client: the first account administers; a
// moderator's delete on someone else's message; display names shown where a
// person appears; the admin panel (people, roles, bans, invites, sign-up mode,
// who may make invites, audit log) and the account settings (profile,
// sessions), each checked with axe and photographed; a ban sending the banned
// person to the login screen with a clear message; an invite link opening the
// sign-up form filled in.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { setup, signUp, sendMessage, messageRow, hoverMessage, screenshot, axeViolations, assertNoPageErrors } from './helpers.mjs';

test('admin panel, moderation, profiles, bans and invite links', async (t) => {
  const { server, person } = await setup(t);
  const alice = await person();
  const bob = await person();
  await signUp(alice, server.url, 'alice');
  await signUp(bob, server.url, 'bob');

  // A member's message, deleted by the admin (not its author).
  await sendMessage(bob, 'buy cheap watches');
  await messageRow(alice, 'buy cheap watches').waitFor();
  const row = await hoverMessage(alice, 'buy cheap watches');
  await row.locator('.tool-delete').click();
  await alice.click('#delete-confirm');
  await messageRow(bob, 'buy cheap watches').waitFor({ state: 'detached' });

  // A display name and status, set in the settings dialog, shown to others.
  await alice.click('#settings-btn');
  await alice.locator('#sessions-list li').first().waitFor();
  assert.match(await alice.textContent('#sessions-list'), /This session/);
  await alice.fill('#profile-display-name', 'Alice Admin');
  await alice.fill('#profile-status', 'keeping the lights on');
  await alice.click('#profile-save');
  await alice.waitForFunction(() => document.querySelector('#me-name')?.textContent === 'Alice Admin');
  await screenshot(alice, 'admin-settings');
  assert.deepEqual(await axeViolations(alice), [], 'settings dialog');
  await alice.keyboard.press('Escape');
  await sendMessage(alice, 'welcome everyone');
  await bob.waitForFunction(() =>
    [...document.querySelectorAll('#message-list li.msg .msg-author')].some((a) => a.textContent === 'Alice Admin'),
  );
  await bob.locator('#people-list .side-name', { hasText: 'Alice Admin' }).waitFor();

  // The admin panel: only for moderators and admins.
  assert.equal(await bob.isHidden('#admin-btn'), true, 'a member has no admin button');
  await alice.click('#admin-btn');
  await alice.locator('#admin-people li', { hasText: '@bob' }).waitFor();
  await alice.click('#invite-create');
  const link = alice.locator('#admin-invites .invite-link').first();
  await link.waitFor();
  const inviteUrl = await link.inputValue();
  assert.match(inviteUrl, /#invite=/);
  await alice.selectOption('#signup-mode', 'invite');
  await alice.locator('#admin-audit li', { hasText: 'settings' }).waitFor();
  // Who may make invites: the panel shows the server's setting (moderators
  // by default), changes it, and the change is stored and audited.
  await alice.waitForFunction(() => document.querySelector('#invites-by').value === 'moderator');
  await alice.selectOption('#invites-by', 'member');
  await alice.locator('#admin-audit li', { hasText: 'invites_by=member' }).waitFor();
  const stored = await alice.evaluate(async () => {
    const { token } = JSON.parse(localStorage.getItem('hubbub.session'));
    const r = await fetch('/api/admin/settings', { headers: { Authorization: `Bearer ${token}` } });
    return r.json();
  });
  assert.deepEqual(stored, { signup: 'invite', signup_locked: false, invites_by: 'member' });
  await screenshot(alice, 'admin-panel');
  assert.deepEqual(await axeViolations(alice), [], 'admin panel');

  // Keyboard: the ban button is reachable and works from the keyboard.
  alice.once('dialog', (d) => d.accept('spam'));
  await alice.getByRole('button', { name: 'Ban bob' }).focus();
  await alice.keyboard.press('Enter');
  await alice.getByRole('button', { name: 'Unban bob' }).waitFor();
  await bob.locator('#auth-screen:not([hidden])').waitFor();
  assert.match(await bob.textContent('#auth-notice'), /banned.*spam/i);
  await screenshot(bob, 'banned');
  await alice.keyboard.press('Escape');

  // An invite link opens the sign-up form with its code (sign-up is invite-only now).
  const carol = await person();
  await carol.goto(inviteUrl);
  await carol.locator('#signup-form:not([hidden])').waitFor();
  assert.equal(await carol.inputValue('#signup-invite'), inviteUrl.split('#invite=')[1]);
  await carol.fill('#signup-username', 'carol');
  await carol.fill('#signup-password', 'correct horse');
  await screenshot(carol, 'invite-signup');
  await carol.click('#signup-form button[type=submit]');
  await carol.waitForSelector('#app:not([hidden])');
  assertNoPageErrors(assert, alice, carol);
});

test('the operator\'s --signup is shown in the admin panel, not offered; who may make invites still is', async (t) => {
  const { server, person } = await setup(t, { extraArgs: ['--signup', 'open'] });
  const alice = await person();
  await signUp(alice, server.url, 'alice');
  await alice.click('#admin-btn');
  await alice.locator('#signup-locked:not([hidden])').waitFor();
  assert.equal(await alice.isDisabled('#signup-mode'), true);
  assert.equal(await alice.inputValue('#signup-mode'), 'open');
  assert.equal(await alice.isEnabled('#invites-by'), true);
  await alice.selectOption('#invites-by', 'admin');
  await alice.locator('#admin-audit li', { hasText: 'invites_by=admin' }).waitFor();
  await screenshot(alice, 'admin-signup-locked');
  assert.deepEqual(await axeViolations(alice), [], 'admin panel, sign-up locked');
  assertNoPageErrors(assert, alice);
});
