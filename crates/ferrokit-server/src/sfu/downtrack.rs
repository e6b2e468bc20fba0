//! One subscriber's view of one published track: which simulcast layer it
//! forwards, and the RTP sequence number and timestamp rewriting that keeps
//! its outgoing stream continuous across layer switches (RFC 3550 §5.1),
//! and for VP8 the payload descriptor's picture numbering too
//! (RFC 7741 §4.2, [`super::vp8`]).
//!
//! Layer switches happen only at a keyframe of the target layer; while
//! waiting, the current layer keeps flowing and a keyframe is requested.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::codec::Codec;
use super::dependency_descriptor::DependencyDescriptor;
use super::vp8::{Vp8Munger, Vp8Rewrite};

/// Number of simulcast layers (LOW, MEDIUM, HIGH).
pub const MAX_LAYERS: usize = 3;

/// A layer with no packet for this long is considered stopped.
const LAYER_TIMEOUT: Duration = Duration::from_millis(1000);

/// One received RTP packet, shared by every downtrack of its track.
#[derive(Debug)]
pub struct ForwardPacket {
    /// Simulcast layer, 0 = LOW; 0 for non-simulcast tracks.
    pub layer: u8,
    /// Extended (rollover-free) sequence number of the source stream.
    pub seq: u64,
    /// Source RTP timestamp, in the codec's clock rate.
    pub timestamp: u32,
    /// RTP marker bit.
    pub marker: bool,
    /// Whether the payload begins a keyframe ([`super::is_keyframe`]).
    pub keyframe: bool,
    /// Codec of the payload.
    pub codec: Codec,
    /// RTP clock rate, Hz.
    pub clock_rate: u32,
    /// ssrc-audio-level value (0..127 -dBov) and voice activity flag.
    pub audio_level: Option<(i8, bool)>,
    /// RTP payload.
    pub payload: Arc<[u8]>,
    /// AV1 dependency descriptor to forward unchanged (AV1/VP9 SVC on one
    /// stream only, see [`super::dependency_descriptor`]); None otherwise.
    pub dependency_descriptor: Option<Arc<DependencyDescriptor>>,
    /// Arrival time at the server.
    pub arrival: Instant,
}

/// Header fields for one forwarded packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Forward {
    /// Outgoing extended sequence number.
    pub seq: u64,
    /// Outgoing RTP timestamp.
    pub timestamp: u32,
    /// VP8 payload descriptor fields to rewrite ([`Vp8Rewrite::apply`]
    /// gives the payload to send); None: send the payload as received.
    pub vp8: Option<Vp8Rewrite>,
}

/// Forwarding state of one downtrack.
#[derive(Debug)]
pub struct Downtrack {
    video: bool,
    /// Highest layer the subscriber wants (UpdateTrackSettings), 0..=2.
    max_layer: u8,
    layer_seen: [Option<Instant>; MAX_LAYERS],
    current: Option<u8>,
    /// Source sequence number of the first packet after the last switch.
    switch_seq: u64,
    seq_offset: u64,
    ts_offset: u32,
    last_out: Option<(u64, u32, Instant)>,
    keyframe_wanted: Option<u8>,
    /// Disabled by the subscriber (`track_setting.disabled`).
    paused: bool,
    /// Highest layer the subscriber's bandwidth allows; None: not even
    /// the lowest (the stream is paused for bandwidth).
    bandwidth_cap: Option<u8>,
    /// When the subscriber last started wanting media (creation or
    /// resume): a feed is only dry after [`LAYER_TIMEOUT`] from here.
    wanted_since: Instant,
    /// VP8 PictureID / TL0PICIDX / KEYIDX continuity across switches.
    vp8: Vp8Munger,
}

impl Downtrack {
    /// A downtrack for a video (`video == true`) or audio track, created at `now`.
    pub fn new(video: bool, now: Instant) -> Self {
        Self {
            video,
            max_layer: (MAX_LAYERS - 1) as u8,
            layer_seen: [None; MAX_LAYERS],
            current: None,
            switch_seq: 0,
            seq_offset: 0,
            ts_offset: 0,
            last_out: None,
            keyframe_wanted: None,
            paused: false,
            bandwidth_cap: Some((MAX_LAYERS - 1) as u8),
            wanted_since: now,
            vp8: Vp8Munger::new(),
        }
    }

    /// Caps the forwarded layer (0 = LOW .. 2 = HIGH).
    pub fn set_max_layer(&mut self, layer: u8) {
        self.max_layer = layer.min((MAX_LAYERS - 1) as u8);
    }

    /// Stops (true) or resumes (false) forwarding at `now`, e.g.
    /// `track_setting.disabled`. Resuming waits for a keyframe.
    pub fn set_paused(&mut self, paused: bool, now: Instant) {
        if self.paused && !paused {
            self.current = None;
            self.wanted_since = now;
        }
        self.paused = paused;
    }

    /// Highest layer the subscriber wants (0 = LOW .. 2 = HIGH).
    pub fn max_layer(&self) -> u8 {
        self.max_layer
    }

    /// Whether the subscriber disabled this downtrack.
    pub fn is_paused(&self) -> bool {
        self.paused
    }

    /// Caps the layer to what the subscriber's bandwidth allows (None: no
    /// layer fits, nothing is forwarded). Resuming waits for a keyframe.
    pub fn set_bandwidth_cap(&mut self, cap: Option<u8>, now: Instant) {
        if self.bandwidth_cap.is_none() && cap.is_some() {
            self.current = None;
            self.wanted_since = now;
        }
        self.bandwidth_cap = cap.map(|c| c.min((MAX_LAYERS - 1) as u8));
    }

    /// The layer cap from bandwidth (see [`Downtrack::set_bandwidth_cap`]).
    pub fn bandwidth_cap(&self) -> Option<u8> {
        self.bandwidth_cap
    }

    /// Whether no layer had a packet for [`LAYER_TIMEOUT`] since the
    /// subscriber last started wanting media: the publisher stopped
    /// sending (or was told to).
    pub fn feed_dry(&self, now: Instant) -> bool {
        let last = self
            .layer_seen
            .iter()
            .flatten()
            .copied()
            .max()
            .map_or(self.wanted_since, |t| t.max(self.wanted_since));
        now.saturating_duration_since(last) >= LAYER_TIMEOUT
    }

    /// Layers that had a packet within [`LAYER_TIMEOUT`], lowest first.
    pub fn live_layers(&self, now: Instant) -> impl Iterator<Item = u8> + '_ {
        (0..MAX_LAYERS)
            .filter(move |&l| {
                self.layer_seen[l].is_some_and(|t| now.saturating_duration_since(t) < LAYER_TIMEOUT)
            })
            .map(|l| l as u8)
    }

    /// The layer being forwarded, if any.
    pub fn current_layer(&self) -> Option<u8> {
        self.current
    }

    /// Number of VP8 packets whose payload descriptor was too short to
    /// parse (forwarded unchanged).
    pub fn vp8_malformed(&self) -> u64 {
        self.vp8.malformed()
    }

    /// A layer for which a keyframe should be requested from the publisher,
    /// once per call (the publisher side rate-limits).
    pub fn take_keyframe_request(&mut self) -> Option<u8> {
        self.keyframe_wanted.take()
    }

    fn target_layer(&self, now: Instant) -> Option<u8> {
        let live = |l: usize| {
            self.layer_seen[l].is_some_and(|t| now.saturating_duration_since(t) < LAYER_TIMEOUT)
        };
        let max = self.max_layer.min(self.bandwidth_cap?);
        (0..=usize::from(max))
            .rev()
            .find(|&l| live(l))
            .or_else(|| (0..MAX_LAYERS).find(|&l| live(l)))
            .map(|l| l as u8)
    }

    /// Decides whether `p` is forwarded, and with which header fields.
    pub fn on_packet(&mut self, p: &ForwardPacket, now: Instant) -> Option<Forward> {
        let layer = usize::from(p.layer).min(MAX_LAYERS - 1);
        self.layer_seen[layer] = Some(now);
        if self.paused || (self.video && self.bandwidth_cap.is_none()) {
            return None;
        }
        let target = self.target_layer(now)?;
        if self.current != Some(target) && p.layer == target {
            if p.keyframe || !self.video {
                self.switch_to(p, now);
            } else {
                self.keyframe_wanted = Some(target);
            }
        }
        if self.current != Some(p.layer) || p.seq < self.switch_seq {
            return None;
        }
        let seq = p.seq.wrapping_sub(self.seq_offset);
        let timestamp = p.timestamp.wrapping_sub(self.ts_offset);
        let newer = self.last_out.is_none_or(|(s, _, _)| seq > s);
        if newer {
            self.last_out = Some((seq, timestamp, now));
        }
        let vp8 = match p.codec {
            Codec::Vp8 => self.vp8.munge(&p.payload, newer),
            _ => None,
        };
        Some(Forward {
            seq,
            timestamp,
            vp8,
        })
    }

    /// Starts forwarding `p.layer` from packet `p`, continuing the outgoing
    /// sequence and advancing the timestamp by the wall time elapsed.
    fn switch_to(&mut self, p: &ForwardPacket, now: Instant) {
        let (next_seq, next_ts) = match self.last_out {
            None => (1, p.timestamp),
            Some((seq, ts, at)) => {
                let elapsed = now.saturating_duration_since(at);
                let ticks = (elapsed.as_secs_f64() * f64::from(p.clock_rate)) as u32;
                (seq + 1, ts.wrapping_add(ticks.max(1)))
            }
        };
        self.seq_offset = p.seq.wrapping_sub(next_seq);
        self.ts_offset = p.timestamp.wrapping_sub(next_ts);
        self.switch_seq = p.seq;
        if p.codec == Codec::Vp8 {
            self.vp8.switch(&p.payload);
        }
        self.current = Some(p.layer);
        self.keyframe_wanted = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pkt(layer: u8, seq: u64, ts: u32, key: bool, at: Instant) -> ForwardPacket {
        ForwardPacket {
            layer,
            seq,
            timestamp: ts,
            marker: false,
            keyframe: key,
            codec: Codec::Vp8,
            clock_rate: 90_000,
            audio_level: None,
            payload: Arc::from(&[0u8][..]),
            dependency_descriptor: None,
            arrival: at,
        }
    }

    #[test]
    fn audio_forwards_from_first_packet_with_continuous_numbers() {
        let t0 = Instant::now();
        let mut d = Downtrack::new(false, t0);
        let mut p = pkt(0, 5000, 1000, false, t0);
        p.codec = Codec::Opus;
        let a = d.on_packet(&p, t0).unwrap();
        assert_eq!(
            a,
            Forward {
                seq: 1,
                timestamp: 1000,
                vp8: None
            }
        );
        p.seq = 5001;
        p.timestamp = 1960;
        assert_eq!(
            d.on_packet(&p, t0).unwrap(),
            Forward {
                seq: 2,
                timestamp: 1960,
                vp8: None
            }
        );
    }

    #[test]
    fn video_waits_for_keyframe_and_asks_for_one() {
        let t0 = Instant::now();
        let mut d = Downtrack::new(true, t0);
        assert!(d.on_packet(&pkt(0, 10, 0, false, t0), t0).is_none());
        assert_eq!(d.take_keyframe_request(), Some(0));
        assert_eq!(d.take_keyframe_request(), None);
        assert!(d.on_packet(&pkt(0, 11, 3000, true, t0), t0).is_some());
        assert!(d.on_packet(&pkt(0, 12, 3000, false, t0), t0).is_some());
        // A late packet from before the switch is dropped.
        assert!(d.on_packet(&pkt(0, 10, 0, false, t0), t0).is_none());
    }

    #[test]
    fn switches_up_at_keyframe_keeping_sequence_continuous() {
        let t0 = Instant::now();
        let mut d = Downtrack::new(true, t0);
        let f = d.on_packet(&pkt(0, 100, 9000, true, t0), t0).unwrap();
        assert_eq!(f.seq, 1);
        // The high layer appears; low keeps flowing until its keyframe.
        let t1 = t0 + Duration::from_millis(33);
        assert!(d.on_packet(&pkt(2, 7000, 50_000, false, t1), t1).is_none());
        assert_eq!(d.take_keyframe_request(), Some(2));
        assert_eq!(
            d.on_packet(&pkt(0, 101, 12_000, false, t1), t1)
                .unwrap()
                .seq,
            2
        );
        let t2 = t1 + Duration::from_millis(33);
        let f = d.on_packet(&pkt(2, 7001, 53_000, true, t2), t2).unwrap();
        assert_eq!(f.seq, 3);
        assert_eq!(d.current_layer(), Some(2));
        // Timestamp advanced by about 33 ms of 90 kHz ticks.
        let delta = f.timestamp.wrapping_sub(12_000);
        assert!((2900..=3100).contains(&delta), "{delta}");
        // Low-layer packets are no longer forwarded.
        assert!(d.on_packet(&pkt(0, 102, 15_000, false, t2), t2).is_none());
    }

    #[test]
    fn falls_back_when_layer_stops_and_respects_max_layer() {
        let t0 = Instant::now();
        let mut d = Downtrack::new(true, t0);
        d.on_packet(&pkt(1, 1, 0, false, t0), t0);
        d.on_packet(&pkt(0, 1, 0, true, t0), t0);
        d.on_packet(&pkt(1, 2, 0, true, t0), t0).unwrap();
        assert_eq!(d.current_layer(), Some(1));
        d.set_max_layer(0);
        assert!(d.on_packet(&pkt(0, 2, 10, true, t0), t0).is_some());
        assert_eq!(d.current_layer(), Some(0));
        d.set_max_layer(2);
        // Layer 1 stopped long ago: layer 0 stays the target.
        let later = t0 + Duration::from_secs(3);
        assert!(d.on_packet(&pkt(0, 3, 20, false, later), later).is_some());
    }

    #[test]
    fn pause_and_resume_waits_for_keyframe() {
        let t0 = Instant::now();
        let mut d = Downtrack::new(true, t0);
        d.on_packet(&pkt(0, 1, 0, true, t0), t0).unwrap();
        d.set_paused(true, t0);
        assert!(d.on_packet(&pkt(0, 2, 0, true, t0), t0).is_none());
        d.set_paused(false, t0);
        assert!(d.on_packet(&pkt(0, 3, 0, false, t0), t0).is_none());
        let f = d.on_packet(&pkt(0, 4, 0, true, t0), t0).unwrap();
        assert_eq!(f.seq, 2);
    }

    #[test]
    fn feed_is_dry_after_timeout_counted_from_resume() {
        let t0 = Instant::now();
        let mut d = Downtrack::new(true, t0);
        assert!(!d.feed_dry(t0 + LAYER_TIMEOUT / 2));
        assert!(d.feed_dry(t0 + LAYER_TIMEOUT));
        d.on_packet(&pkt(0, 1, 0, true, t0), t0 + LAYER_TIMEOUT);
        assert!(!d.feed_dry(t0 + LAYER_TIMEOUT * 2 - Duration::from_millis(1)));
        assert!(d.feed_dry(t0 + LAYER_TIMEOUT * 2));
        // Resuming after a pause restarts the grace period.
        d.set_paused(true, t0);
        d.set_paused(false, t0 + LAYER_TIMEOUT * 3);
        assert!(!d.feed_dry(t0 + LAYER_TIMEOUT * 3));
        assert_eq!(d.live_layers(t0 + LAYER_TIMEOUT * 3).count(), 0);
    }

    /// A VP8 packet with a 15-bit PictureID and TL0PICIDX (RFC 7741 §4.2);
    /// a keyframe has the VP8 frame header's P bit clear.
    fn vp8(layer: u8, seq: u64, pid: u16, tl0: u8, key: bool, at: Instant) -> ForwardPacket {
        let mut p = pkt(layer, seq, seq as u32 * 3000, key, at);
        let frame = if key { 0x00 } else { 0x01 };
        p.payload = Arc::from(
            &[
                0x90,
                0xC0,
                0x80 | (pid >> 8) as u8,
                pid as u8,
                tl0,
                frame,
                0xAA,
            ][..],
        );
        p
    }

    /// The PictureID and TL0PICIDX the subscriber receives.
    fn sent(p: &ForwardPacket, f: &Forward) -> (u16, u8) {
        let out = match f.vp8 {
            Some(r) => r.apply(&p.payload),
            None => p.payload.clone(),
        };
        let d = crate::sfu::vp8::Descriptor::parse(&out).unwrap();
        (d.picture_id.unwrap().value, d.tl0picidx.unwrap())
    }

    #[test]
    fn vp8_picture_ids_continue_across_switches() {
        let t0 = Instant::now();
        let mut d = Downtrack::new(true, t0);
        d.set_max_layer(0);
        // Never switched: nothing to rewrite, the payload is shared.
        for i in 0..3u16 {
            let p = vp8(0, 100 + u64::from(i), 5000 + i, 40, i == 0, t0);
            let f = d.on_packet(&p, t0).unwrap();
            assert_eq!(f.vp8, None);
            assert_eq!(sent(&p, &f), (5000 + i, 40));
        }
        // Up to HIGH, whose own numbering is far behind.
        d.set_max_layer(2);
        let t1 = t0 + Duration::from_millis(50);
        assert!(d.on_packet(&vp8(2, 900, 12, 3, false, t1), t1).is_none());
        let p = vp8(2, 901, 13, 4, true, t1);
        let f = d.on_packet(&p, t1).unwrap();
        assert_eq!(d.current_layer(), Some(2));
        assert_eq!(sent(&p, &f), (5003, 41));
        let p = vp8(2, 902, 14, 4, false, t1);
        assert_eq!(sent(&p, &d.on_packet(&p, t1).unwrap()), (5004, 41));
        // Packets of the old layer after the switch are not forwarded.
        assert!(d.on_packet(&vp8(0, 103, 5003, 41, false, t1), t1).is_none());
        // Nor are late packets of the new layer from before the switch.
        assert!(d.on_packet(&vp8(2, 899, 11, 3, false, t1), t1).is_none());
        // A reordered packet of the new layer keeps its own (munged) picture.
        let p = vp8(2, 904, 16, 5, false, t1);
        assert_eq!(sent(&p, &d.on_packet(&p, t1).unwrap()), (5006, 42));
        let p = vp8(2, 903, 15, 4, false, t1);
        assert_eq!(sent(&p, &d.on_packet(&p, t1).unwrap()), (5005, 41));
        // Down again to LOW, whose numbering ran ahead meanwhile.
        d.set_max_layer(0);
        let p = vp8(0, 110, 5020, 47, true, t1);
        let f = d.on_packet(&p, t1).unwrap();
        assert_eq!(d.current_layer(), Some(0));
        assert_eq!(sent(&p, &f), (5007, 43));
        assert!(f.vp8.is_some());
    }

    #[test]
    fn vp8_malformed_descriptor_is_forwarded_unchanged_and_counted() {
        let t0 = Instant::now();
        let mut d = Downtrack::new(true, t0);
        let p = vp8(0, 1, 77, 1, true, t0);
        d.on_packet(&p, t0).unwrap();
        let mut bad = vp8(0, 2, 0, 0, false, t0);
        bad.payload = Arc::from(&[0x80, 0x80][..]);
        let f = d.on_packet(&bad, t0).unwrap();
        assert_eq!((f.seq, f.vp8), (2, None));
        assert_eq!(d.vp8_malformed(), 1);
    }

    #[test]
    fn bandwidth_cap_limits_layer_and_pauses_at_none() {
        let t0 = Instant::now();
        let mut d = Downtrack::new(true, t0);
        d.on_packet(&pkt(2, 1, 0, true, t0), t0).unwrap();
        d.set_bandwidth_cap(Some(0), t0);
        // Still on HIGH until LOW's keyframe.
        assert!(d.on_packet(&pkt(0, 1, 0, false, t0), t0).is_none());
        assert_eq!(d.take_keyframe_request(), Some(0));
        assert!(d.on_packet(&pkt(0, 2, 0, true, t0), t0).is_some());
        assert!(d.on_packet(&pkt(2, 2, 0, true, t0), t0).is_none());
        d.set_bandwidth_cap(None, t0);
        assert!(d.on_packet(&pkt(0, 3, 0, true, t0), t0).is_none());
        d.set_bandwidth_cap(Some(2), t0);
        assert_eq!(d.on_packet(&pkt(2, 3, 0, true, t0), t0).unwrap().seq, 3);
    }
}
