// The signed-in user's token, kept in localStorage so a reload stays signed in.
// Everything else the client remembers per user (joined rooms, last open
// conversation) is keyed by username so two accounts in one browser never mix.

const TOKEN_KEY = 'hubbub.session';

/** @returns {{token: string, expiresAt: number, user: {id:number, username:string, email?:string}} | null} */
export function loadSession() {
  try {
    const s = JSON.parse(localStorage.getItem(TOKEN_KEY) || 'null');
    if (!s || typeof s.token !== 'string' || !s.user || typeof s.user.username !== 'string') return null;
    return s;
  } catch {
    return null;
  }
}

export function saveSession(token, expiresAt, user) {
  const s = { token, expiresAt: Date.parse(expiresAt) || 0, user };
  localStorage.setItem(TOKEN_KEY, JSON.stringify(s));
  return s;
}

export function clearSession() {
  localStorage.removeItem(TOKEN_KEY);
}

/** A token past its `expires_at` would only earn a 401: treat it as gone up front. */
export function isExpired(session) {
  return session.expiresAt > 0 && session.expiresAt <= Date.now();
}

/** Small per-user preferences (joined rooms, last open conversation). */
export function userPref(username, name, fallback) {
  try {
    const v = JSON.parse(localStorage.getItem(`hubbub.${username.toLowerCase()}.${name}`) || 'null');
    return v ?? fallback;
  } catch {
    return fallback;
  }
}

export function setUserPref(username, name, value) {
  localStorage.setItem(`hubbub.${username.toLowerCase()}.${name}`, JSON.stringify(value));
}
