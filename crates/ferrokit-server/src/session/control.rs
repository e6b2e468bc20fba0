//! The session's periodic control work, on its control tick: a
//! publisher's speaking level and dynacast layers, a subscriber's stream
//! states, and the participant's connection quality from str0m's stats.

use std::time::{Duration, Instant};

use livekit_protocol as proto;
use proto::signal_response::Message as Msg;
use str0m::stats::{MediaEgressStats, MediaIngressStats};

use super::{Session, CONTROL_INTERVAL};
use crate::sfu::allocation::{desired_bps, Allocator, Demand};
use crate::sfu::quality::QualityWindow;
use crate::sfu::Codec;
use str0m::bwe::Bitrate;

/// Shortest connection-quality window: str0m reports stats every 5 s, so
/// a window closes on the first control tick after a report once this
/// much time passed.
const QUALITY_WINDOW: Duration = Duration::from_secs(4);
/// A window with no stats at all (no media) closes after this long.
const QUALITY_WINDOW_MAX: Duration = Duration::from_secs(11);

/// Least bitrate str0m's BWE is told we would like to send (bps) when the
/// subscriber takes video: its first probes go up to twice this, before any
/// media is measured.
const MIN_DESIRED_BPS: u64 = 1_000_000;

/// Control interval of a session that publishes nothing and takes no
/// video: nothing of its control work is then due sooner (connection
/// quality windows last at least [`QUALITY_WINDOW`]). A multiple of
/// [`CONTROL_INTERVAL`], so its ticks stay on the session's phase. Ticking
/// 200 audio-only subscribers every 400 ms woke their tasks 500 times a
/// second for nothing.
pub(super) const CONTROL_INTERVAL_IDLE: Duration = Duration::from_secs(2);

/// The control tick after the one due at `last` (before the first tick,
/// `last` is one [`CONTROL_INTERVAL`] before it): `interval` later, or if
/// that is not after `now` (the interval shrank, or the task ran late),
/// the first [`CONTROL_INTERVAL`] step after `now`, skipping missed ones.
pub(super) fn next_control_tick(last: Instant, interval: Duration, now: Instant) -> Instant {
    let due = last + interval;
    if due > now {
        return due;
    }
    let step = CONTROL_INTERVAL.as_nanos();
    let missed = now.duration_since(due).as_nanos() / step + 1;
    // `missed` steps past `due` is after `now`; u32 holds ~54 years of them.
    due + CONTROL_INTERVAL * u32::try_from(missed).unwrap_or(u32::MAX)
}

/// Subscriber side: bandwidth allocation across control ticks.
#[derive(Debug, Default)]
pub(super) struct BandwidthState {
    /// The allocator's hysteresis.
    allocator: Allocator,
    /// Desired bitrate last given to str0m's BWE, bps (None: none yet).
    desired_bps: Option<u64>,
}

/// Connection quality measurement of one session.
pub(super) struct QualityState {
    window: QualityWindow,
    reports: u32,
    started: Instant,
    /// Last cumulative packet count per incoming (mid, rid).
    ingress_seen: std::collections::HashMap<(str0m::media::Mid, Option<str0m::media::Rid>), u64>,
    /// Last cumulative (packets sent, NACKs received) per outgoing video
    /// (mid, rid).
    egress_seen:
        std::collections::HashMap<(str0m::media::Mid, Option<str0m::media::Rid>), (u64, u64)>,
}

impl QualityState {
    pub(super) fn new(now: Instant) -> Self {
        Self {
            window: QualityWindow::default(),
            reports: 0,
            started: now,
            ingress_seen: Default::default(),
            egress_seen: Default::default(),
        }
    }
}

impl Session {
    /// Publisher side: ends a speaker interval; the room hears the loudest
    /// audio track's level when it changed.
    pub(super) fn update_speaking(&mut self) {
        let level = self
            .incoming
            .values_mut()
            .filter_map(|i| i.level.take())
            .reduce(f32::max);
        let sid = self.sid.clone();
        self.room.update(|r| ((), r.set_speaker_level(&sid, level)));
    }

    /// Publisher side: tells the client which layers of its video tracks
    /// anyone wants (`subscribed_quality_update`), when that changed.
    pub(super) fn update_dynacast(&mut self, now: Instant) {
        let mut updates = Vec::new();
        for inc in self.incoming.values_mut() {
            // Until media flows the client may not have its sender yet and
            // would drop the update (livekit-client's setPublishingLayers).
            if !inc.started {
                continue;
            }
            let Some(max_layer) = inc.dynacast.as_mut().and_then(|d| d.poll(now)) else {
                continue;
            };
            let codec = match (inc.codec, &inc.wanted_codec) {
                (Some(c), _) => c.client_name(),
                (None, Some(mime)) => Codec::from_name(mime).client_name(),
                (None, None) => Codec::Vp8.client_name(),
            };
            tracing::debug!(participant = %self.sid, track = %inc.track_sid, ?max_layer, "dynacast");
            updates.push(crate::sfu::dynacast::subscribed_quality_update(
                &inc.track_sid,
                codec,
                max_layer,
            ));
        }
        for u in updates {
            self.send(Msg::SubscribedQualityUpdate(u));
        }
    }

    /// The interval to this session's next control tick: a publisher's
    /// speaking level and dynacast layers, and a video subscriber's
    /// bandwidth allocation and stream states, every [`CONTROL_INTERVAL`];
    /// otherwise [`CONTROL_INTERVAL_IDLE`].
    pub(super) fn control_interval(&self) -> Duration {
        if !self.incoming.is_empty() || self.subscribed.values().any(|s| s.video) {
            CONTROL_INTERVAL
        } else {
            CONTROL_INTERVAL_IDLE
        }
    }

    /// Subscriber side: tells the client which video streams are paused
    /// while it wants them (the publisher stopped sending, or no layer
    /// fits the bandwidth) and which resumed (`stream_state_update`).
    /// Streams the subscriber disabled, or the publisher muted, are not
    /// reported (LiveKit calls them inactive, not paused).
    pub(super) fn update_stream_states(&mut self, now: Instant) {
        let mut states = Vec::new();
        for (track_sid, sub) in self.subscribed.iter_mut() {
            if !sub.video || !sub.active || sub.dt.is_paused() || sub.track.muted {
                continue;
            }
            let paused = sub.dt.bandwidth_cap().is_none() || sub.dt.feed_dry(now);
            if paused == sub.stream_paused {
                continue;
            }
            sub.stream_paused = paused;
            let state = if paused {
                proto::StreamState::Paused
            } else {
                proto::StreamState::Active
            };
            tracing::debug!(participant = %self.sid, track = %track_sid, ?state, "stream state");
            states.push(proto::StreamStateInfo {
                participant_sid: sub.publisher.clone(),
                track_sid: track_sid.clone(),
                state: state as i32,
            });
        }
        if !states.is_empty() {
            self.send(Msg::StreamStateUpdate(proto::StreamStateUpdate {
                stream_states: states,
            }));
        }
    }

    /// Both sides: keeps the mute state of subscribed (and, for its
    /// own `update`, published) tracks from a participant `update` on its
    /// way to the client.
    pub(super) fn note_track_mutes(&mut self, update: &proto::ParticipantUpdate) {
        for t in update.participants.iter().flat_map(|p| &p.tracks) {
            if let Some(sub) = self.subscribed.get_mut(&t.sid) {
                sub.track.muted = t.muted;
            }
            if let Some(inc) = self.incoming_track(&t.sid) {
                inc.muted = t.muted;
            }
        }
    }

    /// Publisher side: str0m's report on one incoming stream (our receiver
    /// reports' loss and jitter); counts whether it still flows.
    pub(super) fn on_ingress_stats(&mut self, st: &MediaIngressStats) {
        let Some(inc) = self.incoming.get(&st.mid) else {
            return;
        };
        let video = inc.dynacast.is_some();
        // A muted track, or a video track nobody wants (dynacast paused
        // it), is expected to be silent.
        let expected = !inc.muted && inc.dynacast.as_ref().is_none_or(|d| d.wanted().is_some());
        let q = &mut self.quality;
        let seen = q.ingress_seen.entry((st.mid, st.rid)).or_insert(0);
        let new_packets = st.packets.saturating_sub(*seen);
        *seen = st.packets;
        q.reports += 1;
        let clock_rate = if video { 90_000 } else { 48_000 };
        if new_packets > 0 {
            q.window.add(st.loss, Some(st.jitter), clock_rate, st.rtt);
        }
        if expected && (st.rid.is_none() || new_packets > 0) {
            q.window.add_published(new_packets);
        } else if let (Some(rid), Some(d), false) = (&st.rid, &inc.dynacast, inc.muted) {
            // A layer that flowed before (str0m has its stream), that the
            // publisher was told to send and that anyone wants, but that
            // sent nothing over the window.
            let asked = d.wanted().min(d.announced());
            let layer = super::media::layer_of(Some(rid.as_ref()), &inc.rids);
            if asked.is_some_and(|max| layer <= max) {
                q.window.add_missing_layer();
            }
        }
    }

    /// Subscriber side: str0m's report on one outgoing stream (the
    /// client's receiver reports: loss, jitter, round-trip time).
    pub(super) fn on_egress_stats(&mut self, st: &MediaEgressStats) {
        let video = self
            .subscribed
            .values()
            .find(|s| s.mid == Some(st.mid))
            .map(|s| s.video);
        let Some(video) = video else { return };
        let clock_rate = if video { 90_000 } else { 48_000 };
        let q = &mut self.quality;
        q.reports += 1;
        q.window.add(
            st.loss,
            st.remote.as_ref().map(|r| r.jitter),
            clock_rate,
            st.rtt,
        );
        if video {
            let seen = q.egress_seen.entry((st.mid, st.rid)).or_insert((0, 0));
            let packets = st.packets.saturating_sub(seen.0);
            let nacks = st.nacks.saturating_sub(seen.1);
            *seen = (st.packets, st.nacks);
            if let Some(loss) = crate::sfu::quality::nack_loss(packets, nacks) {
                q.window.add_video_loss(loss);
            }
        }
    }

    /// Subscriber side: tells str0m's BWE what we would like to send (so
    /// it probes for it) and caps each video downtrack's layer to what
    /// the estimate carries after audio (see `sfu::allocation`).
    pub(super) fn allocate_bandwidth(&mut self, now: Instant) {
        if self.subscribed.is_empty() {
            return;
        }
        let mut audio_bps = 0;
        let mut order = Vec::new();
        let mut demands = Vec::new();
        for (track_sid, sub) in self.subscribed.iter_mut() {
            sub.rates.roll(now);
            if !sub.video {
                audio_bps += sub.rates.total();
                continue;
            }
            if !sub.active || sub.dt.is_paused() {
                continue;
            }
            order.push(track_sid.clone());
            demands.push(Demand {
                max_layer: sub.dt.max_layer(),
                rates: sub.rates.rates(),
                current: sub.dt.bandwidth_cap(),
            });
        }
        // The floor is for video; an audio-only subscriber is not probed
        // for bandwidth it will never use.
        let floor = if demands.is_empty() {
            0
        } else {
            MIN_DESIRED_BPS
        };
        let desired = desired_bps(&demands, audio_bps).max(floor);
        let to_bwe = match self.bwe_bps {
            Some(estimate) => {
                tracing::trace!(participant = %self.sid, estimate, desired, audio_bps, "bandwidth");
                let budget = estimate.saturating_sub(audio_bps);
                let caps = self.bandwidth.allocator.update(now, budget, &demands);
                for (track_sid, cap) in order.iter().zip(caps) {
                    if let Some(sub) = self.subscribed.get_mut(track_sid) {
                        if sub.dt.bandwidth_cap() != cap {
                            tracing::debug!(participant = %self.sid, track = %track_sid, ?cap, estimate, desired, rates = ?sub.rates.rates(), "bandwidth cap");
                        }
                        sub.dt.set_bandwidth_cap(cap, now);
                    }
                }
                self.bandwidth.allocator.bwe_desired(now, desired, estimate)
            }
            // No estimate yet (no feedback): nothing to cap.
            None => desired,
        };
        // Only a real change: each rise above the estimate starts a probe.
        let changed = match self.bandwidth.desired_bps {
            None => true,
            Some(last) => to_bwe.abs_diff(last) * 10 > last,
        };
        if changed {
            self.bandwidth.desired_bps = Some(to_bwe);
            let pc = self.sub_pc();
            if let Some(p) = self.pcs.get_mut(pc) {
                p.rtc.bwe().set_bitrate(Bitrate::ZERO, Bitrate::bps(to_bwe));
            }
        }
    }

    /// Closes the connection-quality window when due and reports the
    /// participant's quality to the room (which tells others on change).
    pub(super) fn update_quality(&mut self, now: Instant) {
        let q = &mut self.quality;
        let age = now.saturating_duration_since(q.started);
        if !(q.reports > 0 && age >= QUALITY_WINDOW || age >= QUALITY_WINDOW_MAX) {
            return;
        }
        let window = std::mem::take(&mut q.window);
        q.reports = 0;
        q.started = now;
        let (quality, score) = (window.quality(), window.score());
        tracing::debug!(participant = %self.sid, ?quality, score, ?window, "connection quality");
        let sid = self.sid.clone();
        self.room
            .update(|r| ((), r.set_connection_quality(&sid, quality, score)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_control_tick_keeps_the_phase_and_skips_missed_ticks() {
        let last = Instant::now();
        let ms = Duration::from_millis;
        // On time: one interval after the last tick.
        assert_eq!(
            next_control_tick(last, CONTROL_INTERVAL, last + ms(3)),
            last + ms(400)
        );
        assert_eq!(
            next_control_tick(last, CONTROL_INTERVAL_IDLE, last + ms(3)),
            last + ms(2000)
        );
        // The session took video 1.3 s into an idle interval: the next
        // 400 ms step of its phase, not the rest of the idle interval.
        assert_eq!(
            next_control_tick(last, CONTROL_INTERVAL, last + ms(1300)),
            last + ms(1600)
        );
        // Exactly on a step: that one is not after `now`.
        assert_eq!(
            next_control_tick(last, CONTROL_INTERVAL, last + ms(800)),
            last + ms(1200)
        );
        // The task ran 10 s late: missed ticks are skipped, not run.
        let due = next_control_tick(last, CONTROL_INTERVAL_IDLE, last + ms(10_050));
        assert_eq!(due, last + ms(10_400));
        assert_eq!((due - last).as_millis() % CONTROL_INTERVAL.as_millis(), 0);
    }
}
