// Message text is text: markup shows as typed and runs nothing; only http(s)
// URLs become links, and those open safely.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { setup, signUp, sendMessage, messageRow, rawSocket, screenshot, assertNoPageErrors } from './helpers.mjs';

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

// Markdown, reactions and search are built from text nodes too: none of these
// run anything, and each shows literally what was typed where it is not markup.
const PWN = [
  '**<img src=x onerror="window.__pwned=1">**',
  '<script>window.__pwned=2</script>',
  '[click me](javascript:window.__pwned=3)',
  '**<b>x</b>**',
  '`<img src=x onerror="window.__pwned=4">`',
  '```\n<svg onload="window.__pwned=5"></svg>\n```',
  '> <iframe src="javascript:window.__pwned=6"></iframe>',
  '_<a href="javascript:window.__pwned=7">y</a>_ and [z](https://example.com/"onmouseover="window.__pwned=8)',
];

test('Markdown, reactions and search results never turn content into markup', async (t) => {
  const { server, person } = await setup(t);
  const alice = await person();
  const bob = await person();
  await signUp(alice, server.url, 'alice');
  await signUp(bob, server.url, 'bob');
  for (const text of PWN) {
    await alice.fill('#composer-input', text);
    await alice.press('#composer-input', 'Enter');
  }
  const rows = bob.locator('#message-list li.msg');
  await rows.nth(PWN.length - 1).waitFor();
  await alice.locator('#message-list li.msg[data-id]').nth(PWN.length - 1).waitFor();

  const texts = await rows.locator('.msg-text').allTextContents();
  assert.deepEqual(texts, [
    '<img src=x onerror="window.__pwned=1">',
    '<script>window.__pwned=2</script>',
    '[click me](javascript:window.__pwned=3)',
    '<b>x</b>',
    '<img src=x onerror="window.__pwned=4">',
    '<svg onload="window.__pwned=5"></svg>',
    '<iframe src="javascript:window.__pwned=6"></iframe>',
    '<a href="javascript:window.__pwned=7">y</a> and [z](https://example.com/"onmouseover="window.__pwned=8)',
  ]);
  assert.equal(await rows.nth(0).locator('.msg-text strong').textContent(), '<img src=x onerror="window.__pwned=1">', 'bold, with the tag as its text');
  assert.equal(await rows.nth(3).locator('.msg-text strong').textContent(), '<b>x</b>');
  assert.equal(await rows.nth(4).locator('.msg-text code').textContent(), '<img src=x onerror="window.__pwned=4">');
  const list = bob.locator('#message-list');
  for (const tag of ['img', 'script:not([type=module])', 'svg:not([aria-hidden])', 'iframe', 'b']) assert.equal(await list.locator(tag).count(), 0, `no <${tag}> from content`);
  const hrefs = await list.locator('a').evaluateAll((as) => as.map((a) => a.getAttribute('href')));
  assert.ok(hrefs.every((h) => /^https:\/\//.test(h)), `only https links: ${hrefs}`);

  // A reaction that is not an emoji is refused by the server; the client shows nothing for it.
  const id = await rows.nth(0).getAttribute('data-id');
  const answer = await rawSocket(bob, [{ type: 'react', id: Number(id), emoji: '<img src=x onerror="window.__pwned=9">' }], { types: ['error', 'reaction'], count: 1 });
  assert.equal(answer.find((f) => f.type === 'error' || f.type === 'reaction')?.code, 'invalid_input');
  // A named one is fine, and its name and the people shown in the tooltip are text.
  await rawSocket(bob, [{ type: 'react', id: Number(id), emoji: ':tada:' }], { types: ['error', 'reaction'], count: 1 });
  const chip = rows.nth(0).locator('.chip', { hasText: ':tada:' });
  await chip.waitFor();
  assert.equal(await chip.getAttribute('title'), 'You reacted with :tada:');
  assert.equal(await chip.locator('*').count(), 2, 'emoji and count spans, nothing else');
  await messageRow(alice, '<img src=x onerror="window.__pwned=1">').locator('.chip', { hasText: ':tada:' }).waitFor();
  assert.equal(await messageRow(alice, '<img src=x onerror="window.__pwned=1">').locator('.chip').first().getAttribute('title'), 'bob reacted with :tada:');

  // A search for HTML content shows it as text, with the matched words marked.
  await bob.fill('#search-input', 'script pwned');
  await bob.press('#search-input', 'Enter');
  const result = bob.locator('#search-results .result');
  await result.first().waitFor();
  const snippets = await bob.locator('#search-results .result-snippet').allTextContents();
  assert.ok(snippets.includes('<script>window.__pwned=2</script>'), `the content as typed: ${JSON.stringify(snippets)}`);
  const panel = bob.locator('#search-panel');
  for (const tag of ['img', 'script', 'svg:not([aria-hidden])', 'iframe', 'a']) assert.equal(await panel.locator(tag).count(), 0, `no <${tag}> in results`);
  assert.ok((await panel.locator('mark').count()) >= 2, 'matched words are marked');
  await screenshot(bob, 'xss-markdown-search');

  await bob.waitForTimeout(300);
  for (const page of [alice, bob]) assert.equal(await page.evaluate(() => window.__pwned), undefined, 'nothing ran');
  assertNoPageErrors(assert, alice, bob);
});
