// The conversation model on its own (a pure module, run in Node): edits,
// deletes and reactions change the held messages and name the rows to
// redraw; a re-read page after a reconnect applies what changed meanwhile; a
// focused page replaces the window and detaches it from the live end.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Conversation, PAGE_SIZE } from '../../static/js/conversation.js';

const msg = (id, extra = {}) => ({ id, user: id % 2 ? 'alice' : 'bob', content: `m${id}`, time: new Date(1_700_000_000_000 + id * 1000), replyTo: null, editedAt: null, reactions: null, ...extra });

function conv(ids) {
  const c = new Conversation('room', 'general');
  c.addHistory('initial', ids.map((id) => msg(id)));
  c.takeChanges();
  return c;
}

test('edits, deletes and reactions change the held message and its row', () => {
  const c = conv([1, 2, 3]);
  assert.ok(c.edit(2, 'changed', '2026-01-01T00:00:00.000Z'));
  assert.equal(c.get(2).content, 'changed');
  assert.deepEqual([...c.takeChanges().keys], ['m:2']);
  assert.equal(c.edit(99, 'x', null), false, 'not held: nothing to do');

  c.react(1, '👍', 'bob', true);
  c.react(1, '👍', 'carol', true);
  c.react(1, '🎉', 'bob', true);
  c.react(1, '👍', 'bob', true); // twice on is still once
  assert.deepEqual(c.get(1).reactions, [
    { emoji: '👍', users: ['bob', 'carol'] },
    { emoji: '🎉', users: ['bob'] },
  ]);
  c.react(1, '🎉', 'BOB', false);
  assert.deepEqual(c.get(1).reactions, [{ emoji: '👍', users: ['bob', 'carol'] }], 'the last one off takes the emoji away');

  // A reply is redrawn when its parent changes or goes.
  c.add(msg(4, { replyTo: 2 }));
  c.takeChanges();
  c.edit(2, 'changed again', null);
  assert.deepEqual([...c.takeChanges().keys].sort(), ['m:2', 'm:4']);
  assert.ok(c.remove(2));
  assert.equal(c.get(2), null);
  assert.deepEqual(c.messages.map((m) => m.id), [1, 3, 4]);
  assert.ok(c.deleted.has(2));
  assert.deepEqual([...c.takeChanges().keys].sort(), ['m:2', 'm:4']);
});

test('a page read again after a reconnect applies edits, deletes and reactions made meanwhile', () => {
  const c = conv([1, 2, 3, 4]);
  c.refresh([msg(1), msg(2, { content: 'edited', editedAt: '2026-01-01T00:00:00.000Z' }), msg(4, { reactions: [{ emoji: '🎉', users: ['bob'] }] }), msg(5)], PAGE_SIZE);
  assert.deepEqual(c.messages.map((m) => [m.id, m.content]), [
    [1, 'm1'],
    [2, 'edited'],
    [4, 'm4'],
    [5, 'm5'],
  ]);
  assert.deepEqual(c.get(4).reactions, [{ emoji: '🎉', users: ['bob'] }]);
  // The newest message deleted: a short page covers every id, so it goes too.
  c.refresh([msg(1), msg(2)], PAGE_SIZE);
  assert.deepEqual(c.messages.map((m) => m.id), [1, 2]);
  // What arrived after the page was asked is newer than the page: an ack racing the read stays,
  // a live edit is not undone, a live delete not brought back.
  const r = conv([1, 2, 3]);
  const upTo = r.newestId;
  const changes = r.changes;
  r.add(msg(4));
  r.edit(2, 'edited live', '2026-01-01T00:00:00.000Z');
  r.remove(3);
  r.refresh([msg(1), msg(2), msg(3)], PAGE_SIZE, upTo, changes);
  assert.deepEqual(r.messages.map((m) => [m.id, m.content]), [
    [1, 'm1'],
    [2, 'edited live'],
    [4, 'm4'],
  ]);
  // A full page covers only its own range: older held messages are left alone.
  const d = conv(Array.from({ length: 60 }, (_, i) => i + 1));
  d.refresh(Array.from({ length: PAGE_SIZE }, (_, i) => msg(i + 11)), PAGE_SIZE);
  assert.equal(d.messages.length, 60);
});

test('a focused page replaces the window; live messages wait below until the jump to the newest', () => {
  const c = conv([100, 101, 102]);
  c.focusPage([msg(10), msg(11), msg(12)]);
  assert.deepEqual(c.messages.map((m) => m.id), [10, 11, 12]);
  assert.ok(c.detached && !c.following);
  c.add(msg(103));
  assert.deepEqual(c.messages.map((m) => m.id), [10, 11, 12], 'a live message does not join a focused window');
  c.jumpToNewest();
  assert.deepEqual(c.messages.map((m) => m.id), [103]);
  assert.ok(!c.detached && c.hasMore);
  // With nothing newer kept, the newest page must be read again.
  const d = conv([100, 101]);
  d.focusPage([msg(10)]);
  d.jumpToNewest();
  assert.equal(d.loaded, false);
});
