// The user's unsent messages, kept in localStorage so a reload (or a tab
// closed while offline) loses none. Each keeps its `client_id`: sending it
// again after a reload is safe, since the server acks a `client_id` the user
// already used instead of storing the message twice (it remembers the last
// 1,000 per user, well above MAX_OUTBOX).
//
// Keyed per user like every preference (session.js), read and written whole
// on each change, so tabs of one user never overwrite each other's entries
// with a stale copy. Bounded: when it is full a new message is refused (it
// stays in the composer) rather than one already written being dropped.
// Failed messages stay too, with their error, until the user dismisses them.

import { MAX_CONTENT_CHARS, contentLength } from './content.js';

/** The most unsent messages kept per user. */
export const MAX_OUTBOX = 100;
const MAX_CLIENT_ID = 64;
const MAX_NAME = 64;
const MAX_ERROR = 500;

export class Outbox {
  /** @param {string} username */
  constructor(username) {
    this.key = `hubbub.${username.toLowerCase()}.outbox`;
  }

  /**
   * The messages, in the order written:
   * {clientId, kind: 'room'|'dm', name, content, replyTo, time, state: 'pending'|'failed', error?, attachments?}
   */
  load() {
    let list;
    try {
      list = JSON.parse(localStorage.getItem(this.key) || '[]');
    } catch {
      return [];
    }
    // Storage is input like any other: an entry that is not one of ours is skipped.
    return Array.isArray(list) ? list.filter(isEntry).slice(0, MAX_OUTBOX) : [];
  }

  /** Keep one more message; false when the outbox is full or the browser refuses to store it. */
  add(entry) {
    const list = this.load();
    if (list.length >= MAX_OUTBOX) return false;
    list.push(entry);
    return this.save(list);
  }

  /** A message the server refused: kept, marked failed, until dismissed. */
  fail(clientId, error) {
    const list = this.load();
    const e = list.find((x) => x.clientId === clientId);
    if (!e) return;
    e.state = 'failed';
    e.error = String(error).slice(0, MAX_ERROR);
    this.save(list);
  }

  /** Acknowledged, dismissed or no longer sendable. */
  remove(clientId) {
    const list = this.load();
    const kept = list.filter((x) => x.clientId !== clientId);
    if (kept.length !== list.length) this.save(kept);
  }

  save(list) {
    try {
      if (list.length) localStorage.setItem(this.key, JSON.stringify(list));
      else localStorage.removeItem(this.key);
      return true;
    } catch {
      // Quota exceeded, or storage disabled: the caller keeps the text in the composer.
      return false;
    }
  }
}

function isEntry(e) {
  return (
    !!e &&
    typeof e.clientId === 'string' &&
    e.clientId.length > 0 &&
    e.clientId.length <= MAX_CLIENT_ID &&
    (e.kind === 'room' || e.kind === 'dm') &&
    typeof e.name === 'string' &&
    e.name.length > 0 &&
    e.name.length <= MAX_NAME &&
    typeof e.content === 'string' &&
    (contentLength(e.content) > 0 || hasAttachments(e)) &&
    contentLength(e.content) <= MAX_CONTENT_CHARS &&
    (e.attachments === undefined || areAttachments(e.attachments)) &&
    (e.replyTo === null || Number.isSafeInteger(e.replyTo)) &&
    !Number.isNaN(Date.parse(e.time)) &&
    (e.state === 'pending' || e.state === 'failed')
  );
}

/** The most files one message carries (the server's limit). */
export const MAX_ATTACHMENTS = 10;

function hasAttachments(e) {
  return Array.isArray(e.attachments) && e.attachments.length > 0;
}

/** File objects as the server returned them: an id and a name at least. */
function areAttachments(list) {
  return (
    Array.isArray(list) &&
    list.length <= MAX_ATTACHMENTS &&
    list.every((f) => !!f && Number.isSafeInteger(f.id) && f.id > 0 && typeof f.name === 'string' && Number.isSafeInteger(f.size))
  );
}
