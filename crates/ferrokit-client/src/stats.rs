//! Receive statistics, without IO: loss from RTP sequence numbers,
//! interarrival jitter (RFC 3550 §6.4.1, A.8) and a latency histogram.
//! All accumulators are fixed-size: recording a packet never allocates.

use std::time::Duration;

/// Extends 16-bit RTP sequence numbers and counts packets (RFC 3550 A.1,
/// simplified): expected = highest - first + 1 extended sequence numbers.
#[derive(Debug, Clone, Default)]
pub struct SeqTracker {
    first: Option<u64>,
    max: u64,
    received: u64,
}

impl SeqTracker {
    /// Records one packet with sequence number `seq`; returns its extended
    /// sequence number (the candidate nearest the highest seen so far).
    pub fn observe(&mut self, seq: u16) -> u64 {
        self.received += 1;
        let Some(first) = self.first else {
            // Start one cycle up so that a reordered earlier packet can
            // extend below the first one without wrapping under zero.
            let ext = (1 << 16) | u64::from(seq);
            self.first = Some(ext);
            self.max = ext;
            return ext;
        };
        let base = self.max & !0xffff;
        let ext = [base.wrapping_sub(1 << 16), base, base + (1 << 16)]
            .into_iter()
            .map(|b| b | u64::from(seq))
            .min_by_key(|c| c.abs_diff(self.max))
            .unwrap_or(base | u64::from(seq));
        if ext > self.max {
            self.max = ext;
        }
        if ext < first {
            self.first = Some(ext);
        }
        ext
    }

    /// Packets the sequence range says were sent.
    pub fn expected(&self) -> u64 {
        self.first.map_or(0, |f| self.max - f + 1)
    }

    /// Packets received (duplicates included).
    pub fn received(&self) -> u64 {
        self.received
    }

    /// Expected minus received, never below zero.
    pub fn lost(&self) -> u64 {
        self.expected().saturating_sub(self.received)
    }
}

/// Interarrival jitter of one SSRC (RFC 3550 A.8), in RTP clock units.
#[derive(Debug, Clone)]
pub struct Jitter {
    clock_rate: u32,
    last: Option<(Duration, u32)>,
    jitter: f64,
}

impl Jitter {
    /// An estimator for a stream whose RTP clock runs at `clock_rate` Hz.
    pub fn new(clock_rate: u32) -> Self {
        Self {
            clock_rate: clock_rate.max(1),
            last: None,
            jitter: 0.0,
        }
    }

    /// Records a packet that arrived at `arrival` (any fixed origin) with
    /// RTP timestamp `rtp_ts`.
    pub fn observe(&mut self, arrival: Duration, rtp_ts: u32) {
        if let Some((prev_arrival, prev_ts)) = self.last {
            let arrived =
                (arrival.as_secs_f64() - prev_arrival.as_secs_f64()) * f64::from(self.clock_rate);
            let stamped = f64::from(rtp_ts.wrapping_sub(prev_ts) as i32);
            let d = (arrived - stamped).abs();
            self.jitter += (d - self.jitter) / 16.0;
        }
        self.last = Some((arrival, rtp_ts));
    }

    /// The current estimate in milliseconds.
    pub fn millis(&self) -> f64 {
        self.jitter * 1000.0 / f64::from(self.clock_rate)
    }
}

/// Sub-buckets per power of two (~6% resolution).
const SUB_BITS: u32 = 4;
const SUB: usize = 1 << SUB_BITS;
/// Largest exponent kept (2^40 us, about 12 days); larger values clamp.
const MAX_EXP: u32 = 40;
const BUCKETS: usize = (MAX_EXP as usize - SUB_BITS as usize + 2) * SUB;

/// A log-linear histogram of microsecond values: 16 buckets per power of
/// two, exact below 16 us. Fixed size (about 5 KB), mergeable.
#[derive(Clone)]
pub struct Histogram {
    counts: Box<[u64; BUCKETS]>,
    total: u64,
    sum: u128,
    max: u64,
}

impl std::fmt::Debug for Histogram {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Histogram")
            .field("total", &self.total)
            .field("p50", &self.percentile(50.0))
            .field("max", &self.max)
            .finish()
    }
}

impl Default for Histogram {
    fn default() -> Self {
        Self {
            counts: Box::new([0; BUCKETS]),
            total: 0,
            sum: 0,
            max: 0,
        }
    }
}

fn bucket_of(v: u64) -> usize {
    if v < SUB as u64 {
        return v as usize;
    }
    let e = (63 - v.leading_zeros()).min(MAX_EXP);
    let v = v.min((1u64 << (MAX_EXP + 1)) - 1);
    let mantissa = ((v >> (e - SUB_BITS)) as usize) & (SUB - 1);
    (e - SUB_BITS + 1) as usize * SUB + mantissa
}

/// The middle of bucket `i`.
fn value_of(i: usize) -> u64 {
    if i < SUB {
        return i as u64;
    }
    let e = (i / SUB) as u32 + SUB_BITS - 1;
    let m = (i % SUB) as u64;
    let width = 1u64 << (e - SUB_BITS);
    ((SUB as u64 + m) << (e - SUB_BITS)) + width / 2
}

impl Histogram {
    /// Records one value (microseconds).
    pub fn record(&mut self, micros: u64) {
        self.counts[bucket_of(micros)] += 1;
        self.total += 1;
        self.sum += u128::from(micros);
        self.max = self.max.max(micros);
    }

    /// Adds every value of `other`.
    pub fn merge(&mut self, other: &Histogram) {
        for (a, b) in self.counts.iter_mut().zip(other.counts.iter()) {
            *a += b;
        }
        self.total += other.total;
        self.sum += other.sum;
        self.max = self.max.max(other.max);
    }

    /// Number of values recorded.
    pub fn count(&self) -> u64 {
        self.total
    }

    /// The value below which `p` percent of values fall (0..=100),
    /// microseconds, within the bucket resolution; None when empty.
    pub fn percentile(&self, p: f64) -> Option<u64> {
        if self.total == 0 {
            return None;
        }
        let rank = ((p.clamp(0.0, 100.0) / 100.0) * self.total as f64).ceil() as u64;
        let rank = rank.max(1);
        let mut seen = 0;
        let top = bucket_of(self.max);
        for (i, c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                return Some(if i == top {
                    self.max
                } else {
                    value_of(i).min(self.max)
                });
            }
        }
        Some(self.max)
    }

    /// Mean in microseconds; None when empty.
    pub fn mean(&self) -> Option<f64> {
        (self.total > 0).then(|| self.sum as f64 / self.total as f64)
    }

    /// Largest value recorded, microseconds.
    pub fn max(&self) -> u64 {
        self.max
    }
}

/// Percentile of unsorted samples (nearest rank); None when empty.
pub fn percentile_of(samples: &mut [f64], p: f64) -> Option<f64> {
    if samples.is_empty() {
        return None;
    }
    samples.sort_by(f64::total_cmp);
    let rank = ((p.clamp(0.0, 100.0) / 100.0) * samples.len() as f64).ceil() as usize;
    Some(samples[rank.clamp(1, samples.len()) - 1])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seq_counts_loss_and_wraps() {
        let mut t = SeqTracker::default();
        for s in 65_530u16..=65_535 {
            t.observe(s);
        }
        // 0 and 1 after the wrap, 2 lost, then 3.
        let a = t.observe(0);
        t.observe(1);
        t.observe(3);
        assert_eq!(a, (2 << 16));
        assert_eq!(t.expected(), 10);
        assert_eq!(t.received(), 9);
        assert_eq!(t.lost(), 1);
        // The late packet fills the gap.
        t.observe(2);
        assert_eq!(t.lost(), 0);
    }

    #[test]
    fn seq_reordered_before_first() {
        let mut t = SeqTracker::default();
        t.observe(1);
        t.observe(0);
        t.observe(2);
        assert_eq!((t.expected(), t.lost()), (3, 0));
        let mut t = SeqTracker::default();
        t.observe(0);
        t.observe(65_535);
        assert_eq!((t.expected(), t.lost()), (2, 0));
    }

    #[test]
    fn jitter_zero_for_regular_arrivals_and_grows_with_variance() {
        let mut j = Jitter::new(48_000);
        for i in 0..100u32 {
            j.observe(Duration::from_millis(20 * i as u64), i * 960);
        }
        assert!(j.millis() < 1e-6);
        let mut j = Jitter::new(48_000);
        for i in 0..1000u32 {
            let wobble = if i % 2 == 0 { 0 } else { 4 };
            j.observe(Duration::from_millis(20 * i as u64 + wobble), i * 960);
        }
        // |D| is always 4 ms, so J converges to 4 ms.
        assert!((j.millis() - 4.0).abs() < 0.05, "{}", j.millis());
    }

    #[test]
    fn jitter_across_timestamp_wrap() {
        let mut j = Jitter::new(90_000);
        let start = u32::MAX - 3000;
        for i in 0..10u32 {
            j.observe(
                Duration::from_micros(33_333 * i as u64),
                start.wrapping_add(i * 3000),
            );
        }
        assert!(j.millis() < 0.01);
    }

    #[test]
    fn histogram_percentiles_within_resolution() {
        let mut h = Histogram::default();
        for v in 1..=10_000u64 {
            h.record(v);
        }
        let p50 = h.percentile(50.0).unwrap() as f64;
        let p99 = h.percentile(99.0).unwrap() as f64;
        assert!((p50 / 5000.0 - 1.0).abs() < 0.07, "{p50}");
        assert!((p99 / 9900.0 - 1.0).abs() < 0.07, "{p99}");
        assert_eq!(h.percentile(100.0), Some(10_000));
        assert_eq!(h.count(), 10_000);
        let mut small = Histogram::default();
        small.record(3);
        assert_eq!(small.percentile(50.0), Some(3));
        let mut merged = Histogram::default();
        merged.merge(&h);
        merged.merge(&small);
        assert_eq!(merged.count(), 10_001);
        assert!(Histogram::default().percentile(50.0).is_none());
        // Huge values clamp instead of overflowing.
        h.record(u64::MAX);
        assert_eq!(h.percentile(100.0), Some(u64::MAX));
    }

    #[test]
    fn buckets_round_trip() {
        for v in [0u64, 15, 16, 17, 31, 32, 1000, 123_456, 1 << 39] {
            let back = value_of(bucket_of(v));
            assert!(
                back.abs_diff(v) as f64 <= (v as f64 / 16.0).max(0.0) + 1.0,
                "{v} {back}"
            );
        }
    }

    #[test]
    fn percentile_of_samples() {
        let mut s = vec![5.0, 1.0, 3.0, 2.0, 4.0];
        assert_eq!(percentile_of(&mut s, 50.0), Some(3.0));
        assert_eq!(percentile_of(&mut s, 99.0), Some(5.0));
        assert_eq!(percentile_of(&mut [], 50.0), None);
    }
}
