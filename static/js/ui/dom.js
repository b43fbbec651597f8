// Small DOM helpers. Text always goes in through textContent or text nodes:
// nothing a user typed is ever parsed as HTML.

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
 * scroll position and hover state survive a re-render.
 */
export function syncList(container, items, keyOf, create, update) {
  const existing = new Map();
  for (const node of container.children) existing.set(node.dataset.key, node);
  items.forEach((item, i) => {
    const key = keyOf(item);
    let node = existing.get(key);
    if (node) existing.delete(key);
    else {
      node = create(item);
      node.dataset.key = key;
    }
    update(node, item);
    if (container.children[i] !== node) container.insertBefore(node, container.children[i] || null);
  });
  for (const node of existing.values()) node.remove();
}

const AVATAR_COLORS = 8;

/** A coloured initial; the colour is a stable function of the name (classes, since the CSP forbids inline styles). */
export function avatar(username, extraClass = '') {
  let hash = 0;
  for (const ch of username.toLowerCase()) hash = (hash * 31 + ch.codePointAt(0)) >>> 0;
  return h('span', { className: `avatar av-${hash % AVATAR_COLORS} ${extraClass}`.trim(), 'aria-hidden': 'true' }, initial(username));
}

function initial(username) {
  return [...username][0]?.toUpperCase() || '?';
}

export function setAvatar(el, username) {
  const fresh = avatar(username, [...el.classList].filter((c) => c !== 'avatar' && !c.startsWith('av-')).join(' '));
  el.className = fresh.className;
  el.textContent = fresh.textContent;
}

export function badge(count, label) {
  return h('span', { className: 'badge', 'aria-label': label }, count > 99 ? '99+' : String(count));
}
