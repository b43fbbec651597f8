// The open conversation's messages: day separators, grouping of consecutive
// messages from one sender, system lines, pending/failed/receipt states,
// older pages on scrolling up, a "N new messages" button while the user is
// scrolled up, and auto-scroll only while the user follows the newest messages.
//
// It draws incrementally. The view keeps `rows`, its own list of the rows the
// DOM shows, in display order, and each render applies only the rows the
// conversation recorded as changed (see conversation.js). A new message is a
// binary search in `rows`, one new node, and a look at its two neighbours: its
// day separator and its grouping depend only on the row before it, and the
// row after it depends only on it. Nothing else is read or written. A full
// redraw (a switch, a jump to the newest, a hidden tab's backlog) is bounded
// by TIMELINE_CAP. While the user reads older messages a frame adds at most
// FRAME_ROWS rows, nearest the screen first; the rest waits for the next one.
//
// The reading position survives rows coming and going above it: before a
// render the first row on screen is noted, after it the scroll offset is
// corrected by however far that row moved (the CSS sets overflow-anchor: none,
// so this is the only correction).

import { $, h, avatar, setText } from './dom.js';
import { fileUrl, isImage, formatSize, retryWithFreshLink } from '../files.js';
import { renderRichText } from './richtext.js';
import { plainText } from '../markdown.js';
import { rowKey, rowOrder } from '../conversation.js';
import { formatTime, formatFull, formatDay, dayKey } from '../format.js';

const GROUP_WINDOW_MS = 5 * 60_000;
// Within this distance of the end of the list the user counts as at the bottom.
const BOTTOM_SLACK_PX = 48;
// Within this distance of an end of the list the next page is fetched (or, at
// the bottom of a detached window, taken from memory).
const LOAD_PAGE_PX = 150;
// While the user reads older messages, a render adds at most FRAME_ROWS new
// rows and applies changes for at most FRAME_BUDGET_MS, then leaves the rest
// to the next frame, so a page of history (50 rows) never makes one long frame. The cost of a new
// row is mostly its style and layout (measured at about 0.4 ms on the
// benchmark's busy 2-core machine, see BENCHMARKS.md), paid in the frame it
// appears: 20 rows and 12 ms of script keep a frame well under 50 ms. A flood
// of 100 messages/s brings under 2 rows a frame.
const FRAME_ROWS = 20;
const FRAME_BUDGET_MS = 12;
const RECEIPT_TEXT = { sent: 'Sent', delivered: 'Delivered', read: 'Read' };
const RECEIPT_TICKS = { sent: '✓', delivered: '✓✓', read: '✓✓' };
// How long a revealed message (a search result, a reply's parent) stays highlighted.
const FLASH_MS = 2200;
// A message to reveal that is not drawn by then (it was never found) is given up.
const REVEAL_WAIT_MS = 5000;

/** "you", "alice and you", "alice, bob and carol": who reacted, for a chip's tooltip. */
function listNames(users, me) {
  const names = users.map((u) => (u.toLowerCase() === me.toLowerCase() ? 'You' : u));
  names.sort((a, b) => (a === 'You' ? -1 : b === 'You' ? 1 : 0));
  if (names.length <= 1) return names.join('');
  if (names.length > 10) return `${names.slice(0, 10).join(', ')} and ${names.length - 10} others`;
  return `${names.slice(0, -1).join(', ')} and ${names[names.length - 1]}`;
}

/** Display order of two rows, by their rowOrder tuples. */
function compareOrder(a, b) {
  return a[0] - b[0] || a[1] - b[1] || a[2] - b[2];
}

export class TimelineView {
  constructor(chat) {
    this.chat = chat;
    this.el = $('timeline');
    this.list = $('message-list');
    this.newBtn = $('new-messages-btn');
    this.newText = $('new-messages-text');
    this.shownKey = undefined;
    /** What the list shows, in order: {key, order, kind: 'msg'|'notice', node, sep, day, time, user, own, grouped, pending, item} */
    this.rows = [];
    this.byKey = new Map();
    this.latestOwn = null; // private chats: the row whose receipt is spelled out
    this.behind = false; // the last render left rows for the next frame
    this.revealId = null; // a message to scroll to and highlight once drawn
    // Mentions of known people are highlighted; the user's own stronger.
    this.textOpts = { me: chat.me, isUser: (name) => chat.user(name)?.username || (name.toLowerCase() === chat.me.toLowerCase() ? chat.me : null) };
    chat.addEventListener('reveal', (ev) => {
      if (ev.detail.key === chat.activeKey) this.reveal(ev.detail.id);
    });
    this.el.addEventListener('scroll', () => this.onScroll(), { passive: true });
    this.newBtn.addEventListener('click', () => {
      this.chat.jumpToNewest();
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
  }

  onScroll() {
    this.chat.setAtBottom(this.isAtBottom());
    // Rows still waiting to be drawn come first; the list's edges are not its ends yet.
    // A message about to be revealed decides the position itself.
    if (this.behind || this.revealId != null) return;
    if (this.el.scrollTop < LOAD_PAGE_PX) this.chat.loadOlder();
    if (this.chat.active?.detached && this.el.scrollHeight - this.el.scrollTop - this.el.clientHeight < LOAD_PAGE_PX) this.chat.loadNewer();
  }

  /** @param {{all: boolean, convs: Set<string>}} changes what changed since the last render */
  render(changes) {
    const c = this.chat.active;
    const key = c?.key ?? null;
    const switched = this.shownKey !== key;
    if (!switched && !changes.all && !(c && changes.convs.has(c.key))) return;
    const stick = switched || this.chat.atBottom;
    const anchor = stick ? null : this.readAnchor();

    const record = c ? c.takeChanges() : { rebuild: true, keys: new Set() };
    this.behind = false;
    if (switched || record.rebuild) {
      this.shownKey = key;
      this.rebuild(c);
    } else {
      // Removals are cheap and never wait. Following the newest messages,
      // everything is drawn now: it is what is on screen. Reading older ones,
      // rows nearest the screen go first (newest first: a page above grows
      // upwards from the row being read, which stays put), within the budget.
      const todo = [];
      for (const k of record.keys) {
        const want = c.row(k);
        if (want) todo.push({ k, want, order: rowOrder(want) });
        else if (this.byKey.has(k)) this.remove(this.byKey.get(k));
      }
      if (!stick) todo.sort((a, b) => compareOrder(b.order, a.order));
      const deadline = stick ? Infinity : performance.now() + FRAME_BUDGET_MS;
      const limit = stick ? Infinity : FRAME_ROWS;
      const left = [];
      let added = 0;
      for (const t of todo) {
        if (left.length || added >= limit || performance.now() > deadline) left.push(t.k);
        else if (this.apply(c, t.k, t.want)) added += 1;
      }
      if (left.length) {
        this.behind = true;
        c.requeue(left);
      }
    }
    // Screen readers (and tests) can tell the list is still being filled in.
    if (this.behind) this.list.setAttribute('aria-busy', 'true');
    else this.list.removeAttribute('aria-busy');
    if (c?.kind === 'dm') this.updateLatestOwn(c);
    this.renderEdges(c);
    this.renderNewButton(c);

    if (stick) this.scrollToBottom();
    else this.restoreAnchor(anchor);
    this.tryReveal();
    this.dispatchRendered();
  }

  /** Other parts of the screen (the hover toolbar, an open editor) follow the rows. */
  dispatchRendered() {
    this.list.dispatchEvent(new CustomEvent('rendered'));
  }

  /** The row object of the stored message `id`, if drawn. */
  rowOf(id) {
    return this.rows.find((r) => r.kind === 'msg' && !r.pending && r.item.id === id) || null;
  }

  // ---- rows ------------------------------------------------------------------

  /** Bring one row in line with the conversation: add, move, update or remove it. Returns whether a row was added. */
  apply(c, key, want = c.row(key)) {
    const have = this.byKey.get(key);
    if (!want) {
      if (have) this.remove(have);
      return false;
    }
    if (!have) {
      this.insert(this.makeRow(key, want, c));
      return true;
    }
    const order = rowOrder(want);
    if (compareOrder(order, have.order) !== 0) {
      // An ack gives a pending message its place among the stored ones.
      this.remove(have);
      have.order = order;
      this.describe(have, want);
      this.fill(have, c);
      this.insert(have);
      return false;
    }
    const { time, user } = have;
    this.describe(have, want);
    this.fill(have, c);
    if (have.time !== time || have.user !== user) {
      const i = this.indexOf(have);
      this.fix(i);
      this.fix(i + 1);
    }
    return false;
  }

  /** Redraw every row of `c` (at most TIMELINE_CAP messages, the notices and pending ones). */
  rebuild(c) {
    this.rows = [];
    this.byKey.clear();
    this.latestOwn = null;
    const frag = document.createDocumentFragment();
    if (c) {
      for (const r of c.rows()) {
        const row = this.makeRow(keyOf(r), r, c);
        this.rows.push(row);
        this.byKey.set(row.key, row);
        this.fix(this.rows.length - 1, frag);
        frag.append(row.node);
      }
    }
    this.list.replaceChildren(frag);
  }

  makeRow(key, r, c) {
    const row = { key, order: rowOrder(r), node: null, sep: null, grouped: false };
    this.describe(row, r);
    row.node = row.kind === 'notice' ? this.noticeNode(row.item) : this.messageNode(row);
    row.node.dataset.key = key;
    this.fill(row, c);
    return row;
  }

  /** The facts of a row that its neighbours and its node depend on. */
  describe(row, r) {
    const m = r.msg || r.pending;
    row.kind = m ? 'msg' : 'notice';
    row.item = m || r.notice;
    row.pending = !!r.pending;
    row.time = row.item.time;
    row.day = dayKey(row.time);
    row.user = r.msg ? m.user : r.pending ? this.chat.me : null;
    row.own = !!row.user && row.user.toLowerCase() === this.chat.me.toLowerCase();
  }

  insert(row) {
    const i = this.lowerBound(row.order);
    this.rows.splice(i, 0, row);
    this.byKey.set(row.key, row);
    const next = this.rows[i + 1];
    this.list.insertBefore(row.node, next ? next.sep || next.node : null);
    this.fix(i);
    this.fix(i + 1);
  }

  remove(row) {
    const i = this.indexOf(row);
    this.rows.splice(i, 1);
    this.byKey.delete(row.key);
    row.node.remove();
    row.sep?.remove();
    row.sep = null;
    if (this.latestOwn === row) this.latestOwn = null;
    this.fix(i);
  }

  lowerBound(order) {
    let lo = 0;
    let hi = this.rows.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (compareOrder(this.rows[mid].order, order) < 0) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }

  indexOf(row) {
    const i = this.lowerBound(row.order);
    return this.rows[i] === row ? i : this.rows.indexOf(row);
  }

  /**
   * The day separator before row i and its grouping with the row above,
   * which is all that depends on a neighbour. `frag`: building a full list.
   */
  fix(i, frag = null) {
    const row = this.rows[i];
    if (!row) return;
    const prev = this.rows[i - 1];
    const needSep = !prev || prev.day !== row.day;
    if (needSep && !row.sep) {
      // A list item like every child of the list (a separator role would make it none).
      row.sep = h('li', { className: 'day-sep' }, h('span', {}, formatDay(row.time)));
      if (frag) frag.append(row.sep);
      else this.list.insertBefore(row.sep, row.node);
    } else if (!needSep && row.sep) {
      row.sep.remove();
      row.sep = null;
    }
    if (row.sep && row.sep.dataset.day !== row.day) {
      row.sep.dataset.day = row.day;
      setText(row.sep.firstChild, formatDay(row.time));
    }
    if (row.kind !== 'msg') return;
    const grouped = !needSep && prev.kind === 'msg' && prev.user === row.user && row.time - prev.time < GROUP_WINDOW_MS;
    if (grouped !== row.grouped) {
      row.grouped = grouped;
      row.node.classList.toggle('grouped', grouped);
    }
  }

  // ---- nodes -------------------------------------------------------------------

  noticeNode(n) {
    return h('li', { className: 'notice-line' }, h('span', {}, n.text), h('time', { dateTime: n.time.toISOString() }, formatTime(n.time)));
  }

  messageNode(row) {
    // The parts that change later are kept by reference: the hover toolbar and
    // the editor come and go inside the node, so positions are no guide. A
    // reply's quote, the "(edited)" mark and the reaction chips are made only
    // for the messages that have them (most have none, and a busy window holds
    // hundreds of rows).
    const els = {
      sideTime: h('time', { className: 'msg-side-time', 'aria-hidden': 'true' }),
      time: h('time', { className: 'msg-time' }),
      quote: null,
      text: h('div', { className: 'msg-text' }),
      edited: null,
      reactions: null,
      foot: h('div', { className: 'msg-foot' }),
    };
    const body = h(
      'div',
      { className: 'msg-body' },
      h('div', { className: 'msg-head' }, h('span', { className: 'msg-author', title: row.user ? `@${row.user}` : undefined }, this.chat.shownName(row.user || '')), els.time),
      els.text,
      els.foot,
    );
    const node = h('li', { className: 'msg' }, h('div', { className: 'msg-gutter' }, avatar(row.user), els.sideTime), body);
    row.els = els;
    els.body = body;
    return node;
  }

  /** The parts of a message node that change over its life: state, time (set by the ack), id, content, quote, reactions, foot. */
  fill(row, c) {
    if (row.kind !== 'msg') return;
    const m = row.item;
    const node = row.node;
    const els = row.els;
    node.classList.toggle('own', row.own);
    node.classList.toggle('pending', row.pending && m.state === 'pending');
    node.classList.toggle('failed', row.pending && m.state === 'failed');
    if (row.shownTime !== m.time) {
      row.shownTime = m.time;
      const iso = m.time.toISOString();
      const text = formatTime(m.time);
      const full = formatFull(m.time);
      for (const t of [els.sideTime, els.time]) {
        t.dateTime = iso;
        t.textContent = text;
        t.title = full;
      }
    }
    if (!row.pending && node.dataset.id !== String(m.id)) node.dataset.id = String(m.id);
    if (row.shownContent !== m.content) {
      row.shownContent = m.content;
      renderRichText(els.text, m.content, this.textOpts);
      node.classList.toggle('mentions-me', !row.own && !!els.text.querySelector('.mention-me'));
    }
    const edited = m.editedAt || null;
    if ((row.shownEdited ?? null) !== edited) {
      row.shownEdited = edited;
      if (edited && !els.edited) els.text.after((els.edited = h('span', { className: 'msg-edited' }, '(edited)')));
      if (els.edited) els.edited.hidden = !edited;
      node.classList.toggle('edited', !!edited);
      if (edited) els.edited.title = `Edited ${formatFull(new Date(edited))}`;
    }
    this.updateQuote(row, c);
    this.updateFiles(row);
    this.updateReactions(row);
    this.updateFoot(row, c);
  }

  /**
   * A message's files, under its text: images as previews whose box has its
   * final size before a pixel loads (the timeline does not jump), opening
   * the viewer; anything else as a card that downloads it. A message that
   * is pending shows them from its upload, with the same ids.
   */
  updateFiles(row) {
    const files = row.item.attachments || [];
    const state = files.map((f) => f.id).join(',');
    if ((row.shownFiles ?? '') === state) return;
    row.shownFiles = state;
    if (!files.length) {
      row.els.files?.remove();
      row.els.files = null;
      return;
    }
    const box = h('div', { className: 'msg-files' });
    for (const f of files) box.append(isImage(f) ? imagePreview(f) : fileCard(f));
    if (row.els.files) row.els.files.replaceWith(box);
    else (row.els.edited || row.els.text).after(box);
    row.els.files = box;
  }

  /** A reply quotes its parent: author and first line, or why it cannot. */
  updateQuote(row, c) {
    const parentId = row.item.replyTo || null;
    const parent = parentId ? c.get(parentId) : null;
    const state = !parentId ? '' : parent ? `p|${parent.user}|${parent.content}` : c.deleted.has(parentId) ? 'gone' : 'missing';
    if ((row.shownQuote ?? '') === state) return;
    row.shownQuote = state;
    row.node.classList.toggle('reply', !!parentId);
    if (!parentId) {
      if (row.els.quote) row.els.quote.hidden = true;
      return;
    }
    if (!row.els.quote) row.els.text.before((row.els.quote = h('button', { type: 'button', className: 'msg-quote' })));
    const q = row.els.quote;
    q.hidden = false;
    q.dataset.parent = String(parentId);
    q.classList.toggle('missing', !parent);
    q.disabled = state === 'gone';
    if (parent) {
      const line = plainText(parent.content).split('\n').find((l) => l.trim()) || '';
      q.title = 'Show the original message';
      q.replaceChildren(avatar(parent.user, 'avatar-xs'), h('span', { className: 'quote-author' }, this.chat.shownName(parent.user)), h('span', { className: 'quote-text' }, line));
    } else if (state === 'gone') {
      q.title = '';
      q.replaceChildren(h('span', { className: 'quote-text' }, 'The original message was deleted'));
    } else {
      q.title = 'Load older messages until the original is found';
      q.replaceChildren(h('span', { className: 'quote-text' }, 'Original message not loaded — click to show it'));
    }
  }

  /** Chips under the message: emoji, count, who (in the title), the user's own highlighted. */
  updateReactions(row) {
    const list = row.pending ? [] : row.item.reactions || [];
    const me = this.chat.me.toLowerCase();
    const state = list.map((r) => `${r.emoji}:${r.users.join(',')}`).join('|');
    if ((row.shownReactions ?? '') === state) return;
    row.shownReactions = state;
    if (!row.els.reactions) row.els.foot.before((row.els.reactions = h('div', { className: 'msg-reactions' })));
    const box = row.els.reactions;
    box.hidden = !list.length;
    box.replaceChildren(
      ...list.map((r) => {
        const mine = r.users.some((u) => u.toLowerCase() === me);
        return h(
          'button',
          {
            type: 'button',
            className: mine ? 'chip mine' : 'chip',
            title: `${listNames(r.users, this.chat.me)} reacted with ${r.emoji}`,
            'aria-pressed': String(mine),
            'aria-label': `${r.emoji} ${r.users.length}, ${mine ? 'remove your reaction' : 'react'}`,
            dataset: { emoji: r.emoji },
          },
          h('span', { className: 'chip-emoji' }, r.emoji),
          h('span', { className: 'chip-count' }, String(r.users.length)),
        );
      }),
      ...(list.length ? [h('button', { type: 'button', className: 'chip chip-add', title: 'Add a reaction', 'aria-label': 'Add a reaction' }, '+')] : []),
    );
  }

  /** Scroll to message `id` and highlight it briefly, once its row is drawn. */
  reveal(id) {
    this.revealId = id;
    this.revealUntil = performance.now() + REVEAL_WAIT_MS;
    this.revealKey = this.chat.activeKey;
    this.tryReveal();
  }

  tryReveal() {
    if (this.revealId == null) return;
    if (performance.now() > this.revealUntil || this.revealKey !== this.chat.activeKey) this.revealId = null;
    if (this.revealId == null || this.behind || this.shownKey !== this.revealKey) return;
    const row = this.rows.find((r) => r.kind === 'msg' && !r.pending && r.item.id === this.revealId);
    if (!row) return;
    this.revealId = null;
    const node = row.node;
    this.el.scrollTop += node.getBoundingClientRect().top - this.el.getBoundingClientRect().top - this.el.clientHeight / 3;
    node.classList.remove('flash');
    // Restarting the animation needs a style flush between the two class changes.
    void node.offsetWidth;
    node.classList.add('flash');
    clearTimeout(this.flashTimer);
    this.flashTimer = setTimeout(() => node.classList.remove('flash'), FLASH_MS);
    this.chat.setAtBottom(this.isAtBottom());
  }

  /** Private chats: the newest own stored message spells its receipt out; ticks on the others. */
  updateLatestOwn(c) {
    let latest = null;
    for (let i = this.rows.length - 1; i >= 0; i--) {
      const r = this.rows[i];
      if (r.kind === 'msg' && r.own && !r.pending) {
        latest = r;
        break;
      }
    }
    if (latest === this.latestOwn) return;
    const old = this.latestOwn;
    this.latestOwn = latest;
    if (old && this.byKey.get(old.key) === old) this.updateFoot(old, c);
    if (latest) this.updateFoot(latest, c);
  }

  /** Pending / failed state for own messages; sent → delivered → read for own private messages. */
  updateFoot(row, c) {
    const m = row.item;
    const foot = row.els.foot;
    let state = '';
    if (row.pending) state = m.state === 'failed' ? 'failed' : 'pending';
    else if (row.own && c.kind === 'dm') state = c.receipt(m);
    const latest = row === this.latestOwn;
    // Rebuild only when something shown changed (keeps the Dismiss button focusable).
    const shown = `${state}|${latest}|${state === 'pending' ? this.chat.status : ''}`;
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
        h('span', { className: latest ? 'receipt' : 'sr-only' }, RECEIPT_TEXT[state]),
      );
    }
  }

  // ---- scroll position -----------------------------------------------------------

  /** The first row on screen and where it is (rows are in order, so a binary search). */
  readAnchor() {
    if (!this.rows.length) return null;
    const top = this.el.getBoundingClientRect().top;
    let lo = 0;
    let hi = this.rows.length - 1;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (this.rows[mid].node.getBoundingClientRect().bottom <= top) lo = mid + 1;
      else hi = mid;
    }
    const row = this.rows[lo];
    // By key: a full redraw makes new nodes for the same rows.
    return { key: row.key, top: row.node.getBoundingClientRect().top };
  }

  restoreAnchor(anchor) {
    const row = anchor && this.byKey.get(anchor.key);
    if (!row) return;
    const moved = row.node.getBoundingClientRect().top - anchor.top;
    if (moved) this.el.scrollTop += moved;
  }

  // ---- around the list -----------------------------------------------------------

  /** Scrolled up while messages arrived below (or the window stops short of them): offer the jump. */
  renderNewButton(c) {
    const show = !!c && !c.following && (c.newBelow > 0 || c.detached);
    this.newBtn.hidden = !show;
    if (!show) return;
    const n = c.newBelow;
    setText(this.newText, n === 0 ? 'Jump to newest' : n === 1 ? '1 new message' : `${n.toLocaleString()} new messages`);
  }

  /** Top-of-list status, empty state and typing line. */
  renderEdges(c) {
    const status = $('history-status');
    const empty = $('empty-state');
    if (!c) {
      setText(status, '');
      empty.hidden = false;
      setText($('empty-title'), 'Welcome to hubbub');
      setText($('empty-text'), 'Pick a room or a person on the left, or join a new room with +.');
    } else if (!this.behind) {
      // (While rows are still being added the status line keeps what it said.)
      const label = c.kind === 'room' ? `#${c.name}` : `your conversation with ${c.name}`;
      let text = '';
      if (c.historyRequest === 'older') text = 'Loading older messages…';
      else if (!c.loaded && this.chat.status === 'online') text = 'Loading messages…';
      else if (!c.loaded && this.chat.status === 'offline') text = 'The messages here load once the connection is back.';
      else if (!c.hasMore && c.messages.length) text = `This is the beginning of ${label}.`;
      setText(status, text);
      empty.hidden = !(c.loaded && this.rows.length === 0);
      setText($('empty-title'), c.kind === 'room' ? `Welcome to #${c.name}` : `Say hello to ${c.name}`);
      setText(
        $('empty-text'),
        c.kind === 'dm'
          ? `This is the beginning of your conversation with ${c.name}.`
          : this.chat.isArchived(c)
            ? `#${c.name} is archived and has no messages.`
            : `This is the very beginning of #${c.name}. Send the first message!`,
      );
    }
    const typers = c ? [...c.typing.keys()] : [];
    setText(
      $('typing-line'),
      typers.length === 0
        ? ''
        : typers.length === 1
          ? `${typers[0]} is typing…`
          : typers.length === 2
            ? `${typers[0]} and ${typers[1]} are typing…`
            : 'Several people are typing…',
    );
  }
}

function keyOf(r) {
  return r.msg ? rowKey(r.msg) : (r.pending || r.notice).key;
}

/** The largest a preview is shown in the timeline, in CSS pixels. */
const PREVIEW_MAX_W = 360;
const PREVIEW_MAX_H = 280;

function imagePreview(f) {
  const scale = Math.min(1, PREVIEW_MAX_W / f.width, PREVIEW_MAX_H / f.height);
  const width = Math.max(1, Math.round(f.width * scale));
  const height = Math.max(1, Math.round(f.height * scale));
  const img = h('img', { className: 'msg-image-img', src: fileUrl(f.id, 'small'), alt: f.name, width, height, loading: 'lazy', decoding: 'async' });
  retryWithFreshLink(img, f.id, 'small');
  return h('button', { type: 'button', className: 'msg-image', dataset: { file: String(f.id) }, 'aria-label': `Open image ${f.name}`, onclick: () => openViewer(f) }, img);
}

function fileCard(f) {
  const ext = (f.name.match(/\.([A-Za-z0-9]{1,5})$/)?.[1] || 'file').toUpperCase();
  return h(
    'a',
    { className: 'file-card', href: fileUrl(f.id), download: f.name, dataset: { file: String(f.id) }, title: `Download ${f.name}` },
    h('span', { className: 'file-icon', 'aria-hidden': 'true' }, ext),
    h('span', { className: 'file-meta' }, h('span', { className: 'file-name' }, f.name), h('span', { className: 'file-size' }, `${formatSize(f.size)} · ${f.type}`)),
  );
}

/** The viewer: the large preview, the name, a download of the original. */
function openViewer(f) {
  const dialog = $('image-viewer');
  const img = $('viewer-img');
  img.src = fileUrl(f.id, 'large');
  img.alt = f.name;
  img.width = f.width;
  img.height = f.height;
  setText($('viewer-name'), f.name);
  const dl = $('viewer-download');
  dl.href = fileUrl(f.id);
  dl.download = f.name;
  dialog.showModal();
}
