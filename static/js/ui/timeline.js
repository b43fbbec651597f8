// The open conversation's messages: day separators, grouping of consecutive
// messages from one sender, system lines, pending/failed/receipt states,
// "load older" on scroll up, and auto-scroll only when already at the bottom.

import { $, h, syncList, avatar, setAvatar } from './dom.js';
import { renderRichText } from './richtext.js';
import { formatTime, formatFull, formatDay, dayKey } from '../format.js';

const GROUP_WINDOW_MS = 5 * 60_000;
const BOTTOM_SLACK_PX = 48;
const LOAD_OLDER_PX = 150;
const RECEIPT_TEXT = { sent: 'Sent', delivered: 'Delivered', read: 'Read' };
const RECEIPT_TICKS = { sent: '✓', delivered: '✓✓', read: '✓✓' };

export class TimelineView {
  constructor(chat) {
    this.chat = chat;
    this.el = $('timeline');
    this.list = $('message-list');
    this.newBtn = $('new-messages-btn');
    this.shownKey = undefined;
    this.el.addEventListener('scroll', () => this.onScroll(), { passive: true });
    this.newBtn.addEventListener('click', () => {
      this.scrollToBottom();
      $('composer-input').focus();
    });
    // Keep the view pinned to the bottom when the composer grows or the window resizes.
    new ResizeObserver(() => {
      if (this.chat.atBottom) this.scrollToBottom();
    }).observe(this.el);
  }

  isAtBottom() {
    return this.el.scrollHeight - this.el.scrollTop - this.el.clientHeight < BOTTOM_SLACK_PX;
  }

  scrollToBottom() {
    this.el.scrollTop = this.el.scrollHeight;
    this.newBtn.hidden = true;
    this.chat.setAtBottom(true);
  }

  onScroll() {
    const atBottom = this.isAtBottom();
    if (atBottom) this.newBtn.hidden = true;
    this.chat.setAtBottom(atBottom);
    if (this.el.scrollTop < LOAD_OLDER_PX) this.chat.loadOlder();
  }

  render() {
    const c = this.chat.active;
    const switched = this.shownKey !== (c?.key ?? null);
    if (switched) {
      this.list.replaceChildren();
      this.shownKey = c?.key ?? null;
      this.newBtn.hidden = true;
    }
    const stick = switched || this.chat.atBottom;
    const prevHeight = this.el.scrollHeight;
    const prevTop = this.el.scrollTop;
    // The first message, not the first row: a day separator stays first when older messages of the same day arrive.
    const prevFirst = this.list.querySelector('.msg')?.dataset.key;
    const prevLast = this.list.lastElementChild?.dataset.key;

    const items = c ? this.items(c) : [];
    syncList(this.list, items, (it) => it.key, (it) => this.create(it), (node, it) => this.update(node, it, c));
    this.renderEdges(c, items.length);

    const first = this.list.querySelector('.msg')?.dataset.key;
    const last = this.list.lastElementChild?.dataset.key;
    if (stick) {
      this.scrollToBottom();
    } else if (prevFirst && first !== prevFirst) {
      // Older messages were prepended: keep what the user was reading in place.
      this.el.scrollTop = prevTop + (this.el.scrollHeight - prevHeight);
    } else if (last !== prevLast && items.at(-1)?.msg && !items.at(-1).own) {
      this.newBtn.hidden = false;
    }
  }

  /** The display rows: day separators, system lines and messages with their grouping. */
  items(c) {
    const me = this.chat.me.toLowerCase();
    const items = [];
    let lastDay = null;
    let prev = null;
    let lastOwnStored = null;
    for (const entry of c.timeline()) {
      const m = entry.msg || entry.pending;
      const time = m ? m.time : entry.notice.time;
      const day = dayKey(time);
      if (day !== lastDay) {
        items.push({ key: `d:${day}`, day: time });
        lastDay = day;
        prev = null;
      }
      if (entry.notice) {
        items.push({ key: `n:${entry.notice.seq}`, notice: entry.notice });
        prev = null;
        continue;
      }
      const user = entry.msg ? m.user : this.chat.me;
      const own = user.toLowerCase() === me;
      const grouped = !!prev && prev.user === user && time - prev.time < GROUP_WINDOW_MS;
      // Keyed by client id when this tab sent it, so the node survives the ack.
      const item = { key: m.clientId ? `c:${m.clientId}` : `m:${m.id}`, msg: m, pending: !!entry.pending, user, own, grouped };
      items.push(item);
      if (own && !item.pending) lastOwnStored = item;
      prev = { user, time };
    }
    if (lastOwnStored) lastOwnStored.latestOwn = true;
    return items;
  }

  create(it) {
    if (it.day) return h('li', { className: 'day-sep', role: 'separator' }, h('span', {}, formatDay(it.day)));
    if (it.notice) {
      return h(
        'li',
        { className: 'notice-line' },
        h('span', {}, it.notice.text),
        h('time', { dateTime: it.notice.time.toISOString() }, formatTime(it.notice.time)),
      );
    }
    const m = it.msg;
    const text = h('div', { className: 'msg-text' });
    renderRichText(text, m.content);
    return h(
      'li',
      { className: 'msg' },
      h('div', { className: 'msg-gutter' }, avatar(it.user), h('time', { className: 'msg-side-time', 'aria-hidden': 'true' })),
      h(
        'div',
        { className: 'msg-body' },
        h('div', { className: 'msg-head' }, h('span', { className: 'msg-author' }, it.user), h('time', { className: 'msg-time' })),
        text,
        h('div', { className: 'msg-foot' }),
      ),
    );
  }

  update(node, it, c) {
    if (!it.msg) return;
    const m = it.msg;
    node.classList.toggle('grouped', it.grouped);
    node.classList.toggle('own', it.own);
    node.classList.toggle('pending', it.pending && m.state === 'pending');
    node.classList.toggle('failed', it.pending && m.state === 'failed');
    setAvatar(node.querySelector('.avatar'), it.user);
    for (const t of node.querySelectorAll('time')) {
      t.dateTime = m.time.toISOString();
      t.textContent = formatTime(m.time);
      t.title = formatFull(m.time);
    }
    if (!it.pending) node.dataset.id = String(m.id);
    this.updateFoot(node.querySelector('.msg-foot'), it, c);
  }

  /** Pending / failed state for own messages; sent → delivered → read for own private messages. */
  updateFoot(foot, it, c) {
    const m = it.msg;
    let state = '';
    if (it.pending) state = m.state === 'failed' ? 'failed' : 'pending';
    else if (it.own && c.kind === 'dm') state = c.receipt(m);
    // Rebuild only when something shown changed (keeps the Dismiss button focusable).
    const shown = `${state}|${!!it.latestOwn}|${this.chat.status}`;
    if (foot.dataset.shown === shown) return;
    foot.dataset.shown = shown;
    foot.dataset.status = state;
    foot.replaceChildren();
    if (state === 'pending') {
      foot.append(this.chat.status === 'online' ? 'Sending…' : 'Waiting for connection…');
    } else if (state === 'failed') {
      foot.append(
        h('span', { className: 'msg-error' }, `Not sent: ${m.error}`),
        h('button', { type: 'button', className: 'link-btn', onclick: () => this.chat.discard(c, m.clientId) }, 'Dismiss'),
      );
    } else if (state) {
      // Ticks on every message; the word only under the newest, as messengers do.
      foot.append(
        h('span', { className: 'ticks', 'aria-hidden': 'true' }, RECEIPT_TICKS[state]),
        h('span', { className: it.latestOwn ? 'receipt' : 'sr-only' }, RECEIPT_TEXT[state]),
      );
    }
  }

  /** Top-of-list status, empty state and typing line. */
  renderEdges(c, itemCount) {
    const status = $('history-status');
    const empty = $('empty-state');
    if (!c) {
      status.textContent = '';
      empty.hidden = false;
      $('empty-title').textContent = 'Welcome to hubbub';
      $('empty-text').textContent = 'Pick a room or a person on the left, or join a new room with +.';
    } else {
      const label = c.kind === 'room' ? `#${c.name}` : `your conversation with ${c.name}`;
      if (c.historyRequest === 'older') status.textContent = 'Loading older messages…';
      else if (!c.loaded) status.textContent = this.chat.status === 'online' ? 'Loading messages…' : '';
      else if (!c.hasMore && c.messages.length) status.textContent = `This is the beginning of ${label}.`;
      else status.textContent = '';
      empty.hidden = !(c.loaded && itemCount === 0);
      $('empty-title').textContent = c.kind === 'room' ? `Welcome to #${c.name}` : `Say hello to ${c.name}`;
      $('empty-text').textContent =
        c.kind === 'room' ? `This is the very beginning of #${c.name}. Send the first message!` : `This is the beginning of your conversation with ${c.name}.`;
    }
    const typers = c ? [...c.typing.keys()] : [];
    $('typing-line').textContent =
      typers.length === 0
        ? ''
        : typers.length === 1
          ? `${typers[0]} is typing…`
          : typers.length === 2
            ? `${typers[0]} and ${typers[1]} are typing…`
            : 'Several people are typing…';
  }
}
