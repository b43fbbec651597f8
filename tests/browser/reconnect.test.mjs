// The server stops and starts again on the same port and database: the client
// shows it is offline, queues what the user types as pending, reconnects by
// itself, catches up with what was sent meanwhile (`join` with `since`), and
// sends the queued message exactly once.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { setup, startServer, signUp, sendMessage, messages, messageRow, screenshot, assertNoPageErrors, waitOnline } from './helpers.mjs';

test('the client reconnects after a server restart and catches up', async (t) => {
  const { server, person } = await setup(t);
  const alice = await person();
  const bob = await person();
  await signUp(alice, server.url, 'alice');
  await signUp(bob, server.url, 'bob');
  await sendMessage(bob, 'before the restart');
  await messageRow(alice, 'before the restart').waitFor();

  // Alice's network goes away and the server stops.
  await alice.context().setOffline(true);
  await server.stop();
  await alice.locator('#conn-status[data-status=offline]').waitFor();
  await alice.locator('#offline-banner:not([hidden])', { hasText: 'You are offline' }).waitFor();

  // What alice types now waits, visibly pending.
  await sendMessage(alice, 'typed while offline');
  const pending = messageRow(alice, 'typed while offline');
  await pending.and(alice.locator('.pending')).waitFor();
  assert.equal(await pending.locator('.msg-foot').textContent(), 'Waiting for connection…');
  await screenshot(alice, 'reconnect-offline');

  // The server comes back on the same port and database; bob reconnects and talks.
  const again = await startServer({ db: server.db, port: server.port });
  t.after(() => again.stop());
  await waitOnline(bob);
  await sendMessage(bob, 'missed one');
  await sendMessage(bob, 'missed two');
  await messageRow(bob, 'missed two').and(bob.locator('[data-id]')).waitFor();

  // Alice's network returns: she reconnects without a reload and catches up.
  await alice.context().setOffline(false);
  await waitOnline(alice);
  await messageRow(alice, 'missed two').waitFor();
  await messageRow(alice, 'typed while offline').and(alice.locator('[data-id]')).waitFor();
  await messageRow(bob, 'typed while offline').waitFor();

  const seen = (await messages(alice)).map((m) => m.text);
  assert.deepEqual(seen, ['before the restart', 'missed one', 'missed two', 'typed while offline'], 'nothing missed, nothing twice');
  const ids = (await messages(alice)).map((m) => m.id);
  assert.deepEqual([...ids].sort((a, b) => a - b), ids, 'shown in id order');

  // The queued message reached bob exactly once.
  await bob.waitForTimeout(300);
  assert.equal((await messages(bob)).filter((m) => m.text === 'typed while offline').length, 1);
  await screenshot(alice, 'reconnect-caught-up');
  assertNoPageErrors(assert, alice, bob);
});

test('a message whose ack was lost is retried without a duplicate', async (t) => {
  const { server, person } = await setup(t);
  const alice = await person();
  const bob = await person();

  // Alice's socket runs through a relay that, once, swallows an ack and drops
  // the connection: the message is stored but alice never heard so.
  let dropNextAck = false;
  let connections = 0;
  await alice.routeWebSocket(/\/ws\b/, (page) => {
    connections += 1;
    const upstream = page.connectToServer();
    page.onMessage((m) => upstream.send(m));
    upstream.onMessage((m) => {
      if (dropNextAck && JSON.parse(m).type === 'ack') {
        dropNextAck = false;
        page.close({ code: 4000, reason: 'test: connection lost' });
        return;
      }
      page.send(m);
    });
  });
  await signUp(alice, server.url, 'alice');
  await signUp(bob, server.url, 'bob');

  dropNextAck = true;
  await sendMessage(alice, 'sent exactly once');
  await messageRow(bob, 'sent exactly once').waitFor();
  // Alice reconnects, resends with the same client_id, and gets the first message's ack.
  await messageRow(alice, 'sent exactly once').and(alice.locator('[data-id]')).waitFor();
  await waitOnline(alice);
  await sendMessage(alice, 'and then another');
  await messageRow(bob, 'and then another').waitFor();

  assert.equal(dropNextAck, false, 'an ack was swallowed');
  assert.equal(connections, 2, 'alice reconnected once');
  assert.deepEqual((await messages(bob)).map((m) => m.text), ['sent exactly once', 'and then another']);
  assert.deepEqual((await messages(alice)).map((m) => m.text), ['sent exactly once', 'and then another']);
  assertNoPageErrors(assert, alice, bob);
});
