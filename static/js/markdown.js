// The Markdown subset messages may use, as a pure parser: a string in, a small
// tree out, no DOM. ui/richtext.js turns the tree into nodes. Keeping the two
// apart means the grammar can be read (and tested) on its own, and the only
// code that touches the document builds elements and text nodes, never HTML.
//
// Blocks: ``` fenced code ```, lines starting with `>` (a quote), and text.
// Inline: **bold**, *italic* / _italic_, `code`, [label](http(s) URL), bare
// http(s) URLs, and @name mentions. Anything that does not form one of these
// (an unclosed `**`, a link to javascript:, a lone backtick) stays as the text
// the person typed, so nothing they wrote is ever lost or reinterpreted.
//
// Tree:
//   block  = {type:'text', children: inline[]} | {type:'code', text} | {type:'quote', children: block[]}
//   inline = {type:'text', text} | {type:'strong'|'em', children: inline[]} | {type:'code', text}
//          | {type:'link', href, children: inline[]} | {type:'mention', name}

// Sticky (`y`) patterns are tried at one position without copying the rest of the text.
const URL_RE = /https?:\/\/[^\s<>"'`]+/iy;
const LINK_RE = /\[([^\]\n]+)\]\((https?:\/\/[^\s()<>"'`]+)\)/iy;
// Punctuation that ends a sentence rather than the URL ("see https://x.org.").
const URL_TRAILING = /[.,;:!?'")\]}]+$/;
const MENTION_RE = /@([A-Za-z0-9_.-]{3,32})/y;
// Nested emphasis is bounded so a hostile message cannot cost deep recursion.
const MAX_DEPTH = 6;

/** @param {string} text @returns {object[]} blocks */
export function parseMarkdown(text) {
  return parseBlocks(String(text).split('\n'), 0);
}

function parseBlocks(lines, depth) {
  const blocks = [];
  let run = [];
  const flush = () => {
    if (run.length) blocks.push({ type: 'text', children: parseInline(run.join('\n'), depth) });
    run = [];
  };
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i];
    if (/^\s*```/.test(line)) {
      // A fence only counts when it is closed; otherwise the backticks are text.
      const end = lines.findIndex((l, j) => j > i && /^\s*```\s*$/.test(l));
      const rest = line.replace(/^\s*```/, '');
      const oneLine = rest.match(/^(.*?)```\s*$/);
      if (oneLine && rest.trim().length > 3) {
        flush();
        blocks.push({ type: 'code', text: oneLine[1] });
        continue;
      }
      if (end > i) {
        flush();
        // Text after the opening fence is a language tag, as in GitHub's Markdown; not shown.
        blocks.push({ type: 'code', text: lines.slice(i + 1, end).join('\n') });
        i = end;
        continue;
      }
    }
    if (/^>/.test(line) && depth < MAX_DEPTH) {
      flush();
      const quoted = [];
      while (i < lines.length && /^>/.test(lines[i])) quoted.push(lines[i++].replace(/^> ?/, ''));
      i -= 1;
      blocks.push({ type: 'quote', children: parseBlocks(quoted, depth + 1) });
      continue;
    }
    run.push(line);
  }
  flush();
  return blocks;
}

const isWordChar = (ch) => !!ch && /[\p{L}\p{N}_]/u.test(ch);
const isSpace = (ch) => !ch || /\s/.test(ch);

/** Inline markup of one run of text (newlines kept as text). */
export function parseInline(src, depth = 0) {
  const out = [];
  let textStart = 0;
  let i = 0;
  // Where a search for each closing delimiter found none: none lies further on
  // either, so a hostile "*a *a *a …" costs one scan, not one per opener.
  const noClose = { '*': Infinity, _: Infinity, '**': Infinity };
  const hasLinks = src.includes('](');
  const close = (delim, from) => {
    if (from >= noClose[delim]) return -1;
    const j = findClose(src, delim, from);
    if (j < 0) noClose[delim] = from;
    return j;
  };
  const pushText = (end) => {
    if (end > textStart) {
      const last = out[out.length - 1];
      const text = src.slice(textStart, end);
      if (last?.type === 'text') last.text += text;
      else out.push({ type: 'text', text });
    }
  };
  const emit = (node, next) => {
    pushText(i);
    out.push(node);
    i = next;
    textStart = next;
  };

  while (i < src.length) {
    const ch = src[i];
    const prev = src[i - 1];
    if (ch === '`') {
      const close = src.indexOf('`', i + 1);
      if (close > i + 1) {
        emit({ type: 'code', text: src.slice(i + 1, close) }, close + 1);
        continue;
      }
    } else if (ch === '*' && src[i + 1] === '*' && depth < MAX_DEPTH) {
      const end = close('**', i + 2);
      if (end > 0) {
        emit({ type: 'strong', children: parseInline(src.slice(i + 2, end), depth + 1) }, end + 2);
        continue;
      }
    } else if ((ch === '*' || ch === '_') && depth < MAX_DEPTH && !isSpace(src[i + 1]) && !(ch === '_' && (isWordChar(prev) || prev === '_' || src[i + 1] === '_'))) {
      // `_` inside a word (snake_case) or a run of them (__init__) is not emphasis; `*` needs no space inside.
      const end = close(ch, i + 1);
      if (end > 0 && !(ch === '_' && isWordChar(src[end + 1]))) {
        emit({ type: 'em', children: parseInline(src.slice(i + 1, end), depth + 1) }, end + 1);
        continue;
      }
    } else if (ch === '[' && hasLinks) {
      const link = matchAt(LINK_RE, src, i);
      if (link && safeHref(link[2])) {
        emit({ type: 'link', href: safeHref(link[2]), children: parseInline(link[1], MAX_DEPTH) }, i + link[0].length);
        continue;
      }
    } else if ((ch === 'h' || ch === 'H') && !isWordChar(prev)) {
      const m = matchAt(URL_RE, src, i);
      if (m) {
        const raw = m[0].replace(URL_TRAILING, '');
        const href = safeHref(raw);
        if (href) {
          emit({ type: 'link', href, children: [{ type: 'text', text: raw }] }, i + raw.length);
          continue;
        }
      }
    } else if (ch === '@' && !(prev && /[A-Za-z0-9_.@-]/.test(prev))) {
      // As the server counts mentions: at the start or after a character no name can hold.
      const m = matchAt(MENTION_RE, src, i);
      if (m) {
        // A sentence's full stop after a name is not part of it.
        const name = m[1].replace(/[.-]+$/, '');
        if (name.length >= 3) {
          emit({ type: 'mention', name }, i + 1 + name.length);
          continue;
        }
      }
    }
    i += 1;
  }
  pushText(src.length);
  return out;
}

function matchAt(re, src, i) {
  re.lastIndex = i;
  return re.exec(src);
}

/** The closing delimiter of an emphasis opened before `from`: not after a space, not empty. */
function findClose(src, delim, from) {
  let j = from;
  while ((j = src.indexOf(delim, j)) > 0) {
    const single = delim.length === 1 && src[j + 1] !== delim && src[j - 1] !== delim;
    if (j > from && !isSpace(src[j - 1]) && (delim.length === 2 || single)) return j;
    j += delim.length;
  }
  return -1;
}

/** Only http(s) URLs become links; the URL as the browser will read it, or null. */
export function safeHref(raw) {
  let url;
  try {
    url = new URL(raw);
  } catch {
    return null;
  }
  return url.protocol === 'http:' || url.protocol === 'https:' ? url.href : null;
}

/** The plain text of a message with markup dropped (quotes of a reply's parent, notifications). */
export function plainText(text) {
  const walk = (nodes) =>
    nodes
      .map((n) => {
        if (n.type === 'text' && 'text' in n) return n.text;
        if (n.type === 'code') return n.text;
        if (n.type === 'mention') return `@${n.name}`;
        return walk(n.children || []);
      })
      .join('');
  return parseMarkdown(text)
    .map((b) => (b.type === 'code' ? b.text : walk(b.children || [])))
    .join('\n');
}
