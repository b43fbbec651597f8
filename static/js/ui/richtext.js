// Message text with clickable links, built from text nodes and <a> elements
// only: the content is never parsed as HTML, and only http(s) URLs become links.

import { h } from './dom.js';

const URL_RE = /\bhttps?:\/\/[^\s<>"'`]+/gi;
// Punctuation that ends a sentence rather than the URL ("see https://x.org.").
const TRAILING = /[.,;:!?'")\]}]+$/;

export function renderRichText(el, text) {
  el.textContent = '';
  let last = 0;
  for (const match of text.matchAll(URL_RE)) {
    const raw = match[0].replace(TRAILING, '');
    const start = match.index;
    if (start > last) el.append(text.slice(last, start));
    el.append(safeLink(raw) || raw);
    last = start + raw.length;
  }
  if (last < text.length) el.append(text.slice(last));
}

function safeLink(raw) {
  let url;
  try {
    url = new URL(raw);
  } catch {
    return null;
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') return null;
  return h('a', { href: url.href, textContent: raw, target: '_blank', rel: 'noopener noreferrer' });
}
