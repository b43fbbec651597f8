// The service worker: the app shell offline, and the notifications.
//
// The shell. Every file of the client is cached when the worker installs, in
// a cache named by SHELL.version, and answered from there first; a navigation
// gets index.html. Nothing else is touched (the API, the WebSocket): it goes
// to the network as if there were no worker. The server stamps the line below
// with a hash of every other file and their paths (src/http/shell.rs), so a
// new client means new worker bytes: the browser installs that worker (the
// page registers it with updateViaCache 'none', and the server sends every
// file no-cache), which caches the new files, takes over at once and deletes
// the old cache; open pages are told and offer a reload (js/worker.js).
//
// Notifications. A page asks for them with a message, and the server's Web
// Push reaches the `push` handler when no tab is open; both call the same
// three functions: showMessageNotification (one notification per
// conversation, replaced as messages come), closeNotifications (the
// conversation was read) and openConversation (a click). A push whose user
// chose not to show message text has no conversation: it is one "new
// message" notification that opens the app.

const SHELL = { version: 'unstamped', files: [] };

const CACHE_PREFIX = 'hubbub-shell-';
const CACHE = `${CACHE_PREFIX}${SHELL.version}`;
const SHELL_FILES = new Set(SHELL.files);
const INDEX = '/index.html';
// What a page may ask to show: as long as a notification can usefully be.
const MAX_TITLE_CHARS = 200;
const MAX_BODY_CHARS = 500;
const MAX_KEY_CHARS = 100;

self.addEventListener('install', (event) => {
  event.waitUntil(
    (async () => {
      const cache = await caches.open(CACHE);
      // Past the HTTP cache: the files must be the ones this version names.
      await cache.addAll(SHELL.files.map((f) => new Request(f, { cache: 'reload' })));
      await self.skipWaiting();
    })(),
  );
});

self.addEventListener('activate', (event) => {
  event.waitUntil(
    (async () => {
      for (const name of await caches.keys()) {
        if (name.startsWith(CACHE_PREFIX) && name !== CACHE) await caches.delete(name);
      }
      await self.clients.claim();
    })(),
  );
});

self.addEventListener('fetch', (event) => {
  const req = event.request;
  if (req.method !== 'GET') return;
  const url = new URL(req.url);
  if (url.origin !== self.location.origin) return;
  const path = req.mode === 'navigate' && url.pathname === '/' ? INDEX : url.pathname;
  if (!SHELL_FILES.has(path)) return;
  event.respondWith(fromShell(req, path));
});

/** The cached file, or the network's answer when the cache lost it (storage pressure). */
async function fromShell(req, path) {
  const cache = await caches.open(CACHE);
  return (await cache.match(path)) || fetch(req);
}

// ---- notifications: the seams a `push` handler calls ---------------------------

const tagOf = (key) => `hubbub:${key ?? '*'}`;
// A push stands for at most this many messages (the server's pacing count).
const MAX_PUSH_COUNT = 10_000;

/**
 * Show the notification for a new message in conversation `key` ('#room' or
 * '@person'; null: one that does not say which). It replaces the
 * conversation's earlier one, so a busy room is one notification that says
 * how many came, not fifty. `count` is how many messages this note stands
 * for (a push the server held back for a while says so).
 * @param {{key: string|null, title: string, body: string, id?: number|null, count?: number}} note
 */
async function showMessageNotification(note) {
  const tag = tagOf(note.key);
  const earlier = await self.registration.getNotifications({ tag });
  const count = earlier.reduce((n, x) => Math.max(n, x.data?.count || 0), 0) + (note.count || 1);
  const body = count > 1 ? `${note.body}\n(and ${count - 1} more)` : note.body;
  await self.registration.showNotification(note.title, {
    body,
    tag,
    renotify: true,
    icon: '/icons/icon-192.png',
    timestamp: Date.now(),
    data: { key: note.key, id: note.id ?? null, count },
  });
}

/** Conversation `key` was read (here or on another device): its notification goes. */
async function closeNotifications(key) {
  for (const n of await self.registration.getNotifications({ tag: tagOf(key) })) n.close();
}

/**
 * Bring the user to conversation `key` (and message `id`): an open client
 * window is told and focused, else a new one opens on it.
 */
async function openConversation({ key, id }) {
  const windows = await self.clients.matchAll({ type: 'window', includeUncontrolled: true });
  const client = windows.find((c) => c.focused) || windows.find((c) => c.visibilityState === 'visible') || windows[0];
  if (!client) {
    if (!key) return self.clients.openWindow('/');
    const hash = new URLSearchParams({ open: key });
    if (id) hash.set('message', String(id));
    return self.clients.openWindow(`/#${hash}`);
  }
  if (key) client.postMessage({ type: 'open', key, id: id ?? null });
  // Focusing needs the click's user activation; without one the window was still told.
  return client.focus().catch(() => client);
}

self.addEventListener('notificationclick', (event) => {
  event.notification.close();
  event.waitUntil(openConversation(event.notification.data || {}));
});

/** Page messages are checked like any input: a malformed one is ignored. */
function conversationKey(key) {
  return typeof key === 'string' && /^[#@]/.test(key) && key.length <= MAX_KEY_CHARS ? key : null;
}

self.addEventListener('message', (event) => {
  const m = event.data;
  const key = conversationKey(m?.key);
  if (!key) return;
  if (m.type === 'notify' && typeof m.title === 'string' && typeof m.body === 'string') {
    const id = Number.isSafeInteger(m.id) ? m.id : null;
    event.waitUntil(showMessageNotification({ key, title: m.title.slice(0, MAX_TITLE_CHARS), body: m.body.slice(0, MAX_BODY_CHARS), id }));
  } else if (m.type === 'read') {
    event.waitUntil(closeNotifications(key));
  }
});

// ---- Web Push ------------------------------------------------------------------

/**
 * A push's payload as the server writes it (src/push/message.rs), checked
 * like any input. A browser requires every push to show a notification, so
 * one that cannot be read still says that something came.
 */
function pushedNote(data) {
  let p = null;
  try {
    p = data ? data.json() : null;
  } catch {
    p = null;
  }
  const text = (v, max) => (typeof v === 'string' && v ? v.slice(0, max) : null);
  const count = Number.isSafeInteger(p?.count) && p.count > 0 ? Math.min(p.count, MAX_PUSH_COUNT) : 1;
  return {
    key: conversationKey(p?.key),
    title: text(p?.title, MAX_TITLE_CHARS) || 'hubbub',
    body: text(p?.body, MAX_BODY_CHARS) || 'You have a new message',
    id: Number.isSafeInteger(p?.id) ? p.id : null,
    count,
  };
}

self.addEventListener('push', (event) => {
  event.waitUntil(showMessageNotification(pushedNote(event.data)));
});

/**
 * The push service replaced this browser's subscription (or dropped it).
 * The worker has no token to tell the server, so it subscribes again with
 * the same key and asks the open pages to register the new subscription;
 * with none open, the page does when it next loads (js/ui/push.js syncs
 * on every start). The old endpoint is dropped by the server the first time
 * its push service answers 404 or 410.
 */
async function resubscribe(event) {
  let sub = event.newSubscription;
  const key = event.oldSubscription?.options?.applicationServerKey;
  if (!sub && key) sub = await self.registration.pushManager.subscribe({ userVisibleOnly: true, applicationServerKey: key });
  if (!sub) return;
  for (const client of await self.clients.matchAll({ type: 'window', includeUncontrolled: true })) {
    client.postMessage({ type: 'push-subscription', subscription: sub.toJSON() });
  }
}

self.addEventListener('pushsubscriptionchange', (event) => {
  event.waitUntil(resubscribe(event));
});
