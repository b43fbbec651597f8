// One conversation (a room or a private chat with one person): its messages
// deduplicated by server id, the user's not-yet-acknowledged messages, system
// lines, and the per-conversation bits the sidebar and receipts need.

// Messages per history request: the newest page on open, then older pages on scroll.
export const PAGE_SIZE = 50;

export const roomKey = (name) => `#${name}`;
export const dmKey = (username) => `@${username.toLowerCase()}`;

// Older system lines are dropped so a busy room's join/leave churn stays bounded.
const MAX_NOTICES = 100;
let noticeSeq = 0;

export class Conversation {
  /** @param {'room'|'dm'} kind @param {string} name room name or the other person's username */
  constructor(kind, name) {
    this.kind = kind;
    this.name = name;
    this.key = kind === 'room' ? roomKey(name) : dmKey(name);
    /** Stored messages, ascending id: {id, user, content, time: Date, clientId?} */
    this.messages = [];
    this.byId = new Map();
    /** Sent by this tab, not acknowledged yet: {clientId, content, time, state: 'pending'|'failed', error?} */
    this.pending = [];
    /** System lines ("alice joined"), placed after the message that was newest when they happened. */
    this.notices = [];
    this.loaded = false; // the newest page has been fetched
    this.hasMore = true; // older messages may exist on the server
    this.historyRequest = null; // 'initial' | 'older' | 'catchup' while a history request is in flight
    this.unread = 0;
    this.readSeen = 0; // highest id the user has had on screen
    this.readTimer = null; // pending batched read marker
    this.readSent = 0; // highest id this user has marked read on the server
    this.peerRead = 0; // private chats: highest id the other person has read
    this.delivered = new Set(); // private chats: own message ids that reached the other person
    this.typing = new Map(); // username -> hide timer
    this.online = new Set(); // rooms: users present (online_users, join, leave)
    this.onlineCount = 0; // rooms: from GET /api/rooms until this tab has joined
    this.joined = false; // this tab's connection is subscribed (rooms)
    this.joining = false; // a `join` is on its way
    this.replaying = false; // a `join` with `since` is replaying missed messages
    this.private = false;
    this.owner = null;
    this.members = [];
  }

  get lastId() {
    return this.messages.length ? this.messages[this.messages.length - 1].id : 0;
  }

  get firstId() {
    return this.messages.length ? this.messages[0].id : 0;
  }

  /** Adds a stored message unless its id is already here; returns true when it was new. */
  add(msg) {
    if (this.byId.has(msg.id)) return false;
    this.byId.set(msg.id, msg);
    const list = this.messages;
    if (!list.length || list[list.length - 1].id < msg.id) {
      list.push(msg);
    } else {
      // History pages and replays can land before live messages: keep id order.
      let lo = 0;
      let hi = list.length;
      while (lo < hi) {
        const mid = (lo + hi) >> 1;
        if (list[mid].id < msg.id) lo = mid + 1;
        else hi = mid;
      }
      list.splice(lo, 0, msg);
    }
    return true;
  }

  /** Forget stored messages (after a gap too large to replay); pending ones stay. */
  reset() {
    this.messages = [];
    this.byId.clear();
    this.notices = [];
    this.loaded = false;
    this.hasMore = true;
  }

  addNotice(text) {
    this.notices.push({ seq: ++noticeSeq, afterId: this.lastId, text, time: new Date() });
    if (this.notices.length > MAX_NOTICES) this.notices.shift();
  }

  /** Private chats: the receipt state of one of the user's own stored messages. */
  receipt(msg) {
    if (msg.id <= this.peerRead) return 'read';
    if (this.delivered.has(msg.id)) return 'delivered';
    return 'sent';
  }

  /** Messages, pending messages and system lines in display order. */
  timeline() {
    const out = [];
    let n = 0;
    for (const m of this.messages) {
      while (n < this.notices.length && this.notices[n].afterId < m.id) out.push({ notice: this.notices[n++] });
      out.push({ msg: m });
    }
    while (n < this.notices.length) out.push({ notice: this.notices[n++] });
    for (const p of this.pending) out.push({ pending: p });
    return out;
  }
}
