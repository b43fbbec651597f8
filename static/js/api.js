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
  if (res.status === 401 && authToken) onUnauthorized(err);
  throw err;
}

export const api = {
  signup: (username, email, password) => request('POST', '/api/signup', { username, email, password }),
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
