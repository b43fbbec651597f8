//! Per-connection rate limit: a token bucket refilled at `rate` per second
//! up to `2 × rate`, so a client may burst briefly but not sustain more.

/// Tokens are kept in thousandths so the arithmetic stays in integers.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    milli_tokens: u32,
    last_ms: i64,
}

impl TokenBucket {
    /// A full bucket.
    pub fn new(rate: u32, now_ms: i64) -> TokenBucket {
        TokenBucket {
            milli_tokens: rate.saturating_mul(2).saturating_mul(1000),
            last_ms: now_ms,
        }
    }

    /// Takes one token if there is one. `rate == 0` means unlimited.
    pub fn allow(&mut self, rate: u32, now_ms: i64) -> bool {
        if rate == 0 {
            return true;
        }
        let cap = rate.saturating_mul(2000) as u64;
        let elapsed = (now_ms - self.last_ms).max(0) as u64;
        self.last_ms = now_ms;
        let refilled = (self.milli_tokens as u64 + elapsed * rate as u64).min(cap);
        if refilled >= 1000 {
            self.milli_tokens = (refilled - 1000) as u32;
            true
        } else {
            self.milli_tokens = refilled as u32;
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A burst of 2N passes, the next frame is refused, and one more is
    /// allowed every 1/N s after that.
    #[test]
    fn burst_then_steady_rate() {
        let mut b = TokenBucket::new(20, 0);
        assert_eq!((0..40).filter(|_| b.allow(20, 0)).count(), 40);
        assert!(!b.allow(20, 0));
        assert!(!b.allow(20, 49));
        assert!(b.allow(20, 50));
        assert!(!b.allow(20, 50));
        // After a long pause the bucket is full again, never fuller.
        assert_eq!((0..100).filter(|_| b.allow(20, 60_000)).count(), 40);
    }

    /// Zero turns the limit off.
    #[test]
    fn zero_is_unlimited() {
        let mut b = TokenBucket::new(0, 0);
        assert!((0..10_000).all(|_| b.allow(0, 0)));
    }
}
