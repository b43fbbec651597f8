// The sidebar: rooms with online counts, private rooms, people with presence
// and last seen, unread badges, and the connection status.
//
// A full render (`changes.all`: a switch, the lists refreshed, the clock
// tick) lays out all three lists; otherwise only the items of the
// conversations and people that changed are updated, and the people list is
// re-sorted only when someone's presence changed. Every write compares first,
// so an item whose state is unchanged is not touched at all.
//
// An item's accessible name is its visible text ("general 3 online, 2
// unread") with a few words only screen readers get, never a label that
// replaces it: what a person sees is what they can say to voice control.

import { $, h, syncList, avatar, badge, setAvatar, setText, setAttr } from './dom.js';
import { formatLastSeen } from '../format.js';

const STATUS_TEXT = { connecting: 'Connecting…', online: 'Online', offline: 'Offline' };

/** Sidebar items by conversation key ('#room', '@person'), from the last full render. */
let roomNodes = new Map();
let personNodes = new Map();

/** @param {{all: boolean, convs: Set<string>, users: Set<string>}} changes */
export function renderSidebar(chat, onPick, changes) {
  if (changes.all) {
    const [rooms, privateRooms] = chat.sidebarRooms();
    const upd = (node, c) => updateRoom(node, c, chat);
    roomNodes = syncList($('room-list'), rooms, (c) => c.key, (c) => roomItem(c, onPick), upd);
    for (const [k, n] of syncList($('private-list'), privateRooms, (c) => c.key, (c) => roomItem(c, onPick), upd)) roomNodes.set(k, n);
    $('private-list').dataset.empty = String(!privateRooms.length);
    syncPeople(chat, onPick, () => true);
    renderStatus(chat);
    return;
  }
  if (changes.users.size) {
    // Presence may reorder the list (online first): move what moved, update who changed.
    syncPeople(chat, onPick, (u) => changes.users.has(u.username.toLowerCase()) || changes.convs.has(personKey(u)));
  }
  for (const key of changes.convs) {
    const c = chat.convs.get(key);
    if (!c) continue;
    const room = roomNodes.get(key);
    if (room) updateRoom(room, c, chat);
    const person = personNodes.get(key);
    if (person && !changes.users.size) updatePerson(person, chat.user(c.name) || { username: c.name, online: false, lastSeen: null }, chat);
  }
}

const personKey = (u) => `@${u.username.toLowerCase()}`;

function syncPeople(chat, onPick, needsUpdate) {
  const people = chat.people();
  $('people-list').dataset.empty = String(!people.length);
  personNodes = syncList($('people-list'), people, personKey, (u) => personItem(u, chat, onPick), (node, u) => updatePerson(node, u, chat), needsUpdate);
}

function roomItem(c, onPick) {
  const button = h(
    'button',
    { type: 'button', className: 'side-item', onclick: () => onPick(c.key) },
    h('span', { className: 'side-icon', 'aria-hidden': 'true' }),
    h('span', { className: 'side-name' }, c.name),
    h('span', { className: 'sr-only side-kind' }),
    h('span', { className: 'side-meta' }, h('span', { className: 'side-count' }), h('span', { className: 'sr-only' }, ' online')),
    h('span', { className: 'side-badge' }),
  );
  return h('li', {}, button);
}

function updateRoom(node, c, chat) {
  const button = node.firstChild;
  const online = chat.onlineIn(c);
  const active = c.key === chat.activeKey;
  button.classList.toggle('active', active);
  button.classList.toggle('unread', c.unread > 0);
  setAttr(button, 'aria-current', active ? 'page' : null);
  const icon = button.querySelector('.side-icon');
  icon.classList.toggle('icon-lock', c.private);
  setText(icon, c.private ? '' : '#');
  setText(button.querySelector('.side-kind'), c.private ? ', private room,' : ', room,');
  const meta = button.querySelector('.side-meta');
  setText(meta.firstChild, online ? String(online) : '');
  setText(meta.lastChild, online ? ' online' : '');
  setAttr(meta, 'title', `${online} online`);
  meta.classList.toggle('has-online', online > 0);
  setBadge(button.querySelector('.side-badge'), c.unread, c.mentions);
  button.classList.toggle('mentioned', c.mentions > 0);
}

function personItem(u, chat, onPick) {
  const button = h(
    'button',
    { type: 'button', className: 'side-item person', onclick: () => onPick(personKey(u), u.username) },
    h('span', { className: 'presence-avatar' }, avatar(u.username, 'avatar-sm'), h('span', { className: 'presence-dot' })),
    h('span', { className: 'side-text' }, h('span', { className: 'side-name' }, u.username), h('span', { className: 'sr-only' }, ', '), h('span', { className: 'side-sub' })),
    h('span', { className: 'side-badge' }),
  );
  return h('li', {}, button);
}

function updatePerson(node, u, chat) {
  const button = node.firstChild;
  const key = personKey(u);
  const conv = chat.convs.get(key);
  const unread = conv?.unread || 0;
  const active = key === chat.activeKey;
  button.classList.toggle('active', active);
  button.classList.toggle('unread', unread > 0);
  button.classList.toggle('online', u.online);
  setAttr(button, 'aria-current', active ? 'page' : null);
  setAvatar(button.querySelector('.avatar'), u.username);
  setText(button.querySelector('.side-name'), chat.shownName(u.username));
  const sub = u.online ? 'Online' : formatLastSeen(u.lastSeen);
  setText(button.querySelector('.side-sub'), sub);
  setBadge(button.querySelector('.side-badge'), unread);
}

/** Unread count, and before it an "@N" badge for mentions of the user; read out as ", N mentions, N unread". */
function setBadge(slot, count, mentions = 0) {
  const shown = `${Math.max(0, count)}|${mentions}`;
  if (slot.dataset.count === shown) return;
  slot.dataset.count = shown;
  const parts = [];
  if (mentions > 0) {
    parts.push(
      h('span', { className: 'sr-only' }, ', '),
      h('span', { className: 'badge badge-mention' }, `@${mentions > 99 ? '99+' : mentions}`, h('span', { className: 'sr-only' }, ` mention${mentions === 1 ? '' : 's'}`)),
    );
  }
  if (count > 0) parts.push(h('span', { className: 'sr-only' }, ', '), badge(count, ' unread'));
  slot.replaceChildren(...parts);
}

function renderStatus(chat) {
  const el = $('conn-status');
  el.dataset.status = chat.status;
  setText(el.querySelector('.conn-text'), STATUS_TEXT[chat.status]);
  setAvatar($('me-avatar'), chat.me);
  setText($('me-name'), chat.shownName(chat.me));
  setText($('me-sub'), chat.user(chat.me)?.status || 'Signed in');
}
