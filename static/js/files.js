// Files: uploads with progress and cancel, file URLs for <img> and downloads,
// the file link behind them, and who has an avatar (user objects' `avatar`). The token never goes into a URL: file URLs
// carry a short-lived link from GET /api/me/file-link (`?ft=`), renewed well
// before it lapses; an image whose link lapsed meanwhile retries once with
// the new one.

let token = null;
let link = null;
let renewTimer = null;
// Renew this long before the link lapses (it lasts ten minutes).
const RENEW_EARLY_MS = 120_000;
const RETRY_MS = 15_000;

/** Fetches the first link (the app shows files only once this resolved) and keeps it fresh. */
export async function startFiles(sessionToken) {
  token = sessionToken;
  await renew();
}

export function stopFiles() {
  clearTimeout(renewTimer);
  token = null;
}

async function renew() {
  clearTimeout(renewTimer);
  if (!token) return;
  try {
    const res = await fetch('/api/me/file-link', { headers: { Authorization: `Bearer ${token}`, Accept: 'application/json' } });
    if (!res.ok) throw new Error(String(res.status));
    const body = await res.json();
    link = body.ft;
    const left = Date.parse(body.expires_at) - Date.now();
    renewTimer = setTimeout(renew, Math.max(left - RENEW_EARLY_MS, RETRY_MS));
  } catch {
    renewTimer = setTimeout(renew, RETRY_MS);
  }
}

/** The URL of a file (`thumb`: 'small' or 'large' for an image's previews). */
export function fileUrl(id, thumb) {
  const q = new URLSearchParams();
  if (thumb) q.set('thumb', thumb);
  if (link) q.set('ft', link);
  return `/api/files/${encodeURIComponent(id)}?${q}`;
}

/** An <img> of a file retries once with a fresh link when its link had lapsed. */
export function retryWithFreshLink(img, id, thumb) {
  img.addEventListener('error', () => {
    if (img.dataset.retried) return;
    img.dataset.retried = '1';
    img.src = fileUrl(id, thumb);
  });
}

/** Whether a file is an image the server measured (so it has previews and a known size). */
export function isImage(f) {
  return Number.isSafeInteger(f?.width) && Number.isSafeInteger(f?.height) && f.width > 0 && f.height > 0;
}

/** "1.4 MB", "320 KB", "12 bytes". */
export function formatSize(n) {
  if (n < 1000) return `${n} byte${n === 1 ? '' : 's'}`;
  if (n < 1_000_000) return `${Math.round(n / 1000)} KB`;
  if (n < 1_000_000_000) return `${(n / 1_000_000).toFixed(1)} MB`;
  return `${(n / 1_000_000_000).toFixed(1)} GB`;
}

/** What the server's refusal means, for the person who uploaded. */
function refusal(status, body) {
  if (status === 413) return body?.error || 'The file is too large.';
  if (status === 507 && body?.code === 'quota_exceeded') return 'You have used all your file space: delete some messages with files first.';
  if (status === 507) return 'The server has no room left for files.';
  if (status === 0) return 'Cannot reach the server.';
  return body?.error || `The upload failed (${status}).`;
}

/**
 * Uploads `file` as the raw body (POST /api/files?name=…, or PUT
 * /api/me/avatar when `avatar`). `onProgress(fraction)` as it goes; returns
 * {promise, abort}: the promise resolves to the response body, or rejects
 * with an Error whose message says why (`aborted` when cancelled).
 */
export function upload(file, onProgress, avatar = false) {
  const xhr = new XMLHttpRequest();
  const promise = new Promise((resolve, reject) => {
    xhr.open(avatar ? 'PUT' : 'POST', avatar ? '/api/me/avatar' : `/api/files?name=${encodeURIComponent(file.name || 'pasted image')}`);
    xhr.setRequestHeader('Authorization', `Bearer ${token}`);
    xhr.setRequestHeader('Content-Type', file.type || 'application/octet-stream');
    xhr.responseType = 'json';
    xhr.upload.addEventListener('progress', (ev) => {
      if (ev.lengthComputable) onProgress?.(ev.loaded / ev.total);
    });
    xhr.addEventListener('load', () => {
      if (xhr.status >= 200 && xhr.status < 300) resolve(xhr.response);
      else reject(new Error(refusal(xhr.status, xhr.response)));
    });
    xhr.addEventListener('error', () => reject(new Error(refusal(0))));
    xhr.addEventListener('abort', () => reject(new Error('aborted')));
    xhr.send(file);
  });
  return { promise, abort: () => xhr.abort() };
}

/** lower-case username -> the URL of their avatar (from user objects). */
const avatars = new Map();

/** Learns avatars from user objects (`GET /api/users`, `/api/me`); a null one is forgotten. */
export function setAvatarUrls(users) {
  for (const u of users) {
    if (typeof u?.username !== 'string') continue;
    if (typeof u.avatar === 'string' && u.avatar.startsWith('/api/users/')) avatars.set(u.username.toLowerCase(), u.avatar);
    else avatars.delete(u.username.toLowerCase());
  }
}

/** The small avatar of `username`, or null (their initial is shown instead). */
export function avatarUrl(username) {
  const url = avatars.get(username.toLowerCase());
  return url ? `${url}&thumb=small` : null;
}
