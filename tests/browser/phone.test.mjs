// Phone width in the dark theme, driven from the keyboard: the sidebar hides
// behind a menu button, dialogs work with Tab/Enter/Escape, focus is visible.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { setup, signUp, sendMessage, messageRow, screenshot, assertNoPageErrors } from './helpers.mjs';

test('phone width, dark theme, keyboard only', async (t) => {
  const { server, person } = await setup(t);
  const page = await person({ viewport: { width: 390, height: 844 }, colorScheme: 'dark', deviceScaleFactor: 2 });
  await signUp(page, server.url, 'carol');
  await sendMessage(page, 'Hello from my phone, with a message long enough to wrap onto a second line.');
  await messageRow(page, 'Hello from my phone, with a message long enough to wrap onto a second line.').waitFor();

  // The dark theme is in effect.
  const bg = await page.evaluate(() => getComputedStyle(document.querySelector('.main')).backgroundColor);
  const [r, g, b] = bg.match(/\d+/g).map(Number);
  assert.ok(r + g + b < 150, `dark background, got ${bg}`);

  // The sidebar is off screen; the menu button brings it in.
  const sidebar = page.locator('#sidebar');
  const menu = page.locator('#menu-btn');
  assert.equal(await sidebar.isVisible(), false, 'sidebar hidden at phone width');
  assert.equal(await menu.isVisible(), true);
  assert.ok((await page.locator('#composer-input').boundingBox()).width > 250, 'the composer uses the width');
  await screenshot(page, 'phone-dark-chat');

  await menu.focus();
  await page.keyboard.press('Enter');
  await sidebar.waitFor({ state: 'visible' });
  assert.equal(await menu.getAttribute('aria-expanded'), 'true');
  await page.waitForFunction(() => document.activeElement.closest('#sidebar'));
  await page.waitForTimeout(250); // let the slide-in finish before the picture
  await screenshot(page, 'phone-dark-menu');

  // Escape closes it and gives focus back to the button.
  await page.keyboard.press('Escape');
  await sidebar.waitFor({ state: 'hidden' });
  assert.equal(await page.evaluate(() => document.activeElement.id), 'menu-btn');

  // Keyboard only: menu → "join or create a room" → type → Enter.
  await page.keyboard.press('Enter');
  await sidebar.waitFor({ state: 'visible' });
  await page.locator('#join-room-btn').focus();
  const outline = await page.evaluate(() => getComputedStyle(document.activeElement).outlineStyle);
  assert.notEqual(outline, 'none', 'keyboard focus is visible');
  await page.keyboard.press('Enter');
  await page.locator('#join-dialog[open]').waitFor();
  assert.equal(await page.evaluate(() => document.activeElement.id), 'join-name', 'the dialog focuses its field');
  await page.keyboard.type('pocket');
  await page.keyboard.press('Enter');
  await page.locator('#conv-name', { hasText: '#pocket' }).waitFor();
  await sidebar.waitFor({ state: 'hidden' });
  await screenshot(page, 'phone-dark-empty-room');

  // Escape closes a dialog without doing anything.
  await menu.click();
  await page.click('#new-private-btn');
  await page.locator('#private-dialog[open]').waitFor();
  await page.keyboard.press('Escape');
  await page.locator('#private-dialog:not([open])').waitFor({ state: 'attached' });
  assertNoPageErrors(assert, page);
});
