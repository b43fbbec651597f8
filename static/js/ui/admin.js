// The admin panel, for moderators and admins (the sidebar's "Admin" button
// shows for them only; the server checks every call): people with their
// roles and bans, invite links, and for admins the sign-up mode, who may
// make invites, and the audit log. Every list is read afresh when the panel opens.

import { api } from '../api.js';
import { $, h } from './dom.js';

const ROLES = ['member', 'moderator', 'admin'];
const DAY_S = 86_400;

/** @param {import('../chat.js').Chat} chat */
export function setupAdmin(chat) {
  const button = $('admin-btn');
  const dialog = $('admin-dialog');
  const fail = (err) => ($('admin-error').textContent = err.message);
  const showButton = () => (button.hidden = !chat.moderates);
  showButton();
  chat.addEventListener('change', showButton);

  button.addEventListener('click', () => {
    $('admin-error').textContent = '';
    const admin = chat.role === 'admin';
    $('admin-signup-section').hidden = !admin;
    $('admin-audit-section').hidden = !admin;
    renderPeople().catch(fail);
    renderInvites().catch(fail);
    if (admin) {
      api.settings().then((s) => {
        $('signup-mode').value = s.signup;
        // The operator's --signup wins over the setting: shown, not offered.
        $('signup-mode').disabled = !!s.signup_locked;
        $('signup-locked').hidden = !s.signup_locked;
        $('invites-by').value = s.invites_by;
      }, fail);
      renderAudit().catch(fail);
    }
    dialog.showModal();
  });

  $('signup-mode').addEventListener('change', (ev) => {
    api.setSettings({ signup: ev.target.value }).then(() => renderAudit(), fail);
  });
  $('invites-by').addEventListener('change', (ev) => {
    api.setSettings({ invites_by: ev.target.value }).then(() => renderAudit(), fail);
  });

  $('invite-create').addEventListener('click', async () => {
    const uses = Number($('invite-uses').value) || 1;
    const days = Number($('invite-days').value) || 7;
    try {
      await api.createInvite(uses, days * DAY_S);
      await renderInvites();
    } catch (err) {
      fail(err);
    }
  });

  async function renderPeople() {
    const { users } = await api.adminUsers();
    const admin = chat.role === 'admin';
    $('admin-people').replaceChildren(
      ...users.map((u) => {
        const me = u.username.toLowerCase() === chat.me.toLowerCase();
        const banned = !!u.banned;
        const role = admin && !me
          ? h(
              'select',
              {
                'aria-label': `Role of ${u.username}`,
                onchange: (ev) => api.setRole(u.username, ev.target.value).then(() => renderPeople(), fail),
              },
              ...ROLES.map((r) => h('option', { value: r, selected: r === u.role }, r)),
            )
          : h('span', { className: 'admin-tag' }, u.role);
        const ban = me
          ? null
          : h(
              'button',
              {
                type: 'button',
                className: banned ? 'btn btn-small' : 'btn btn-small btn-danger',
                'aria-label': `${banned ? 'Unban' : 'Ban'} ${u.username}`,
                onclick: () => {
                  const act = banned ? api.unban(u.username) : api.ban(u.username, prompt(`Why ban ${u.username}?`) || '');
                  act.then(() => renderPeople(), fail);
                },
              },
              banned ? 'Unban' : 'Ban',
            );
        return h(
          'li',
          { className: `admin-item${banned ? ' is-banned' : ''}` },
          h(
            'span',
            { className: 'admin-main' },
            h('span', { className: 'admin-name' }, u.display_name || u.username),
            h('span', { className: 'admin-sub' }, `@${u.username}${banned ? ` · banned${u.ban_reason ? `: ${u.ban_reason}` : ''}` : ''}`),
          ),
          role,
          ban,
        );
      }),
    );
  }

  async function renderInvites() {
    const { invites } = await api.invites();
    $('admin-invites').replaceChildren(
      ...invites.map((i) => {
        const link = `${location.origin}/#invite=${encodeURIComponent(i.code)}`;
        return h(
          'li',
          { className: 'admin-item' },
          h(
            'span',
            { className: 'admin-main' },
            h('input', { className: 'invite-link', readOnly: true, value: link, 'aria-label': 'Invite link', onfocus: (ev) => ev.target.select() }),
            h('span', { className: 'admin-sub' }, `used ${i.used} of ${i.uses} · until ${new Date(i.expires_at).toLocaleDateString()}`),
          ),
          h(
            'button',
            {
              type: 'button',
              className: 'btn btn-small',
              'aria-label': `Revoke the invite ${i.code}`,
              onclick: () => api.revokeInvite(i.code).then(() => renderInvites(), fail),
            },
            'Revoke',
          ),
        );
      }),
    );
  }

  async function renderAudit() {
    const { entries } = await api.audit();
    $('admin-audit').replaceChildren(
      ...entries.map((e) =>
        h(
          'li',
          { className: 'admin-item' },
          h(
            'span',
            { className: 'admin-main' },
            h('span', { className: 'admin-name' }, `${e.actor || 'operator'} · ${e.action} · ${e.target}`),
            h('span', { className: 'admin-sub' }, `${new Date(e.at).toLocaleString()}${e.reason ? ` · ${e.reason}` : ''}`),
          ),
        ),
      ),
    );
  }
}
