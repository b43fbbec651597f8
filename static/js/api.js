// REST calls. Errors come back as {"error","code"} JSON; they are turned into
// ApiError so callers can branch on `code` and show `message` next to a field.

export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

let authToken = null;
let onUnauthorized = () => {};

/** The token sent as `Authorization: Bearer`, and what to do when it is refused. */
export function configureApi(token, unauthorizedHandler) {
  authToken = token;
  onUnauthorized = unauthorizedHandler || (() => {});
}

async function request(method, path, body) {
  const headers = { Accept: 'application/json' };
  // Every write is JSON, even an empty one: the server refuses anything else
  // (a cross-site form cannot send it).
  if (method !== 'GET' && body === undefined) body = {};
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  if (authToken) headers.Authorization = `Bearer ${authToken}`;
  let res;
  try {
    res = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  } catch {
    throw new ApiError(0, 'network', 'Cannot reach the server. Check your connection and try again.');
  }
  let data = null;
  try {
    data = await res.json();
  } catch {
    // Non-JSON bodies (a proxy's error page, say) fall through to the generic message.
  }
  if (res.ok) return data;
  const err = new ApiError(res.status, data?.code || `http_${res.status}`, data?.error || `The server answered ${res.status}.`);
  // Only an authenticated call can be "rejected": a failed login is a 401 too.
  // A banned user's token is refused with 403 `banned`: they are out too.
  if (authToken && (res.status === 401 || err.code === 'banned')) onUnauthorized(err);
  throw err;
}

const user = (name) => `/api/admin/users/${encodeURIComponent(name)}`;
const adminRoom = (name) => `/api/admin/rooms/${encodeURIComponent(name)}`;

export const api = {
  signup: (username, email, password, invite) =>
    request('POST', '/api/signup', { username, email: email || undefined, password, invite: invite || undefined }),
  server: () => request('GET', '/api/server'),
  logout: () => request('POST', '/api/logout', {}),
  wsTicket: () => request('POST', '/api/ws-ticket', {}),
  setProfile: (profile) => request('PUT', '/api/me', profile),
  changePassword: (old, next) => request('POST', '/api/password', { old, new: next }),
  deleteAccount: (password) => request('POST', '/api/me/delete', { password }),
  sessions: () => request('GET', '/api/sessions'),
  endSession: (id) => request('DELETE', `/api/sessions/${encodeURIComponent(id)}`),
  endOtherSessions: () => request('DELETE', '/api/sessions'),
  adminUsers: () => request('GET', '/api/admin/users'),
  setRole: (name, role) => request('PUT', `${user(name)}/role`, { role }),
  ban: (name, reason) => request('POST', `${user(name)}/ban`, { reason }),
  unban: (name) => request('DELETE', `${user(name)}/ban`),
  invites: () => request('GET', '/api/invites'),
  createInvite: (uses, expiresIn) => request('POST', '/api/invites', { uses, expires_in: expiresIn }),
  revokeInvite: (code) => request('DELETE', `/api/invites/${encodeURIComponent(code)}`),
  setArchived: (room, archived) => request(archived ? 'POST' : 'DELETE', `${adminRoom(room)}/archive`, {}),
  deleteRoom: (room) => request('DELETE', adminRoom(room), {}),
  audit: () => request('GET', '/api/admin/audit'),
  settings: () => request('GET', '/api/admin/settings'),
  setSettings: (settings) => request('PUT', '/api/admin/settings', settings),
  login: (username, password) => request('POST', '/api/login', { username, password }),
  me: () => request('GET', '/api/me'),
  users: () => request('GET', '/api/users'),
  rooms: () => request('GET', '/api/rooms'),
  search: (q, limit = 30) => request('GET', `/api/search?q=${encodeURIComponent(q)}&limit=${limit}`),
  pushKey: () => request('GET', '/api/push/key'),
  pushSubscribe: (subscription) => request('POST', '/api/push/subscriptions', subscription),
  pushUnsubscribe: (endpoint) => request('DELETE', '/api/push/subscriptions', { endpoint }),
  pushSettings: () => request('GET', '/api/push/settings'),
  setPushSettings: (settings) => request('PUT', '/api/push/settings', settings),
};
