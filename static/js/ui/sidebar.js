// The sidebar: rooms with online counts, private rooms, people with presence
// and last seen, unread badges, and the connection status.

import { $, h, syncList, avatar, badge, setAvatar } from './dom.js';
import { formatLastSeen } from '../format.js';

const STATUS_TEXT = { connecting: 'Connecting…', online: 'Online', offline: 'Offline' };

export function renderSidebar(chat, onPick) {
  const [rooms, privateRooms] = chat.sidebarRooms();
  syncList($('room-list'), rooms, (c) => c.key, (c) => roomItem(c, onPick), (node, c) => updateRoom(node, c, chat));
  syncList($('private-list'), privateRooms, (c) => c.key, (c) => roomItem(c, onPick), (node, c) => updateRoom(node, c, chat));
  $('private-list').dataset.empty = String(!privateRooms.length);
  const people = chat.people();
  $('people-list').dataset.empty = String(!people.length);
  syncList($('people-list'), people, (u) => `@${u.username.toLowerCase()}`, (u) => personItem(u, chat, onPick), (node, u) => updatePerson(node, u, chat));
  renderStatus(chat);
}

function roomItem(c, onPick) {
  const button = h(
    'button',
    { type: 'button', className: 'side-item', onclick: () => onPick(c.key) },
    h('span', { className: 'side-icon', 'aria-hidden': 'true' }),
    h('span', { className: 'side-name' }, c.name),
    h('span', { className: 'side-meta' }),
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
  if (active) button.setAttribute('aria-current', 'page');
  else button.removeAttribute('aria-current');
  const icon = button.querySelector('.side-icon');
  icon.classList.toggle('icon-lock', c.private);
  icon.textContent = c.private ? '' : '#';
  const meta = button.querySelector('.side-meta');
  meta.textContent = online ? String(online) : '';
  meta.title = `${online} online`;
  meta.classList.toggle('has-online', online > 0);
  setBadge(button.querySelector('.side-badge'), c.unread);
  button.setAttribute(
    'aria-label',
    `${c.private ? 'Private room' : 'Room'} ${c.name}, ${online} online${c.unread ? `, ${c.unread} unread` : ''}`,
  );
}

function personItem(u, chat, onPick) {
  const button = h(
    'button',
    { type: 'button', className: 'side-item person', onclick: () => onPick(`@${u.username.toLowerCase()}`, u.username) },
    h('span', { className: 'presence-avatar' }, avatar(u.username, 'avatar-sm'), h('span', { className: 'presence-dot' })),
    h('span', { className: 'side-text' }, h('span', { className: 'side-name' }, u.username), h('span', { className: 'side-sub' })),
    h('span', { className: 'side-badge' }),
  );
  return h('li', {}, button);
}

function updatePerson(node, u, chat) {
  const button = node.firstChild;
  const key = `@${u.username.toLowerCase()}`;
  const conv = chat.convs.get(key);
  const unread = conv?.unread || 0;
  const active = key === chat.activeKey;
  button.classList.toggle('active', active);
  button.classList.toggle('unread', unread > 0);
  button.classList.toggle('online', u.online);
  if (active) button.setAttribute('aria-current', 'page');
  else button.removeAttribute('aria-current');
  setAvatar(button.querySelector('.avatar'), u.username);
  const sub = u.online ? 'Online' : formatLastSeen(u.lastSeen);
  button.querySelector('.side-sub').textContent = sub;
  setBadge(button.querySelector('.side-badge'), unread);
  button.setAttribute('aria-label', `${u.username}, ${sub}${unread ? `, ${unread} unread` : ''}`);
}

function setBadge(slot, count) {
  slot.replaceChildren(...(count > 0 ? [badge(count, `${count} unread`)] : []));
}

function renderStatus(chat) {
  const el = $('conn-status');
  el.dataset.status = chat.status;
  el.querySelector('.conn-text').textContent = STATUS_TEXT[chat.status];
  const me = $('me-avatar');
  setAvatar(me, chat.me);
  $('me-name').textContent = chat.me;
}
