// The bounded timeline (static/js/conversation.js, ui/timeline.js): a busy
// room never puts more than TIMELINE_CAP messages in the DOM, whether the user
// scrolls back to the beginning or stays at the bottom while messages pour in;
// loading older pages keeps the message the user is reading where it was; and
// while the user is scrolled up, new messages are counted in a button instead
// of growing the list, until the button takes them to the newest.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { setup, signUp, messages, messageRow, screenshot, assertNoPageErrors, postViaSocket, timelineLimits, trackMaxRows, topVisibleRow, rowOffset, waitDrawn } from './helpers.mjs';

const texts = (n, prefix) => Array.from({ length: n }, (_, i) => `${prefix} ${i + 1}`);
const atBottom = (page) => page.locator('#timeline').evaluate((el) => el.scrollHeight - el.scrollTop - el.clientHeight < 48);
// Rows move by whole pixels at most through rounding of fractional line heights.
const SAME_PLACE_PX = 1;

test('the timeline holds at most TIMELINE_CAP messages and keeps the reading position while loading older ones', async (t) => {
  const { server, person } = await setup(t, { extraArgs: ['--rate-limit', '0'] });
  const alice = await person();
  const bob = await person();
  await signUp(bob, server.url, 'bob');
  const { cap, trimBatch } = await timelineLimits(bob);
  const total = cap + 150;
  assert.equal(await postViaSocket(bob, 'general', texts(total, 'seed')), total);

  await signUp(alice, server.url, 'alice');
  await messageRow(alice, `seed ${total}`).waitFor();
  await waitDrawn(alice);
  await trackMaxRows(alice);
  const timeline = alice.locator('#timeline');

  // Scroll to the top again and again: each older page lands above the row the
  // user is reading without moving it, and past the cap the newest rows go.
  const beginning = 'This is the beginning of #general.';
  let pages = 0;
  while ((await alice.textContent('#history-status')) !== beginning) {
    await timeline.evaluate((el) => (el.scrollTop = 0));
    const reading = await topVisibleRow(alice);
    await alice.waitForFunction(
      ({ id, beginning }) => document.querySelector('#message-list li.msg').dataset.id !== id || document.getElementById('history-status').textContent === beginning,
      { id: reading.id, beginning },
    );
    // Both as the page starts to appear and once all of it is drawn (a page may take a few frames).
    for (const moment of ['as the page appeared', 'once it was drawn']) {
      const offset = await rowOffset(alice, reading.id);
      assert.ok(Math.abs(offset - reading.offset) <= SAME_PLACE_PX, `"${reading.text}" stayed in place ${moment} (${reading.offset} px from the top, then ${offset} px)`);
      await waitDrawn(alice);
      await alice.waitForTimeout(50);
    }
    assert.ok(++pages < 20, 'reached the beginning');
  }
  const oldest = await messages(alice);
  assert.equal(oldest[0].text, 'seed 1', 'the very first message is shown');
  assert.equal(oldest.length, cap, 'the window is full, and no fuller');
  assert.deepEqual(
    oldest.map((m) => m.text),
    texts(cap, 'seed'),
    'the oldest messages, each once, in order',
  );
  assert.ok((await alice.evaluate(() => window.__maxRows)) <= cap, 'the DOM never held more than the cap');
  // The newest messages were let go; a button leads back to them.
  const jump = alice.locator('#new-messages-btn');
  await jump.waitFor({ state: 'visible' });
  assert.equal(await jump.textContent(), 'Jump to newest ↓');
  await timeline.evaluate((el) => (el.scrollTop = 0));
  await alice.waitForTimeout(100);
  await screenshot(alice, 'timeline-beginning');

  await jump.click();
  await messageRow(alice, `seed ${total}`).waitFor();
  await waitDrawn(alice);
  await alice.waitForFunction(() => {
    const el = document.getElementById('timeline');
    return el.scrollHeight - el.scrollTop - el.clientHeight < 48;
  });
  const newest = await messages(alice);
  assert.equal(newest.length, cap);
  assert.equal(newest.at(-1).text, `seed ${total}`);
  assert.ok(await jump.isHidden());

  // At the bottom, a flood scrolls by: the oldest rows make way for the newest,
  // a batch at a time, so the window runs between cap - trimBatch and cap.
  const flood = cap + 50;
  await postViaSocket(bob, 'general', texts(flood, 'live'));
  await messageRow(alice, `live ${flood}`).waitFor();
  await waitDrawn(alice);
  await alice.waitForFunction(() => {
    const el = document.getElementById('timeline');
    return el.scrollHeight - el.scrollTop - el.clientHeight < 48;
  });
  const after = await messages(alice);
  assert.ok(after.length <= cap && after.length > cap - trimBatch, `${after.length} rows`);
  assert.deepEqual(
    after.map((m) => m.text),
    texts(flood, 'live').slice(-after.length),
    'the newest messages, in order',
  );
  assert.ok((await alice.evaluate(() => window.__maxRows)) <= cap, 'the DOM never held more than the cap');
  assert.ok(await jump.isHidden(), 'no button while following the newest messages');
  await screenshot(alice, 'timeline-after-flood');
  assertNoPageErrors(assert, alice, bob);
});

test('scrolled up, new messages are counted in a button instead of piling up; the button jumps to the newest', async (t) => {
  const { server, person } = await setup(t, { extraArgs: ['--rate-limit', '0'] });
  const alice = await person();
  const bob = await person();
  await signUp(bob, server.url, 'bob');
  const { cap } = await timelineLimits(bob);
  await postViaSocket(bob, 'general', texts(60, 'early'));
  await signUp(alice, server.url, 'alice');
  await messageRow(alice, 'early 60').waitFor();

  // Alice scrolls up to the beginning and reads there.
  const timeline = alice.locator('#timeline');
  await timeline.evaluate((el) => (el.scrollTop = 0));
  await alice.locator('#history-status', { hasText: 'This is the beginning of #general.' }).waitFor();
  await timeline.evaluate((el) => (el.scrollTop = 0));
  await alice.waitForTimeout(100);
  await trackMaxRows(alice);
  const reading = await topVisibleRow(alice);

  // A few new messages: counted, the view stays put.
  await postViaSocket(bob, 'general', texts(3, 'late'));
  const button = alice.locator('#new-messages-btn');
  await button.filter({ hasText: '3 new messages' }).waitFor();
  assert.ok(Math.abs((await rowOffset(alice, reading.id)) - reading.offset) <= SAME_PLACE_PX, 'the view did not move');
  await screenshot(alice, 'timeline-new-messages');

  // A flood while she reads: still counted, and the list stops at the cap.
  await postViaSocket(bob, 'general', texts(cap, 'later'));
  await button.filter({ hasText: `${cap + 3} new messages` }).waitFor();
  await waitDrawn(alice);
  assert.ok((await alice.evaluate(() => window.__maxRows)) <= cap, 'the DOM never held more than the cap');
  assert.equal((await messages(alice)).length, cap);
  assert.equal(await messageRow(alice, `later ${cap}`).count(), 0, 'the newest are counted, not drawn');
  assert.ok(Math.abs((await rowOffset(alice, reading.id)) - reading.offset) <= SAME_PLACE_PX, 'the view did not move');
  assert.ok(!(await atBottom(alice)));
  await screenshot(alice, 'timeline-new-messages-flood');

  // The button: the newest messages, at the bottom, and it goes away.
  await button.click();
  await messageRow(alice, `later ${cap}`).waitFor();
  await waitDrawn(alice);
  await button.waitFor({ state: 'hidden' });
  await alice.waitForFunction(() => {
    const el = document.getElementById('timeline');
    return el.scrollHeight - el.scrollTop - el.clientHeight < 48;
  });
  const shown = await messages(alice);
  assert.equal(shown.length, cap);
  assert.equal(shown.at(-1).text, `later ${cap}`);
  assert.ok((await alice.evaluate(() => window.__maxRows)) <= cap, 'the DOM never held more than the cap');
  assertNoPageErrors(assert, alice, bob);
});
