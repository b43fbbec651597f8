// The chat controller: the state behind the UI (people, rooms, conversations,
// connection status), the user's actions and the frames they send. What the
// server sends is applied by frames.js. It never touches the DOM: views listen
// for 'change', read the state, and call the action methods.
//
// Rendering is batched: state changes at once (acks, ids and read markers
// stay exact), but the views draw at most once per animation frame, with a
// note of what changed since the last frame (`touch` a conversation,
// `touchUser` a person, `changed` everything), so a burst of frames from a
// busy room costs one render and that render costs only what changed.

import { api } from './api.js';
import { Connection } from './socket.js';
import { Conversation, PAGE_SIZE, DM_CATCHUP, roomKey, dmKey } from './conversation.js';
import { MAX_CONTENT_CHARS, contentLength } from './content.js';
import { newClientId } from './ids.js';
import { Outbox } from './outbox.js';
import { frameHandlers, toMessage } from './frames.js';
import { userPref, setUserPref } from './session.js';
import { setAvatarUrls } from './files.js';

export const ROOM_NAME = /^[a-z0-9_-]{1,64}$/;
const TYPING_RESEND_MS = 2000; // a typing frame at most this often while keys keep coming
const TYPING_IDLE_MS = 2500; // then stop_typing when the keys stop
const DEFAULT_ROOMS = ['general'];
// Read markers are batched: in a busy room, one per message per viewer would eat
// the rate limit and fan a receipt out to everyone for every line.
const READ_DEBOUNCE_MS = 400;
// A hidden tab gets no animation frames; it still renders this often, so its
// title keeps counting unread messages.
const HIDDEN_RENDER_MS = 1000;
// A message older than the window is sought through at most this many older
// pages of SEEK_PAGE (the server's largest) before its own page is read instead.
const SEEK_MAX_PAGES = 5;
const SEEK_PAGE = 200;

export class Chat extends EventTarget {
  /** @param {{token: string, user: {username: string}}} session @param {() => void} onRejected */
  constructor(session, onRejected) {
    super();
    this.token = session.token;
    this.me = session.user.username;
    this.onRejected = onRejected;
    /** This user's role (`member`, `moderator`, `admin`), from GET /api/me. */
    this.role = session.user.role || 'member';
    /** lower-case username -> {username, online, lastSeen: Date|null, displayName, status, role} */
    this.users = new Map();
    /** key -> Conversation */
    this.convs = new Map();
    /** Public rooms this user keeps in the sidebar, in the order joined. */
    this.roomNames = userPref(this.me, 'rooms', DEFAULT_ROOMS).filter((r) => ROOM_NAME.test(r));
    /** Names of the rooms that are archived (read-only), from GET /api/rooms and `room_archived`. */
    this.archivedRooms = new Set();
    /** Public rooms from GET /api/rooms, for the join dialog. */
    this.directory = [];
    this.activeKey = userPref(this.me, 'active', roomKey(this.roomNames[0] || 'general'));
    this.status = 'connecting';
    this.retryInMs = 0;
    /** What changed since the last render: everything, or these conversations and people. */
    this.dirty = { all: true, convs: new Set(), users: new Set() };
    this.renderQueued = false;
    this.dialogOp = null; // {kind, room}: routes the next matching `error` frame to the open dialog
    this.typingState = { key: null, lastSent: 0, idleTimer: null };
    this.messageOp = null; // {kind, id}: the last edit/delete/react asked, for the `error` that may answer it
    this.replyTo = null; // {key, id, user, content}: the composer's quote bar
    /** Message ids already announced (a mention arrives as its own frame and as the message). */
    this.alerted = new Set();
    /** Unsent messages, kept across reloads (outbox.js). */
    this.outbox = new Outbox(this.me);
    this.conn = new Connection({
      url: async () => {
        const { ticket } = await api.wsTicket();
        return `${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}/ws?ticket=${encodeURIComponent(ticket)}`;
      },
      onEnded: (code, reason) => this.onRejected(code, reason),
      onFrame: (f) => this.onFrame(f),
      onStatus: (s, retry) => this.onStatus(s, retry),
      onOpen: () => this.onOpen(),
      isRejected: () => this.tokenRejected(),
      onRejected: () => this.onRejected(),
    });
    for (const name of this.roomNames) this.room(name);
    this.restoreOutbox();
    document.addEventListener('visibilitychange', () => {
      this.markRead(this.active);
      if (this.renderQueued) this.scheduleRender(true);
    });
  }

  // ---- lifecycle -------------------------------------------------------

  async start() {
    await this.refreshLists();
    try {
      const { user } = await api.me();
      this.role = user.role || 'member';
      this.setProfile(user);
    } catch {
      // Offline: the role from the login stands until the next start.
    }
    // Reopen where the user left off, if that conversation still exists.
    const last = this.activeKey || '';
    if (last.startsWith('@') && this.user(last.slice(1))) this.dm(last.slice(1));
    const first = this.sidebarRooms().flat()[0];
    this.open(this.convs.has(last) ? last : first ? first.key : null);
    this.conn.connect();
  }

  stop() {
    this.conn.stop();
    clearTimeout(this.typingState.idleTimer);
    for (const c of this.convs.values()) {
      clearTimeout(c.readTimer);
      for (const t of c.typing.values()) clearTimeout(t);
    }
  }

  /** People and rooms from the REST API; refreshed after every reconnect, since presence changed meanwhile. */
  async refreshLists() {
    try {
      const [{ users }, { rooms }] = await Promise.all([api.users(), api.rooms()]);
      for (const u of users) {
        this.setUser(u.username, u.online, u.last_seen);
        this.setProfile(u);
      }
      this.directory = rooms.filter((r) => !r.private);
      this.archivedRooms = new Set(rooms.filter((r) => r.archived).map((r) => r.name));
      // Private rooms this user was removed from while offline disappear.
      const mine = new Set(rooms.filter((r) => r.private).map((r) => r.name));
      for (const c of [...this.convs.values()]) if (c.kind === 'room' && c.private && !mine.has(c.name)) this.forget(c);
      for (const r of rooms) {
        if (r.private) {
          const c = this.room(r.name);
          c.private = true;
          c.owner = r.owner ?? c.owner;
          c.members = r.members ?? c.members;
          this.joinIfOpen(c);
        }
        const c = this.convs.get(roomKey(r.name));
        if (c) c.onlineCount = r.online;
      }
      this.changed();
    } catch (err) {
      // 401 is handled by the API layer (back to login); offline is shown by the socket status.
      if (err.status !== 401 && err.status !== 0) this.toast(err.message);
    }
  }

  async tokenRejected() {
    try {
      await api.me();
      return false;
    } catch (err) {
      return err.status === 401;
    }
  }

  // ---- derived state for the views ---------------------------------------

  get active() {
    return this.convs.get(this.activeKey) || null;
  }

  room(name) {
    const key = roomKey(name);
    let c = this.convs.get(key);
    if (!c) this.convs.set(key, (c = new Conversation('room', name, (conv) => this.touch(conv))));
    return c;
  }

  dm(username) {
    const key = dmKey(username);
    let c = this.convs.get(key);
    if (!c) this.convs.set(key, (c = new Conversation('dm', this.user(username)?.username || username, (conv) => this.touch(conv))));
    return c;
  }

  /** Whether the user is looking at the newest messages of the open conversation. */
  get atBottom() {
    return this.active ? this.active.following : true;
  }

  user(name) {
    return this.users.get(String(name).toLowerCase()) || null;
  }

  /** Rooms in the sidebar: [public, private]. */
  sidebarRooms() {
    const pub = this.roomNames.map((n) => this.room(n));
    const priv = [...this.convs.values()].filter((c) => c.kind === 'room' && c.private).sort((a, b) => a.name.localeCompare(b.name));
    return [pub.filter((c) => !c.private), priv];
  }

  /** Everyone but the user: online first, then by name. */
  people() {
    return [...this.users.values()]
      .filter((u) => u.username.toLowerCase() !== this.me.toLowerCase())
      .sort((a, b) => Number(b.online) - Number(a.online) || a.username.localeCompare(b.username));
  }

  /** Live presence once this tab has joined; until then (or while offline) the last known count. */
  onlineIn(conv) {
    return conv.joined || conv.online.size ? conv.online.size : conv.onlineCount;
  }

  /** A private message or a mention for the user: announced once per message id (title badge, notification). */
  alert(c, msg, kind) {
    if (this.alerted.has(msg.id) || msg.user.toLowerCase() === this.me.toLowerCase()) return;
    this.alerted.add(msg.id);
    if (this.alerted.size > 1000) this.alerted.delete(this.alerted.values().next().value);
    this.dispatchEvent(new CustomEvent('alert', { detail: { key: c.key, conv: c, msg, kind } }));
  }

  totalUnread() {
    let n = 0;
    for (const c of this.convs.values()) n += c.unread;
    return n;
  }

  // ---- actions -------------------------------------------------------------

  open(key) {
    if (!this.convs.has(key)) {
      this.activeKey = null;
      return this.changed();
    }
    this.stopTyping();
    // A conversation the user leaves follows its newest messages again (its
    // window stays bounded the cheap way and it reopens at the bottom); what
    // arrived below while they were scrolled up stays unread.
    const left = this.active;
    if (left) {
      left.jumpToNewest();
      left.following = true;
      this.touch(left);
    }
    this.activeKey = key;
    setUserPref(this.me, 'active', key);
    const c = this.active;
    this.follow(c);
    if (!c.loaded) this.requestHistory(c, 'initial');
    else this.refreshIfStale(c);
    if (this.replyTo && this.replyTo.key !== key) this.setReply(null);
    this.markRead(c);
    this.changed();
  }

  openDm(username) {
    this.open(this.dm(username).key);
  }

  /** Open conversation `key` ('#room' or '@person', from a notification) and show message `id` in it. */
  goTo(key, id = null) {
    const name = key.slice(1);
    if (key.startsWith('@') && name) this.openDm(this.user(name)?.username || name);
    else if (key.startsWith('#') && ROOM_NAME.test(name)) {
      if (this.convs.has(key)) this.open(key);
      else this.joinRoom(name);
    } else return;
    if (id) this.reveal(id);
  }

  /** Join (or create, for a new name) a public room and open it. */
  joinRoom(name) {
    const c = this.room(name);
    if (!c.private && !this.roomNames.includes(name)) {
      this.roomNames.push(name);
      setUserPref(this.me, 'rooms', this.roomNames);
    }
    this.joinIfOpen(c);
    this.open(c.key);
  }

  /** Mentioned in a public room not in the sidebar: it is added (and joined) so the badge has a place. */
  mentionedIn(name) {
    if (!ROOM_NAME.test(name)) return;
    const c = this.room(name);
    if (!c.private && !this.roomNames.includes(name)) {
      this.roomNames.push(name);
      setUserPref(this.me, 'rooms', this.roomNames);
    }
    this.joinIfOpen(c);
    this.changed();
  }

  leaveRoom(conv) {
    if (conv.joined) this.conn.send({ type: 'leave', room: conv.name });
    this.roomNames = this.roomNames.filter((n) => n !== conv.name);
    setUserPref(this.me, 'rooms', this.roomNames);
    this.forget(conv);
  }

  createPrivateRoom(name, members) {
    // The room appears when the server confirms it with `room_members`.
    this.dialogOp = { kind: 'create', room: name };
    this.conn.send({ type: 'create_room', room: name, private: true, members });
  }

  addMember(conv, username) {
    this.dialogOp = { kind: 'members', room: conv.name };
    this.conn.send({ type: 'add_member', room: conv.name, user: username });
  }

  removeMember(conv, username) {
    this.dialogOp = { kind: 'members', room: conv.name };
    this.conn.send({ type: 'remove_member', room: conv.name, user: username });
  }

  /**
   * Queue a message: kept in the outbox (so a reload loses nothing), shown at
   * once as pending, sent now if possible, else on reconnect. False when it
   * could not be kept: the text stays in the composer.
   */
  send(text, files = []) {
    const c = this.active;
    const content = text.trim();
    const attachments = files.length ? files : null;
    if (!c || (!content && !attachments) || contentLength(content) > MAX_CONTENT_CHARS) return false;
    const replyTo = this.replyTo?.key === c.key ? this.replyTo.id : null;
    const clientId = newClientId();
    const time = new Date();
    const entry = { clientId, kind: c.kind, name: c.name, content, replyTo, time: time.toISOString(), state: 'pending' };
    if (attachments) entry.attachments = attachments;
    if (!this.outbox.add(entry)) {
      this.toast('Too many messages are waiting to be sent: this one stays in the message box until the connection is back.');
      return false;
    }
    // The user sees what they sent: the view goes to the newest messages.
    this.follow(c);
    this.setReply(null);
    const p = c.addPending(clientId, content, replyTo, time, attachments);
    this.stopTyping();
    this.transmit(c, p);
    return true;
  }

  /** Messages left unsent by an earlier page (a reload, a tab closed offline) wait again, in order. */
  restoreOutbox() {
    for (const e of this.outbox.load()) {
      if (e.kind === 'room' && !ROOM_NAME.test(e.name)) continue;
      const c = e.kind === 'room' ? this.room(e.name) : this.dm(e.name);
      // A public room the user no longer lists comes back while it has a message to send.
      if (c.kind === 'room' && !this.roomNames.includes(c.name)) this.roomNames.push(c.name);
      if (c.findPending(e.clientId)) continue;
      const p = c.addPending(e.clientId, e.content, e.replyTo, new Date(e.time), e.attachments || null);
      if (e.state === 'failed') c.failPending(p, e.error || 'refused');
    }
  }

  // ---- edits, deletes, reactions, replies -------------------------------------

  /** Whether the user may edit `m` (their own) and delete it (their own, or anything in a private room they own). */
  mayEdit(m) {
    return !!m && m.user.toLowerCase() === this.me.toLowerCase();
  }

  mayDelete(c, m) {
    // Moderators delete any room message, never a private conversation's.
    if (this.moderates && c?.kind === 'room') return true;
    return this.mayEdit(m) || (!!c?.private && !!c.owner && c.owner.toLowerCase() === this.me.toLowerCase());
  }

  /**
   * Ask for an edit. The server confirms with `message_edited` (to this
   * connection too); an `error` meanwhile is routed back to the editor.
   */
  editMessage(id, content) {
    const text = content.trim();
    if (!text || contentLength(text) > MAX_CONTENT_CHARS) return false;
    if (!this.conn.send({ type: 'edit', id, content: text })) return false;
    this.messageOp = { kind: 'edit', id, at: performance.now() };
    return true;
  }

  deleteMessage(id) {
    if (!this.conn.send({ type: 'delete', id })) return false;
    this.messageOp = { kind: 'delete', id, at: performance.now() };
    return true;
  }

  /** Toggle the user's reaction; the `reaction` frame that answers changes the chips. */
  react(id, emoji) {
    if (!this.conn.send({ type: 'react', id, emoji })) {
      this.toast('You are offline: the reaction was not sent.');
      return false;
    }
    this.messageOp = { kind: 'react', id, at: performance.now() };
    return true;
  }

  /** The message the next one sent here replies to (null: none). */
  setReply(msg) {
    const c = this.active;
    this.replyTo = msg && c ? { key: c.key, id: msg.id, user: msg.user, content: msg.content } : null;
    this.dispatchEvent(new CustomEvent('reply'));
  }

  /**
   * Bring message `id` of the open conversation into view and highlight it.
   * Held: at once. Older than the window: older pages are loaded until it is
   * there (so the messages after it stay below it, as context), or known to
   * be gone; past SEEK_MAX_PAGES of them, the page that ends at it is read
   * instead, in place of the window.
   */
  reveal(id) {
    const c = this.active;
    if (!c) return;
    if (!c.loaded || (c.kind === 'room' && !c.joined)) {
      // The first page is on its way: the message is sought once it lands.
      c.revealAfterLoad = id;
      return;
    }
    if (c.newer.some((m) => m.id === id)) c.jumpToNewest();
    if (c.messages.some((m) => m.id === id)) {
      c.seek = null;
      c.following = false;
      this.touch(c);
      this.dispatchEvent(new CustomEvent('reveal', { detail: { key: c.key, id } }));
      return;
    }
    // The window is one unbroken run of ids: a missing id inside it was deleted.
    if (c.deleted.has(id) || (c.firstId && id > c.firstId && id < c.windowLastId)) return this.gone(c, id);
    c.seek = { id, pages: 0 };
    if (c.firstId && id < c.firstId) {
      if (!c.hasMore) return this.gone(c, id);
      c.following = false;
      if (!c.historyRequest) this.requestHistory(c, 'older', undefined, SEEK_PAGE);
    } else {
      this.requestHistory(c, 'focus', id + 1);
    }
    this.touch(c);
  }

  /** After a history page: a sought message is shown, sought further, or gone. */
  continueSeek(c, kind) {
    const s = c.seek;
    if (!s) return;
    if (c.messages.some((m) => m.id === s.id)) {
      c.seek = null;
      this.dispatchEvent(new CustomEvent('reveal', { detail: { key: c.key, id: s.id } }));
    } else if (kind === 'focus' || (c.firstId && c.firstId < s.id) || !c.hasMore) {
      this.gone(c, s.id);
    } else if (++s.pages >= SEEK_MAX_PAGES) {
      // Far back: the page that ends at it, rather than every page in between.
      this.requestHistory(c, 'focus', s.id + 1);
    } else {
      c.following = false;
      this.requestHistory(c, 'older', undefined, SEEK_PAGE);
    }
  }

  /** A sought message is not there: said once, and replies quoting it say so from now on. */
  gone(c, id) {
    c.seek = null;
    c.deleted.add(id);
    c.touchReplies(id);
    this.toast('That message was deleted, or is no longer there.');
    this.touch(c);
  }

  // ---- search ------------------------------------------------------------------

  /** Messages matching `q` in everything the user may read, newest first. */
  async search(q) {
    const { messages } = await api.search(q);
    return messages.map((m) => ({ ...toMessage(m), room: m.room, from: m.from, to: m.to }));
  }

  /** Open a search result's conversation and show the message in context. */
  openResult(msg) {
    const key = msg.room ? roomKey(msg.room) : dmKey(this.peerOf(msg));
    if (msg.room) {
      if (!this.convs.has(key)) this.joinRoom(msg.room);
    } else this.dm(this.peerOf(msg));
    if (this.activeKey !== key) this.open(key);
    this.reveal(msg.id);
  }

  /** The other person of a private message. */
  peerOf(m) {
    const from = m.from ?? m.user;
    return from.toLowerCase() === this.me.toLowerCase() ? m.to : from;
  }

  /** Drop a message the server refused. */
  discard(conv, clientId) {
    conv.removePending(clientId);
    this.outbox.remove(clientId);
  }

  /** The server stored a message of this user: it leaves the outbox (whichever tab wrote it). */
  acknowledged(clientId) {
    this.outbox.remove(clientId);
  }

  /** The server refused a message for good: it stays, marked failed, until dismissed. */
  refused(c, p, error) {
    c.failPending(p, error);
    this.outbox.fail(p.clientId, error);
  }

  /** Show `c`'s newest messages and follow them from now on (the "new messages" button, a send, a switch). */
  follow(c) {
    if (!c) return;
    c.jumpToNewest();
    if (!c.loaded && c.key === this.activeKey && !c.historyRequest) this.requestHistory(c, 'initial');
    c.following = true;
    this.touch(c);
    this.markRead(c);
  }

  jumpToNewest() {
    this.follow(this.active);
  }

  loadOlder() {
    const c = this.active;
    if (c && c.loaded && c.hasMore && !c.historyRequest && !c.seek) {
      this.requestHistory(c, 'older');
      this.touch(c);
    }
  }

  /** Scrolled to the end of a window that does not reach the newest messages: the next page, from memory. */
  loadNewer() {
    // While older pages land for a sought message, the bottom of the list is no place to pull from.
    if (this.active?.seek) return;
    this.active?.advance();
  }

  /** Called on every keystroke in the composer: typing now, stop_typing once the keys stop. */
  typing(hasText) {
    const c = this.active;
    if (!c || c.kind !== 'room' || !c.joined) return;
    const t = this.typingState;
    if (!hasText) return this.stopTyping();
    const now = Date.now();
    if (t.key !== c.key || now - t.lastSent > TYPING_RESEND_MS) {
      if (t.key && t.key !== c.key) this.stopTyping();
      this.conn.send({ type: 'typing', room: c.name });
      t.key = c.key;
      t.lastSent = now;
    }
    clearTimeout(t.idleTimer);
    t.idleTimer = setTimeout(() => this.stopTyping(), TYPING_IDLE_MS);
  }

  stopTyping() {
    const t = this.typingState;
    clearTimeout(t.idleTimer);
    if (!t.key) return;
    const c = this.convs.get(t.key);
    if (c?.joined) this.conn.send({ type: 'stop_typing', room: c.name });
    t.key = null;
    t.lastSent = 0;
  }

  /** The view reports whether the end of the list is on screen; that is following unless newer messages wait. */
  setAtBottom(atBottom) {
    const c = this.active;
    if (!c) return;
    // While an older message is sought, pages land above: the window must keep them, not its newest end.
    const following = atBottom && !c.detached && !c.seek;
    if (c.following === following) return;
    c.following = following;
    if (following) {
      c.newBelow = 0;
      this.markRead(c);
    }
    this.touch(c);
  }

  // ---- protocol ------------------------------------------------------------

  onStatus(status, retryInMs) {
    this.status = status;
    this.retryInMs = retryInMs || 0;
    if (status !== 'online') {
      for (const c of this.convs.values()) {
        c.joined = false;
        c.joining = false;
        c.replaying = false;
        c.historyQueue = [];
        c.seek = null;
        if (c.loaded) c.stale = true;
        for (const t of c.typing.values()) clearTimeout(t);
        c.typing.clear();
      }
      this.typingState.key = null;
    }
    // Pending rows say whether they are being sent or wait for the connection.
    for (const c of this.convs.values()) c.touchPending();
    this.changed();
  }

  onOpen() {
    for (const c of this.convs.values()) {
      if (c.kind === 'room') this.joinIfOpen(c);
      else {
        if (c.loaded) {
          // The catch-up page doubles as the re-read of what was shown.
          c.stale = false;
          this.requestHistory(c, 'catchup');
        }
        this.flushPending(c);
      }
    }
    const a = this.active;
    if (a && a.kind === 'dm' && !a.loaded) this.requestHistory(a, 'initial');
    this.refreshLists();
  }

  /** Rejoin with `since` = the newest id seen so the server replays exactly what was missed. */
  joinIfOpen(c) {
    if (c.joined || c.joining || !this.conn.isOpen) return;
    c.joining = true;
    const frame = { type: 'join', room: c.name };
    if (c.lastId) {
      frame.since = c.lastId;
      c.replaying = true;
    }
    this.conn.send(frame);
  }

  requestHistory(c, kind, before, limit = kind === 'catchup' ? DM_CATCHUP : PAGE_SIZE) {
    if (c.kind === 'room' && !c.joined) return; // asked again once online_users confirms the join
    const frame = { type: 'history', limit };
    frame[c.kind === 'room' ? 'room' : 'with'] = c.name;
    if (kind === 'older') frame.before = c.firstId;
    if (kind === 'focus') frame.before = before;
    // A re-read judges only what was held when it was asked: later messages (an ack racing the read) are newer than the page.
    if (this.conn.send(frame)) c.historyQueue.push({ kind, upTo: c.newestId, changes: c.changes });
  }

  /** Edits and deletes made while this tab was away are in no replay: the shown page is read again. */
  refreshIfStale(c) {
    if (!c?.stale || !c.loaded || (c.kind === 'room' && !c.joined)) return;
    c.stale = false;
    this.requestHistory(c, 'refresh');
  }

  transmit(c, p) {
    if (c.kind === 'room' && !c.joined) return; // flushed when the join completes
    const frame =
      c.kind === 'room'
        ? { type: 'message', room: c.name, content: p.content, client_id: p.clientId }
        : { type: 'private_message', to: c.name, content: p.content, client_id: p.clientId };
    if (p.replyTo) frame.reply_to = p.replyTo;
    if (p.attachments) frame.attachments = p.attachments.map((f) => f.id);
    this.conn.send(frame);
  }

  flushPending(c) {
    for (const p of c.pending) if (p.state === 'pending') this.transmit(c, p);
  }

  onFrame(f) {
    // Each handler notes what it changed; the render follows on the next frame.
    frameHandlers[f.type]?.(this, f);
  }

  /** Whether the user is looking at the newest messages of `c` right now. */
  canSee(c) {
    return c && c.key === this.activeKey && this.atBottom && document.visibilityState === 'visible';
  }

  /** The open conversation is on screen: clear its badge and (soon) move the server's read marker. */
  markRead(c) {
    if (!this.canSee(c)) return;
    if (c.unread || c.mentions) {
      c.unread = 0;
      c.mentions = 0;
      this.touch(c);
      this.dispatchRead(c);
    }
    // Remember what was seen now: messages arriving before the flush may not be.
    c.readSeen = Math.max(c.readSeen, c.lastId);
    if (c.readTimer || c.readSeen <= c.readSent) return;
    c.readTimer = setTimeout(() => {
      c.readTimer = null;
      this.flushRead(c);
    }, READ_DEBOUNCE_MS);
  }

  flushRead(c) {
    const id = c.readSeen;
    if (id <= c.readSent || (c.kind === 'room' && !c.joined)) return;
    const frame = { type: 'read', id };
    frame[c.kind === 'room' ? 'room' : 'with'] = c.name;
    if (this.conn.send(frame)) c.readSent = id;
  }

  clearTyping(c, user) {
    if (!c.typing.has(user)) return;
    clearTimeout(c.typing.get(user));
    c.typing.delete(user);
    this.touch(c);
  }

  /** What a user object says of how a person is shown (`user_updated`, the people list). */
  setProfile(p) {
    if (!p || typeof p.username !== 'string') return;
    const key = p.username.toLowerCase();
    const u = this.users.get(key) || { username: p.username, online: false, lastSeen: null };
    u.displayName = typeof p.display_name === 'string' ? p.display_name : null;
    u.status = typeof p.status === 'string' ? p.status : '';
    u.role = p.role || 'member';
    this.users.set(key, u);
    setAvatarUrls([p]);
    if (key === this.me.toLowerCase() && p.role) this.role = p.role;
    this.changed();
  }

  /** The name a person is shown by: their display name, else their username. */
  shownName(username) {
    return this.user(username)?.displayName || username;
  }

  /** A moderator or an admin. */
  get moderates() {
    return this.role === 'moderator' || this.role === 'admin';
  }

  /** Whether `c` is a room that is archived: readable, but nobody posts there. */
  isArchived(c) {
    return c?.kind === 'room' && this.archivedRooms.has(c.name);
  }

  /** Moderators and admins archive any room but `general` (the server refuses it too). */
  mayArchive(c) {
    return c?.kind === 'room' && c.name !== 'general' && this.moderates;
  }

  /** Only admins delete a room, never `general`. */
  mayDeleteRoom(c) {
    return c?.kind === 'room' && c.name !== 'general' && this.role === 'admin';
  }

  /** Archives (or unarchives) a room; the `room_archived` frame tells every tab, this one too. */
  async setArchived(c, archived) {
    try {
      await api.setArchived(c.name, archived);
      this.roomArchived(c.name, archived);
    } catch (err) {
      if (err.status !== 401) this.toast(err.message);
    }
  }

  /** Deletes a room for everyone; the `room_deleted` frame takes it out of every sidebar. */
  async deleteRoom(c) {
    try {
      await api.deleteRoom(c.name);
      this.roomDeleted(c.name);
    } catch (err) {
      if (err.status !== 401) this.toast(err.message);
    }
  }

  roomArchived(name, archived) {
    if (this.archivedRooms.has(name) === archived) return;
    if (archived) this.archivedRooms.add(name);
    else this.archivedRooms.delete(name);
    this.changed();
  }

  /** A room gone for good: out of the sidebar and the directory; if it was open, the user lands in `general`. */
  roomDeleted(name) {
    this.archivedRooms.delete(name);
    this.directory = this.directory.filter((r) => r.name !== name);
    if (this.roomNames.includes(name)) {
      this.roomNames = this.roomNames.filter((n) => n !== name);
      setUserPref(this.me, 'rooms', this.roomNames);
    }
    const c = this.convs.get(roomKey(name));
    if (!c) return this.changed();
    const wasOpen = this.activeKey === c.key;
    // forget() would open the first room of the sidebar: a deleted room's readers go to general.
    if (wasOpen) this.activeKey = null;
    this.forget(c);
    if (wasOpen) {
      this.joinRoom('general');
      this.toast(`#${name} was deleted.`);
    }
  }

  setUser(username, online, lastSeen) {
    const key = username.toLowerCase();
    const u = this.users.get(key) || { username, online: false, lastSeen: null };
    u.online = online;
    if (lastSeen) u.lastSeen = new Date(lastSeen);
    this.users.set(key, u);
    this.touchUser(username);
  }

  /** `c` has nothing unread any more (read here, or in another tab or device): its notifications can go. */
  dispatchRead(c) {
    this.dispatchEvent(new CustomEvent('read', { detail: { key: c.key } }));
  }

  forget(c) {
    // Its unsent messages could not go anywhere now.
    for (const p of c.pending) this.outbox.remove(p.clientId);
    this.convs.delete(c.key);
    if (this.activeKey === c.key) {
      const next = this.sidebarRooms().flat()[0];
      this.activeKey = next ? next.key : null;
      if (next) this.open(next.key);
    }
    this.changed();
  }

  toast(text) {
    this.dispatchEvent(new CustomEvent('toast', { detail: text }));
  }

  // ---- render scheduling -----------------------------------------------------

  /** Something that reshapes the screen (a switch, the connection status, the lists): render everything. */
  changed() {
    this.dirty.all = true;
    this.scheduleRender();
  }

  /** A conversation's messages, badge, presence or status lines changed. */
  touch(c) {
    this.dirty.convs.add(c.key);
    this.scheduleRender();
  }

  /** A person's presence changed (or they are new). */
  touchUser(username) {
    this.dirty.users.add(username.toLowerCase());
    this.scheduleRender();
  }

  /**
   * One render per animation frame, whatever arrived meanwhile; a hidden tab
   * has no frames, so it renders on a slow timer instead.
   */
  scheduleRender(again = false) {
    if (this.renderQueued && !again) return;
    this.renderQueued = true;
    const run = () => {
      if (!this.renderQueued) return;
      this.renderQueued = false;
      const dirty = this.dirty;
      this.dirty = { all: false, convs: new Set(), users: new Set() };
      this.dispatchEvent(new CustomEvent('change', { detail: dirty }));
    };
    if (document.visibilityState === 'visible') requestAnimationFrame(run);
    else setTimeout(run, HIDDEN_RENDER_MS);
  }
}
