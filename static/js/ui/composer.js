// The message box: Enter sends, Shift+Enter adds a line, it grows with its
// content, keystrokes drive the (debounced) typing indicator, and near the
// limit a counter shows what is left, counted as the server counts (content.js).
// Above it, the quote bar of the message being replied to (× or Escape
// cancels); `@` completes names (autocomplete.js); Up in an empty box edits
// the user's last message.
// There is no `maxlength`: it counts UTF-16 units and would stop a message of
// 2,001 emoji that the server accepts.
// Files: the paperclip, a drop anywhere on the conversation, or a paste
// upload at once into the tray above the box, each with a progress bar and
// a button that cancels it (or takes it back once uploaded); the next send
// carries the uploaded ones, with or without text.

import { $, h, setText, avatar } from './dom.js';
import { setupAutocomplete } from './autocomplete.js';
import { MAX_CONTENT_CHARS, contentLength } from '../content.js';
import { plainText } from '../markdown.js';
import { upload, formatSize } from '../files.js';
import { MAX_ATTACHMENTS } from '../outbox.js';

const MAX_HEIGHT_PX = 200;
// The counter appears when this few characters are left (or the text is over).
const COUNT_SHOWN_LEFT = 500;

/** @param {{editLast: () => boolean}} actions */
export function setupComposer(chat, actions) {
  const form = $('composer');
  const input = $('composer-input');
  const names = setupAutocomplete(chat, input);

  const autosize = () => {
    // CSSOM writes are allowed by the CSP (only style attributes in markup are not).
    input.style.height = 'auto';
    input.style.height = `${Math.min(input.scrollHeight, MAX_HEIGHT_PX)}px`;
  };

  const count = () => {
    const left = MAX_CONTENT_CHARS - contentLength(input.value);
    const el = $('composer-count');
    el.hidden = left > COUNT_SHOWN_LEFT;
    el.classList.toggle('over', left < 0);
    setText(el, left < 0 ? `${(-left).toLocaleString()} over the limit` : `${left.toLocaleString()} left`);
    form.querySelector('[type=submit]').disabled = !chat.active || left < 0;
  };

  const tray = setupTray(chat, input);

  form.addEventListener('submit', (ev) => {
    ev.preventDefault();
    if (tray.busy()) {
      chat.toast('Files are still uploading: the message goes when they are done — or remove them.');
      return;
    }
    if (chat.send(input.value, tray.files())) {
      input.value = '';
      tray.clear();
      autosize();
      count();
    }
    input.focus();
  });

  input.addEventListener('keydown', (ev) => {
    if (names.onKeyDown(ev)) return;
    // isComposing: Enter that confirms an IME candidate must not send.
    if (ev.key === 'Enter' && !ev.shiftKey && !ev.isComposing) {
      ev.preventDefault();
      form.requestSubmit();
    } else if (ev.key === 'ArrowUp' && input.value === '' && !ev.shiftKey && !ev.altKey && !ev.metaKey && !ev.ctrlKey) {
      if (actions.editLast()) ev.preventDefault();
    } else if (ev.key === 'Escape' && chat.replyTo) {
      ev.preventDefault();
      chat.setReply(null);
    }
  });

  $('reply-cancel').addEventListener('click', () => {
    chat.setReply(null);
    input.focus();
  });
  chat.addEventListener('reply', () => renderReply(chat));

  input.addEventListener('input', () => {
    autosize();
    count();
    chat.typing(input.value.trim().length > 0);
  });
}

/** The quote bar: who and what the next message answers. */
function renderReply(chat) {
  const r = chat.replyTo;
  const bar = $('reply-bar');
  bar.hidden = !r;
  $('composer').classList.toggle('replying', !!r);
  if (!r) return;
  const line = plainText(r.content).split('\n').find((l) => l.trim()) || '';
  $('reply-what').replaceChildren('Replying to ', avatar(r.user, 'avatar-xs'), h('strong', {}, r.user), h('span', { className: 'reply-text' }, line));
}

/** Placeholder and enabled state follow the open conversation. */
export function renderComposer(chat) {
  const c = chat.active;
  // An archived room is read-only: a banner stands where the composer was.
  const archived = chat.isArchived(c);
  const banner = $('archived-banner');
  banner.hidden = !archived;
  if (archived) banner.textContent = `This room is archived. You can read #${c.name}, but nobody can post in it.`;
  for (const id of ['composer', 'composer-hint', 'upload-tray']) $(id).classList.toggle('archived-hidden', archived);
  const input = $('composer-input');
  input.disabled = !c;
  input.placeholder = !c ? 'Pick a conversation' : c.kind === 'room' ? `Message #${c.name}` : `Message ${c.name}`;
  $('composer').querySelector('[type=submit]').disabled = !c || contentLength(input.value) > MAX_CONTENT_CHARS;
}

/** The uploads waiting for the next message: add, cancel or remove, read what is ready. */
function setupTray(chat, input) {
  const list = $('upload-tray');
  /** {file, state: 'uploading'|'done'|'failed', node, bar, abort, result, error} */
  const items = [];

  const render = () => {
    list.hidden = items.length === 0;
    $('composer').classList.toggle('with-files', items.length > 0);
  };

  const remove = (item) => {
    if (item.state === 'uploading') item.abort();
    items.splice(items.indexOf(item), 1);
    item.node.remove();
    render();
  };

  const add = (file) => {
    if (items.length >= MAX_ATTACHMENTS) {
      chat.toast(`A message carries at most ${MAX_ATTACHMENTS} files.`);
      return;
    }
    const bar = h('progress', { className: 'upload-bar', max: 1, value: 0, 'aria-label': `Uploading ${file.name}` });
    const status = h('span', { className: 'upload-status' }, formatSize(file.size));
    const cancel = h('button', { type: 'button', className: 'icon-btn upload-cancel', 'aria-label': `Cancel ${file.name}`, title: 'Cancel' }, '×');
    const node = h('li', { className: 'upload' }, h('span', { className: 'upload-name' }, file.name || 'pasted image'), status, bar, cancel);
    const item = { file, state: 'uploading', node, bar, abort: () => {}, result: null };
    const job = upload(file, (f) => (bar.value = f));
    item.abort = job.abort;
    cancel.addEventListener('click', () => {
      remove(item);
      input.focus();
    });
    job.promise.then(
      (body) => {
        item.state = 'done';
        item.result = body.file;
        bar.value = 1;
        bar.hidden = true;
        node.classList.add('done');
        cancel.setAttribute('aria-label', `Remove ${file.name}`);
        cancel.title = 'Remove';
      },
      (err) => {
        if (err.message === 'aborted') return;
        item.state = 'failed';
        bar.hidden = true;
        node.classList.add('failed');
        setText(status, err.message);
      },
    );
    items.push(item);
    list.append(node);
    render();
  };

  const addAll = (files) => {
    for (const f of files) add(f);
  };

  const picker = $('attach-input');
  $('attach-btn').addEventListener('click', () => picker.click());
  picker.addEventListener('change', () => {
    addAll([...picker.files]);
    picker.value = '';
    input.focus();
  });
  // A paste of files (a screenshot) uploads them; a paste of text stays text.
  input.addEventListener('paste', (ev) => {
    const files = [...(ev.clipboardData?.files || [])];
    if (!files.length) return;
    ev.preventDefault();
    addAll(files);
  });
  // Dropped anywhere on the conversation.
  const zone = document.querySelector('.main') || document.body;
  zone.addEventListener('dragover', (ev) => {
    if (!ev.dataTransfer?.types?.includes('Files') || !chat.active) return;
    ev.preventDefault();
    zone.classList.add('dropping');
  });
  zone.addEventListener('dragleave', (ev) => {
    if (!zone.contains(ev.relatedTarget)) zone.classList.remove('dropping');
  });
  zone.addEventListener('drop', (ev) => {
    zone.classList.remove('dropping');
    if (!ev.dataTransfer?.files?.length || !chat.active) return;
    ev.preventDefault();
    addAll([...ev.dataTransfer.files]);
    input.focus();
  });

  return {
    busy: () => items.some((i) => i.state === 'uploading'),
    files: () => items.filter((i) => i.state === 'done').map((i) => i.result),
    clear: () => {
      for (const i of [...items]) if (i.state !== 'uploading') remove(i);
    },
  };
}
