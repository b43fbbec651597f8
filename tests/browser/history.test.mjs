// A long room: the newest 50 on open, older pages on scrolling up, and while
// scrolled up a "new messages" button instead of a jump to the bottom.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { setup, signUp, sendMessage, messages, messageRow } from './helpers.mjs';

const TOTAL = 120;

test('older messages load on scroll up; new ones wait behind a button', async (t) => {
  // No rate limit, so the seeding below is quick.
  const { server, person } = await setup(t, { extraArgs: ['--rate-limit', '0'] });
  const alice = await person();
  const bob = await person();
  await signUp(bob, server.url, 'bob');

  // Bob's page speaks the protocol directly to seed the room quickly.
  const acked = await bob.evaluate(async (total) => {
    const { token } = JSON.parse(localStorage.getItem('hubbub.session'));
    const ws = new WebSocket(`ws://${location.host}/ws?token=${encodeURIComponent(token)}`);
    await new Promise((resolve) => (ws.onopen = resolve));
    let acks = 0;
    const done = new Promise((resolve) => {
      ws.onmessage = (ev) => {
        const f = JSON.parse(ev.data);
        if (f.type === 'ack' && ++acks === total) resolve(acks);
      };
    });
    ws.send(JSON.stringify({ type: 'join', room: 'general' }));
    for (let i = 1; i <= total; i++) ws.send(JSON.stringify({ type: 'message', room: 'general', content: `seed ${i}` }));
    const n = await done;
    ws.close();
    return n;
  }, TOTAL);
  assert.equal(acked, TOTAL);

  await signUp(alice, server.url, 'alice');
  await messageRow(alice, `seed ${TOTAL}`).waitFor();
  let seen = await messages(alice);
  assert.equal(seen.length, 50, 'the newest page only');
  assert.equal(seen[0].text, `seed ${TOTAL - 49}`);

  // Scrolling to the top pulls older pages until the beginning.
  for (let pages = 0; pages < 5 && (await alice.textContent('#history-status')) !== 'This is the beginning of #general.'; pages++) {
    const before = (await messages(alice)).length;
    await alice.locator('#timeline').evaluate((el) => (el.scrollTop = 0));
    await alice.waitForFunction((n) => document.querySelectorAll('#message-list li.msg').length > n || document.getElementById('history-status').textContent.startsWith('This is the beginning'), before);
  }
  seen = await messages(alice);
  assert.equal(seen.length, TOTAL);
  assert.deepEqual(
    seen.map((m) => m.text),
    Array.from({ length: TOTAL }, (_, i) => `seed ${i + 1}`),
    'every message once, in order',
  );
  assert.equal(await alice.textContent('#history-status'), 'This is the beginning of #general.');

  // Scrolled up, a new message does not move the view; a button offers to jump.
  await alice.locator('#timeline').evaluate((el) => (el.scrollTop = 0));
  await alice.waitForTimeout(200);
  await bob.reload();
  await sendMessage(bob, 'fresh news');
  await messageRow(alice, 'fresh news').waitFor({ state: 'attached' });
  const button = alice.locator('#new-messages-btn');
  await button.waitFor({ state: 'visible' });
  assert.ok((await alice.locator('#timeline').evaluate((el) => el.scrollTop)) < 200, 'the view stayed where the user was reading');
  await button.click();
  await button.waitFor({ state: 'hidden' });
  assert.ok(await alice.locator('#timeline').evaluate((el) => el.scrollHeight - el.scrollTop - el.clientHeight < 48), 'now at the bottom');

  // At the bottom, the next message scrolls into view by itself.
  await sendMessage(bob, 'and more');
  await messageRow(alice, 'and more').waitFor();
  await alice.waitForFunction(() => {
    const el = document.getElementById('timeline');
    return el.scrollHeight - el.scrollTop - el.clientHeight < 48;
  });
  assert.ok(await button.isHidden());
});
