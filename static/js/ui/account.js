// The account's own sections of the settings dialog: profile (display name,
// status), password, sessions (each can be ended; the current one is
// marked), and deleting the account. Each shows the server's sentence when
// it refuses; nothing here keeps state between openings.

import { api } from '../api.js';
import { $, h } from './dom.js';
import { addSettingsSection } from './settings.js';

/** @param {import('../chat.js').Chat} chat @param {(notice?: string) => void} signOut */
export function setupAccount(chat, signOut) {
  const say = (id, text) => ($(id).textContent = text || '');

  addSettingsSection(() => {
    const me = chat.user(chat.me);
    $('profile-display-name').value = me?.displayName || '';
    $('profile-status').value = me?.status || '';
    for (const id of ['profile-error', 'password-error', 'delete-error']) say(id, '');
    renderSessions();
  });

  $('profile-save').addEventListener('click', async () => {
    const name = $('profile-display-name').value.trim();
    const body = { display_name: name || chat.me, status: $('profile-status').value.trim() };
    try {
      const { user } = await api.setProfile(body);
      chat.setProfile(user);
      say('profile-error', '');
      chat.toast('Profile saved.');
    } catch (err) {
      say('profile-error', err.message);
    }
  });

  $('password-save').addEventListener('click', async () => {
    try {
      await api.changePassword($('password-old').value, $('password-new').value);
      $('password-old').value = $('password-new').value = '';
      say('password-error', '');
      chat.toast('Password changed. Your other sessions were logged out.');
      renderSessions();
    } catch (err) {
      say('password-error', err.message);
    }
  });

  $('sessions-end-others').addEventListener('click', async () => {
    await api.endOtherSessions().catch((err) => chat.toast(err.message));
    renderSessions();
  });

  $('delete-account').addEventListener('click', async () => {
    try {
      await api.deleteAccount($('delete-password').value);
      signOut('Your account was deleted.');
    } catch (err) {
      say('delete-error', err.message);
    }
  });

  async function renderSessions() {
    const list = $('sessions-list');
    try {
      const { sessions } = await api.sessions();
      list.replaceChildren(
        ...sessions.map((s) =>
          h(
            'li',
            { className: 'admin-item' },
            h(
              'span',
              { className: 'admin-main' },
              h('span', { className: 'admin-name' }, s.agent || 'Unknown browser'),
              h('span', { className: 'admin-sub' }, `${s.address || ''} · since ${new Date(s.created_at).toLocaleString()}`),
            ),
            s.current
              ? h('span', { className: 'admin-tag' }, 'This session')
              : h('button', {
                  type: 'button',
                  className: 'btn btn-small',
                  'aria-label': `Log out the session from ${s.agent || 'an unknown browser'}`,
                  onclick: async () => {
                    await api.endSession(s.id).catch((err) => chat.toast(err.message));
                    renderSessions();
                  },
                }, 'Log out'),
          ),
        ),
      );
    } catch (err) {
      list.replaceChildren(h('li', { className: 'admin-item' }, err.message));
    }
  }
}
