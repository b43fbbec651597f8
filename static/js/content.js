// The server's rule for message content, so the composer agrees with it: the
// server trims the text and counts Unicode scalar values (Rust `chars()`),
// 1 to MAX_CONTENT_CHARS. JavaScript's `length` counts UTF-16 code units, in
// which every emoji outside the Basic Multilingual Plane counts twice; the
// string iterator yields code points, which for text a browser produces are
// exactly the scalar values the server counts.

export const MAX_CONTENT_CHARS = 4000;

/** The length of `text` as the server counts it (after trimming). */
export function contentLength(text) {
  let n = 0;
  // Counted, not spread into an array: no 4,000-element garbage per keystroke.
  for (const _ of text.trim()) n += 1;
  return n;
}
