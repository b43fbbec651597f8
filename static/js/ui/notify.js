// Telling the user about mentions and private messages while the tab is
// hidden: a count in the page title ("(3) hubbub"), cleared when the tab is
// seen again, and a desktop Notification when they turned those on with the
// bell in the sidebar (permission is asked only from that click, never on
// load). Clicking a notification brings the tab forward on that conversation.

import { $, setAttr } from './dom.js';
import { userPref, setUserPref } from '../session.js';
import { plainText } from '../markdown.js';

const BODY_CHARS = 140;

export function setupNotifications(chat, onPick, rerender) {
  const button = $('notify-btn');
  const supported = typeof window.Notification === 'function';
  const state = { hiddenCount: 0 };
  let wanted = userPref(chat.me, 'notify', false);

  const enabled = () => supported && wanted && Notification.permission === 'granted';

  const renderButton = () => {
    button.hidden = !supported;
    const on = enabled();
    const denied = supported && Notification.permission === 'denied';
    setAttr(button, 'aria-pressed', String(on));
    button.classList.toggle('on', on);
    const label = denied ? 'Notifications are blocked in this browser' : on ? 'Desktop notifications are on (click to turn off)' : 'Turn on desktop notifications';
    setAttr(button, 'title', label);
    setAttr(button, 'aria-label', label);
  };

  button.addEventListener('click', async () => {
    if (!supported) return;
    if (enabled()) {
      wanted = false;
    } else {
      let permission = Notification.permission;
      if (permission === 'default') permission = await Notification.requestPermission();
      wanted = permission === 'granted';
      if (permission === 'denied') chat.toast('Notifications are blocked for this site in the browser settings.');
    }
    setUserPref(chat.me, 'notify', wanted);
    renderButton();
    if (enabled()) chat.toast('Desktop notifications are on: mentions and private messages while this tab is in the background.');
  });

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
    try {
      const n = new Notification(title, { body, tag: `hubbub-${msg.id}`, icon: '/favicon.svg' });
      n.onclick = () => {
        window.focus();
        if (conv.kind === 'dm') onPick(key, conv.name);
        else onPick(key);
        chat.reveal(msg.id);
        n.close();
      };
    } catch {
      // Some platforms only allow notifications from a service worker; the title still counts.
    }
  });

  document.addEventListener('visibilitychange', () => {
    if (document.visibilityState === 'visible' && state.hiddenCount) {
      state.hiddenCount = 0;
      rerender();
    }
  });

  renderButton();
  return state;
}
