// Messages written offline wait in storage that survives a reload: after a
// reload they are shown as pending again, and once the connection is back
// each goes out with its `client_id` and arrives exactly once, also when the
// first copy was stored but its ack was lost. The outbox is bounded and reads
// only entries that are its own.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { setup, startServer, signUp, sendMessage, messages, messageRow, personButton, waitOnline, screenshot, assertNoPageErrors } from './helpers.mjs';

const outbox = (page, user) => page.evaluate((user) => JSON.parse(localStorage.getItem(`hubbub.${user}.outbox`) || '[]'), user);
const roomItem = (page, name) => page.locator('#room-list .side-item', { has: page.locator('.side-name', { hasText: new RegExp(`^${name}$`) }) });

test('messages written offline survive reloads and are sent exactly once when the server is back', async (t) => {
  const { server, person } = await setup(t);
  const alice = await person();
  const bob = await person();
  await signUp(alice, server.url, 'alice');
  await signUp(bob, server.url, 'bob');
  await sendMessage(alice, 'before the outage');
  await messageRow(bob, 'before the outage').waitFor();
  await alice.waitForFunction(() => navigator.serviceWorker.controller);

  // The server goes away; alice writes in the room and to bob.
  await server.stop();
  await alice.locator('#conn-status[data-status=offline]').waitFor();
  await sendMessage(alice, 'written offline in the room');
  await personButton(alice, 'bob').click();
  await sendMessage(alice, 'written offline to bob');
  await messageRow(alice, 'written offline to bob').and(alice.locator('.pending')).waitFor();
  const kept = await outbox(alice, 'alice');
  assert.deepEqual(
    kept.map((e) => [e.kind, e.name, e.content, e.state]),
    [
      ['room', 'general', 'written offline in the room', 'pending'],
      ['dm', 'bob', 'written offline to bob', 'pending'],
    ],
  );
  assert.equal(new Set(kept.map((e) => e.clientId)).size, 2);

  // Reloads while offline (the shell comes from the worker) lose nothing: both wait, as pending.
  for (let i = 0; i < 2; i++) {
    await alice.reload();
    await alice.locator('#conn-status[data-status=offline]').waitFor();
  }
  const waiting = messageRow(alice, 'written offline to bob');
  await waiting.and(alice.locator('.pending')).waitFor();
  assert.equal(await waiting.locator('.msg-foot').textContent(), 'Waiting for connection…');
  await screenshot(alice, 'outbox-after-reload');
  await roomItem(alice, 'general').click();
  await messageRow(alice, 'written offline in the room').and(alice.locator('.pending')).waitFor();
  assert.deepEqual((await outbox(alice, 'alice')).map((e) => e.clientId), kept.map((e) => e.clientId), 'the same client ids');

  // Back online: each goes out once, with its client_id, and leaves the outbox.
  const again = await startServer({ db: server.db, port: server.port });
  t.after(() => again.stop());
  await waitOnline(alice);
  await messageRow(alice, 'written offline in the room').and(alice.locator('[data-id]')).waitFor();
  await alice.waitForFunction(() => !localStorage.getItem('hubbub.alice.outbox'));
  await waitOnline(bob);
  await messageRow(bob, 'written offline in the room').waitFor();
  await personButton(bob, 'alice').click();
  await messageRow(bob, 'written offline to bob').waitFor();

  // Exactly once, for bob and for alice, even after another reload.
  await alice.reload();
  await waitOnline(alice);
  await messageRow(alice, 'written offline in the room').waitFor();
  assert.deepEqual((await messages(alice)).map((m) => m.text), ['before the outage', 'written offline in the room']);
  assert.deepEqual((await messages(bob)).map((m) => m.text), ['written offline to bob']);
  await roomItem(bob, 'general').click();
  await messageRow(bob, 'written offline in the room').waitFor();
  assert.deepEqual((await messages(bob)).map((m) => m.text), ['before the outage', 'written offline in the room']);
  assertNoPageErrors(assert, alice, bob);
});

test('a message stored but never acknowledged is resent after a reload without a duplicate', async (t) => {
  const { server, person } = await setup(t);
  const alice = await person();
  const bob = await person();
  // Alice's acks are swallowed (the connection is lost just as the server stores): she never hears back.
  let swallow = false;
  await alice.routeWebSocket(/\/ws\b/, (ws) => {
    const upstream = ws.connectToServer();
    ws.onMessage((m) => upstream.send(m));
    upstream.onMessage((m) => {
      if (!(swallow && JSON.parse(m).type === 'ack')) ws.send(m);
    });
  });
  await signUp(alice, server.url, 'alice');
  await signUp(bob, server.url, 'bob');

  swallow = true;
  await sendMessage(alice, 'stored, ack lost');
  await messageRow(bob, 'stored, ack lost').waitFor();
  await alice.waitForTimeout(300);
  assert.equal((await outbox(alice, 'alice')).length, 1, 'still waiting for its ack');

  // Alice reloads: the restored message goes out again with the same client_id; the server acks the first copy.
  swallow = false;
  await alice.reload();
  await waitOnline(alice);
  await messageRow(alice, 'stored, ack lost').and(alice.locator('[data-id]')).waitFor();
  await alice.waitForFunction(() => !localStorage.getItem('hubbub.alice.outbox'));
  await sendMessage(alice, 'and the next one');
  await messageRow(bob, 'and the next one').waitFor();
  assert.deepEqual((await messages(bob)).map((m) => m.text), ['stored, ack lost', 'and the next one']);
  assert.deepEqual((await messages(alice)).map((m) => m.text), ['stored, ack lost', 'and the next one']);
  assertNoPageErrors(assert, alice, bob);
});

test('the outbox is bounded, refuses rather than drops, and skips entries that are not its own', async (t) => {
  const { server, person } = await setup(t);
  const alice = await person();
  await signUp(alice, server.url, 'alice');
  const max = await alice.evaluate(() => import('/js/outbox.js').then((m) => m.MAX_OUTBOX));
  await server.stop();
  await alice.locator('#conn-status[data-status=offline]').waitFor();

  // A full outbox, and next to it what storage may hold that is no message of ours.
  await alice.evaluate((max) => {
    const full = Array.from({ length: max }, (_, i) => ({
      clientId: `c${i}`,
      kind: 'room',
      name: 'general',
      content: `queued ${i}`,
      replyTo: null,
      time: new Date().toISOString(),
      state: 'pending',
    }));
    const junk = [null, 7, { clientId: 'x' }, { ...full[0], clientId: 'y', content: '' }, { ...full[0], clientId: 'z', kind: 'elsewhere' }];
    localStorage.setItem('hubbub.alice.outbox', JSON.stringify([...junk, ...full]));
  }, max);
  await alice.reload();
  await alice.locator('#conn-status[data-status=offline]').waitFor();
  await messageRow(alice, `queued ${max - 1}`).waitFor();
  assert.equal(await alice.locator('#message-list li.msg.pending').count(), max);

  // One more is refused with a reason; the text stays in the composer, nothing queued is dropped.
  await sendMessage(alice, 'one too many');
  await alice.locator('.toast', { hasText: 'Too many messages are waiting to be sent' }).waitFor();
  assert.equal(await alice.inputValue('#composer-input'), 'one too many');
  assert.equal(await alice.locator('#message-list li.msg.pending').count(), max);
  assert.equal((await outbox(alice, 'alice')).filter((e) => /^c\d+$/.test(e?.clientId)).length, max);
  await screenshot(alice, 'outbox-full');
  assertNoPageErrors(assert, alice);
});
