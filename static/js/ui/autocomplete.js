// `@` completion of people's names in the composer: typing `@al` lists the
// people whose name starts with (or contains) "al"; arrows move, Tab or
// Enter picks, Escape closes, a click picks. The chosen name goes in as
// `@alice ` in place of what was typed. People come from the controller's
// list (GET /api/users and presence frames), refreshed when a name is unknown.

import { $, h, avatar } from './dom.js';

const MAX_SHOWN = 8;
// Past this, a fresh GET /api/users is worth it when nobody matches (someone new signed up).
const REFRESH_MS = 10_000;
const TOKEN_RE = /(^|[\s(])@([A-Za-z0-9_.-]{0,32})$/;

export function setupAutocomplete(chat, input) {
  const list = $('mention-list');
  let items = [];
  let index = 0;
  let token = null; // {start, end, query}
  let lastRefresh = 0;

  const isOpen = () => !list.hidden;

  function close() {
    if (!isOpen()) return;
    list.hidden = true;
    items = [];
    token = null;
    input.removeAttribute('aria-activedescendant');
  }

  function candidates(query) {
    const q = query.toLowerCase();
    const people = [...chat.users.values()].filter((u) => u.username.toLowerCase() !== chat.me.toLowerCase());
    const starts = people.filter((u) => u.username.toLowerCase().startsWith(q));
    const contains = people.filter((u) => !u.username.toLowerCase().startsWith(q) && u.username.toLowerCase().includes(q));
    const byPresence = (a, b) => Number(b.online) - Number(a.online) || a.username.localeCompare(b.username);
    return [...starts.sort(byPresence), ...contains.sort(byPresence)].slice(0, MAX_SHOWN);
  }

  function update() {
    const before = input.value.slice(0, input.selectionStart);
    const m = input.selectionStart === input.selectionEnd ? before.match(TOKEN_RE) : null;
    if (!m) return close();
    token = { start: before.length - m[2].length - 1, end: input.selectionStart, query: m[2] };
    items = candidates(m[2]);
    if (!items.length && Date.now() - lastRefresh > REFRESH_MS) {
      lastRefresh = Date.now();
      chat.refreshLists().then(() => token && update());
    }
    if (!items.length) return close();
    index = Math.min(index, items.length - 1);
    render();
  }

  function render() {
    list.replaceChildren(
      ...items.map((u, i) =>
        h(
          'li',
          { id: `mention-opt-${i}`, role: 'option', className: i === index ? 'mention-opt active' : 'mention-opt', 'aria-selected': String(i === index), dataset: { user: u.username } },
          h('span', { className: 'presence-avatar' }, avatar(u.username, 'avatar-sm'), h('span', { className: u.online ? 'presence-dot on' : 'presence-dot' })),
          h('span', { className: 'mention-name' }, u.username),
          h('span', { className: 'mention-sub' }, u.online ? 'online' : ''),
        ),
      ),
    );
    list.hidden = false;
    input.setAttribute('aria-activedescendant', `mention-opt-${index}`);
  }

  function pick(i) {
    const u = items[i];
    if (!u || !token) return close();
    const text = `@${u.username} `;
    input.value = input.value.slice(0, token.start) + text + input.value.slice(token.end);
    const at = token.start + text.length;
    input.setSelectionRange(at, at);
    close();
    // The composer resizes and counts on input.
    input.dispatchEvent(new Event('input', { bubbles: true }));
  }

  // A textarea keeps its textbox role, which has no aria-expanded: the
  // listbox it controls is announced through aria-activedescendant.
  input.setAttribute('aria-autocomplete', 'list');
  input.setAttribute('aria-controls', 'mention-list');
  input.addEventListener('input', update);
  input.addEventListener('click', update);
  input.addEventListener('blur', () => setTimeout(close, 150));
  list.addEventListener('mousedown', (ev) => {
    // Keep the focus (and the caret) in the composer.
    ev.preventDefault();
    const li = ev.target.closest('li.mention-opt');
    if (li) pick(items.findIndex((u) => u.username === li.dataset.user));
  });

  return {
    isOpen,
    close,
    /** Keys the list takes while open; returns true when it took this one. */
    onKeyDown(ev) {
      if (!isOpen()) return false;
      if (ev.key === 'ArrowDown' || ev.key === 'ArrowUp') {
        index = (index + (ev.key === 'ArrowDown' ? 1 : -1) + items.length) % items.length;
        render();
      } else if (ev.key === 'Tab' || (ev.key === 'Enter' && !ev.isComposing)) {
        pick(index);
      } else if (ev.key === 'Escape') {
        close();
      } else {
        return false;
      }
      ev.preventDefault();
      return true;
    },
  };
}
