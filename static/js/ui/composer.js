// The message box: Enter sends, Shift+Enter adds a line, it grows with its
// content, and keystrokes drive the (debounced) typing indicator.

import { $ } from './dom.js';

const MAX_HEIGHT_PX = 200;

export function setupComposer(chat) {
  const form = $('composer');
  const input = $('composer-input');

  const autosize = () => {
    // CSSOM writes are allowed by the CSP (only style attributes in markup are not).
    input.style.height = 'auto';
    input.style.height = `${Math.min(input.scrollHeight, MAX_HEIGHT_PX)}px`;
  };

  form.addEventListener('submit', (ev) => {
    ev.preventDefault();
    if (chat.send(input.value)) {
      input.value = '';
      autosize();
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
    chat.typing(input.value.trim().length > 0);
  });
}

/** Placeholder and enabled state follow the open conversation. */
export function renderComposer(chat) {
  const c = chat.active;
  const input = $('composer-input');
  input.disabled = !c;
  input.placeholder = !c ? 'Pick a conversation' : c.kind === 'room' ? `Message #${c.name}` : `Message ${c.name}`;
  $('composer').querySelector('[type=submit]').disabled = !c;
}
