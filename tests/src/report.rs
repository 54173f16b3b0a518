//! Figures: a latency histogram, counts by kind, and markdown tables of named values.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

/// One named figure of a report, already formatted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Figure {
    /// What was measured, like `attempts per request`.
    pub name: String,
    /// The value with its unit, like `1.102`.
    pub value: String,
}

impl Figure {
    /// A figure from anything displayable.
    pub fn new(name: impl Into<String>, value: impl fmt::Display) -> Figure {
        Figure {
            name: name.into(),
            value: value.to_string(),
        }
    }
}

/// A two-column markdown table of figures.
pub fn table(figures: &[Figure]) -> String {
    let mut out = String::from("| figure | value |\n|---|---|\n");
    for f in figures {
        out.push_str(&format!(
            "| {} | {} |\n",
            f.name,
            f.value.replace('|', "\\|")
        ));
    }
    out
}

/// A duration in the most readable unit: `850 µs`, `12.4 ms`, `3.21 s`.
pub fn duration(d: Duration) -> String {
    let us = d.as_secs_f64() * 1e6;
    if us < 1_000.0 {
        format!("{us:.0} µs")
    } else if us < 1_000_000.0 {
        format!("{:.1} ms", us / 1e3)
    } else {
        format!("{:.2} s", us / 1e6)
    }
}

/// Sub-buckets per power of two: values are kept to within 1/32 (about 3%).
const SUB_BITS: u32 = 5;
const SUB: u64 = 1 << SUB_BITS;
/// Values below this are kept exactly.
const LINEAR: u64 = 2 * SUB;
/// Up to 2^40 µs (12 days), ample for any request.
const MAX_EXP: u32 = 40;
const BUCKETS: usize = (LINEAR + (MAX_EXP as u64 - SUB_BITS as u64) * SUB) as usize;

/// A histogram of durations in microseconds with log-linear buckets (values kept to within
/// about 3%), fixed size, so a long run records without growing. Merge one per worker.
#[derive(Clone)]
pub struct Histogram {
    buckets: Box<[u64]>,
    count: u64,
    sum_us: u128,
    max_us: u64,
}

impl fmt::Debug for Histogram {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Histogram")
            .field("count", &self.count)
            .field("p50", &self.quantile(0.5))
            .field("p99", &self.quantile(0.99))
            .field("max", &self.max())
            .finish()
    }
}

impl Default for Histogram {
    fn default() -> Histogram {
        Histogram {
            buckets: vec![0; BUCKETS].into_boxed_slice(),
            count: 0,
            sum_us: 0,
            max_us: 0,
        }
    }
}

fn index(us: u64) -> usize {
    if us < LINEAR {
        return us as usize;
    }
    let exp = 63 - us.leading_zeros(); // >= SUB_BITS + 1
    let sub = (us >> (exp - SUB_BITS)) & (SUB - 1);
    let i = LINEAR + u64::from(exp - SUB_BITS - 1) * SUB + sub;
    (i as usize).min(BUCKETS - 1)
}

/// The largest value a bucket holds.
fn upper(i: usize) -> u64 {
    let i = i as u64;
    if i < LINEAR {
        return i;
    }
    let exp = (i - LINEAR) / SUB + u64::from(SUB_BITS) + 1;
    let sub = (i - LINEAR) % SUB;
    let width = 1u64 << (exp - u64::from(SUB_BITS));
    (1u64 << exp) + (sub + 1) * width - 1
}

impl Histogram {
    /// Records one duration.
    pub fn record(&mut self, d: Duration) {
        let us = u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        self.buckets[index(us)] += 1;
        self.count += 1;
        self.sum_us += u128::from(us);
        self.max_us = self.max_us.max(us);
    }

    /// Adds another histogram's values to this one.
    pub fn merge(&mut self, other: &Histogram) {
        for (a, b) in self.buckets.iter_mut().zip(other.buckets.iter()) {
            *a += b;
        }
        self.count += other.count;
        self.sum_us += other.sum_us;
        self.max_us = self.max_us.max(other.max_us);
    }

    /// Values recorded.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// The `q`-quantile (`0.0..=1.0`), to within about 3% (never above the maximum);
    /// zero when empty.
    pub fn quantile(&self, q: f64) -> Duration {
        if self.count == 0 {
            return Duration::ZERO;
        }
        let rank = ((q.clamp(0.0, 1.0) * self.count as f64).ceil() as u64).max(1);
        let mut seen = 0;
        for (i, n) in self.buckets.iter().enumerate() {
            seen += n;
            if seen >= rank {
                return Duration::from_micros(upper(i).min(self.max_us));
            }
        }
        self.max()
    }

    /// The share of values at most `d` (counting whole buckets, so to within about 3% of
    /// `d`); 1 when empty.
    pub fn fraction_within(&self, d: Duration) -> f64 {
        if self.count == 0 {
            return 1.0;
        }
        let us = u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        let within: u64 = self
            .buckets
            .iter()
            .enumerate()
            .take_while(|(i, _)| upper(*i) <= us)
            .map(|(_, n)| n)
            .sum();
        within as f64 / self.count as f64
    }

    /// The largest value recorded (exact).
    pub fn max(&self) -> Duration {
        Duration::from_micros(self.max_us)
    }

    /// The mean.
    pub fn mean(&self) -> Duration {
        match self.count {
            0 => Duration::ZERO,
            n => Duration::from_micros(u64::try_from(self.sum_us / u128::from(n)).unwrap_or(0)),
        }
    }

    /// `p50 / p99 / max` as text.
    pub fn summary(&self) -> String {
        format!(
            "{} / {} / {}",
            duration(self.quantile(0.5)),
            duration(self.quantile(0.99)),
            duration(self.max())
        )
    }
}

/// Counts by a short label (an outcome, an error kind): `200: 950, 503: 40, reset: 10`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Counts(BTreeMap<String, u64>);

impl Counts {
    /// Adds one to `label`.
    pub fn add(&mut self, label: &str) {
        self.add_n(label, 1);
    }

    /// Adds `n` to `label`.
    pub fn add_n(&mut self, label: &str, n: u64) {
        match self.0.get_mut(label) {
            Some(c) => *c += n,
            None => {
                self.0.insert(label.to_owned(), n);
            }
        }
    }

    /// Adds every count of `other`.
    pub fn merge(&mut self, other: &Counts) {
        for (label, n) in &other.0 {
            self.add_n(label, *n);
        }
    }

    /// The count of `label`.
    pub fn get(&self, label: &str) -> u64 {
        self.0.get(label).copied().unwrap_or(0)
    }

    /// The sum of all counts.
    pub fn total(&self) -> u64 {
        self.0.values().sum()
    }

    /// Whether nothing was counted.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The labels and counts, in label order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, u64)> {
        self.0.iter().map(|(k, v)| (k.as_str(), *v))
    }
}

impl fmt::Display for Counts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            return f.write_str("none");
        }
        for (i, (label, n)) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{label}: {n}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_cover_values_within_three_percent() {
        for us in [
            0,
            1,
            63,
            64,
            65,
            100,
            999,
            1_000,
            12_345,
            1_000_000,
            86_400_000_000,
        ] {
            let i = index(us);
            assert!(upper(i) >= us, "{us}: bucket {i} ends at {}", upper(i));
            assert!(
                upper(i) as f64 <= us as f64 * 1.04 + 1.0,
                "{us}: {}",
                upper(i)
            );
            if i > 0 {
                assert!(upper(i - 1) < us, "{us}");
            }
        }
    }

    #[test]
    fn quantiles() {
        let mut h = Histogram::default();
        for ms in 1..=100 {
            h.record(Duration::from_millis(ms));
        }
        let p50 = h.quantile(0.5).as_secs_f64() * 1e3;
        assert!((50.0..=52.0).contains(&p50), "{p50}");
        assert_eq!(h.max(), Duration::from_millis(100));
        assert!(h.quantile(0.99) <= h.max());
        assert_eq!(Histogram::default().quantile(0.5), Duration::ZERO);
    }
}
