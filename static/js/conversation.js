// One conversation (a room or a private chat with one person): a bounded
// window of its stored messages, the user's not-yet-acknowledged messages,
// system lines, the per-conversation bits the sidebar and receipts need, and a
// record of which display rows changed since the timeline last drew them.
//
// The window. A busy room sends more messages than anyone can keep: the client
// holds at most TIMELINE_CAP stored messages per conversation, one contiguous
// run in id order. While the user follows the conversation (looks at its
// newest messages, or has it closed), new messages are appended and the oldest
// are dropped; scrolling up loads older pages from the server and drops the
// newest end instead. Once the window no longer reaches the newest message it
// is "detached": live messages then wait in `newer` (bounded the same way) and
// are only counted, until the user scrolls back down or jumps to the newest.
//
// Rows. The view draws rows (messages, pending messages, system lines) and
// redraws only the rows named in `dirty`; `rebuild` asks for all of them.
// Every mutation goes through a method here so no change can miss the record.

// Messages per history request: the newest page on open, then older pages on scroll.
export const PAGE_SIZE = 50;
// Catch-up after a reconnect for private chats, which have no `since` replay.
export const DM_CATCHUP = 200;

// The most stored messages one conversation keeps in the window, and so in the
// DOM (`newer` may hold as many again while the user reads older messages).
// Five history pages: several screens of scrollback even on a tall display
// (about 60 one-line rows fit a 1440 px window), with room for a page being
// prepended without dropping rows that are on screen, yet few enough that a
// full window (about 15 DOM nodes a message) stays cheap to lay out and to
// rebuild on a switch. BENCHMARKS.md ("Web client in a busy room") has what
// it costs.
export const TIMELINE_CAP = 250;

export const roomKey = (name) => `#${name}`;
export const dmKey = (username) => `@${username.toLowerCase()}`;

// Older system lines are dropped so a busy room's join/leave churn stays bounded.
const MAX_NOTICES = 100;
// Following a busy room, the oldest messages go this many at a time (so the
// window runs between TIMELINE_CAP - TRIM_BATCH and TIMELINE_CAP): every row
// removed from the top moves all the others, which costs a repaint of the
// whole list, so that happens once per TRIM_BATCH new messages, not for each.
export const TRIM_BATCH = PAGE_SIZE;
// Past this many changed rows between two frames (a hidden tab, a long replay),
// redrawing the whole window is cheaper than replaying the record row by row,
// and the record itself stays bounded. Above a page of history being drawn
// over a few frames while the next one lands (each a row added and a row
// dropped at the far end: 200 rows).
const DIRTY_LIMIT = 4 * TIMELINE_CAP;

let noticeSeq = 0;
let pendingSeq = 0;

/** The display row key of a message: by client id when this tab sent it, so its row survives the ack. */
export const rowKey = (m) => (m.clientId ? `c:${m.clientId}` : `m:${m.id}`);

export class Conversation {
  /**
   * @param {'room'|'dm'} kind @param {string} name room name or the other person's username
   * @param {(c: Conversation) => void} onChange called after every change, to schedule a render
   */
  constructor(kind, name, onChange = () => {}) {
    this.kind = kind;
    this.name = name;
    this.key = kind === 'room' ? roomKey(name) : dmKey(name);
    this.onChange = onChange;
    /** The window: stored messages, ascending id, at most TIMELINE_CAP: {id, user, content, time: Date, clientId?} */
    this.messages = [];
    /** While detached: messages newer than the window, ascending id, at most TIMELINE_CAP. */
    this.newer = [];
    this.detached = false; // the window does not reach the newest message
    this.newerGap = false; // messages were dropped between the window and `newer`
    /** Every message in `messages` or `newer`, by id (deduplicates replays, history and acks). */
    this.byId = new Map();
    /** Window messages, pending messages and notices by row key. */
    this.byKey = new Map();
    this.newestId = 0; // the newest stored id seen here, kept or not: `since` for a rejoin, the read marker
    this.following = true; // the user sees the newest messages (or the conversation is not open)
    this.newBelow = 0; // messages from others that arrived while the user was scrolled up
    this.headDrops = 0; // how often the top of the window was dropped (tells a history reply it was cut)
    /** Sent by this tab, not acknowledged yet: {clientId, key, seq, content, time, state: 'pending'|'failed', error?} */
    this.pending = [];
    /** System lines ("alice joined"), placed after the message that was newest when they happened. */
    this.notices = [];
    this.loaded = false; // the newest page has been fetched
    this.hasMore = true; // older messages may exist on the server
    /** History requests in flight, oldest first, as {kind: 'initial'|'older'|'catchup'|'refresh'|'focus', upTo: newest id held when asked}: replies come in order. */
    this.historyQueue = [];
    this.stale = false; // reconnected since the window was read: edits and deletes meanwhile are not in a replay
    this.seek = null; // {id, pages}: loading older pages until message `id` is in the window (a reply's parent)
    this.mentions = 0; // unread mentions of the user (rooms)
    /** Ids deleted while this tab watched: a reply to one says its parent is gone, not "not loaded". */
    this.deleted = new Set();
    this.changes = 0; // counts live edits and reactions: a page read before one must not undo it
    this.unread = 0;
    this.readSeen = 0; // highest id the user has had on screen
    this.readTimer = null; // pending batched read marker
    this.readSent = 0; // highest id this user has marked read on the server
    this.peerRead = 0; // private chats: highest id the other person has read
    this.delivered = new Set(); // private chats: own message ids (above peerRead) that reached the other person
    this.typing = new Map(); // username -> hide timer
    this.online = new Set(); // rooms: users present (online_users, join, leave)
    this.onlineCount = 0; // rooms: from GET /api/rooms until this tab has joined
    this.joined = false; // this tab's connection is subscribed (rooms)
    this.joining = false; // a `join` is on its way
    this.replaying = false; // a `join` with `since` is replaying missed messages
    this.private = false;
    this.owner = null;
    this.members = [];
    /** Row keys changed since the view last drew them, or everything (`rebuild`). */
    this.dirty = new Set();
    this.rebuild = true;
  }

  /** The newest stored id this tab has seen. */
  get lastId() {
    return this.newestId;
  }

  /** The kind of the oldest history request in flight, or null. */
  get historyRequest() {
    return this.historyQueue[0]?.kind ?? null;
  }

  /** The oldest message in the window: where the next older page starts. */
  get firstId() {
    return this.messages.length ? this.messages[0].id : 0;
  }

  get windowLastId() {
    return this.messages.length ? this.messages[this.messages.length - 1].id : 0;
  }

  // ---- the change record -----------------------------------------------

  touch(key) {
    if (!this.rebuild) {
      this.dirty.add(key);
      if (this.dirty.size > DIRTY_LIMIT) this.redrawAll();
    }
    this.onChange(this);
  }

  redrawAll() {
    this.rebuild = true;
    this.dirty.clear();
    this.onChange(this);
  }

  /** Rows the view took but had no time for this frame: they are due again. */
  requeue(keys) {
    for (const k of keys) this.touch(k);
  }

  /** What the view must redraw; the record starts afresh. */
  takeChanges() {
    const changes = { rebuild: this.rebuild, keys: this.dirty };
    this.rebuild = false;
    this.dirty = new Set();
    return changes;
  }

  // ---- stored messages -------------------------------------------------

  /** Adds a stored message unless its id is already here; returns true when it was new. */
  add(msg) {
    // A page read before a delete may still carry the message: it stays gone.
    if (this.byId.has(msg.id) || this.deleted.has(msg.id)) return false;
    this.byId.set(msg.id, msg);
    this.newestId = Math.max(this.newestId, msg.id);
    if (this.detached && msg.id > this.windowLastId) {
      insertSorted(this.newer, msg);
      if (this.newer.length > TIMELINE_CAP) {
        this.byId.delete(this.newer.shift().id);
        this.newerGap = true;
      }
      this.onChange(this);
      return true;
    }
    // History pages and replays can land before live messages: keep id order.
    insertSorted(this.messages, msg);
    this.byKey.set(rowKey(msg), msg);
    this.touch(rowKey(msg));
    this.touchReplies(msg.id);
    this.enforceCap();
    return true;
  }

  // ---- edits, deletes, reactions ------------------------------------------

  /** The stored message with this id, in the window or waiting below it. */
  get(id) {
    return this.byId.get(id) || null;
  }

  /** A message was edited: new content and when. Returns whether it is held here. */
  edit(id, content, editedAt) {
    const m = this.byId.get(id);
    if (!m) return false;
    m.content = content;
    m.editedAt = editedAt;
    m.changed = ++this.changes;
    this.touchMessage(m);
    this.touchReplies(id);
    return true;
  }

  /** A message was deleted: it leaves the window (or `newer`), and replies to it say so. */
  remove(id) {
    this.deleted.add(id);
    const m = this.byId.get(id);
    if (!m) return false;
    this.byId.delete(id);
    this.delivered.delete(id);
    const i = this.messages.indexOf(m);
    if (i >= 0) {
      this.messages.splice(i, 1);
      this.byKey.delete(rowKey(m));
      this.touch(rowKey(m));
    } else {
      this.newer = this.newer.filter((x) => x !== m);
      this.onChange(this);
    }
    this.touchReplies(id);
    return true;
  }

  /** Someone's reaction went on or off. */
  react(id, emoji, user, on) {
    const m = this.byId.get(id);
    if (!m) return false;
    const list = (m.reactions = m.reactions ? m.reactions.map((r) => ({ emoji: r.emoji, users: [...r.users] })) : []);
    let r = list.find((x) => x.emoji === emoji);
    const has = !!r && r.users.some((u) => u.toLowerCase() === user.toLowerCase());
    if (on && !has) {
      if (!r) list.push((r = { emoji, users: [] }));
      r.users.push(user);
    } else if (!on && has) {
      r.users = r.users.filter((u) => u.toLowerCase() !== user.toLowerCase());
      if (!r.users.length) list.splice(list.indexOf(r), 1);
    }
    m.changed = ++this.changes;
    this.touchMessage(m);
    return true;
  }

  /**
   * The newest page read again after a reconnect (`limit` asked, when this
   * tab held messages up to `upTo` and had seen `changes` live changes): what
   * changed meanwhile (edits, reactions) replaces the held copies, and held
   * messages within the page's id range that it lacks were deleted. New ones
   * are added as usual.
   */
  refresh(messages, limit, upTo = Infinity, changes = Infinity) {
    // The newest page covers every id from its first one on (a short page all
    // of them) up to what was held when it was asked: a message that arrived
    // since (an ack racing the read) may be newer than the page.
    const lo = messages.length >= limit ? messages[0].id : 0;
    const hi = upTo;
    const fresh = new Map(messages.map((m) => [m.id, m]));
    for (const held of [...this.messages, ...this.newer]) {
      if (held.id < lo || held.id > hi) continue;
      const now = fresh.get(held.id);
      // Changed live since the page was asked: the frame is newer than the page.
      if (held.changed > changes) continue;
      if (!now) this.remove(held.id);
      else if (now.content !== held.content || now.editedAt !== held.editedAt || reactionsKey(now) !== reactionsKey(held)) {
        held.content = now.content;
        held.editedAt = now.editedAt;
        held.reactions = now.reactions;
        held.replyTo = now.replyTo;
        this.touchMessage(held);
        this.touchReplies(held.id);
      }
    }
    for (const m of messages) this.add(m);
  }

  touchMessage(m) {
    if (this.byKey.get(rowKey(m)) === m) this.touch(rowKey(m));
    else this.onChange(this);
  }

  /** Replies quote their parent: they are redrawn when it appears, changes or goes. */
  touchReplies(parentId) {
    for (const m of this.messages) if (m.replyTo === parentId) this.touch(rowKey(m));
    for (const p of this.pending) if (p.replyTo === parentId) this.touch(p.key);
  }

  /**
   * Show a page that ends at message `id` (a search result) in place of the
   * window: detached, with older pages above as usual and live messages kept
   * below until the user jumps to the newest.
   */
  focusPage(messages) {
    for (const m of this.messages) this.byId.delete(m.id);
    for (const m of this.newer) this.byId.delete(m.id);
    this.messages = [];
    this.newer = [];
    this.notices = [];
    this.byKey.clear();
    for (const p of this.pending) this.byKey.set(p.key, p);
    for (const m of messages) {
      if (this.byId.has(m.id) || this.deleted.has(m.id)) continue;
      this.byId.set(m.id, m);
      insertSorted(this.messages, m);
      this.byKey.set(rowKey(m), m);
    }
    this.detached = this.windowLastId < this.newestId;
    this.newerGap = this.detached;
    this.following = !this.detached;
    this.hasMore = messages.length >= PAGE_SIZE;
    this.loaded = true;
    this.redrawAll();
  }

  /**
   * Keep the window within TIMELINE_CAP. Following the live end, the oldest
   * messages go (they can be fetched again); reading older ones, the newest go
   * to `newer` and the window detaches.
   */
  enforceCap() {
    const excess = this.messages.length - TIMELINE_CAP;
    if (excess <= 0) return;
    if (this.following && !this.detached) {
      this.dropHead(excess + TRIM_BATCH);
    } else {
      const cut = this.messages.splice(TIMELINE_CAP, excess);
      for (const m of cut) {
        this.byKey.delete(rowKey(m));
        this.touch(rowKey(m));
      }
      this.newer = cut.concat(this.newer);
      this.detached = true;
      if (this.newer.length > TIMELINE_CAP) {
        for (const m of this.newer.splice(0, this.newer.length - TIMELINE_CAP)) this.byId.delete(m.id);
        this.newerGap = true;
      }
      // Notices after the cut are not in the window any more.
      for (const n of this.notices) if (n.afterId > this.windowLastId) this.touch(n.key);
    }
  }

  /** Drop the oldest messages of the window; the server still has them. */
  dropHead(count) {
    for (const m of this.messages.splice(0, count)) this.forget(m);
    this.headDrops += 1;
    this.hasMore = true;
    this.dropNoticesBefore(this.firstId);
  }

  forget(m) {
    this.byId.delete(m.id);
    this.byKey.delete(rowKey(m));
    this.delivered.delete(m.id);
    this.touch(rowKey(m));
  }

  /**
   * A history reply: its messages join the window; an initial or older page
   * also says whether older messages remain on the server.
   */
  addHistory(kind, messages) {
    const drops = this.headDrops;
    for (const m of messages) this.add(m);
    if (kind === 'initial' || kind === 'older') {
      // A short page is the beginning, unless the window had to drop its top meanwhile.
      this.hasMore = messages.length >= PAGE_SIZE || this.headDrops !== drops;
      this.loaded = true;
    }
    this.onChange(this);
  }

  /**
   * Scrolled near the end of a detached window: move the next page from
   * `newer` into it (dropping as many from the top), re-attaching once `newer`
   * is empty. Impossible across a gap: then only a jump to the newest helps.
   */
  advance() {
    if (!this.detached || this.newerGap) return false;
    const page = this.newer.splice(0, PAGE_SIZE);
    for (const m of page) {
      this.messages.push(m);
      this.byKey.set(rowKey(m), m);
      this.touch(rowKey(m));
    }
    const excess = this.messages.length - TIMELINE_CAP;
    if (excess > 0) this.dropHead(excess);
    if (!this.newer.length) this.attachTail();
    return true;
  }

  /** Make the window end at the newest message again (the user jumps to the bottom). */
  jumpToNewest() {
    this.newBelow = 0;
    if (!this.detached) return;
    if (this.newerGap) {
      for (const m of this.messages) this.byId.delete(m.id);
      this.messages = this.newer;
      this.hasMore = true;
      // Nothing arrived live since a focused page: the newest page is read again.
      if (!this.messages.length) this.loaded = false;
    } else {
      this.messages = this.messages.concat(this.newer);
      const excess = this.messages.length - TIMELINE_CAP;
      if (excess > 0) {
        for (const m of this.messages.splice(0, excess)) this.byId.delete(m.id);
        this.hasMore = true;
      }
    }
    this.newer = [];
    this.attachTail();
    this.dropNoticesBefore(this.firstId);
    this.byKey.clear();
    for (const m of this.messages) this.byKey.set(rowKey(m), m);
    for (const n of this.notices) this.byKey.set(n.key, n);
    for (const p of this.pending) this.byKey.set(p.key, p);
    this.redrawAll();
  }

  attachTail() {
    this.detached = false;
    this.newerGap = false;
    for (const n of this.notices) this.touch(n.key);
  }

  /** Forget stored messages (after a gap too large to replay); pending ones stay. */
  reset() {
    this.messages = [];
    this.newer = [];
    this.detached = false;
    this.newerGap = false;
    this.byId.clear();
    this.byKey.clear();
    for (const p of this.pending) this.byKey.set(p.key, p);
    this.notices = [];
    this.loaded = false;
    this.hasMore = true;
    this.redrawAll();
  }

  // ---- pending messages -------------------------------------------------

  addPending(clientId, content, replyTo = null, time = new Date(), attachments = null) {
    const p = { clientId, key: `c:${clientId}`, seq: ++pendingSeq, content, replyTo, time, state: 'pending', attachments };
    this.pending.push(p);
    this.byKey.set(p.key, p);
    this.touch(p.key);
    return p;
  }

  /** The server stored a message of this tab: it leaves `pending` (it may be in the window already, from a replay). */
  acknowledge(clientId, id, time, user) {
    const i = this.pending.findIndex((p) => p.clientId === clientId);
    if (i < 0) return false;
    const [p] = this.pending.splice(i, 1);
    this.byKey.delete(p.key);
    this.touch(p.key);
    this.add({ id, user, content: p.content, time, clientId, replyTo: p.replyTo, attachments: p.attachments });
    return true;
  }

  findPending(clientId) {
    return this.pending.find((p) => p.clientId === clientId) || null;
  }

  failPending(p, error) {
    p.state = 'failed';
    p.error = error;
    this.touch(p.key);
  }

  removePending(clientId) {
    const p = this.findPending(clientId);
    if (!p) return;
    this.pending = this.pending.filter((x) => x !== p);
    this.byKey.delete(p.key);
    this.touch(p.key);
  }

  /** The connection status shows in pending rows ("Sending…" or "Waiting for connection…"). */
  touchPending() {
    for (const p of this.pending) this.touch(p.key);
  }

  // ---- system lines ------------------------------------------------------

  addNotice(text) {
    const n = { key: `n:${++noticeSeq}`, seq: noticeSeq, afterId: this.newestId, text, time: new Date() };
    this.notices.push(n);
    this.byKey.set(n.key, n);
    this.touch(n.key);
    if (this.notices.length > MAX_NOTICES) this.dropNotice(this.notices[0]);
  }

  dropNotice(n) {
    this.notices = this.notices.filter((x) => x !== n);
    this.byKey.delete(n.key);
    this.touch(n.key);
  }

  /** Notices that followed messages dropped from the top of the window go with them. */
  dropNoticesBefore(id) {
    while (this.notices.length && this.notices[0].afterId < id) this.dropNotice(this.notices[0]);
  }

  // ---- receipts (private chats) ----------------------------------------------

  markDelivered(id) {
    const m = this.byId.get(id);
    if (!m || id <= this.peerRead) return;
    this.delivered.add(id);
    if (this.byKey.get(rowKey(m)) === m) this.touch(rowKey(m));
  }

  /** The other person read up to `id`: only the messages between the old and new marker change. */
  markPeerRead(id) {
    if (id <= this.peerRead) return;
    const old = this.peerRead;
    this.peerRead = id;
    for (let i = this.messages.length - 1; i >= 0 && this.messages[i].id > old; i--) {
      if (this.messages[i].id <= id) this.touch(rowKey(this.messages[i]));
    }
    for (const d of this.delivered) if (d <= id) this.delivered.delete(d);
    this.onChange(this);
  }

  /** Private chats: the receipt state of one of the user's own stored messages. */
  receipt(msg) {
    if (msg.id <= this.peerRead) return 'read';
    if (this.delivered.has(msg.id)) return 'delivered';
    return 'sent';
  }

  // ---- what the view draws ---------------------------------------------------

  /** The row with this key, as the view should show it, or null when it is not shown. */
  row(key) {
    const item = this.byKey.get(key);
    if (!item) return null;
    if (key.startsWith('n:')) return this.noticeShown(item) ? { notice: item } : null;
    if (item.state) return { pending: item };
    return { msg: item };
  }

  /** Notices after the end of a detached window belong to messages not shown. */
  noticeShown(n) {
    return !this.detached || n.afterId <= this.windowLastId;
  }

  /** Every row in display order (for a full redraw). */
  *rows() {
    let n = 0;
    const notices = this.notices.filter((x) => this.noticeShown(x));
    for (const m of this.messages) {
      while (n < notices.length && notices[n].afterId < m.id) yield { notice: notices[n++] };
      yield { msg: m };
    }
    while (n < notices.length) yield { notice: notices[n++] };
    for (const p of this.pending) yield { pending: p };
  }
}

/** Display order: stored messages by id, a notice right after the message it followed, pending last. */
export function rowOrder(row) {
  if (row.msg) return [row.msg.id, 0, 0];
  if (row.notice) return [row.notice.afterId, 1, row.notice.seq];
  return [Infinity, 2, row.pending.seq];
}

/** Reactions compared by value: a refresh redraws only messages whose reactions changed. */
function reactionsKey(m) {
  return (m.reactions || []).map((r) => `${r.emoji}:${r.users.join(',')}`).join('|');
}

function insertSorted(list, msg) {
  if (!list.length || list[list.length - 1].id < msg.id) {
    list.push(msg);
    return;
  }
  let lo = 0;
  let hi = list.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (list[mid].id < msg.id) lo = mid + 1;
    else hi = mid;
  }
  list.splice(lo, 0, msg);
}
