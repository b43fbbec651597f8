// Entry point: the login screen or the chat. Signing out reloads the page, so
// every listener and timer of the old session is gone for certain; the reason
// (e.g. an expired token) survives the reload in sessionStorage. The service
// worker is registered here (js/worker.js); a notification clicked with no
// client window open opens one at `/#open=<key>&message=<id>`.

import { configureApi } from './api.js';
import { loadSession, saveSession, clearSession, isExpired } from './session.js';
import { Chat } from './chat.js';
import { showAuth } from './ui/auth.js';
import { mountApp, offerUpdate } from './ui/app.js';
import { registerWorker } from './worker.js';
import { startFiles, stopFiles } from './files.js';

const EXPIRED = 'Your session has expired or was rejected. Please log in again.';
const NOTICE_KEY = 'hubbub.notice';

let chat = null;

async function start(session) {
  // Any 401 from an authenticated call means the token is no longer good.
  configureApi(session.token, () => signOut(EXPIRED));
  // File URLs need their link before the first image is drawn.
  await startFiles(session.token);
  chat = new Chat(session, () => signOut(EXPIRED));
  mountApp(chat, () => signOut());
  const wanted = takeOpenRequest();
  chat.start().then(() => wanted && chat.goTo(wanted.key, wanted.id));
}

/** `#open=<key>&message=<id>` (a notification opened this window): read once, then gone from the address. */
function takeOpenRequest() {
  const params = new URLSearchParams(location.hash.slice(1));
  const key = params.get('open');
  if (!key) return null;
  history.replaceState(null, '', location.pathname + location.search);
  const id = Number(params.get('message'));
  return { key, id: Number.isSafeInteger(id) && id > 0 ? id : null };
}

function signOut(notice) {
  // A refused token can be noticed twice at once (a REST call and the socket).
  if (!chat) return;
  chat.stop();
  stopFiles();
  chat = null;
  clearSession();
  if (notice) sessionStorage.setItem(NOTICE_KEY, notice);
  location.reload();
}

async function boot() {
  let notice = sessionStorage.getItem(NOTICE_KEY);
  sessionStorage.removeItem(NOTICE_KEY);
  let session = loadSession();
  if (session && isExpired(session)) {
    clearSession();
    session = null;
    notice = EXPIRED;
  }
  if (!session) {
    const res = await showAuth(notice);
    session = saveSession(res.token, res.expires_at, res.user);
  }
  start(session);
}

registerWorker(offerUpdate);
boot();
