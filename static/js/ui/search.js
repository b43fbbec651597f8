// Message search: the box in the conversation header and the results panel
// under it. Enter (or a pause in typing) asks GET /api/search; each result
// shows its author, where it was said, when, and a snippet with the matched
// words marked (text nodes and <mark> elements only). Clicking one opens that
// conversation with the message in context, scrolled to and highlighted; the
// panel makes way and comes back when the box is focused again.

import { $, h, avatar, setText } from './dom.js';
import { formatTime, formatDay, formatFull } from '../format.js';
import { plainText } from '../markdown.js';

const DEBOUNCE_MS = 300;
// A snippet shows this many characters around the first match.
const SNIPPET_CHARS = 160;

export function setupSearch(chat) {
  const form = $('search-form');
  const input = $('search-input');
  const panel = $('search-panel');
  const results = $('search-results');
  const status = $('search-status');
  let timer = null;
  let seq = 0; // answers to superseded queries are dropped
  let shown = '';

  const open = () => (panel.hidden = false);
  const close = () => {
    panel.hidden = true;
    clearTimeout(timer);
  };

  async function run(q) {
    q = q.trim();
    clearTimeout(timer);
    if (!q) {
      shown = '';
      return close();
    }
    if (q === shown && !panel.hidden) return;
    shown = q;
    const mine = ++seq;
    open();
    setText($('search-title'), `Results for “${q}”`);
    setText(status, 'Searching…');
    let found;
    try {
      found = await chat.search(q);
    } catch (err) {
      if (mine !== seq) return;
      results.replaceChildren();
      setText(status, err.code === 'invalid_input' ? 'Type a word to search for.' : err.message);
      return;
    }
    if (mine !== seq) return;
    setText(status, found.length ? `${found.length}${found.length >= 30 ? '+' : ''} message${found.length === 1 ? '' : 's'}` : 'No messages match.');
    const words = queryWords(q);
    results.replaceChildren(...found.map((m) => resultItem(chat, m, words)));
  }

  form.addEventListener('submit', (ev) => {
    ev.preventDefault();
    shown = '';
    run(input.value);
  });
  input.addEventListener('input', () => {
    clearTimeout(timer);
    timer = setTimeout(() => run(input.value), DEBOUNCE_MS);
  });
  input.addEventListener('focus', () => {
    if (input.value.trim() && panel.hidden && results.childElementCount) open();
  });
  input.addEventListener('keydown', (ev) => {
    if (ev.key === 'Escape') {
      ev.preventDefault();
      input.value = '';
      shown = '';
      close();
    } else if (ev.key === 'ArrowDown' && !panel.hidden) {
      ev.preventDefault();
      results.querySelector('button')?.focus();
    }
  });
  results.addEventListener('keydown', (ev) => {
    const buttons = [...results.querySelectorAll('button.result')];
    const i = buttons.indexOf(document.activeElement);
    if (ev.key === 'ArrowDown' || ev.key === 'ArrowUp') {
      ev.preventDefault();
      const next = buttons[i + (ev.key === 'ArrowDown' ? 1 : -1)];
      if (next) next.focus();
      else if (ev.key === 'ArrowUp') input.focus();
    } else if (ev.key === 'Escape') {
      close();
      input.focus();
    }
  });
  $('search-close').addEventListener('click', () => {
    close();
    input.focus();
  });
  results.addEventListener('click', (ev) => {
    const b = ev.target.closest('button.result');
    if (!b) return;
    // The panel would cover the message shown: it makes way, and Enter in the box brings the results back.
    close();
    chat.openResult(b.result);
  });
}

/** The words of a query as the server matches them: runs of letters and digits, any case. */
export function queryWords(q) {
  return [...new Set(q.toLowerCase().match(/[\p{L}\p{N}]+/gu) || [])];
}

function resultItem(chat, m, words) {
  const where = m.room ? `#${m.room}` : chat.peerOf(m) ? `with ${chat.peerOf(m)}` : '';
  const button = h(
    'button',
    { type: 'button', className: 'result', title: `${m.user} · ${where} · ${formatFull(m.time)}` },
    avatar(m.user, 'avatar-sm'),
    h(
      'span',
      { className: 'result-body' },
      h(
        'span',
        { className: 'result-head' },
        h('span', { className: 'result-author' }, m.user),
        h('span', { className: 'result-where' }, where),
        h('time', { className: 'result-time', dateTime: m.time.toISOString() }, `${formatDay(m.time)} ${formatTime(m.time)}`),
      ),
      h('span', { className: 'result-snippet' }, ...highlight(snippet(plainText(m.content), words), words)),
    ),
  );
  button.result = m;
  return h('li', {}, button);
}

/** Around the first matched word, so a long message shows why it matched. */
function snippet(text, words) {
  const flat = text.replace(/\s+/g, ' ').trim();
  if (flat.length <= SNIPPET_CHARS) return flat;
  const lower = flat.toLowerCase();
  const at = Math.min(...words.map((w) => lower.indexOf(w)).filter((i) => i >= 0), flat.length);
  const start = Math.max(0, Math.min(at - 40, flat.length - SNIPPET_CHARS));
  return `${start > 0 ? '…' : ''}${flat.slice(start, start + SNIPPET_CHARS)}${start + SNIPPET_CHARS < flat.length ? '…' : ''}`;
}

/** Text nodes with each whole-word match wrapped in <mark>. */
export function highlight(text, words) {
  if (!words.length) return [text];
  const escaped = words.map((w) => w.replace(/[.*+?^${}()|[\]\\]/g, '\\$&'));
  const re = new RegExp(`(?<![\\p{L}\\p{N}])(?:${escaped.join('|')})(?![\\p{L}\\p{N}])`, 'giu');
  const out = [];
  let last = 0;
  for (const match of text.matchAll(re)) {
    if (match.index > last) out.push(document.createTextNode(text.slice(last, match.index)));
    out.push(h('mark', {}, match[0]));
    last = match.index + match[0].length;
  }
  if (last < text.length) out.push(document.createTextNode(text.slice(last)));
  return out;
}
