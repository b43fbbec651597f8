//! Wall-clock time as the contract writes it: Unix milliseconds inside the
//! server, RFC 3339 UTC with milliseconds (`2026-01-15T10:30:00.123Z`) on the wire.
//!
//! Written by hand (Howard Hinnant's `civil_from_days`) because one formatting
//! function does not earn a date crate.

use std::time::{SystemTime, UNIX_EPOCH};

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// Length of `YYYY-MM-DDTHH:MM:SS.mmmZ`.
pub const RFC3339_LEN: usize = 24;

/// Formats Unix milliseconds as RFC 3339 UTC with exactly three fraction
/// digits, into a stack buffer: every message frame carries a timestamp, so
/// this runs twice per chat message and must not allocate. Years are taken
/// modulo 10000 (four digits), which the contract's format implies.
pub fn rfc3339_into(ms: i64, buf: &mut [u8; RFC3339_LEN]) -> &str {
    let secs = ms.div_euclid(1000);
    let millis = ms.rem_euclid(1000) as u32;
    let sod = secs.rem_euclid(86_400) as u32;
    let (y, m, d) = civil_from_days(secs.div_euclid(86_400));
    let mut put = |at: usize, v: u32, width: usize| {
        let mut v = v;
        for i in (0..width).rev() {
            buf[at + i] = b'0' + (v % 10) as u8;
            v /= 10;
        }
    };
    put(0, y.rem_euclid(10_000) as u32, 4);
    put(5, m, 2);
    put(8, d, 2);
    put(11, sod / 3600, 2);
    put(14, (sod / 60) % 60, 2);
    put(17, sod % 60, 2);
    put(20, millis, 3);
    for (at, c) in [
        (4, b'-'),
        (7, b'-'),
        (10, b'T'),
        (13, b':'),
        (16, b':'),
        (19, b'.'),
        (23, b'Z'),
    ] {
        buf[at] = c;
    }
    std::str::from_utf8(buf).expect("ASCII digits and separators")
}

/// Days since 1970-01-01 to a proleptic Gregorian (year, month, day).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `rfc3339_into` as an owned string, for comparisons.
    fn rfc3339(ms: i64) -> String {
        rfc3339_into(ms, &mut [0; RFC3339_LEN]).to_string()
    }

    /// The epoch and a known instant format exactly as the contract's example.
    #[test]
    fn formats_known_instants() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000Z");
        // 2026-01-15T10:30:00.123Z
        assert_eq!(rfc3339(1_768_473_000_123), "2026-01-15T10:30:00.123Z");
    }

    /// Leap days and century rules land on the right calendar day.
    #[test]
    fn handles_leap_years() {
        assert_eq!(rfc3339(951_782_400_000), "2000-02-29T00:00:00.000Z");
        assert_eq!(rfc3339(4_107_542_399_999), "2100-02-28T23:59:59.999Z");
        assert_eq!(rfc3339(1_709_164_800_000), "2024-02-29T00:00:00.000Z");
    }
}
