// What a person can do to a message in the timeline: the hover toolbar
// (react, reply, edit, delete), the emoji picker, editing in place, the
// delete confirmation, reaction chips and reply quotes being clicked.
//
// One toolbar and one picker serve every row: they move into the row under
// the pointer (or focus), so a window of hundreds of messages does not carry
// hundreds of idle buttons. The timeline (timeline.js) owns the rows; this
// module only adds to them while the user acts and sends what they chose
// through the controller (chat.js), whose frames then redraw the rows.

import { $, h } from './dom.js';
import { renderRichText } from './richtext.js';
import { MAX_CONTENT_CHARS, contentLength } from '../content.js';

/** A dozen common reactions; the server also takes `:name:` ones made elsewhere. */
export const EMOJI = ['👍', '❤️', '😂', '🎉', '😮', '😢', '🙏', '🔥', '👀', '✅', '🚀', '👎'];

const ICONS = {
  react:
    'M10 18a8 8 0 1 1 0-16 8 8 0 0 1 0 16zm0-1.6a6.4 6.4 0 1 0 0-12.8 6.4 6.4 0 0 0 0 12.8zM7.2 9a1.1 1.1 0 1 1 0-2.2 1.1 1.1 0 0 1 0 2.2zm5.6 0a1.1 1.1 0 1 1 0-2.2 1.1 1.1 0 0 1 0 2.2zM6.3 11.3h7.4a3.8 3.8 0 0 1-7.4 0z',
  reply: 'M8 5V2L2 8l6 6v-3.1c4.3 0 7.2 1.3 9.3 4.6-.8-4.6-3.5-9-9.3-9.5z',
  edit: 'M13.6 2.6a2 2 0 0 1 2.8 0l1 1a2 2 0 0 1 0 2.8l-9.9 9.9-4.2 1.4 1.4-4.2 8.9-8.9zM12.5 5.2l2.3 2.3',
  delete: 'M7 3h6M3 5.5h14M5 5.5l.8 11a1.5 1.5 0 0 0 1.5 1.5h5.4a1.5 1.5 0 0 0 1.5-1.5l.8-11M8.5 9v5.5M11.5 9v5.5',
};

function icon(name) {
  const svg = document.createElementNS('http://www.w3.org/2000/svg', 'svg');
  svg.setAttribute('viewBox', '0 0 20 20');
  svg.setAttribute('aria-hidden', 'true');
  const path = document.createElementNS('http://www.w3.org/2000/svg', 'path');
  path.setAttribute('d', ICONS[name]);
  if (name === 'react' || name === 'reply') path.setAttribute('fill', 'currentColor');
  else {
    path.setAttribute('fill', 'none');
    path.setAttribute('stroke', 'currentColor');
    path.setAttribute('stroke-width', '1.7');
    path.setAttribute('stroke-linecap', 'round');
    path.setAttribute('stroke-linejoin', 'round');
  }
  svg.append(path);
  return svg;
}

export function setupMessageActions(chat, timeline) {
  const list = $('message-list');
  const tool = (name, label) => h('button', { type: 'button', className: `tool tool-${name}`, title: label, 'aria-label': label, dataset: { action: name } }, icon(name));
  const bar = h(
    'div',
    { className: 'msg-actions', role: 'toolbar', 'aria-label': 'Message actions' },
    tool('react', 'Add reaction'),
    tool('reply', 'Reply'),
    tool('edit', 'Edit'),
    tool('delete', 'Delete'),
  );
  const picker = h(
    'div',
    { className: 'emoji-picker', role: 'dialog', 'aria-label': 'Pick a reaction', hidden: true },
    h('div', { className: 'emoji-grid' }, ...EMOJI.map((e) => h('button', { type: 'button', className: 'emoji-btn', title: e, 'aria-label': `React with ${e}`, dataset: { emoji: e } }, e))),
  );
  document.body.append(picker);
  let pickerFor = null; // message id the open picker reacts to
  let editing = null; // {id, li, box, input, error}

  /** The stored message a row shows, with its conversation. */
  const messageOf = (li) => {
    const c = chat.active;
    const id = Number(li?.dataset.id);
    const m = c && id ? c.get(id) : null;
    return m ? { c, m, id } : null;
  };

  const place = (li) => {
    if (bar.parentNode === li) return;
    const it = messageOf(li);
    if (!it || editing?.li === li) return bar.remove();
    bar.querySelector('.tool-edit').hidden = !chat.mayEdit(it.m);
    bar.querySelector('.tool-delete').hidden = !chat.mayDelete(it.c, it.m);
    li.append(bar);
  };

  list.addEventListener('mouseover', (ev) => {
    const li = ev.target.closest('li.msg[data-id]');
    if (li && !li.classList.contains('pending')) place(li);
  });
  list.addEventListener('mouseleave', () => {
    if (picker.hidden && !bar.parentNode?.contains(document.activeElement)) bar.remove();
  });
  list.addEventListener('focusin', (ev) => {
    const li = ev.target.closest('li.msg[data-id]');
    if (li && !bar.contains(ev.target)) place(li);
  });
  list.addEventListener('focusout', (ev) => {
    if (!list.contains(ev.relatedTarget) && picker.hidden && !list.matches(':hover')) bar.remove();
  });

  // From the keyboard: Up/Down in the timeline walk the messages (each one,
  // focused, shows its toolbar; Tab reaches its buttons), Escape goes back to
  // the composer. Page Up/Down, Home and End still scroll.
  $('timeline').addEventListener('keydown', (ev) => {
    if (ev.altKey || ev.ctrlKey || ev.metaKey || ev.target.closest('textarea, .emoji-picker')) return;
    const current = ev.target.closest('li.msg[data-id]');
    if (ev.key === 'Escape' && current) {
      ev.preventDefault();
      return $('composer-input').focus();
    }
    if (ev.key !== 'ArrowUp' && ev.key !== 'ArrowDown') return;
    if (ev.target !== ev.currentTarget && ev.target !== current) return;
    const rows = [...list.querySelectorAll('li.msg[data-id]')];
    if (!rows.length) return;
    const up = ev.key === 'ArrowUp';
    const i = current ? rows.indexOf(current) + (up ? -1 : 1) : up ? rows.length - 1 : 0;
    const next = rows[Math.max(0, Math.min(rows.length - 1, i))];
    ev.preventDefault();
    next.tabIndex = -1;
    next.focus();
  });

  list.addEventListener('click', (ev) => {
    const btn = ev.target.closest('button');
    if (!btn) return;
    const li = btn.closest('li.msg');
    const it = messageOf(li);
    if (!it) return;
    if (btn.dataset.action === 'react' || btn.classList.contains('chip-add')) return openPicker(it.id, btn);
    if (btn.dataset.action === 'reply') {
      chat.setReply(it.m);
      return $('composer-input').focus();
    }
    if (btn.dataset.action === 'edit') return startEditing(it.id);
    if (btn.dataset.action === 'delete') return confirmDelete(it.c, it.m);
    if (btn.classList.contains('chip')) return chat.react(it.id, btn.dataset.emoji);
    if (btn.classList.contains('msg-quote') && btn.dataset.parent) return chat.reveal(Number(btn.dataset.parent));
  });

  // ---- the picker ----------------------------------------------------------------

  function openPicker(id, anchor) {
    pickerFor = id;
    picker.hidden = false;
    const r = anchor.getBoundingClientRect();
    const w = picker.offsetWidth;
    const hgt = picker.offsetHeight;
    // Above the button when there is room, else below; never off the right edge.
    const top = r.top - hgt - 6 > 8 ? r.top - hgt - 6 : r.bottom + 6;
    picker.style.top = `${Math.round(top)}px`;
    picker.style.left = `${Math.round(Math.max(8, Math.min(r.right - w, window.innerWidth - w - 8)))}px`;
    picker.querySelector('button').focus();
  }

  function closePicker() {
    if (picker.hidden) return;
    picker.hidden = true;
    pickerFor = null;
  }

  picker.addEventListener('click', (ev) => {
    const b = ev.target.closest('.emoji-btn');
    if (!b || pickerFor == null) return;
    const id = pickerFor;
    const m = chat.active?.get(id);
    const mine = m?.reactions?.find((r) => r.emoji === b.dataset.emoji)?.users.some((u) => u.toLowerCase() === chat.me.toLowerCase());
    const within = picker.contains(document.activeElement);
    closePicker();
    if (within) $('composer-input').focus();
    // Picking a reaction the user already has leaves it on (as in Slack); the chip takes it off.
    if (!mine) chat.react(id, b.dataset.emoji);
  });
  picker.addEventListener('keydown', (ev) => {
    const buttons = [...picker.querySelectorAll('.emoji-btn')];
    const i = buttons.indexOf(document.activeElement);
    const step = { ArrowRight: 1, ArrowLeft: -1, ArrowDown: 6, ArrowUp: -6 }[ev.key];
    if (step && i >= 0) {
      ev.preventDefault();
      buttons[(i + step + buttons.length) % buttons.length].focus();
    }
  });
  document.addEventListener('mousedown', (ev) => {
    if (!picker.hidden && !picker.contains(ev.target) && !ev.target.closest('.tool-react, .chip-add')) closePicker();
  });
  document.addEventListener('keydown', (ev) => {
    if (ev.key === 'Escape' && !picker.hidden) {
      const within = picker.contains(document.activeElement);
      closePicker();
      ev.stopPropagation();
      if (within) $('composer-input').focus();
    }
  });
  $('timeline').addEventListener('scroll', closePicker, { passive: true });

  // ---- editing in place ---------------------------------------------------------------

  function startEditing(id) {
    const c = chat.active;
    const m = c?.get(id);
    const row = timeline.rowOf(id);
    if (!m || !row || !chat.mayEdit(m)) return false;
    if (editing) stopEditing();
    bar.remove();
    const input = h('textarea', { className: 'edit-input', rows: 1, 'aria-label': 'Edit message' });
    input.value = m.content;
    const error = h('span', { className: 'edit-error', role: 'alert' });
    const hint = h(
      'div',
      { className: 'edit-hint' },
      'escape to ',
      h('button', { type: 'button', className: 'link-btn', onclick: () => stopEditing() }, 'cancel'),
      ' · enter to ',
      h('button', { type: 'button', className: 'link-btn', onclick: () => save() }, 'save'),
      error,
    );
    const box = h('div', { className: 'msg-editor' }, input, hint);
    row.els.text.hidden = true;
    (row.els.edited || row.els.text).after(box);
    row.node.classList.add('editing');
    editing = { id, li: row.node, row, box, input, error };
    const fit = () => {
      input.style.height = 'auto';
      input.style.height = `${Math.min(input.scrollHeight, 240)}px`;
    };
    input.addEventListener('input', fit);
    input.addEventListener('keydown', (ev) => {
      if (ev.key === 'Escape') {
        ev.preventDefault();
        ev.stopPropagation();
        stopEditing();
        $('composer-input').focus();
      } else if (ev.key === 'Enter' && !ev.shiftKey && !ev.isComposing) {
        ev.preventDefault();
        save();
      }
    });
    fit();
    input.focus();
    input.setSelectionRange(input.value.length, input.value.length);
    row.node.scrollIntoView({ block: 'nearest' });
    return true;
  }

  function save() {
    if (!editing) return;
    const { id, input, error } = editing;
    const m = chat.active?.get(id);
    const text = input.value.trim();
    if (!text) return confirmDelete(chat.active, m);
    if (contentLength(text) > MAX_CONTENT_CHARS) {
      error.textContent = `Too long: at most ${MAX_CONTENT_CHARS.toLocaleString()} characters.`;
      return;
    }
    if (m && text === m.content) return stopEditing();
    if (!chat.editMessage(id, text)) {
      error.textContent = 'You are offline: the edit was not saved.';
      return;
    }
    // The editor waits for the server's `message_edited` (sent to this connection too); an error re-opens it.
    editing.saving = text;
    input.disabled = true;
    error.textContent = 'Saving…';
  }

  function stopEditing() {
    if (!editing) return;
    const { row, box, li } = editing;
    box.remove();
    row.els.text.hidden = false;
    li.classList.remove('editing');
    editing = null;
  }

  chat.addEventListener('edited', (ev) => {
    if (editing && ev.detail.id === editing.id) {
      const refocus = document.activeElement === editing.input || editing.input.disabled;
      stopEditing();
      if (refocus) $('composer-input').focus();
    }
  });
  chat.addEventListener('deleted', (ev) => {
    if (editing && ev.detail.id === editing.id) stopEditing();
    if (pickerFor === ev.detail.id) closePicker();
  });
  chat.addEventListener('message-error', (ev) => {
    if (editing && ev.detail.kind === 'edit' && ev.detail.id === editing.id) {
      editing.input.disabled = false;
      editing.error.textContent = ev.detail.code === 'forbidden' ? 'You may not edit this message.' : `Not saved: ${ev.detail.message || ev.detail.code}`;
      editing.input.focus();
    }
  });
  // A redraw of the whole list (a switch, a jump) makes new nodes: an editor on an old one is gone.
  list.addEventListener('rendered', () => {
    if (editing && !editing.li.isConnected) editing = null;
    if (bar.parentNode && !bar.parentNode.isConnected) bar.remove();
  });

  // ---- deleting -----------------------------------------------------------------

  const dialog = $('delete-dialog');
  let deleting = null;
  function confirmDelete(c, m) {
    if (!c || !m || !chat.mayDelete(c, m)) return;
    deleting = m.id;
    const preview = $('delete-preview');
    const text = h('div', { className: 'msg-text' });
    renderRichText(text, m.content, timeline.textOpts);
    preview.replaceChildren(h('div', { className: 'delete-author' }, m.user), text);
    dialog.showModal();
    $('delete-confirm').focus();
  }
  $('delete-form').addEventListener('submit', (ev) => {
    ev.preventDefault();
    dialog.close();
    if (deleting != null && !chat.deleteMessage(deleting)) chat.toast('You are offline: the message was not deleted.');
    deleting = null;
  });
  dialog.addEventListener('close', () => {
    deleting = null;
    if (!editing) $('composer-input').focus();
  });

  return {
    /** Up in an empty composer: edit the user's newest message in view. */
    editLast() {
      const c = chat.active;
      if (!c) return false;
      for (let i = c.messages.length - 1; i >= 0; i--) {
        if (chat.mayEdit(c.messages[i])) return startEditing(c.messages[i].id);
      }
      return false;
    },
  };
}
