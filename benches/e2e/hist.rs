//! A fixed-size log-linear latency histogram (16 sub-buckets per power of
//! two: about 6 % precision), recording in nanoseconds without allocating.

pub struct Hist {
    counts: Vec<u64>,
    pub n: u64,
    pub max: u64,
}

const BUCKETS: usize = 61 * 16 + 16;

fn index(v: u64) -> usize {
    if v < 16 {
        return v as usize;
    }
    let e = 63 - v.leading_zeros() as usize;
    (e - 3) * 16 + ((v >> (e - 4)) & 15) as usize
}

fn lower(i: usize) -> u64 {
    if i < 16 {
        return i as u64;
    }
    let (e, sub) = (i / 16 + 3, (i % 16) as u64);
    (16 + sub) << (e - 4)
}

impl Default for Hist {
    fn default() -> Self {
        Hist {
            counts: vec![0; BUCKETS],
            n: 0,
            max: 0,
        }
    }
}

impl Hist {
    #[inline]
    pub fn record(&mut self, ns: u64) {
        self.counts[index(ns).min(BUCKETS - 1)] += 1;
        self.n += 1;
        self.max = self.max.max(ns);
    }

    /// Counts `other`'s samples too (rounds of one measurement).
    pub fn add(&mut self, other: &Hist) {
        for (c, o) in self.counts.iter_mut().zip(&other.counts) {
            *c += o;
        }
        self.n += other.n;
        self.max = self.max.max(other.max);
    }

    /// The value (ns, bucket midpoint) at quantile `q` in [0, 1].
    pub fn quantile(&self, q: f64) -> u64 {
        if self.n == 0 {
            return 0;
        }
        let want = ((q * self.n as f64).ceil() as u64).clamp(1, self.n);
        let mut seen = 0;
        for (i, &c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= want {
                let (lo, hi) = (lower(i), lower(i + 1));
                return ((lo + hi) / 2).min(self.max);
            }
        }
        self.max
    }

    /// (upper bound of bucket in ns, cumulative fraction) for every non-empty bucket.
    pub fn cdf(&self) -> Vec<(f64, f64)> {
        let mut out = Vec::new();
        let mut seen = 0;
        for (i, &c) in self.counts.iter().enumerate() {
            if c > 0 {
                seen += c;
                out.push((lower(i + 1) as f64, seen as f64 / self.n as f64));
            }
        }
        out
    }
}
