// Message text is text: markup shows as typed and runs nothing; only http(s)
// URLs become links, and those open safely.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { setup, signUp, sendMessage, messageRow, screenshot, assertNoPageErrors } from './helpers.mjs';

const XSS = '<img src=x onerror=alert(1)>';
const LINKS = 'docs at https://example.com/a?b=1&c=2. not javascript:alert(1) nor <a href="javascript:alert(2)">x</a>';

test('markup in messages renders as text and links are safe', async (t) => {
  const { server, person } = await setup(t);
  const alice = await person();
  const bob = await person();
  const dialogs = [];
  for (const page of [alice, bob]) page.on('dialog', (d) => dialogs.push(d.message()) && d.dismiss());

  await signUp(alice, server.url, 'alice');
  await signUp(bob, server.url, 'bob');
  await sendMessage(alice, XSS);
  await sendMessage(alice, LINKS);

  for (const page of [bob, alice]) {
    const row = messageRow(page, XSS);
    await row.waitFor();
    assert.equal(await row.locator('.msg-text').textContent(), XSS);
    assert.equal(await page.locator('#message-list img').count(), 0, 'no <img> element was created');

    const text = page.locator('#message-list .msg-text', { hasText: 'docs at' });
    await text.waitFor();
    assert.equal(await text.textContent(), LINKS, 'the whole message shows as typed');
    const links = await text.locator('a').evaluateAll((as) => as.map((a) => ({ href: a.href, text: a.textContent, rel: a.rel, target: a.target })));
    assert.deepEqual(links, [{ href: 'https://example.com/a?b=1&c=2', text: 'https://example.com/a?b=1&c=2', rel: 'noopener noreferrer', target: '_blank' }]);
  }

  // Give a would-be onerror handler time to fire.
  await bob.waitForTimeout(500);
  assert.deepEqual(dialogs, [], 'no dialog was opened');
  assert.equal(await bob.evaluate(() => document.querySelectorAll('[onerror], script:not([type=module])').length), 0);
  await screenshot(bob, 'xss-as-text');
  assertNoPageErrors(assert, alice, bob);
});
