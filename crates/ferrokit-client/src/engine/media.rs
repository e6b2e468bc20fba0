//! The room task's media: str0m events, synthetic RTP out, received RTP
//! into statistics, and data packets.
//!
//! Allocation per packet: sending copies each payload into the
//! `Arc<[u8]>` str0m's `RtpWrite` takes (str0m keeps it for pacing and
//! retransmission); receiving gets str0m's own `RtpPacket`. Everything else
//! reuses buffers and fixed-size accumulators.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use livekit_protocol as proto;
use prost::Message as _;
use str0m::format::Codec;
use str0m::media::{Mid, Pt, Rid};
use str0m::rtp::{ExtensionValues, RtpPacket, RtpWrite, SeqNo, Ssrc};
use str0m::Event;

use super::Engine;
use crate::room::{
    DataMessage, RoomEvent, RoomStats, SyntheticKind, SyntheticTrackOptions, TrackKind, TrackStats,
};
use crate::stats::{Histogram, Jitter, SeqTracker};
use crate::synthetic::{
    read_stamp, unix_micros_at, AudioGenerator, PayloadFormat, VideoGenerator, AUDIO_CLOCK_RATE,
    AUDIO_PACKET_INTERVAL, VIDEO_CLOCK_RATE,
};
use crate::ClientError;

/// Audio level put on synthetic audio (RFC 6464, -dBov).
const SYNTHETIC_AUDIO_LEVEL: i8 = -30;

enum Generator {
    Audio(AudioGenerator),
    Video(VideoGenerator),
}

/// A published synthetic track.
pub(crate) struct LocalTrack {
    pub cid: String,
    /// Simulcast rids (video), None for audio.
    pub rids: Option<Vec<Rid>>,
    /// Our m-line, once offered.
    pub mid: Option<Mid>,
    /// Payload type, once the offer is answered (media flows from then).
    pt: Option<Pt>,
    generator: Generator,
    interval: Duration,
    next_due: Instant,
    sent_packets: u64,
    sent_bytes: u64,
}

impl LocalTrack {
    pub fn new(cid: String, options: &SyntheticTrackOptions) -> Self {
        let (generator, interval, rids) = match &options.kind {
            SyntheticKind::Audio => (
                Generator::Audio(AudioGenerator::new()),
                AUDIO_PACKET_INTERVAL,
                None,
            ),
            SyntheticKind::Video {
                layers,
                fps,
                keyframe_interval,
            } => {
                let fps = (*fps).max(1);
                let key_frames = (keyframe_interval.as_secs_f64() * fps as f64).round() as u32;
                let g = VideoGenerator::new(layers, fps, key_frames);
                let interval = g.frame_interval();
                let rids = layers.iter().map(|l| Rid::from(l.rid)).collect();
                (Generator::Video(g), interval, Some(rids))
            }
        };
        Self {
            cid,
            rids,
            mid: None,
            pt: None,
            generator,
            interval,
            next_due: Instant::now(),
            sent_packets: 0,
            sent_bytes: 0,
        }
    }

    pub fn kind(&self) -> TrackKind {
        match self.generator {
            Generator::Audio(_) => TrackKind::Audio,
            Generator::Video(_) => TrackKind::Video,
        }
    }
}

/// Per-SSRC receive state.
struct RxStream {
    track: usize,
    seq: SeqTracker,
    jitter: Jitter,
}

/// Per-track receive totals.
struct RxTrack {
    pc: usize,
    mid: Mid,
    track_sid: String,
    kind: TrackKind,
    packets: u64,
    bytes: u64,
    latency: Histogram,
    /// Totals of SSRCs no longer received (their m-line was remapped).
    retired: (u64, u64, f64),
}

/// Receive statistics of the subscribed tracks.
#[derive(Default)]
pub(crate) struct Receiver {
    streams: HashMap<Ssrc, RxStream>,
    tracks: Vec<RxTrack>,
    first_packet: Option<Instant>,
    /// Packets on m-lines not (yet) mapped to a track.
    unmapped: u64,
}

impl Receiver {
    /// An m-line stopped carrying its track: new packets there start fresh.
    pub fn forget_mid(&mut self, pc: usize, mid: Mid) {
        let tracks = &mut self.tracks;
        self.streams.retain(|_, s| {
            let Some(t) = tracks.get_mut(s.track) else {
                return false;
            };
            if t.pc != pc || t.mid != mid {
                return true;
            }
            t.retired.0 += s.seq.expected();
            t.retired.1 += s.seq.lost();
            t.retired.2 = t.retired.2.max(s.jitter.millis());
            false
        });
        for t in self
            .tracks
            .iter_mut()
            .filter(|t| t.pc == pc && t.mid == mid)
        {
            // Keep the totals, but never match this entry again.
            t.mid = Mid::from("-");
        }
    }
}

impl Engine {
    pub(super) fn on_rtc_event(&mut self, pc: usize, e: Event) {
        match e {
            Event::Connected => {
                self.pcs[pc].connected = true;
                self.emit(RoomEvent::MediaConnected { pc });
            }
            Event::ChannelOpen(id, label) => self.pcs[pc].channel_opened(id, &label),
            Event::ChannelClose(id) => self.pcs[pc].channel_closed(id),
            Event::ChannelData(d) => {
                let Some(reliable) = self.pcs[pc].channel_reliable(d.id) else {
                    return;
                };
                match proto::DataPacket::decode(d.data.as_slice()) {
                    Ok(p) => self.on_data_packet(p, reliable),
                    Err(e) => tracing::debug!("malformed data packet: {e}"),
                }
            }
            Event::RtpPacket(p) => self.on_rtp(pc, p),
            Event::KeyframeRequest(req) if pc == 0 => {
                if let Some(t) = self
                    .local_tracks
                    .iter_mut()
                    .find(|t| t.mid == Some(req.mid))
                {
                    if let Generator::Video(g) = &mut t.generator {
                        let layer = req.rid.and_then(|rid| {
                            t.rids
                                .as_ref()
                                .and_then(|r| r.iter().position(|x| *x == rid))
                        });
                        g.request_keyframe(layer);
                    }
                }
            }
            _ => {}
        }
    }

    fn on_data_packet(&mut self, p: proto::DataPacket, reliable: bool) {
        #[allow(deprecated)]
        if let Some(proto::data_packet::Value::User(u)) = p.value {
            let identity = if p.participant_identity.is_empty() {
                u.participant_identity
            } else {
                p.participant_identity
            };
            let sid = if p.participant_sid.is_empty() {
                u.participant_sid
            } else {
                p.participant_sid
            };
            self.emit(RoomEvent::DataReceived {
                participant_sid: sid,
                participant_identity: identity,
                topic: u.topic,
                payload: u.payload,
                reliable,
            });
        }
    }

    /// A received RTP packet: loss, jitter, bytes and latency per track.
    fn on_rtp(&mut self, pc: usize, p: RtpPacket) {
        let now = p.timestamp;
        let rx = &mut self.rx;
        rx.first_packet.get_or_insert(now);
        let ssrc = p.header.ssrc;
        if !rx.streams.contains_key(&ssrc) {
            let Some(mid) = self.pcs[pc]
                .rtc
                .direct_api()
                .stream_rx(&ssrc)
                .map(|s| s.mid())
            else {
                rx.unmapped += 1;
                return;
            };
            let Some(track_sid) = self.mid_tracks.get(&(pc, mid)) else {
                rx.unmapped += 1;
                return;
            };
            let kind = match self.pcs[pc].rtc.media(mid).map(|m| m.kind()) {
                Some(str0m::media::MediaKind::Video) => TrackKind::Video,
                _ => TrackKind::Audio,
            };
            let track = match rx
                .tracks
                .iter()
                .position(|t| t.pc == pc && t.mid == mid && t.track_sid == *track_sid)
            {
                Some(i) => i,
                None => {
                    rx.tracks.push(RxTrack {
                        pc,
                        mid,
                        track_sid: track_sid.clone(),
                        kind,
                        packets: 0,
                        bytes: 0,
                        latency: Histogram::default(),
                        retired: (0, 0, 0.0),
                    });
                    rx.tracks.len() - 1
                }
            };
            let clock = if kind == TrackKind::Video {
                VIDEO_CLOCK_RATE
            } else {
                AUDIO_CLOCK_RATE
            };
            rx.streams.insert(
                ssrc,
                RxStream {
                    track,
                    seq: SeqTracker::default(),
                    jitter: Jitter::new(clock),
                },
            );
        }
        let Some(stream) = rx.streams.get_mut(&ssrc) else {
            return;
        };
        let Some(track) = rx.tracks.get_mut(stream.track) else {
            return;
        };
        stream.seq.observe(p.header.sequence_number);
        let since_open = now.saturating_duration_since(self.connect_started);
        stream.jitter.observe(since_open, p.header.timestamp);
        track.packets += 1;
        track.bytes += p.payload.len() as u64;
        let format = if track.kind == TrackKind::Video {
            PayloadFormat::Vp8
        } else {
            PayloadFormat::Opus
        };
        if let Some(stamp) = read_stamp(format, &p.payload) {
            let latency = unix_micros_at(now).saturating_sub(stamp.sent_unix_micros);
            track.latency.record(latency);
        }
    }

    /// After an answer on pcs[0]: tracks whose m-line is negotiated get
    /// their payload type and start sending.
    pub(super) fn activate_local_tracks(&mut self) {
        let now = Instant::now();
        for t in self.local_tracks.iter_mut().filter(|t| t.pt.is_none()) {
            let Some(mid) = t.mid else { continue };
            let codec = match t.generator {
                Generator::Audio(_) => Codec::Opus,
                Generator::Video(_) => Codec::Vp8,
            };
            t.pt = self.pcs[0].pt_for(mid, codec);
            if t.pt.is_none() {
                tracing::warn!(participant = %self.local_sid, "no payload type for {codec} on mid {mid}");
            }
            t.next_due = now;
        }
    }

    /// When the next synthetic packet or frame is due.
    pub(super) fn next_media_due(&self) -> Option<Instant> {
        self.local_tracks
            .iter()
            .filter(|t| t.pt.is_some())
            .map(|t| t.next_due)
            .min()
    }

    /// Writes every due synthetic packet or frame.
    pub(super) fn send_media(&mut self, now: Instant) {
        let buf = &mut self.media_buf;
        let Some(pc) = self.pcs.first_mut() else {
            return;
        };
        for t in &mut self.local_tracks {
            let (Some(mid), Some(pt)) = (t.mid, t.pt) else {
                continue;
            };
            // Catch up at most a few intervals after a stall, then skip.
            if now.saturating_duration_since(t.next_due) > t.interval * 5 {
                t.next_due = now;
            }
            while t.next_due <= now {
                let sent_at = unix_micros_at(now);
                let mut api = pc.rtc.direct_api();
                match &mut t.generator {
                    Generator::Audio(g) => {
                        let m = g.next_packet(sent_at, buf);
                        let ext = ExtensionValues {
                            audio_level: Some(SYNTHETIC_AUDIO_LEVEL),
                            voice_activity: Some(true),
                            ..Default::default()
                        };
                        if let Some(tx) = api.stream_tx_by_mid(mid, None) {
                            tx.write_rtp(
                                RtpWrite::new(pt, SeqNo::from(m.seq), m.timestamp, now, &buf[..])
                                    .marker(m.marker)
                                    .ext_vals(ext),
                            );
                            t.sent_packets += 1;
                            t.sent_bytes += buf.len() as u64;
                        }
                    }
                    Generator::Video(g) => {
                        let rids = t.rids.as_deref().unwrap_or(&[]);
                        let (packets, bytes) = (&mut t.sent_packets, &mut t.sent_bytes);
                        g.next_frame(sent_at, buf, |m, payload| {
                            let rid = rids.get(m.layer).copied();
                            if let Some(tx) = api.stream_tx_by_mid(mid, rid) {
                                tx.write_rtp(
                                    RtpWrite::new(
                                        pt,
                                        SeqNo::from(m.seq),
                                        m.timestamp,
                                        now,
                                        payload,
                                    )
                                    .marker(m.marker)
                                    .nackable(true),
                                );
                                *packets += 1;
                                *bytes += payload.len() as u64;
                            }
                        });
                    }
                }
                t.next_due += t.interval;
            }
        }
    }

    /// Sends a user data packet on pcs[0]'s `_reliable` or `_lossy`.
    pub(super) fn send_data(&mut self, message: DataMessage) -> Result<(), ClientError> {
        let kind = if message.reliable {
            proto::data_packet::Kind::Reliable
        } else {
            proto::data_packet::Kind::Lossy
        };
        #[allow(deprecated)]
        let packet = proto::DataPacket {
            kind: kind as i32,
            destination_identities: message.destination_identities.clone(),
            value: Some(proto::data_packet::Value::User(proto::UserPacket {
                payload: message.payload,
                topic: message.topic,
                destination_identities: message.destination_identities,
                ..Default::default()
            })),
            ..Default::default()
        };
        let bytes = packet.encode_to_vec();
        if self.pcs[0].send_data(message.reliable, &bytes) {
            Ok(())
        } else {
            Err(ClientError::ChannelNotOpen(if message.reliable {
                crate::peer::RELIABLE_LABEL
            } else {
                crate::peer::LOSSY_LABEL
            }))
        }
    }

    /// A snapshot of the statistics.
    pub(super) fn stats(&self) -> RoomStats {
        let tracks = self
            .rx
            .tracks
            .iter()
            .enumerate()
            .map(|(i, t)| {
                let mut s = TrackStats {
                    participant_sid: self.owner_of(&t.track_sid).unwrap_or_default(),
                    track_sid: t.track_sid.clone(),
                    kind: t.kind,
                    packets: t.packets,
                    bytes: t.bytes,
                    expected: t.retired.0,
                    lost: t.retired.1,
                    jitter_ms: t.retired.2,
                    latency_us: t.latency.clone(),
                };
                for st in self.rx.streams.values().filter(|s| s.track == i) {
                    s.expected += st.seq.expected();
                    s.lost += st.seq.lost();
                    s.jitter_ms = s.jitter_ms.max(st.jitter.millis());
                }
                s
            })
            .collect();
        RoomStats {
            tracks,
            first_media: self
                .rx
                .first_packet
                .map(|t| t.saturating_duration_since(self.connect_started)),
            sent_packets: self.local_tracks.iter().map(|t| t.sent_packets).sum(),
            sent_bytes: self.local_tracks.iter().map(|t| t.sent_bytes).sum(),
            signal_rtt_ms: self.rtt_ms,
        }
    }
}
