//! What an uploaded file may be called and what type it is served as: the
//! rules that make client input safe to store, show and send back.
//!
//! A name is shown, never used as a path, but it travels in message
//! objects and in `Content-Disposition`: so it loses any directory part
//! (`../../etc/passwd` is `passwd`), control characters (a CR or LF would
//! split a header) and the invisible bidirectional controls that make
//! `exe.txt` of `txt.exe`, and is cut to [`MAX_FILE_NAME_BYTES`].
//!
//! A type is the essence of the declared `Content-Type`, lower case, if it
//! is a well-formed `type/subtype`; anything else is
//! `application/octet-stream`. Only the [`inline`] types are ever shown in
//! the browser: raster images (whose bytes the image workers decode first,
//! so a "PNG" that is HTML is stored as `application/octet-stream`),
//! audio, video and plain text. Everything else, SVG and HTML included,
//! is a download.

use crate::config::{MAX_FILE_NAME_BYTES, MAX_MEDIA_TYPE_BYTES};

/// The type of bytes nobody vouched for.
pub const OCTET_STREAM: &str = "application/octet-stream";

/// Invisible characters that reorder text (RLO makes `gpj.exe` look like
/// `exe.jpg`): never part of a name.
fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{200e}' | '\u{200f}' | '\u{061c}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// The name a file is kept under, from what the client sent (percent-
/// decoded already); `None` when nothing usable is left.
pub fn file_name(raw: &str) -> Option<String> {
    let last = raw.rsplit(['/', '\\']).next().unwrap_or("");
    let clean: String = last
        .chars()
        .filter(|c| !c.is_control() && !is_bidi_control(*c))
        .collect();
    let clean = clean.trim().trim_end_matches('.').trim_end();
    if clean.is_empty() || clean == "." || clean == ".." {
        return None;
    }
    Some(cut(clean, MAX_FILE_NAME_BYTES))
}

/// `name` within `max` bytes on a character boundary, keeping a short
/// extension (`….pdf`) when the stem must be cut.
fn cut(name: &str, max: usize) -> String {
    if name.len() <= max {
        return name.to_string();
    }
    let ext = name
        .rfind('.')
        .map(|i| &name[i..])
        .filter(|e| e.len() <= 16 && e.len() < max);
    let room = max - ext.map_or(0, str::len);
    let mut end = room;
    while !name.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}{}", &name[..end], ext.unwrap_or(""))
}

/// RFC 6838's restricted-name characters.
fn is_type_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$&-^_.+".contains(&b)
}

/// The type a file is stored as, from its declared `Content-Type`.
pub fn media_type(declared: Option<&[u8]>) -> String {
    let Some(v) = declared.and_then(|v| std::str::from_utf8(v).ok()) else {
        return OCTET_STREAM.into();
    };
    let essence = v
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    let well_formed = essence.len() <= MAX_MEDIA_TYPE_BYTES
        && essence.split_once('/').is_some_and(|(t, s)| {
            !t.is_empty() && !s.is_empty() && t.bytes().chain(s.bytes()).all(is_type_char)
        });
    if well_formed {
        essence
    } else {
        OCTET_STREAM.into()
    }
}

/// The raster formats the image workers decode, by type.
pub fn raster(mime: &str) -> Option<image::ImageFormat> {
    Some(match mime {
        "image/png" => image::ImageFormat::Png,
        "image/jpeg" | "image/jpg" | "image/pjpeg" => image::ImageFormat::Jpeg,
        "image/gif" => image::ImageFormat::Gif,
        "image/webp" => image::ImageFormat::WebP,
        _ => return None,
    })
}

/// Whether a file of this (stored) type is shown in the browser rather
/// than downloaded.
pub fn inline(mime: &str) -> bool {
    raster(mime).is_some()
        || mime == "text/plain"
        || matches!(
            mime,
            "audio/mpeg"
                | "audio/mp4"
                | "audio/aac"
                | "audio/ogg"
                | "audio/opus"
                | "audio/wav"
                | "audio/x-wav"
                | "audio/webm"
                | "audio/flac"
                | "video/mp4"
                | "video/webm"
                | "video/ogg"
                | "video/quicktime"
        )
}

/// The `Content-Type` a stored type is served with: plain text says its
/// charset (so no browser guesses one that makes it script).
pub fn served_type(mime: &str) -> String {
    if mime == "text/plain" {
        "text/plain; charset=utf-8".into()
    } else {
        mime.into()
    }
}

/// `Content-Disposition` for a file: `inline` or `attachment`, with an
/// ASCII `filename` for old clients and the exact name as RFC 5987's
/// `filename*`.
pub fn disposition(name: &str, inline: bool) -> String {
    let ascii: String = name
        .chars()
        .map(|c| match c {
            ' '..='~' if c != '"' && c != '\\' && c != '%' => c,
            _ => '_',
        })
        .collect();
    let mut encoded = String::with_capacity(name.len() * 3);
    for b in name.bytes() {
        if b.is_ascii_alphanumeric() || b"!#$&+-.^_`|~".contains(&b) {
            encoded.push(char::from(b));
        } else {
            encoded.push_str(&format!("%{b:02X}"));
        }
    }
    let kind = if inline { "inline" } else { "attachment" };
    format!("{kind}; filename=\"{ascii}\"; filename*=UTF-8''{encoded}")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Directory parts, control characters and bidi overrides go; what is
    /// left is trimmed and bounded; nothing usable is `None`.
    #[test]
    fn names_lose_paths_and_controls() {
        let n = |s: &str| file_name(s);
        assert_eq!(n("report.pdf").as_deref(), Some("report.pdf"));
        assert_eq!(n("../../etc/passwd").as_deref(), Some("passwd"));
        assert_eq!(n("..\\..\\boot.ini").as_deref(), Some("boot.ini"));
        assert_eq!(
            n("a\r\nSet-Cookie: x.txt").as_deref(),
            Some("aSet-Cookie: x.txt")
        );
        assert_eq!(n("evil\u{202e}gpj.exe").as_deref(), Some("evilgpj.exe"));
        assert_eq!(n("  spaced .  ").as_deref(), Some("spaced"));
        assert_eq!(n("caf\u{e9}.txt").as_deref(), Some("café.txt"));
        for empty in ["", "/", "..", ".", "a/", "\u{7}\u{0}", "dir/../"] {
            assert_eq!(n(empty), None, "{empty:?}");
        }
        let long = format!("{}.pdf", "é".repeat(300));
        let cut = n(&long).unwrap();
        assert!(
            cut.len() <= MAX_FILE_NAME_BYTES && cut.ends_with("é.pdf"),
            "{cut}"
        );
    }

    /// Declared types keep their essence when well formed; anything else
    /// is an octet stream; only the allowlist is inline.
    #[test]
    fn types_are_checked_and_few_are_inline() {
        assert_eq!(media_type(Some(b"Image/PNG; q=1")), "image/png");
        assert_eq!(media_type(Some(b"text/plain;charset=latin1")), "text/plain");
        for bad in [
            &b"nonsense"[..],
            b"text/",
            b"/x",
            b"a/b c",
            b"\xff/x",
            b"text/html\r\nX: y",
        ] {
            assert_eq!(media_type(Some(bad)), OCTET_STREAM, "{bad:?}");
        }
        assert_eq!(media_type(None), OCTET_STREAM);
        for yes in [
            "image/png",
            "image/webp",
            "video/mp4",
            "audio/ogg",
            "text/plain",
        ] {
            assert!(inline(yes), "{yes}");
        }
        for no in [
            "image/svg+xml",
            "text/html",
            "application/pdf",
            OCTET_STREAM,
            "text/xml",
        ] {
            assert!(!inline(no), "{no}");
        }
        assert_eq!(served_type("text/plain"), "text/plain; charset=utf-8");
    }

    /// The header carries an ASCII fallback and the exact name encoded;
    /// nothing in it can end the header or the quoted string.
    #[test]
    fn dispositions_are_safe_headers() {
        assert_eq!(
            disposition("naïve \"plan\".txt", false),
            "attachment; filename=\"na_ve _plan_.txt\"; \
             filename*=UTF-8''na%C3%AFve%20%22plan%22.txt"
        );
        assert!(disposition("a.png", true).starts_with("inline; "));
    }
}
