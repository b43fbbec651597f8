// Web Push, the settings section "When hubbub is closed": a switch that
// subscribes this browser to the server's pushes (mentions and private
// messages while no hubbub tab is open), asking for the browser's
// permission only when the user turns it on, and a switch for what those
// pushes may show (kept on the server, for every device of the user).
//
// The subscription is the browser's (one per site and worker); the server
// keeps it for whoever registered it last, so on every start, while the
// switch is on, the page registers it again: after the worker resubscribed
// (`pushsubscriptionchange`, sw.js) or another account used this browser,
// it is this user's again. Signing out unregisters it, so a shared browser
// stops showing the last user's messages.

import { $ } from './dom.js';
import { addSettingsSection } from './settings.js';
import { api } from '../api.js';
import { userPref, setUserPref } from '../session.js';
import { workerSupported, onWorkerMessage } from '../worker.js';

// Signing out waits at most this long for the server to forget the subscription.
const SIGN_OUT_WAIT_MS = 2000;

/** The VAPID key as the push manager takes it. */
function keyBytes(base64url) {
  const b64 = base64url.replace(/-/g, '+').replace(/_/g, '/');
  const raw = atob(b64 + '='.repeat((4 - (b64.length % 4)) % 4));
  return Uint8Array.from(raw, (c) => c.charCodeAt(0));
}

export function setupPush(chat) {
  const toggle = $('push-toggle');
  const textToggle = $('push-text-toggle');
  const supported = workerSupported && 'PushManager' in window && typeof window.Notification === 'function';
  let wanted = userPref(chat.me, 'push', false);
  let subscribed = false;
  let note = '';

  const registration = () => navigator.serviceWorker.ready;

  const render = () => {
    const denied = supported && Notification.permission === 'denied';
    toggle.checked = supported && subscribed;
    toggle.disabled = !supported || denied;
    let text = note;
    if (!supported) text = 'This browser cannot receive notifications for this address (they need https).';
    else if (denied) text = 'Notifications are blocked for this site in the browser’s settings.';
    else if (!text && subscribed) text = 'On for this browser, even when hubbub is closed.';
    $('push-state').textContent = text;
  };

  const register = async (sub) => {
    await api.pushSubscribe(sub.toJSON());
    subscribed = true;
  };

  const turnOn = async () => {
    let permission = Notification.permission;
    if (permission === 'default') {
      note = 'Allow notifications in the browser’s prompt to turn them on.';
      render();
      permission = await Notification.requestPermission();
    }
    note = '';
    if (permission !== 'granted') return false;
    const { public_key: key } = await api.pushKey();
    const reg = await registration();
    let sub = await reg.pushManager.getSubscription();
    const current = sub?.options?.applicationServerKey;
    if (sub && current && new Uint8Array(current).join() !== keyBytes(key).join()) {
      // Made for another server key (the server's was replaced): useless now.
      await sub.unsubscribe();
      sub = null;
    }
    sub = sub || (await reg.pushManager.subscribe({ userVisibleOnly: true, applicationServerKey: keyBytes(key) }));
    await register(sub);
    return true;
  };

  const turnOff = async () => {
    const sub = await (await registration()).pushManager.getSubscription();
    subscribed = false;
    if (!sub) return;
    const { endpoint } = sub;
    await sub.unsubscribe();
    await api.pushUnsubscribe(endpoint);
  };

  toggle.addEventListener('change', async () => {
    toggle.disabled = true;
    try {
      wanted = toggle.checked ? await turnOn() : (await turnOff(), false);
    } catch (err) {
      note = `Could not change push notifications: ${err.message}`;
      wanted = subscribed;
    }
    setUserPref(chat.me, 'push', wanted);
    render();
  });

  textToggle.addEventListener('change', async () => {
    const show = textToggle.checked;
    textToggle.disabled = true;
    try {
      const r = await api.setPushSettings({ show_text: show });
      textToggle.checked = r.show_text;
    } catch (err) {
      textToggle.checked = !show;
      note = `Could not save: ${err.message}`;
      render();
    }
    textToggle.disabled = !supported;
  });

  // A switch toggles with Space (the checkbox's own key) and with Enter.
  for (const sw of [toggle, textToggle]) {
    sw.addEventListener('keydown', (ev) => {
      if (ev.key !== 'Enter') return;
      ev.preventDefault();
      sw.click();
    });
  }

  const loadSettings = async () => {
    try {
      textToggle.checked = (await api.pushSettings()).show_text;
    } catch {
      // Shown as it was; the next opening asks again.
    }
  };

  addSettingsSection(() => {
    render();
    textToggle.disabled = !supported;
    if (supported) loadSettings();
  });

  // The worker resubscribed: the new subscription is registered from here.
  onWorkerMessage((m) => {
    if (m.type !== 'push-subscription' || !wanted) return;
    api.pushSubscribe(m.subscription).catch(() => {});
  });

  // On every start, while the switch is on, the browser's subscription is
  // registered again (it may have changed, or be another account's).
  if (supported && wanted && Notification.permission === 'granted') {
    registration()
      .then((reg) => reg.pushManager.getSubscription())
      .then((sub) => (sub ? register(sub) : turnOn()))
      .catch(() => {})
      .finally(render);
  }
  render();

  return {
    /** Signing out: this browser stops receiving this user's pushes. */
    async signOut() {
      if (!supported || !subscribed) return;
      const done = turnOff().catch(() => {});
      await Promise.race([done, new Promise((r) => setTimeout(r, SIGN_OUT_WAIT_MS))]);
    },
  };
}
