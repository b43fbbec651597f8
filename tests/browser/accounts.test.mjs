// Accounts: server validation errors next to the field, a failed login, log
// out, keyboard-only log in, and a rejected token sending the user back to the
// login screen with a clear message.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { setup, startServer, signUp, waitOnline, screenshot, assertNoPageErrors } from './helpers.mjs';

test('sign up, errors by field, log out, log in, rejected token', async (t) => {
  const { server, person } = await setup(t);
  const page = await person();
  await page.goto(server.url);
  await page.locator('#login-form:not([hidden])').waitFor();
  await screenshot(page, 'login');

  // Client-side checks catch the obvious before a round trip.
  await page.getByRole('tab', { name: 'Sign up' }).click();
  await page.fill('#signup-username', 'al');
  await page.fill('#signup-email', 'nope');
  await page.fill('#signup-password', 'short');
  await page.click('#signup-form button[type=submit]');
  assert.match(await page.textContent('#signup-username-error'), /3–32/);
  assert.match(await page.textContent('#signup-email-error'), /email/i);
  assert.match(await page.textContent('#signup-password-error'), /8/);
  assert.equal(await page.getAttribute('#signup-username', 'aria-invalid'), 'true');

  await signUp(page, server.url, 'alice');
  await page.click('#logout-btn');
  await page.locator('#auth-screen:not([hidden])').waitFor();
  assert.equal(await page.evaluate(() => localStorage.getItem('hubbub.session')), null, 'log out forgets the token');

  // The server's own answer (409 taken, usernames are case-insensitive) shows next to the username.
  await page.getByRole('tab', { name: 'Sign up' }).click();
  await page.fill('#signup-username', 'ALICE');
  await page.fill('#signup-email', 'other@example.com');
  await page.fill('#signup-password', 'long enough');
  await page.click('#signup-form button[type=submit]');
  await page.locator('#signup-username-error:not(:empty)').waitFor();
  assert.equal(await page.getAttribute('#signup-username', 'aria-invalid'), 'true');
  await screenshot(page, 'signup-taken');

  // A wrong password is refused with the server's message.
  await page.getByRole('tab', { name: 'Log in' }).click();
  await page.fill('#login-username', 'alice');
  await page.fill('#login-password', 'wrong password');
  await page.keyboard.press('Enter');
  await page.locator('#login-password-error:not(:empty)').waitFor();

  // Keyboard only: fields, then Enter.
  await page.fill('#login-password', '');
  await page.focus('#login-username');
  await page.keyboard.press('Control+A');
  await page.keyboard.type('alice');
  await page.keyboard.press('Tab');
  assert.equal(await page.evaluate(() => document.activeElement.id), 'login-password');
  await page.keyboard.type('correct horse');
  await page.keyboard.press('Enter');
  await waitOnline(page);
  const token = await page.evaluate(() => JSON.parse(localStorage.getItem('hubbub.session')).token);
  assert.match(token, /^[\w-]+\.[\w-]+\.[\w-]+$/, 'the token is kept in localStorage');

  // A token the server rejects (here: a forged signature) leads back to login with a reason.
  await page.evaluate(() => {
    const s = JSON.parse(localStorage.getItem('hubbub.session'));
    s.token = `${s.token.slice(0, s.token.lastIndexOf('.'))}.AAAA`;
    localStorage.setItem('hubbub.session', JSON.stringify(s));
  });
  await page.reload();
  await page.locator('#auth-notice:not([hidden])', { hasText: 'expired or was rejected' }).waitFor();
  await page.locator('#login-form:not([hidden])').waitFor();
  assert.equal(await page.evaluate(() => localStorage.getItem('hubbub.session')), null);
  await screenshot(page, 'login-rejected');
  assertNoPageErrors(assert, page);
});

test('a refused WebSocket upgrade (tokens no longer valid) returns to login', async (t) => {
  // The server restarts with another signing secret: every issued token is now
  // refused, so the reconnecting socket gets 401 instead of an upgrade.
  const { server, person } = await setup(t, { env: { HUBBUB_JWT_SECRET: 'first secret, long enough to be a key' } });
  const page = await person();
  await signUp(page, server.url, 'alice');
  await server.stop();
  const again = await startServer({ db: server.db, port: server.port, env: { HUBBUB_JWT_SECRET: 'another secret, long enough to be a key' } });
  t.after(() => again.stop());

  await page.locator('#auth-notice:not([hidden])', { hasText: 'expired or was rejected' }).waitFor({ timeout: 15_000 });
  assert.equal(await page.evaluate(() => localStorage.getItem('hubbub.session')), null);

  // Logging in again gets a token for the new secret and a working chat.
  await page.fill('#login-username', 'alice');
  await page.fill('#login-password', 'correct horse');
  await page.keyboard.press('Enter');
  await waitOnline(page);
  assertNoPageErrors(assert, page);
});
