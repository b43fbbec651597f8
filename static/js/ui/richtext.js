// Message text as DOM: the tree of markdown.js turned into elements and text
// nodes only. Nothing here parses HTML (no innerHTML and friends), links are
// http(s) only (markdown.js checked them), and they open safely.

import { h } from './dom.js';
import { parseMarkdown } from '../markdown.js';

/**
 * Fill `el` with `text` rendered.
 * @param {{isUser?: (name: string) => string|null, me?: string}} [opts]
 *   isUser: the canonical username for a mention, or null when nobody has that name (it stays text).
 */
export function renderRichText(el, text, opts = {}) {
  el.replaceChildren(...parseMarkdown(text).map((b) => block(b, opts)));
}

function block(b, opts) {
  if (b.type === 'code') return h('pre', { className: 'md-pre' }, h('code', {}, b.text));
  if (b.type === 'quote') return h('blockquote', { className: 'md-quote' }, ...b.children.map((c) => block(c, opts)));
  // A run of text stays inline (a span) so plain messages keep their layout and text exactly.
  return h('span', { className: 'md-text' }, ...inline(b.children, opts));
}

function inline(nodes, opts) {
  return nodes.map((n) => {
    switch (n.type) {
      case 'text':
        return document.createTextNode(n.text);
      case 'strong':
        return h('strong', {}, ...inline(n.children, opts));
      case 'em':
        return h('em', {}, ...inline(n.children, opts));
      case 'code':
        return h('code', { className: 'md-code' }, n.text);
      case 'link':
        return h('a', { href: n.href, target: '_blank', rel: 'noopener noreferrer' }, ...inline(n.children, opts));
      case 'mention': {
        const name = opts.isUser?.(n.name);
        if (!name) return document.createTextNode(`@${n.name}`);
        const me = opts.me && name.toLowerCase() === opts.me.toLowerCase();
        return h('span', { className: me ? 'mention mention-me' : 'mention', dataset: { user: name } }, `@${n.name}`);
      }
      default:
        return document.createTextNode('');
    }
  });
}
