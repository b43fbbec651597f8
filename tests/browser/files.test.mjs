// Files and avatars in the web client: attach, upload with a progress bar,
// send without text, an image preview whose box is sized before it loads and
// opens in the viewer (by keyboard too), file cards for the rest, hostile HTML
// and SVG that never run, a profile picture from the settings dialog shown
// wherever its owner appears; axe on the new screens.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { deflateSync } from 'node:zlib';
import { setup, signUp, personButton, screenshot, axeViolations, assertNoPageErrors } from './helpers.mjs';

function crc32(buf) {
  let c = 0xffffffff;
  for (const b of buf) {
    c ^= b;
    for (let k = 0; k < 8; k++) c = c & 1 ? (c >>> 1) ^ 0xedb88320 : c >>> 1;
  }
  return (c ^ 0xffffffff) >>> 0;
}

function chunk(type, data) {
  const len = Buffer.alloc(4);
  len.writeUInt32BE(data.length);
  const body = Buffer.concat([Buffer.from(type, 'ascii'), data]);
  const crc = Buffer.alloc(4);
  crc.writeUInt32BE(crc32(body));
  return Buffer.concat([len, body, crc]);
}

/** A `w`×`h` RGB PNG: a diagonal gradient, so a preview is visibly a picture. */
function png(w, h) {
  const raw = Buffer.alloc((w * 3 + 1) * h);
  for (let y = 0; y < h; y++) {
    raw[y * (w * 3 + 1)] = 0;
    for (let x = 0; x < w; x++) {
      const o = y * (w * 3 + 1) + 1 + x * 3;
      raw[o] = Math.round((255 * x) / w);
      raw[o + 1] = Math.round((255 * y) / h);
      raw[o + 2] = 180;
    }
  }
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(w, 0);
  ihdr.writeUInt32BE(h, 4);
  ihdr[8] = 8;
  ihdr[9] = 2;
  return Buffer.concat([Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]), chunk('IHDR', ihdr), chunk('IDAT', deflateSync(raw)), chunk('IEND', Buffer.alloc(0))]);
}

const HOSTILE_HTML = '<html><body><script>window.__pwned = "html"; parent.__pwned = "html"</script></body></html>';
const HOSTILE_SVG = '<svg xmlns="http://www.w3.org/2000/svg" onload="window.__pwned=\'svg\'"><script>window.__pwned="svg"</script></svg>';

test('attachments: images preview and open, other files download, nothing uploaded runs', async (t) => {
  const { server, person } = await setup(t);
  const alice = await person();
  const bob = await person();
  await signUp(alice, server.url, 'alice');
  await signUp(bob, server.url, 'bob');

  // Alice attaches a photo and two hostile files with the paperclip, then sends with no text.
  await alice.setInputFiles('#attach-input', [
    { name: 'sunset.png', mimeType: 'image/png', buffer: png(1200, 800) },
    { name: 'hostile.html', mimeType: 'text/html', buffer: Buffer.from(HOSTILE_HTML) },
    { name: 'evil.svg', mimeType: 'image/svg+xml', buffer: Buffer.from(HOSTILE_SVG) },
  ]);
  await alice.locator('#upload-tray .upload.done').nth(2).waitFor();
  await screenshot(alice, 'files-tray');
  await alice.click('#composer-input');
  await alice.keyboard.press('Enter');
  await alice.locator('#upload-tray').waitFor({ state: 'hidden' });

  for (const page of [bob, alice]) {
    const img = page.locator('#message-list .msg-image-img');
    await img.waitFor();
    // The box is sized from the message before a pixel arrives: 360 × 240 for 1200 × 800.
    assert.deepEqual(await img.evaluate((el) => [el.getAttribute('width'), el.getAttribute('height')]), ['360', '240']);
    await page.waitForFunction(() => document.querySelector('#message-list .msg-image-img')?.naturalWidth > 0);
    const cards = await page.$$eval('#message-list .file-card', (as) => as.map((a) => ({ name: a.querySelector('.file-name').textContent, download: a.getAttribute('download') })));
    assert.deepEqual(cards, [
      { name: 'hostile.html', download: 'hostile.html' },
      { name: 'evil.svg', download: 'evil.svg' },
    ]);
  }
  await screenshot(bob, 'files-timeline');
  assert.deepEqual(await axeViolations(bob), [], 'axe on a timeline with files');

  // The hostile files are served as downloads in a sandbox; opened in a frame they still run nothing here.
  const served = await bob.evaluate(async () => {
    const out = [];
    for (const a of document.querySelectorAll('#message-list .file-card')) {
      const res = await fetch(a.href);
      out.push([res.status, res.headers.get('content-disposition').split(';')[0], res.headers.get('x-content-type-options'), /sandbox/.test(res.headers.get('content-security-policy'))]);
    }
    return out;
  });
  assert.deepEqual(served, [
    [200, 'attachment', 'nosniff', true],
    [200, 'attachment', 'nosniff', true],
  ]);
  await bob.evaluate(async () => {
    for (const a of document.querySelectorAll('#message-list .file-card')) {
      const frame = document.createElement('iframe');
      frame.src = a.href;
      document.body.append(frame);
    }
    await new Promise((r) => setTimeout(r, 800));
    for (const f of document.querySelectorAll('body > iframe')) f.remove();
  });
  for (const page of [alice, bob]) assert.equal(await page.evaluate(() => window.__pwned), undefined, 'no upload ran');

  // The viewer, by keyboard: focus the preview, Enter opens it, Escape closes it and the focus returns.
  await bob.focus('#message-list .msg-image');
  await bob.keyboard.press('Enter');
  await bob.locator('#image-viewer[open]').waitFor();
  await bob.waitForFunction(() => document.getElementById('viewer-img').naturalWidth > 0);
  assert.equal(await bob.locator('#viewer-name').textContent(), 'sunset.png');
  await screenshot(bob, 'files-viewer');
  assert.deepEqual(await axeViolations(bob), [], 'axe on the viewer');
  await bob.keyboard.press('Escape');
  await bob.locator('#image-viewer:not([open])').waitFor({ state: 'attached' });
  assert.equal(await bob.evaluate(() => document.activeElement.classList.contains('msg-image')), true, 'the focus returns to the preview');

  // Cancel: an upload taken back before sending is not sent.
  await alice.setInputFiles('#attach-input', [{ name: 'later.txt', mimeType: 'text/plain', buffer: Buffer.from('not now') }]);
  await alice.locator('#upload-tray .upload.done').waitFor();
  await alice.getByRole('button', { name: 'Remove later.txt' }).click();
  await alice.locator('#upload-tray').waitFor({ state: 'hidden' });
  assert.equal(await alice.locator('#message-list .file-card', { hasText: 'later.txt' }).count(), 0);
  assertNoPageErrors(assert, alice, bob);
});

test('a profile picture from the settings dialog shows wherever its owner appears', async (t) => {
  const { server, person } = await setup(t);
  const alice = await person();
  const bob = await person();
  await signUp(alice, server.url, 'alice');
  await signUp(bob, server.url, 'bob');

  await alice.click('#settings-btn');
  await alice.locator('#settings-dialog[open]').waitFor();
  await alice.setInputFiles('#avatar-input', { name: 'me.png', mimeType: 'image/png', buffer: png(400, 300) });
  await alice.locator('#avatar-state', { hasText: 'Saved.' }).waitFor();
  await alice.waitForFunction(() => document.querySelector('#settings-avatar img')?.naturalWidth === 64);
  await screenshot(alice, 'files-settings-avatar');
  assert.deepEqual(await axeViolations(alice), [], 'axe on the settings dialog');
  await alice.keyboard.press('Escape');
  await alice.waitForFunction(() => document.querySelector('#me-avatar img')?.naturalWidth > 0);

  // Bob sees it in the people list (once he lists people again: a reload) and beside alice's messages.
  await alice.click('#composer-input');
  await alice.keyboard.type('hello with a face');
  await alice.keyboard.press('Enter');
  await bob.reload();
  await bob.locator('#conn-status[data-status=online]').waitFor({ state: 'attached' });
  await personButton(bob, 'alice').locator('.avatar img').waitFor();
  await bob.locator('#message-list li.msg .msg-gutter .avatar img').first().waitFor();
  await bob.waitForFunction(() => document.querySelector('#message-list .msg-gutter .avatar img')?.naturalWidth > 0);
  await screenshot(bob, 'files-avatar-timeline');
  assertNoPageErrors(assert, alice, bob);
});
