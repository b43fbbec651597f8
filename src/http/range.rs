//! `Range` requests (RFC 9110 §14): which bytes of a file a request asks
//! for. One range is served (206); a list of several is answered whole
//! (200, as the RFC allows), which is what media players never send and
//! what keeps a response one contiguous read; a range past the end is
//! 416. `If-Range` with another validator than the file's asks for the
//! whole file.

/// What to send of a file of some size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    /// The whole file (200).
    Whole,
    /// Bytes `start..=end` (206).
    Range { start: u64, end: u64 },
    /// Nothing of it can be served (416).
    Unsatisfiable,
}

/// The part of a `size`-byte file that `range` (the header's value) asks
/// for, given `if_range` and the file's `etag`.
pub fn part(range: Option<&[u8]>, if_range: Option<&[u8]>, etag: &str, size: u64) -> Part {
    let Some(range) = range.and_then(|r| std::str::from_utf8(r).ok()) else {
        return Part::Whole;
    };
    if if_range.is_some_and(|v| v.trim_ascii() != etag.as_bytes()) {
        return Part::Whole;
    }
    let Some(spec) = range.trim().strip_prefix("bytes=") else {
        return Part::Whole; // an unknown unit is ignored
    };
    if spec.contains(',') {
        return Part::Whole;
    }
    let Some((first, last)) = spec.trim().split_once('-') else {
        return Part::Whole;
    };
    let num = |s: &str| -> Option<Option<u64>> {
        let s = s.trim();
        if s.is_empty() {
            return Some(None);
        }
        if !s.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        // A number too big to be an offset is past any end.
        Some(Some(s.parse().unwrap_or(u64::MAX)))
    };
    let (Some(first), Some(last)) = (num(first), num(last)) else {
        return Part::Whole; // malformed: ignored, as the RFC says
    };
    match (first, last) {
        (Some(start), last) => {
            if last.is_some_and(|l| l < start) {
                return Part::Whole;
            }
            if start >= size {
                return Part::Unsatisfiable;
            }
            let end = last.map_or(size - 1, |l| l.min(size - 1));
            Part::Range { start, end }
        }
        (None, Some(suffix)) => {
            if suffix == 0 || size == 0 {
                return Part::Unsatisfiable;
            }
            Part::Range {
                start: size.saturating_sub(suffix),
                end: size - 1,
            }
        }
        (None, None) => Part::Whole,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(range: &str) -> Part {
        part(Some(range.as_bytes()), None, "\"e\"", 1000)
    }

    /// The forms media players send, clamped to the file.
    #[test]
    fn single_ranges() {
        assert_eq!(p("bytes=0-99"), Part::Range { start: 0, end: 99 });
        assert_eq!(
            p("bytes=500-"),
            Part::Range {
                start: 500,
                end: 999
            }
        );
        assert_eq!(
            p("bytes=-100"),
            Part::Range {
                start: 900,
                end: 999
            }
        );
        assert_eq!(
            p("bytes=900-5000"),
            Part::Range {
                start: 900,
                end: 999
            }
        );
        assert_eq!(p("bytes=-5000"), Part::Range { start: 0, end: 999 });
        assert_eq!(
            p("bytes=999-999"),
            Part::Range {
                start: 999,
                end: 999
            }
        );
    }

    /// Past the end is 416; what cannot be read, several ranges, other
    /// units, and a stale `If-Range` get the whole file.
    #[test]
    fn everything_else() {
        assert_eq!(p("bytes=1000-"), Part::Unsatisfiable);
        assert_eq!(p("bytes=-0"), Part::Unsatisfiable);
        assert_eq!(p("bytes=99999999999999999999999-"), Part::Unsatisfiable);
        for whole in [
            "bytes=5-1",
            "bytes=a-b",
            "items=0-1",
            "bytes=0-1,5-9",
            "bytes=-",
            "0-1",
        ] {
            assert_eq!(p(whole), Part::Whole, "{whole}");
        }
        assert_eq!(part(None, None, "\"e\"", 10), Part::Whole);
        let r = Some(&b"bytes=0-1"[..]);
        assert_eq!(part(r, Some(b"\"other\""), "\"e\"", 10), Part::Whole);
        assert_eq!(
            part(r, Some(b"\"e\""), "\"e\"", 10),
            Part::Range { start: 0, end: 1 }
        );
        assert_eq!(part(r, None, "\"e\"", 0), Part::Unsatisfiable);
    }
}
