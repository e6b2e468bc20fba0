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
//! Loss takes a stream to GOOD and POOR at livekit-server's loss levels
//! (`getPacketLossWeight` in `pkg/sfu/connectionquality`): video at 2 %
//! and 6 %, Opus audio at 2.5 % and 7.5 % ([`loss_penalty`]). The other
//! penalties are our own model: 0.5 per wanted simulcast layer the
//! publisher stopped sending, 1 point per 100 ms of jitter beyond 30 ms,
//! 1 point per 500 ms of round-trip time beyond 300 ms.

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
/// Scores above this are EXCELLENT.
const EXCELLENT_ABOVE: f32 = 4.1;
/// Scores above this (and not above [`EXCELLENT_ABOVE`]) are GOOD.
const GOOD_ABOVE: f32 = 3.6;

/// Video loss fraction at which a stream falls to GOOD, and to POOR.
pub const VIDEO_LOSS_LEVELS: (f32, f32) = (0.02, 0.06);
/// Opus audio loss fraction at which a stream falls to GOOD, and to POOR.
pub const AUDIO_LOSS_LEVELS: (f32, f32) = (0.025, 0.075);

/// Score lost to a loss fraction, given the fractions `(good, poor)` at
/// which a stream falls to GOOD and to POOR: linear up to `good` (where
/// it costs exactly the margin to GOOD), then linear up to `poor` (the
/// margin to POOR), and on at that second slope.
pub fn loss_penalty(loss: f32, (good, poor): (f32, f32)) -> f32 {
    let to_good = MAX_SCORE - EXCELLENT_ABOVE;
    let to_poor = MAX_SCORE - GOOD_ABOVE;
    if loss <= good {
        loss / good * to_good
    } else {
        to_good + (loss - good) / (poor - good) * (to_poor - to_good)
    }
}

/// The worst stream statistics seen over one window.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct QualityWindow {
    /// Worst loss fraction (0..1) of any video stream.
    pub video_loss: f32,
    /// Worst loss fraction (0..1) of any audio stream.
    pub audio_loss: f32,
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
    /// timestamp units at `clock_rate` Hz, round-trip time. A 90 kHz
    /// stream is video, any other clock rate audio.
    pub fn add(
        &mut self,
        loss: Option<f32>,
        jitter_ticks: Option<u32>,
        clock_rate: u32,
        rtt: Option<std::time::Duration>,
    ) {
        if let Some(l) = loss.filter(|l| l.is_finite()) {
            let worst = if clock_rate == 90_000 {
                &mut self.video_loss
            } else {
                &mut self.audio_loss
            };
            *worst = worst.max(l.clamp(0.0, 1.0));
        }
        if let (Some(j), true) = (jitter_ticks, clock_rate > 0) {
            let ms = j as f32 * 1000.0 / clock_rate as f32;
            self.jitter_ms = self.jitter_ms.max(ms);
        }
        if let Some(rtt) = rtt {
            self.rtt_ms = self.rtt_ms.max(rtt.as_secs_f32() * 1000.0);
        }
    }

    /// Adds a video stream's loss fraction seen another way
    /// ([`nack_loss`]).
    pub fn add_video_loss(&mut self, loss: f32) {
        if loss.is_finite() {
            self.video_loss = self.video_loss.max(loss.clamp(0.0, 1.0));
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
        let loss = loss_penalty(self.video_loss, VIDEO_LOSS_LEVELS)
            .max(loss_penalty(self.audio_loss, AUDIO_LOSS_LEVELS));
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
        if s > EXCELLENT_ABOVE {
            Q::Excellent
        } else if s > GOOD_ABOVE {
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
        w.add_video_loss(0.05);
        // 5% loss seen only through NACKs is not excellent.
        assert!(w.score() <= 4.1 && w.score() > 3.6, "{}", w.score());
    }

    #[test]
    fn loss_lowers_quality_by_worst_stream() {
        let mut w = QualityWindow::default();
        w.add(Some(0.01), None, 48_000, None);
        assert_eq!(w.quality(), Q::Excellent);
        w.add(Some(0.05), None, 48_000, None);
        assert_eq!(w.quality(), Q::Good);
        w.add(Some(0.10), None, 48_000, None);
        assert_eq!(w.quality(), Q::Poor);
        w.add(Some(f32::NAN), None, 48_000, None);
        assert!((w.audio_loss - 0.10).abs() < 1e-6);
        assert_eq!(w.video_loss, 0.0);
    }

    #[test]
    fn loss_levels_are_livekits_per_kind() {
        let at = |loss: f32, clock_rate: u32| {
            let mut w = QualityWindow::default();
            w.add(Some(loss), None, clock_rate, None);
            w.quality()
        };
        // Video: GOOD from 2 %, POOR from 6 %.
        assert_eq!(at(0.019, 90_000), Q::Excellent);
        assert_eq!(at(0.021, 90_000), Q::Good);
        assert_eq!(at(0.059, 90_000), Q::Good);
        assert_eq!(at(0.061, 90_000), Q::Poor);
        // Opus: GOOD from 2.5 %, POOR from 7.5 %.
        assert_eq!(at(0.024, 48_000), Q::Excellent);
        assert_eq!(at(0.026, 48_000), Q::Good);
        assert_eq!(at(0.074, 48_000), Q::Good);
        assert_eq!(at(0.076, 48_000), Q::Poor);
        assert_eq!(loss_penalty(0.0, VIDEO_LOSS_LEVELS), 0.0);
        assert!(loss_penalty(1.0, VIDEO_LOSS_LEVELS) > MAX_SCORE);
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
