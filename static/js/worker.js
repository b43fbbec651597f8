// The page's side of the service worker (/sw.js): registering it, learning
// that a new version of the client took over, and the messages between the
// two (notifications to show or close, a notification click to follow).
//
// A worker needs a secure context (https, or http on localhost): on a plain
// http LAN address there is none, the client works as before without offline
// loading or notifications, and `workerSupported` says so.

export const workerSupported = 'serviceWorker' in navigator && window.isSecureContext;

/**
 * Register the worker. `onUpdated` runs when a new version took over this
 * page (its files are cached; a reload shows it).
 */
export function registerWorker(onUpdated) {
  if (!workerSupported) return;
  // A page that had no worker yet gets its first one: that is no update.
  let hadController = !!navigator.serviceWorker.controller;
  navigator.serviceWorker.addEventListener('controllerchange', () => {
    if (hadController) onUpdated();
    hadController = true;
  });
  // updateViaCache 'none': the browser asks the server for sw.js on every check, never an HTTP cache.
  navigator.serviceWorker.register('/sw.js', { scope: '/', updateViaCache: 'none' }).catch((err) => {
    // The client works without it; only offline loading and notifications are missing.
    console.warn('service worker not registered:', err);
  });
}

/** Send `message` to the active worker (once there is one). */
export async function postToWorker(message) {
  if (!workerSupported) return;
  const reg = await navigator.serviceWorker.ready;
  reg.active?.postMessage(message);
}

/** Messages the worker sends this page ({type: 'open', key, id} after a notification click). */
export function onWorkerMessage(handler) {
  if (!workerSupported) return;
  navigator.serviceWorker.addEventListener('message', (ev) => {
    if (ev.data && typeof ev.data === 'object') handler(ev.data);
  });
}
