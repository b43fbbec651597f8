// The Markdown subset and mentions: the parser on its own (a pure module, run
// here in Node), then typed by a person with `@` completion and seen by the
// other person as bold, italics, code, a quote, a code block, a link and a
// highlighted mention of them.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { setup, signUp, messageRow, screenshot, assertNoPageErrors } from './helpers.mjs';
import { parseMarkdown, parseInline, plainText } from '../../static/js/markdown.js';

test('the parser turns the subset into a tree and leaves everything else as text', () => {
  const inline = (s) => parseInline(s);
  assert.deepEqual(inline('a **b** *c* _d_ `e`'), [
    { type: 'text', text: 'a ' },
    { type: 'strong', children: [{ type: 'text', text: 'b' }] },
    { type: 'text', text: ' ' },
    { type: 'em', children: [{ type: 'text', text: 'c' }] },
    { type: 'text', text: ' ' },
    { type: 'em', children: [{ type: 'text', text: 'd' }] },
    { type: 'text', text: ' ' },
    { type: 'code', text: 'e' },
  ]);
  // Not markup: snake_case, arithmetic, unclosed delimiters, a lone backtick.
  for (const s of ['snake_case_name', '2 * 3 * 4', '**open', 'a ` b', 'x__y__z', '__init__', 'a _ b _ c']) assert.deepEqual(inline(s), [{ type: 'text', text: s }], s);
  // Links: http(s) only; anything else stays the text typed.
  assert.deepEqual(inline('[x](https://example.com/a)'), [{ type: 'link', href: 'https://example.com/a', children: [{ type: 'text', text: 'x' }] }]);
  assert.deepEqual(inline('[x](javascript:alert(1))'), [{ type: 'text', text: '[x](javascript:alert(1))' }]);
  assert.deepEqual(inline('see https://x.org/a.'), [
    { type: 'text', text: 'see ' },
    { type: 'link', href: 'https://x.org/a', children: [{ type: 'text', text: 'https://x.org/a' }] },
    { type: 'text', text: '.' },
  ]);
  // Mentions: a name after a space or the start, without a sentence's full stop; not an e-mail address.
  assert.deepEqual(inline('hi @alice.'), [{ type: 'text', text: 'hi ' }, { type: 'mention', name: 'alice' }, { type: 'text', text: '.' }]);
  assert.deepEqual(inline('mail bob@example.com'), [{ type: 'text', text: 'mail bob@example.com' }]);
  assert.deepEqual(inline('(@Bob)'), [{ type: 'text', text: '(' }, { type: 'mention', name: 'Bob' }, { type: 'text', text: ')' }]);
  // Code keeps markup and HTML as text.
  assert.deepEqual(inline('`**<b>x</b>**`'), [{ type: 'code', text: '**<b>x</b>**' }]);
  // Blocks: quotes and fenced code; an unclosed fence is text.
  assert.deepEqual(parseMarkdown('> q1\n> q2\nafter'), [
    { type: 'quote', children: [{ type: 'text', children: [{ type: 'text', text: 'q1\nq2' }] }] },
    { type: 'text', children: [{ type: 'text', text: 'after' }] },
  ]);
  assert.deepEqual(parseMarkdown('```\n<b>x</b>\n  y\n```'), [{ type: 'code', text: '<b>x</b>\n  y' }]);
  assert.deepEqual(parseMarkdown('```\nnever closed'), [{ type: 'text', children: [{ type: 'text', text: '```\nnever closed' }] }]);
  assert.equal(plainText('**bold** and `code`\n> quoted'), 'bold and code\nquoted');
  // Hostile 4,000-character messages cost about a linear scan, not one per delimiter
  // (a room full of them must not stall every reader's tab).
  for (const s of ['*a '.repeat(1333), '**a '.repeat(1000), '_a '.repeat(1333), '['.repeat(4000), '`'.repeat(4000), 'a*'.repeat(2000), '@'.repeat(4000), 'h'.repeat(4000)]) {
    const started = performance.now();
    parseMarkdown(s);
    assert.ok(performance.now() - started < 50, `${JSON.stringify(s.slice(0, 4))}… took ${performance.now() - started} ms`);
  }
  // Deep nesting is bounded, not recursed without end.
  assert.ok(parseMarkdown('>'.repeat(5000) + ' x').length >= 1);
  assert.ok(parseInline('**'.repeat(3000) + 'x' + '**'.repeat(3000)).length >= 1);
});

test('a person mentions another with @ completion and writes Markdown', async (t) => {
  const { server, person } = await setup(t);
  const alice = await person();
  const bob = await person();
  const carol = await person({ colorScheme: 'dark' });
  await signUp(alice, server.url, 'alice');
  await signUp(bob, server.url, 'bob');
  await signUp(carol, server.url, 'bobby');
  await alice.reload();
  await alice.locator('#conn-status[data-status=online]').waitFor({ state: 'attached' });

  // `@bo` lists bob and bobby; Down moves to the second, Up back, Tab picks bob.
  await alice.click('#composer-input');
  await alice.keyboard.type('hey @bo');
  const list = alice.locator('#mention-list');
  await list.waitFor();
  assert.deepEqual(await list.locator('.mention-name').allTextContents(), ['bob', 'bobby']);
  await alice.keyboard.press('ArrowDown');
  await list.locator('.mention-opt.active', { hasText: 'bobby' }).waitFor();
  await screenshot(alice, 'mention-autocomplete');
  await alice.keyboard.press('ArrowUp');
  await alice.keyboard.press('Tab');
  await list.waitFor({ state: 'hidden' });
  assert.equal(await alice.inputValue('#composer-input'), 'hey @bob ');

  // Enter picks too, and does not send while the list is open.
  await alice.keyboard.type('and @bobb');
  await list.locator('.mention-opt.active', { hasText: 'bobby' }).waitFor();
  await alice.keyboard.press('Enter');
  assert.equal(await alice.inputValue('#composer-input'), 'hey @bob and @bobby ');
  // Escape closes the list and keeps the text.
  await alice.keyboard.type('@');
  await list.waitFor();
  await alice.keyboard.press('Escape');
  await list.waitFor({ state: 'hidden' });
  await alice.keyboard.press('Backspace');

  await alice.keyboard.type('look: **bold**, *italic*, _also_, `code()` and [docs](https://example.com/docs)');
  await alice.keyboard.press('Shift+Enter');
  await alice.keyboard.type('> a quoted line');
  await alice.keyboard.press('Shift+Enter');
  await alice.keyboard.type('```');
  await alice.keyboard.press('Shift+Enter');
  await alice.keyboard.type('let x = 1 < 2;');
  await alice.keyboard.press('Shift+Enter');
  await alice.keyboard.type('```');
  await alice.keyboard.press('Enter');

  const row = bob.locator('#message-list li.msg', { hasText: 'look:' });
  await row.waitFor();
  const text = row.locator('.msg-text');
  assert.equal(await text.locator('strong').textContent(), 'bold');
  assert.deepEqual(await text.locator('em').allTextContents(), ['italic', 'also']);
  assert.equal(await text.locator('code.md-code').textContent(), 'code()');
  assert.equal(await text.locator('blockquote').textContent(), 'a quoted line');
  assert.equal(await text.locator('pre code').textContent(), 'let x = 1 < 2;');
  const link = text.locator('a');
  assert.equal(await link.textContent(), 'docs');
  assert.equal(await link.getAttribute('href'), 'https://example.com/docs');
  assert.equal(await link.getAttribute('rel'), 'noopener noreferrer');
  // Bob's own name stands out; another person's is a plain mention.
  assert.equal(await text.locator('.mention.mention-me').textContent(), '@bob');
  assert.equal(await text.locator('.mention:not(.mention-me)').textContent(), '@bobby');
  assert.ok(await row.evaluate((li) => li.classList.contains('mentions-me')), 'the row of a message for bob is highlighted');
  // For bobby it is the other way round; for alice (the author) neither is hers.
  const carolRow = carol.locator('#message-list li.msg', { hasText: 'look:' });
  await carolRow.waitFor();
  assert.equal(await carolRow.locator('.mention-me').textContent(), '@bobby');
  assert.equal(await alice.locator('#message-list li.msg .mention-me').count(), 0);
  await screenshot(bob, 'markdown-and-mentions');
  await carol.mouse.move(700, 200);
  await screenshot(carol, 'markdown-and-mentions-dark');
  assertNoPageErrors(assert, alice, bob, carol);
});
