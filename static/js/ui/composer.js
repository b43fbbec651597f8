// The message box: Enter sends, Shift+Enter adds a line, it grows with its
// content, keystrokes drive the (debounced) typing indicator, and near the
// limit a counter shows what is left, counted as the server counts (content.js).
// There is no `maxlength`: it counts UTF-16 units and would stop a message of
// 2,001 emoji that the server accepts.

import { $, setText } from './dom.js';
import { MAX_CONTENT_CHARS, contentLength } from '../content.js';

const MAX_HEIGHT_PX = 200;
// The counter appears when this few characters are left (or the text is over).
const COUNT_SHOWN_LEFT = 500;

export function setupComposer(chat) {
  const form = $('composer');
  const input = $('composer-input');

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
    // isComposing: Enter that confirms an IME candidate must not send.
    if (ev.key === 'Enter' && !ev.shiftKey && !ev.isComposing) {
      ev.preventDefault();
      form.requestSubmit();
    }
  });

  input.addEventListener('input', () => {
    autosize();
    count();
    chat.typing(input.value.trim().length > 0);
  });
}

/** Placeholder and enabled state follow the open conversation. */
export function renderComposer(chat) {
  const c = chat.active;
  const input = $('composer-input');
  input.disabled = !c;
  input.placeholder = !c ? 'Pick a conversation' : c.kind === 'room' ? `Message #${c.name}` : `Message ${c.name}`;
  $('composer').querySelector('[type=submit]').disabled = !c || contentLength(input.value) > MAX_CONTENT_CHARS;
}
