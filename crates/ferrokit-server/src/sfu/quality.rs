//! Connection quality, sans-IO: a score for one participant's media over
//! one stats window, from the loss, jitter and round-trip time of every
//! stream it sends (as our receiver reports saw them) and receives (as its
//! receiver reports told us; for video we send, also the share of packets
//! it NACKed, see [`nack_loss`]). The worst stream sets the score.
//!
//! The score is on the MOS scale LiveKit reports (1.0 .. 5.0, at most 4.5
//! here) and maps to `ConnectionQuality` as livekit-server's thresholds
//! do: above 4.1 EXCELLENT, above 3.6 GOOD, else POOR. A participant that
//! publishes but whose media stopped arriving for a whole window is LOST.
//!
//! Penalties (our own model, not LiveKit's): 0.5 per wanted simulcast
//! layer the publisher stopped sending, 12 points per unit of loss
//! fraction (2% loss costs 0.24, 5% costs 0.6, 10% costs 1.2), 1 point
//! per 100 ms of jitter beyond 30 ms, 1 point per 500 ms of round-trip
//! time beyond 300 ms.

use livekit_protocol as proto;

/// Fewer packets than this in a window give no NACK-based loss figure.
pub const NACK_LOSS_MIN_PACKETS: u64 = 100;

/// Loss fraction of a video stream we send, from the NACKs (RFC 4585
/// §6.2.1) its receiver sent for `packets` packets over a window.
///
/// Receiver reports' loss counts a packet recovered by retransmission as
/// received, so on a lossy link with RTX they often report ~0; a NACK per
/// packet missed on first delivery shows the link's loss. `None` below
/// [`NACK_LOSS_MIN_PACKETS`] packets. Slightly high when a retransmission
/// is lost too (its packet is NACKed again).
pub fn nack_loss(packets: u64, nacks: u64) -> Option<f32> {
    (packets >= NACK_LOSS_MIN_PACKETS).then(|| (nacks as f32 / packets as f32).min(1.0))
}

/// Score lost per wanted simulcast layer the publisher stopped sending:
/// one missing layer makes an otherwise clean link GOOD, two POOR.
pub const MISSING_LAYER_PENALTY: f32 = 0.5;

/// Best score: a clean link.
pub const MAX_SCORE: f32 = 4.5;

/// The worst stream statistics seen over one window.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct QualityWindow {
    /// Worst loss fraction (0..1) of any stream.
    pub loss: f32,
    /// Worst interarrival jitter of any stream, ms.
    pub jitter_ms: f32,
    /// Worst round-trip time, ms.
    pub rtt_ms: f32,
    /// Published streams that had no new packet over the window.
    pub stalled: u32,
    /// Published streams that had packets over the window.
    pub flowing: u32,
    /// Simulcast layers of published video that the publisher was asked
    /// for (dynacast) and had sent before, but that had no packet over the
    /// window: the publisher dropped them (its CPU or uplink).
    pub missing_layers: u32,
}

impl QualityWindow {
    /// Adds one stream's report: loss fraction (0..1), jitter in RTP
    /// timestamp units at `clock_rate` Hz, round-trip time.
    pub fn add(
        &mut self,
        loss: Option<f32>,
        jitter_ticks: Option<u32>,
        clock_rate: u32,
        rtt: Option<std::time::Duration>,
    ) {
        if let Some(l) = loss.filter(|l| l.is_finite()) {
            self.loss = self.loss.max(l.clamp(0.0, 1.0));
        }
        if let (Some(j), true) = (jitter_ticks, clock_rate > 0) {
            let ms = j as f32 * 1000.0 / clock_rate as f32;
            self.jitter_ms = self.jitter_ms.max(ms);
        }
        if let Some(rtt) = rtt {
            self.rtt_ms = self.rtt_ms.max(rtt.as_secs_f32() * 1000.0);
        }
    }

    /// Adds a loss fraction seen another way (e.g. [`nack_loss`]).
    pub fn add_loss(&mut self, loss: f32) {
        if loss.is_finite() {
            self.loss = self.loss.max(loss.clamp(0.0, 1.0));
        }
    }

    /// Notes whether a published stream received packets in the window.
    pub fn add_published(&mut self, new_packets: u64) {
        if new_packets == 0 {
            self.stalled += 1;
        } else {
            self.flowing += 1;
        }
    }

    /// Notes a wanted simulcast layer that sent nothing in the window.
    pub fn add_missing_layer(&mut self) {
        self.missing_layers += 1;
    }

    /// The window's score (1.0 ..= [`MAX_SCORE`]).
    pub fn score(&self) -> f32 {
        let loss = 12.0 * self.loss;
        let jitter = (self.jitter_ms - 30.0).max(0.0) / 100.0;
        let rtt = (self.rtt_ms - 300.0).max(0.0) / 500.0;
        let layers = MISSING_LAYER_PENALTY * self.missing_layers as f32;
        (MAX_SCORE - loss - jitter - rtt - layers).clamp(1.0, MAX_SCORE)
    }

    /// The window's quality (see the module doc for thresholds).
    pub fn quality(&self) -> proto::ConnectionQuality {
        use proto::ConnectionQuality as Q;
        if (self.stalled > 0 || self.missing_layers > 0) && self.flowing == 0 {
            return Q::Lost;
        }
        let s = self.score();
        if s > 4.1 {
            Q::Excellent
        } else if s > 3.6 {
            Q::Good
        } else {
            Q::Poor
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proto::ConnectionQuality as Q;
    use std::time::Duration;

    #[test]
    fn clean_link_is_excellent() {
        let mut w = QualityWindow::default();
        w.add(Some(0.0), Some(90), 90_000, Some(Duration::from_millis(20)));
        w.add_published(100);
        assert_eq!(w.quality(), Q::Excellent);
        assert_eq!(w.score(), MAX_SCORE);
        assert_eq!(QualityWindow::default().quality(), Q::Excellent);
    }

    #[test]
    fn missing_layers_lower_quality_and_alone_mean_lost() {
        use proto::ConnectionQuality as Q;
        let mut w = QualityWindow::default();
        w.add_published(100);
        w.add_missing_layer();
        assert_eq!(w.quality(), Q::Good);
        w.add_missing_layer();
        assert_eq!(w.quality(), Q::Poor);
        let mut only_missing = QualityWindow::default();
        only_missing.add_missing_layer();
        assert_eq!(only_missing.quality(), Q::Lost);
    }

    #[test]
    fn nack_loss_needs_enough_packets_and_caps_at_one() {
        assert_eq!(nack_loss(99, 5), None);
        assert_eq!(nack_loss(1000, 50), Some(0.05));
        assert_eq!(nack_loss(100, 500), Some(1.0));
        let mut w = QualityWindow::default();
        w.add(Some(0.0), None, 90_000, None);
        w.add_loss(0.05);
        // 5% loss seen only through NACKs is not excellent.
        assert!(w.score() <= 4.1 && w.score() > 3.6, "{}", w.score());
    }

    #[test]
    fn loss_lowers_quality_by_worst_stream() {
        let mut w = QualityWindow::default();
        w.add(Some(0.01), None, 0, None);
        assert_eq!(w.quality(), Q::Excellent);
        w.add(Some(0.05), None, 0, None);
        assert_eq!(w.quality(), Q::Good);
        w.add(Some(0.10), None, 0, None);
        assert_eq!(w.quality(), Q::Poor);
        w.add(Some(f32::NAN), None, 0, None);
        assert!((w.loss - 0.10).abs() < 1e-6);
    }

    #[test]
    fn jitter_in_clock_ticks_and_rtt_count() {
        let mut w = QualityWindow::default();
        // 9000 ticks at 90 kHz = 100 ms of jitter: 0.7 below max.
        w.add(None, Some(9000), 90_000, None);
        assert!((w.jitter_ms - 100.0).abs() < 1e-3);
        assert_eq!(w.quality(), Q::Good);
        // 9600 ticks at 48 kHz = 200 ms.
        w.add(None, Some(9600), 48_000, None);
        assert_eq!(w.quality(), Q::Poor);
        let mut w = QualityWindow::default();
        w.add(None, None, 48_000, Some(Duration::from_millis(500)));
        assert_eq!(w.quality(), Q::Good);
    }

    #[test]
    fn stalled_publisher_is_lost() {
        let mut w = QualityWindow::default();
        w.add_published(0);
        assert_eq!(w.quality(), Q::Lost);
        w.add_published(5);
        assert_eq!(w.quality(), Q::Excellent);
    }
}
