// Dialogs: join or create a public room, create a private room, manage a
// private room's members. Native <dialog> gives focus trapping and Escape.

import { $, h, syncList, avatar } from './dom.js';
import { ROOM_NAME } from '../chat.js';

const ROOM_RULE = 'Use 1–64 lowercase letters, digits, dashes or underscores.';

export function setupDialogs(chat) {
  for (const dialog of document.querySelectorAll('dialog')) {
    dialog.addEventListener('click', (ev) => {
      // A click on the backdrop (the dialog element itself) or a Cancel button closes it.
      if (ev.target === dialog || ev.target.closest('[data-close]')) dialog.close();
    });
  }

  // Join / create a public room.
  const joinForm = $('join-form');
  $('join-room-btn').addEventListener('click', () => {
    joinForm.reset();
    setError('join-name', '');
    renderDirectory(chat);
    chat.refreshLists().then(() => renderDirectory(chat));
    $('join-dialog').showModal();
  });
  joinForm.addEventListener('submit', (ev) => {
    ev.preventDefault();
    const name = joinForm.room.value.trim().toLowerCase();
    if (!ROOM_NAME.test(name)) return setError('join-name', ROOM_RULE);
    $('join-dialog').close();
    chat.joinRoom(name);
  });

  // Create a private room.
  const privateForm = $('private-form');
  $('new-private-btn').addEventListener('click', () => {
    privateForm.reset();
    setError('private-name', '');
    setError('private-members', '');
    $('private-members').replaceChildren(
      ...chat.people().map((u) =>
        h('label', { className: 'check' }, h('input', { type: 'checkbox', name: 'member', value: u.username }), avatar(u.username, 'avatar-sm'), u.username),
      ),
    );
    if (!chat.people().length) $('private-members').append(h('p', { className: 'field-hint' }, 'Nobody else has signed up yet.'));
    $('private-dialog').showModal();
  });
  privateForm.addEventListener('submit', (ev) => {
    ev.preventDefault();
    const name = privateForm.room.value.trim().toLowerCase();
    setError('private-name', '');
    if (!ROOM_NAME.test(name)) return setError('private-name', ROOM_RULE);
    if (chat.status !== 'online') return setError('private-name', 'You are offline. Try again once reconnected.');
    const members = [...privateForm.querySelectorAll('input[name=member]:checked')].map((i) => i.value);
    chat.createPrivateRoom(name, members);
  });

  // Members of a private room.
  $('members-btn').addEventListener('click', () => {
    setError('members', '');
    $('members-form').reset();
    renderMembers(chat);
    $('members-dialog').showModal();
  });
  $('members-form').addEventListener('submit', (ev) => {
    ev.preventDefault();
    const c = chat.active;
    const name = $('members-input').value.trim();
    if (!name || !c) return;
    setError('members', '');
    chat.addMember(c, name);
  });

  // Archiving is undone with one click; deleting is not, so it asks first.
  $('archive-btn').addEventListener('click', () => {
    const c = chat.active;
    if (chat.mayArchive(c)) chat.setArchived(c, !chat.isArchived(c));
  });
  let deleting = null;
  $('delete-room-btn').addEventListener('click', () => {
    const c = chat.active;
    if (!chat.mayDeleteRoom(c)) return;
    deleting = c;
    $('room-delete-title').textContent = `Delete #${c.name}?`;
    $('room-delete-text').textContent =
      `This deletes #${c.name} for everyone: its whole history and every file shared in it are lost. It cannot be undone. To keep it readable, archive it instead.`;
    $('room-delete-dialog').showModal();
    $('room-delete-confirm').focus();
  });
  $('room-delete-form').addEventListener('submit', (ev) => {
    ev.preventDefault();
    const c = deleting;
    deleting = null;
    $('room-delete-dialog').close();
    if (c) chat.deleteRoom(c);
  });
  $('room-delete-dialog').addEventListener('close', () => (deleting = null));

  chat.addEventListener('dialog-done', (ev) => {
    if (ev.detail.kind === 'create') $('private-dialog').close();
    else {
      $('members-input').value = '';
      renderMembers(chat);
    }
  });
  chat.addEventListener('dialog-error', (ev) => {
    const { kind, message, code } = ev.detail;
    const text = message || code;
    if (kind === 'create') setError(code === 'no_such_user' ? 'private-members' : 'private-name', text);
    else setError('members', text);
  });
  chat.addEventListener('change', () => {
    if ($('members-dialog').open) renderMembers(chat);
  });
}

function setError(field, message) {
  $(`${field}-error`).textContent = message;
  const input = $(field === 'members' ? 'members-input' : field);
  if (input?.tagName === 'INPUT') {
    if (message) input.setAttribute('aria-invalid', 'true');
    else input.removeAttribute('aria-invalid');
  }
  if (message) input?.focus?.();
}

function renderDirectory(chat) {
  const rooms = [...chat.directory].sort((a, b) => b.online - a.online || a.name.localeCompare(b.name));
  const list = $('directory-list');
  syncList(
    list,
    rooms,
    (r) => r.name,
    (r) =>
      h(
        'li',
        {},
        h(
          'button',
          {
            type: 'button',
            className: 'directory-item',
            onclick: () => {
              $('join-dialog').close();
              chat.joinRoom(r.name);
            },
          },
          h('span', { className: 'side-icon', 'aria-hidden': 'true' }, '#'),
          h('span', { className: 'side-name' }, r.name),
          h('span', { className: 'directory-online' }),
        ),
      ),
    (node, r) => {
      node.querySelector('.directory-online').textContent = `${r.online} online`;
    },
  );
  if (!rooms.length) list.replaceChildren(h('li', { className: 'field-hint' }, 'No public rooms yet: name one above to create it.'));
}

function renderMembers(chat) {
  const c = chat.active;
  if (!c || !c.private) return;
  const isOwner = c.owner?.toLowerCase() === chat.me.toLowerCase();
  $('members-title').textContent = `Members of #${c.name}`;
  $('members-add').hidden = !isOwner;
  // The owner first, whether or not the server lists them among the members.
  const people = [c.owner, ...c.members].filter((u, i, all) => u && all.findIndex((x) => x?.toLowerCase() === u.toLowerCase()) === i);
  syncList(
    $('members-list'),
    people,
    (u) => u,
    (u) => h('li', { className: 'member' }, avatar(u, 'avatar-sm'), h('span', { className: 'member-name' }), h('span', { className: 'member-action' })),
    (node, u) => {
      const owner = u.toLowerCase() === c.owner?.toLowerCase();
      node.querySelector('.member-name').textContent = owner ? `${u} (owner)` : u;
      const action = node.querySelector('.member-action');
      action.replaceChildren();
      if (isOwner && !owner) {
        action.append(h('button', { type: 'button', className: 'btn btn-ghost btn-sm', 'aria-label': `Remove ${u}`, onclick: () => chat.removeMember(c, u) }, 'Remove'));
      }
    },
  );
  const options = chat.people().filter((u) => !c.members.some((m) => m.toLowerCase() === u.username.toLowerCase()));
  $('people-options').replaceChildren(...options.map((u) => h('option', { value: u.username })));
}
