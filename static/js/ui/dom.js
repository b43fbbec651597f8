// Small DOM helpers. Text always goes in through textContent or text nodes:
// nothing a user typed is ever parsed as HTML.

import { avatarUrl } from '../files.js';

export const $ = (id) => document.getElementById(id);

/** h('li', {className: 'x', dataset: {key: 'k'}, onclick}, child, 'text') */
export function h(tag, props = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(props)) {
    if (v === undefined || v === null || v === false) continue;
    if (k === 'dataset') Object.assign(el.dataset, v);
    else if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
    else if (k in el && !k.startsWith('aria')) el[k] = v;
    else el.setAttribute(k, v === true ? '' : v);
  }
  el.append(...children.filter((c) => c !== null && c !== undefined && c !== false));
  return el;
}

/**
 * Make `container`'s children match `items`, reusing nodes by key so focus,
 * scroll position and hover state survive a re-render. Nodes are moved only
 * when out of place; `update` runs on new nodes and on those `needsUpdate`
 * names (all of them by default). Returns the nodes by key.
 */
export function syncList(container, items, keyOf, create, update, needsUpdate = () => true) {
  const keys = items.map(keyOf);
  const wanted = new Set(keys);
  const existing = new Map();
  // Gone first, so they are not in the way of the walk below.
  for (const node of [...container.children]) {
    if (wanted.has(node.dataset.key)) existing.set(node.dataset.key, node);
    else node.remove();
  }
  const kept = new Map();
  let at = container.firstElementChild;
  items.forEach((item, i) => {
    const key = keys[i];
    let node = existing.get(key);
    if (node) {
      if (needsUpdate(item)) update(node, item);
    } else {
      node = create(item);
      node.dataset.key = key;
      update(node, item);
    }
    kept.set(key, node);
    if (node === at) at = at.nextElementSibling;
    else container.insertBefore(node, at);
  });
  return kept;
}

/** Text that is written only when it differs: an unchanged render leaves the DOM (and the layout) alone. */
export function setText(el, text) {
  if (el.textContent !== text) el.textContent = text;
}

export function setAttr(el, name, value) {
  if (value === null) {
    if (el.hasAttribute(name)) el.removeAttribute(name);
  } else if (el.getAttribute(name) !== value) {
    el.setAttribute(name, value);
  }
}

const AVATAR_COLORS = 8;

/** A coloured initial; the colour is a stable function of the name (classes, since the CSP forbids inline styles). */
export function avatar(username, extraClass = '') {
  let hash = 0;
  for (const ch of username.toLowerCase()) hash = (hash * 31 + ch.codePointAt(0)) >>> 0;
  const url = avatarUrl(username);
  // The picture, when there is one; the coloured initial shows until it loads.
  const face = url ? h('img', { className: 'avatar-img', src: url, alt: '', loading: 'lazy', decoding: 'async' }) : null;
  return h('span', { className: `avatar av-${hash % AVATAR_COLORS} ${extraClass}`.trim(), 'aria-hidden': 'true' }, initial(username), face);
}

function initial(username) {
  return [...username][0]?.toUpperCase() || '?';
}

export function setAvatar(el, username) {
  const shown = `${username}|${avatarUrl(username) || ''}`;
  if (el.dataset.user === shown) return;
  el.dataset.user = shown;
  const fresh = avatar(username, [...el.classList].filter((c) => c !== 'avatar' && !c.startsWith('av-')).join(' '));
  el.className = fresh.className;
  el.replaceChildren(...fresh.childNodes);
}

/** A count in a pill; `suffix` (" unread") is read out after it but not shown. */
export function badge(count, suffix) {
  return h('span', { className: 'badge' }, count > 99 ? '99+' : String(count), h('span', { className: 'sr-only' }, suffix));
}
