//! What a reaction may be: one emoji, or a `:name:` as Slack and Discord
//! name theirs. Pure Unicode rules, no state: the parse of a `react` frame
//! asks [`is_reaction`] (`command.rs`).

use crate::config::MAX_EMOJI_BYTES;

/// A reaction: `:name:` (1-30 of `[a-z0-9_+-]`) or exactly one emoji
/// ([`is_one_emoji`]), 1-32 bytes either way.
pub fn is_reaction(e: &str) -> bool {
    let named = e.len() >= 3
        && e.starts_with(':')
        && e.ends_with(':')
        && e[1..e.len() - 1].bytes().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'_' | b'+' | b'-')
        });
    e.len() <= MAX_EMOJI_BYTES && (named || is_one_emoji(e))
}

/// A character that is (or begins) a pictograph: the emoji blocks of
/// Unicode, the older symbol blocks emoji were drawn from, the few Latin-1
/// and letterlike symbols with emoji forms, and the keycap bases.
fn is_emoji_base(c: char) -> bool {
    matches!(c as u32,
        0x1F000..=0x1FAFF | 0x2600..=0x27BF | 0x2300..=0x23FF | 0x2B00..=0x2BFF
        | 0x2190..=0x21FF | 0x25A0..=0x25FF | 0x2100..=0x214F | 0x2934 | 0x2935
        | 0x3030 | 0x303D | 0x3297 | 0x3299 | 0x00A9 | 0x00AE | 0x203C | 0x2049 | 0x24C2)
        || c.is_ascii_digit()
        || matches!(c, '#' | '*')
}

/// What may follow a base inside one emoji: variation selectors, the
/// keycap mark, skin tones (in the base range, so accepted as bases too)
/// and tag characters (subdivision flags).
fn is_emoji_modifier(c: char) -> bool {
    matches!(c as u32, 0xFE0E | 0xFE0F | 0x20E3 | 0xE0020..=0xE007F)
}

fn is_regional_indicator(c: char) -> bool {
    matches!(c as u32, 0x1F1E6..=0x1F1FF)
}

const ZWJ: char = '\u{200D}';

/// Whether `s` is one emoji: a base, then modifiers, then more bases only
/// through a zero-width joiner (👩‍💻), or two regional indicators (a
/// flag). Not the full Unicode emoji grammar, but it refuses what matters:
/// text, markup, whitespace, several emoji in a row, and ASCII digits or
/// `#` that are not keycaps.
fn is_one_emoji(s: &str) -> bool {
    let chars: Vec<char> = s.chars().collect();
    let Some(&first) = chars.first() else {
        return false;
    };
    if !is_emoji_base(first) {
        return false;
    }
    if first.is_ascii() {
        // A keycap: 1️⃣ is '1', an optional FE0F, then U+20E3.
        return matches!(chars[1..], ['\u{20E3}'] | ['\u{FE0F}', '\u{20E3}']);
    }
    let mut after_zwj = false;
    let mut regional = usize::from(is_regional_indicator(first));
    for &c in &chars[1..] {
        if c == ZWJ {
            if after_zwj {
                return false;
            }
            after_zwj = true;
        } else if is_emoji_modifier(c) {
            if after_zwj {
                return false;
            }
        } else if is_regional_indicator(c) && regional == 1 && !after_zwj {
            regional = 2;
        } else if is_emoji_base(c) && !c.is_ascii() {
            // Skin tones modify the base before them; anything else is a
            // second emoji unless a joiner came first.
            let tone = matches!(c as u32, 0x1F3FB..=0x1F3FF);
            if !(after_zwj || tone) {
                return false;
            }
            after_zwj = false;
        } else {
            return false;
        }
    }
    !after_zwj && regional != 1
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One emoji of any shape people pick is accepted: plain, with a
    /// variation selector, a skin tone, joined sequences, flags, keycaps.
    #[test]
    fn accepts_one_emoji() {
        for e in [
            "👍",
            "❤️",
            "🎉",
            "👍🏽",
            "👩‍💻",
            "👨‍👩‍👧‍👦",
            "🇫🇷",
            "1️⃣",
            "#️⃣",
            "☕",
            "✅",
            "🏳️‍🌈",
        ] {
            assert!(
                is_reaction(e),
                "{e:?} {:x?}",
                e.chars().map(|c| c as u32).collect::<Vec<_>>()
            );
        }
        for e in [":tada:", ":+1:", ":thumbs_up:", ":x-1:"] {
            assert!(is_reaction(e), "{e}");
        }
    }

    /// Text, markup, several emoji, empty names and overlong input are not
    /// a reaction: what a client shows as a reaction is never markup.
    #[test]
    fn refuses_what_is_not_one_emoji() {
        for e in [
            "",
            "a",
            "ok",
            "<img src=x onerror=alert(1)>",
            "👍👍",
            "👍 ",
            " 👍",
            "1",
            "#",
            "::",
            ":Tada:",
            ":a b:",
            ":<b>:",
            "🇫",
            "🇫🇷🇫",
            "👩‍",
            "‍👩",
            &format!(":{}:", "a".repeat(31)),
        ] {
            assert!(!is_reaction(e), "{e:?}");
        }
    }
}
