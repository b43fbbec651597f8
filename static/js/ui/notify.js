// Telling the user about mentions and private messages while the tab is
// hidden: a count in the page title ("(3) hubbub"), cleared when the tab is
// seen again, and, once they turned them on in Settings (the permission is
// asked only from that switch, never on load), notifications shown by the
// service worker (sw.js): one per conversation, replaced as messages come,
// closed once the conversation is read here or elsewhere (the server's `read`
// frames), and a click brings a client window to that conversation.

import { $ } from './dom.js';
import { addSettingsSection } from './settings.js';
import { userPref, setUserPref } from '../session.js';
import { plainText } from '../markdown.js';
import { workerSupported, postToWorker, onWorkerMessage } from '../worker.js';

const BODY_CHARS = 140;

/**
 * @param {(key: string, id: number|null) => void} route open a conversation (and a message in it)
 * @param {() => void} rerender the title count changed
 */
export function setupNotifications(chat, route, rerender) {
  const toggle = $('notify-toggle');
  const supported = workerSupported && typeof window.Notification === 'function';
  const state = { hiddenCount: 0 };
  let wanted = userPref(chat.me, 'notify', false);

  const enabled = () => supported && wanted && Notification.permission === 'granted';

  const render = () => {
    const denied = supported && Notification.permission === 'denied';
    toggle.checked = enabled();
    toggle.disabled = !supported || denied;
    let text = '';
    if (!supported) text = 'This browser cannot show notifications for this address (they need https).';
    else if (denied) text = 'Notifications are blocked for this site in the browser’s settings.';
    else if (enabled()) text = 'On for this browser.';
    $('notify-state').textContent = text;
  };

  toggle.addEventListener('change', async () => {
    if (toggle.checked) {
      let permission = Notification.permission;
      if (permission === 'default') {
        $('notify-state').textContent = 'Allow notifications in the browser’s prompt to turn them on.';
        permission = await Notification.requestPermission();
      }
      wanted = permission === 'granted';
    } else {
      wanted = false;
    }
    setUserPref(chat.me, 'notify', wanted);
    render();
  });
  // A switch toggles with Space (the checkbox's own key) and with Enter.
  toggle.addEventListener('keydown', (ev) => {
    if (ev.key !== 'Enter') return;
    ev.preventDefault();
    toggle.click();
  });
  addSettingsSection(render);

  chat.addEventListener('alert', (ev) => {
    if (document.visibilityState !== 'hidden') return;
    const { key, conv, msg, kind } = ev.detail;
    state.hiddenCount += 1;
    rerender();
    if (!enabled()) return;
    const where = conv.kind === 'room' ? `#${conv.name}` : null;
    const title = kind === 'mention' && where ? `${msg.user} mentioned you in ${where}` : `${msg.user}${where ? ` in ${where}` : ''}`;
    let body = plainText(msg.content).replace(/\s+/g, ' ').trim();
    if (body.length > BODY_CHARS) body = `${body.slice(0, BODY_CHARS - 1)}…`;
    postToWorker({ type: 'notify', key, title, body, id: msg.id });
  });

  // Read here, or in another tab or on another device: the conversation's notification goes.
  chat.addEventListener('read', (ev) => {
    if (supported) postToWorker({ type: 'read', key: ev.detail.key });
  });

  onWorkerMessage((m) => {
    if (m.type !== 'open' || typeof m.key !== 'string') return;
    window.focus();
    route(m.key, Number.isSafeInteger(m.id) ? m.id : null);
  });

  document.addEventListener('visibilitychange', () => {
    if (document.visibilityState === 'visible' && state.hiddenCount) {
      state.hiddenCount = 0;
      rerender();
    }
  });

  render();
  return state;
}
