// The chat screen (mounted once per page load): wires the controller to the
// views, and renders the conversation header, the connection banner, toasts,
// the page title and the phone-width menu. The controller renders at most once
// per animation frame and says what changed (chat.js); each part here redraws
// only when its inputs are among the changes.

import { $, h, setText, setAttr } from './dom.js';
import { setupProfile } from './profile.js';
import { renderSidebar } from './sidebar.js';
import { TimelineView } from './timeline.js';
import { setupComposer, renderComposer } from './composer.js';
import { setupDialogs } from './dialogs.js';
import { setupMessageActions } from './actions.js';
import { setupSearch } from './search.js';
import { setupNotifications } from './notify.js';
import { setupSettings } from './settings.js';
import { setupAccount } from './account.js';
import { setupAdmin } from './admin.js';
import { setupPush } from './push.js';
import { formatLastSeen } from '../format.js';

const TOAST_MS = 5000;
// Re-render now and then so "last seen 5 min ago" stays true without any event.
const CLOCK_TICK_MS = 30_000;

export function mountApp(chat, onLogout) {
  $('app').hidden = false;
  const timeline = new TimelineView(chat);
  const actions = setupMessageActions(chat, timeline);
  setupComposer(chat, actions);
  setupDialogs(chat);
  setupSearch(chat);
  const menu = setupMenu();

  const pick = (key, username) => {
    if (username) chat.openDm(username);
    else chat.open(key);
    menu.close();
    $('composer-input').focus();
  };
  // A notification's click: its conversation, and the message in it.
  const route = (key, id) => {
    chat.goTo(key, id);
    menu.close();
  };
  setupSettings();
  setupAccount(chat, () => onLogout());
  setupAdmin(chat);
  setupProfile(chat);
  const alerts = setupNotifications(chat, route, () => chat.changed());
  const push = setupPush(chat);

  let shownKey = chat.activeKey;
  /** @param {{all: boolean, convs: Set<string>, users: Set<string>}} changes */
  const render = (changes) => {
    // Whatever opened another conversation (a dialog, a removal), the phone menu makes way for it.
    if (chat.activeKey !== shownKey) {
      shownKey = chat.activeKey;
      menu.close();
    }
    const active = chat.active;
    renderSidebar(chat, pick, changes);
    if (changes.all || (active && (changes.convs.has(active.key) || (active.kind === 'dm' && changes.users.has(active.name.toLowerCase()))))) {
      renderHeader(chat);
    }
    if (changes.all) {
      renderBanner(chat);
      renderComposer(chat);
    }
    timeline.render(changes);
    const unread = chat.totalUnread();
    // In the background the title counts what is for the user (mentions, private messages) since it was hidden.
    const count = document.visibilityState === 'hidden' ? alerts.hiddenCount : unread;
    const pageTitle = `${count ? `(${count}) ` : ''}${active ? title(active) : 'hubbub'} · hubbub`;
    if (document.title !== pageTitle) document.title = pageTitle;
    const menuBadge = $('menu-badge');
    menuBadge.hidden = !unread;
    setText(menuBadge, unread > 99 ? '99+' : String(unread));
    setAttr($('menu-btn'), 'aria-label', `Show rooms and people${unread ? `, ${unread} unread` : ''}`);
  };

  chat.addEventListener('change', (ev) => render(ev.detail));
  chat.addEventListener('toast', (ev) => toast(ev.detail));
  setInterval(() => chat.changed(), CLOCK_TICK_MS);

  $('leave-btn').onclick = () => chat.active && chat.leaveRoom(chat.active);
  $('logout-btn').onclick = async () => {
    await push.signOut();
    onLogout();
  };

  render({ all: true, convs: new Set(), users: new Set() });
}

function title(c) {
  return c.kind === 'room' ? `#${c.name}` : c.name;
}

function renderHeader(chat) {
  const c = chat.active;
  setText($('conv-name'), c ? (c.private ? c.name : title(c)) : 'hubbub');
  $('conv-name').classList.toggle('is-private', !!c?.private);
  let sub = '';
  if (c?.kind === 'room') {
    const n = chat.onlineIn(c);
    sub = `${n} online`;
    if (c.private) sub += ` · private · ${c.members.length} member${c.members.length === 1 ? '' : 's'}`;
    if (chat.isArchived(c)) sub += ' · archived';
  } else if (c) {
    // Unknown (the people list has not loaded, e.g. offline): nothing rather than a wrong "never online".
    const u = chat.user(c.name);
    sub = !u ? '' : u.online ? 'Online' : formatLastSeen(u.lastSeen || null);
  }
  setText($('conv-sub'), sub);
  setAttr($('conv-sub'), 'data-online', String(c?.kind === 'dm' && !!chat.user(c.name)?.online));
  $('members-btn').hidden = !c?.private;
  $('leave-btn').hidden = !(c?.kind === 'room' && !c.private);
  $('archive-btn').hidden = !chat.mayArchive(c);
  setText($('archive-btn'), chat.isArchived(c) ? 'Unarchive room' : 'Archive room');
  $('delete-room-btn').hidden = !chat.mayDeleteRoom(c);
}

function renderBanner(chat) {
  const banner = $('offline-banner');
  banner.hidden = chat.status === 'online';
  if (chat.status === 'offline') {
    const secs = Math.ceil(chat.retryInMs / 1000);
    banner.replaceChildren(
      `You are offline. Messages you send will go out when the connection is back${secs ? ` (retrying in ${secs} s)` : ''}. `,
      h('button', { type: 'button', className: 'link-btn', onclick: () => chat.conn.reconnectNow() }, 'Retry now'),
    );
  } else {
    banner.textContent = 'Connecting…';
  }
}

/** A new version of the client took over this page (sw.js): offered, never forced on someone typing. */
export function offerUpdate() {
  if ($('update-toast')) return;
  $('toasts').append(
    h(
      'div',
      { className: 'toast', id: 'update-toast' },
      'A new version of hubbub is ready.',
      h('button', { type: 'button', className: 'link-btn', onclick: () => location.reload() }, 'Reload'),
    ),
  );
}

/** Below the phone breakpoint the sidebar slides over the conversation. */
function setupMenu() {
  const sidebar = $('sidebar');
  const button = $('menu-btn');
  const backdrop = $('backdrop');
  const isOpen = () => sidebar.classList.contains('open');
  const set = (open) => {
    sidebar.classList.toggle('open', open);
    backdrop.hidden = !open;
    button.setAttribute('aria-expanded', String(open));
    // Move focus into the panel once it is visible, so Tab continues there.
    if (open) requestAnimationFrame(() => (sidebar.querySelector('.side-item.active') || sidebar.querySelector('button'))?.focus());
  };
  button.addEventListener('click', () => set(!isOpen()));
  backdrop.addEventListener('click', () => set(false));
  document.addEventListener('keydown', (ev) => {
    if (ev.key === 'Escape' && isOpen() && !document.querySelector('dialog[open]')) {
      set(false);
      button.focus();
    }
  });
  return { close: () => set(false) };
}

function toast(text) {
  const el = h('div', { className: 'toast' }, text);
  $('toasts').append(el);
  setTimeout(() => el.remove(), TOAST_MS);
}
