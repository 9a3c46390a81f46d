//! A small log-linear latency histogram: 16 buckets per power of two, so
//! any percentile is within about 6% of the true value, in constant memory
//! however many samples arrive.

/// Samples in microseconds.
#[derive(Debug, Clone)]
pub struct Histogram {
    counts: Vec<u64>,
    total: u64,
    max: u64,
}

const SUB_BUCKETS: u64 = 16;
const BUCKETS: usize = 64 * SUB_BUCKETS as usize;

impl Default for Histogram {
    fn default() -> Self {
        Self {
            counts: vec![0; BUCKETS],
            total: 0,
            max: 0,
        }
    }
}

impl Histogram {
    /// Adds one sample.
    pub fn record(&mut self, micros: u64) {
        self.counts[bucket(micros)] += 1;
        self.total += 1;
        self.max = self.max.max(micros);
    }

    /// Adds another histogram's samples.
    pub fn merge(&mut self, other: &Histogram) {
        for (mine, theirs) in self.counts.iter_mut().zip(&other.counts) {
            *mine += theirs;
        }
        self.total += other.total;
        self.max = self.max.max(other.max);
    }

    /// Samples recorded.
    pub fn count(&self) -> u64 {
        self.total
    }

    /// The largest sample.
    pub fn max(&self) -> u64 {
        self.max
    }

    /// The value at quantile `q` (0.0 to 1.0): the upper edge of its bucket.
    pub fn quantile(&self, q: f64) -> u64 {
        if self.total == 0 {
            return 0;
        }
        let rank = ((self.total as f64 * q).ceil() as u64).clamp(1, self.total);
        let mut seen = 0;
        for (index, &count) in self.counts.iter().enumerate() {
            seen += count;
            if seen >= rank {
                return upper_edge(index).min(self.max);
            }
        }
        self.max
    }
}

fn bucket(value: u64) -> usize {
    if value < SUB_BUCKETS {
        return value as usize;
    }
    let power = 63 - u64::from(value.leading_zeros());
    let shift = power - 4;
    let sub = (value >> shift) - SUB_BUCKETS;
    ((power - 3) * SUB_BUCKETS + sub) as usize
}

fn upper_edge(index: usize) -> u64 {
    let index = index as u64;
    if index < SUB_BUCKETS {
        return index;
    }
    let power = index / SUB_BUCKETS + 3;
    let sub = index % SUB_BUCKETS;
    ((SUB_BUCKETS + sub + 1) << (power - 4)) - 1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_are_within_the_bucket_error() {
        let mut histogram = Histogram::default();
        for value in 1..=10_000 {
            histogram.record(value);
        }
        for (q, exact) in [(0.5, 5_000.0), (0.9, 9_000.0), (0.99, 9_900.0)] {
            let got = histogram.quantile(q) as f64;
            assert!((got - exact).abs() / exact < 0.07, "q{q}: {got} vs {exact}");
        }
        assert_eq!(histogram.quantile(1.0), 10_000);
        assert_eq!(histogram.count(), 10_000);
    }

    #[test]
    fn buckets_increase_and_small_values_are_exact() {
        let mut last = 0;
        for value in 0..1_000_000u64 {
            let b = bucket(value);
            assert!(b >= last);
            assert!(upper_edge(b) >= value, "{value} above its bucket edge");
            last = b;
        }
        assert_eq!(bucket(7), 7);
    }
}
