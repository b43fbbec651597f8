// Entry point: the login screen or the chat. Signing out reloads the page, so
// every listener and timer of the old session is gone for certain; the reason
// (e.g. an expired token) survives the reload in sessionStorage.

import { configureApi } from './api.js';
import { loadSession, saveSession, clearSession, isExpired } from './session.js';
import { Chat } from './chat.js';
import { showAuth } from './ui/auth.js';
import { mountApp } from './ui/app.js';

const EXPIRED = 'Your session has expired or was rejected. Please log in again.';
const NOTICE_KEY = 'hubbub.notice';

let chat = null;

function start(session) {
  // Any 401 from an authenticated call means the token is no longer good.
  configureApi(session.token, () => signOut(EXPIRED));
  chat = new Chat(session, () => signOut(EXPIRED));
  mountApp(chat, () => signOut());
  chat.start();
}

function signOut(notice) {
  // A refused token can be noticed twice at once (a REST call and the socket).
  if (!chat) return;
  chat.stop();
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

boot();
