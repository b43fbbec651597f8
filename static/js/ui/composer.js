// The message box: Enter sends, Shift+Enter adds a line, it grows with its
// content, keystrokes drive the (debounced) typing indicator, and near the
// limit a counter shows what is left, counted as the server counts (content.js).
// Above it, the quote bar of the message being replied to (× or Escape
// cancels); `@` completes names (autocomplete.js); Up in an empty box edits
// the user's last message.
// There is no `maxlength`: it counts UTF-16 units and would stop a message of
// 2,001 emoji that the server accepts.

import { $, h, setText, avatar } from './dom.js';
import { setupAutocomplete } from './autocomplete.js';
import { MAX_CONTENT_CHARS, contentLength } from '../content.js';
import { plainText } from '../markdown.js';

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

  form.addEventListener('submit', (ev) => {
    ev.preventDefault();
    if (chat.send(input.value)) {
      input.value = '';
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
  const input = $('composer-input');
  input.disabled = !c;
  input.placeholder = !c ? 'Pick a conversation' : c.kind === 'room' ? `Message #${c.name}` : `Message ${c.name}`;
  $('composer').querySelector('[type=submit]').disabled = !c || contentLength(input.value) > MAX_CONTENT_CHARS;
}
