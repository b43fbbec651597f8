// How each frame from the server changes the chat state: one handler per
// server-to-client frame of PROTOCOL.md, given the controller (chat.js).
// Frame types not listed here are ignored, as DECISIONS.md asks.
//
// Handlers say what they changed, so a render touches only that: changes to
// messages go through Conversation methods (which record the rows),
// `chat.touch(c)` marks a conversation's badge, header and status lines,
// `chat.touchUser(name)` a person, and `chat.changed()` is kept for the rare
// frames that reshape the screen (a room appearing or going away).

import { roomKey, dmKey, PAGE_SIZE, DM_CATCHUP } from './conversation.js';

const TYPING_SHOWN_MS = 3000;
const RATE_LIMIT_RETRY_MS = 1000;
// An edit, delete or reaction not answered within this long is not waited for.
const MESSAGE_OP_MS = 10_000;

/** A message object of the wire as the client keeps it. */
export const toMessage = (m) => ({
  id: m.id,
  user: m.user ?? m.from,
  content: m.content,
  time: new Date(m.timestamp),
  replyTo: m.reply_to ?? null,
  editedAt: m.edited_at ?? null,
  reactions: Array.isArray(m.reactions) && m.reactions.length ? m.reactions.map((r) => ({ emoji: r.emoji, users: [...r.users] })) : null,
  attachments: Array.isArray(m.attachments) && m.attachments.length ? m.attachments : null,
});

/** The conversation a frame about a message names (`room`, or `from`/`to`), if this tab has it. */
function convOf(chat, f) {
  if (f.room) return chat.convs.get(roomKey(f.room)) || null;
  if (f.from && f.to) return chat.convs.get(dmKey(chat.peerOf(f))) || null;
  return null;
}

export const frameHandlers = {
  message(chat, f) {
    const c = chat.room(f.room);
    receive(chat, c, toMessage(f));
  },
  private_message(chat, f) {
    const peer = f.from.toLowerCase() === chat.me.toLowerCase() ? f.to : f.from;
    const c = chat.dm(peer);
    const msg = toMessage(f);
    receive(chat, c, msg);
    chat.alert(c, msg, 'private');
  },
  message_edited(chat, f) {
    const c = convOf(chat, f);
    if (chat.messageOp?.id === f.id) chat.messageOp = null;
    if (c?.edit(f.id, f.content, f.edited_at ?? new Date().toISOString())) chat.dispatchEvent(new CustomEvent('edited', { detail: { key: c.key, id: f.id } }));
  },
  message_deleted(chat, f) {
    const c = convOf(chat, f);
    if (chat.messageOp?.id === f.id) chat.messageOp = null;
    if (!c) return;
    c.remove(f.id);
    if (chat.replyTo?.key === c.key && chat.replyTo.id === f.id) chat.setReply(null);
    chat.dispatchEvent(new CustomEvent('deleted', { detail: { key: c.key, id: f.id } }));
  },
  reaction(chat, f) {
    const c = convOf(chat, f);
    if (chat.messageOp?.id === f.id && f.user.toLowerCase() === chat.me.toLowerCase()) chat.messageOp = null;
    c?.react(f.id, f.emoji, f.user, f.on !== false);
  },
  mention(chat, f) {
    const m = f.message;
    if (!m || typeof m.id !== 'number') return;
    const msg = toMessage(m);
    if (m.room) {
      // A room not in the sidebar appears there, with the mention counted.
      if (!chat.convs.has(roomKey(m.room))) chat.mentionedIn(m.room);
      const c = chat.room(m.room);
      if (!chat.alerted.has(m.id) && !chat.canSee(c) && msg.user.toLowerCase() !== chat.me.toLowerCase()) {
        c.mentions += 1;
        chat.touch(c);
      }
      chat.alert(c, msg, 'mention');
    } else if (m.from && m.to) {
      chat.alert(chat.dm(chat.peerOf(m)), msg, 'private');
    }
  },
  ack(chat, f) {
    chat.acknowledged(f.client_id);
    // A replay after a reconnect may already have brought the stored copy.
    for (const c of chat.convs.values()) if (c.acknowledge(f.client_id, f.id, new Date(f.timestamp), chat.me)) return;
  },
  delivered(chat, f) {
    for (const c of chat.convs.values()) if (c.kind === 'dm' && c.byId.has(f.id)) c.markDelivered(f.id);
  },
  online_users(chat, f) {
    const c = chat.room(f.room);
    c.joined = true;
    c.joining = false;
    c.replaying = false;
    c.online = new Set(f.users);
    if (f.recovered === false) {
      // More was missed than the server replays: start again from the newest page.
      c.reset();
    }
    if (!c.loaded && c.key === chat.activeKey) chat.requestHistory(c, 'initial');
    else if (c.key === chat.activeKey) {
      chat.refreshIfStale(c);
      if (c.revealAfterLoad) {
        const id = c.revealAfterLoad;
        c.revealAfterLoad = null;
        chat.reveal(id);
      }
    }
    chat.flushPending(c);
    chat.markRead(c);
    chat.touch(c);
  },
  join(chat, f) {
    const c = chat.convs.get(roomKey(f.room));
    if (!c || f.user === chat.me) return;
    c.online.add(f.user);
    c.addNotice(`${f.user} joined #${f.room}`);
    chat.touch(c);
  },
  leave(chat, f) {
    const c = chat.convs.get(roomKey(f.room));
    if (!c) return;
    if (f.user.toLowerCase() === chat.me.toLowerCase()) {
      // Only sent to the user when an owner removed them from a private room.
      chat.toast(`You were removed from #${f.room}.`);
      chat.forget(c);
      return;
    }
    c.online.delete(f.user);
    chat.clearTyping(c, f.user);
    c.addNotice(`${f.user} left #${f.room}`);
    chat.touch(c);
  },
  user_updated(chat, f) {
    chat.setProfile(f.user);
  },
  user_status(chat, f) {
    chat.setUser(f.user, f.status === 'online', f.last_seen);
  },
  typing(chat, f) {
    const c = chat.convs.get(roomKey(f.room));
    if (!c || f.user === chat.me) return;
    clearTimeout(c.typing.get(f.user));
    c.typing.set(
      f.user,
      setTimeout(() => {
        c.typing.delete(f.user);
        chat.touch(c);
      }, TYPING_SHOWN_MS),
    );
    chat.touch(c);
  },
  stop_typing(chat, f) {
    const c = chat.convs.get(roomKey(f.room));
    if (c) chat.clearTyping(c, f.user);
  },
  unread(chat, f) {
    // The server's count is authoritative after each connect; live counting continues from it.
    for (const c of chat.convs.values()) c.unread = 0;
    for (const c of chat.convs.values()) c.mentions = 0;
    for (const u of f.counts || []) {
      if (u.room && u.mentions && !chat.convs.has(roomKey(u.room))) chat.mentionedIn(u.room);
      const c = u.room ? chat.convs.get(roomKey(u.room)) : chat.dm(u.with);
      if (!c) continue;
      c.unread = u.count;
      c.mentions = u.mentions || 0;
    }
    chat.markRead(chat.active);
    chat.changed();
  },
  read(chat, f) {
    const c = f.room ? chat.convs.get(roomKey(f.room)) : chat.dm(f.with);
    if (!c) return;
    if (f.user.toLowerCase() === chat.me.toLowerCase()) {
      // Another tab of this user read it.
      c.readSent = Math.max(c.readSent, f.id);
      if (c.readSent >= c.lastId) {
        c.unread = 0;
        c.mentions = 0;
        chat.dispatchRead(c);
      }
      chat.touch(c);
    } else if (c.kind === 'dm') {
      c.markPeerRead(f.id);
    }
  },
  history(chat, f) {
    const c = f.room ? chat.room(f.room) : chat.dm(f.with);
    const request = c.historyQueue.shift() ?? null;
    const kind = request?.kind ?? null;
    const messages = f.messages.map(toMessage);
    if (kind === 'focus') c.focusPage(messages);
    else if (kind === 'refresh' || kind === 'catchup') c.refresh(messages, kind === 'catchup' ? DM_CATCHUP : PAGE_SIZE, request.upTo, request.changes);
    else c.addHistory(kind, messages);
    if (kind === 'initial' && c.revealAfterLoad) {
      const id = c.revealAfterLoad;
      c.revealAfterLoad = null;
      if (chat.activeKey === c.key) chat.reveal(id);
    } else if (c.seek && !c.historyQueue.length) {
      // The last page in flight decides (one asked before the seek may land first).
      chat.continueSeek(c, kind);
    }
    chat.markRead(c);
    chat.touch(c);
  },
  room_members(chat, f) {
    const c = chat.room(f.room);
    c.private = true;
    c.owner = f.owner;
    c.members = f.members;
    chat.joinIfOpen(c);
    if (chat.dialogOp?.room === f.room) {
      const op = chat.dialogOp;
      chat.dialogOp = null;
      chat.dispatchEvent(new CustomEvent('dialog-done', { detail: op }));
      if (op.kind === 'create') chat.open(c.key);
    }
    chat.changed();
  },
  // hubbub's additions (README, "Where the contract is silent"): a room made
  // read-only (or open again), and a room gone with its history.
  room_archived(chat, f) {
    if (typeof f.room === 'string') chat.roomArchived(f.room, f.archived !== false);
  },
  room_deleted(chat, f) {
    if (typeof f.room === 'string') chat.roomDeleted(f.room);
  },
  error(chat, f) {
    if (f.client_id) return failPending(chat, f);
    if (chat.dialogOp) {
      const op = chat.dialogOp;
      chat.dialogOp = null;
      chat.dispatchEvent(new CustomEvent('dialog-error', { detail: { ...op, code: f.code, message: f.message } }));
      return;
    }
    // Errors carry no id: one soon after an edit, delete or reaction is that one's answer.
    if (chat.messageOp && performance.now() - chat.messageOp.at < MESSAGE_OP_MS) {
      const op = chat.messageOp;
      chat.messageOp = null;
      chat.dispatchEvent(new CustomEvent('message-error', { detail: { ...op, code: f.code, message: f.message } }));
      chat.toast(opError(op, f));
      return;
    }
    chat.toast(f.message || `Error: ${f.code}`);
  },
};

function receive(chat, c, msg) {
  const isNew = c.add(msg);
  chat.clearTyping(c, msg.user);
  if (!isNew || msg.user.toLowerCase() === chat.me.toLowerCase()) return;
  // Scrolled up, the user is told how many arrived below instead of being moved.
  if (!c.following) c.newBelow += 1;
  // Replayed messages are already in the `unread` count sent on connect.
  if (chat.canSee(c)) chat.markRead(c);
  else if (!c.replaying) c.unread += 1;
  chat.touch(c);
}

function opError(op, f) {
  const what = { edit: 'edit that message', delete: 'delete that message', react: 'react to that message' }[op.kind];
  if (f.code === 'forbidden') return `You may not ${what}.`;
  if (f.code === 'busy') return `Could not ${what} right now. Please try again.`;
  return `Could not ${what}: ${f.message || f.code}`;
}

function failPending(chat, f) {
  for (const c of chat.convs.values()) {
    const p = c.findPending(f.client_id);
    if (!p) continue;
    if (f.code === 'rate_limited') setTimeout(() => chat.transmit(c, p), RATE_LIMIT_RETRY_MS);
    else chat.refused(c, p, f.message || f.code);
    return;
  }
}
