//! One str0m `Rtc` (a peer connection) in RTP mode, ICE-lite, with the codecs
//! LiveKit clients use and the payload types they expect (Opus 111, RED 63,
//! VP8 96, VP9 98, H264 102+, AV1 35).
//!
//! Sans-IO: datagrams and time go in; transmits and events come out through
//! `poll_output`, drained by the session task.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use serde::{Deserialize, Serialize};
use str0m::bwe::Bitrate;
use str0m::change::{SdpAnswer, SdpOffer, SdpPendingOffer};
use str0m::channel::ChannelId;
use str0m::media::{MediaKind, Mid, Pt};
use str0m::net::{Protocol, Receive};
use str0m::{Candidate, Input, Reason, Rtc, RtcError};

use super::direct::{DirectPath, Handover, MediaDestination};
use super::dtls_keys::KeySink;
use crate::grid::on_grid;
use crate::net::demux::{self, Kind};
use crate::sfu::Codec;

/// Starting bandwidth estimate of a peer connection, bps: enough for a
/// 720p layer, so a new subscriber starts on the layer it asked for (as
/// livekit-server does before any congestion is seen) instead of waiting
/// for probes, which on a noisy host took up to 19 s from 1 Mbps. Probing
/// at 3 and 6 times this (up to twice the desired bitrate) starts at
/// connect; a link that carries less brings the estimate down.
pub const INITIAL_BWE_BPS: u64 = 3_000_000;

/// Labels of LiveKit's data channels.
pub const RELIABLE_LABEL: &str = "_reliable";
/// Least time between timeout rounds str0m asks for only for its BWE
/// delay controller (see [`Peer::schedule`]). Without a recent
/// transport-cc report such a round only sets the next one (str0m 0.25
/// `bwe/delay/control.rs`), and a connection that sends video, the only
/// media we report transport-cc for, gets a round with every packet; so
/// does one that receives media. What such a round is left to serve is a
/// quiet connection's other deadlines, which str0m's soonest one hides:
/// the RTCP reports of audio (every 5 s, str0m's default), stats (5 s),
/// ICE consent upkeep. Each of those may come up to this late. In
/// audio-200's steady state str0m ran 677 rounds a second with 500 ms
/// here, 399 with 2 s (a uprobe on `Rtc::do_handle_timeout`; 205 of them
/// come with received datagrams).
pub const BWE_IDLE_ROUND: std::time::Duration = std::time::Duration::from_secs(2);
/// How long after SCTP traffic (a DTLS record received, a data channel
/// message written) the BWE delay controller's rounds are not put off
/// ([`Peer::schedule`]). str0m reports only its soonest deadline, so while
/// the controller's 25 ms one is put off, SCTP's own deadlines wait for it
/// too: the delayed acknowledgement (200 ms, RFC 4960 section 6.2) and the
/// retransmission timer (1 s at first, section 6.3). 3 s covers the
/// acknowledgement of the last message received and a first
/// retransmission of the last one sent.
pub const SCTP_ACTIVE: std::time::Duration = std::time::Duration::from_secs(3);
/// Once connected, timeout rounds str0m asks for only for housekeeping
/// (see [`is_housekeeping`]) are put off to the next multiple of this,
/// counted from one process-wide epoch, so that every connection's rounds
/// due within one grid step run in one egress worker wake (see
/// [`Peer::schedule`]).
pub const HOUSEKEEPING_GRID: std::time::Duration = std::time::Duration::from_millis(20);
/// Unordered, no retransmissions.
pub const LOSSY_LABEL: &str = "_lossy";
/// Data track packets.
pub const DATA_TRACK_LABEL: &str = "_data_track";

/// Which LiveKit channel a data channel is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChannelKind {
    Reliable,
    Lossy,
    DataTrack,
    Other,
}

impl ChannelKind {
    fn from_label(label: &str) -> Self {
        match label {
            RELIABLE_LABEL => Self::Reliable,
            LOSSY_LABEL => Self::Lossy,
            DATA_TRACK_LABEL => Self::DataTrack,
            _ => Self::Other,
        }
    }
}

/// `RTCIceCandidateInit` as JSON in `TrickleRequest.candidateInit`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CandidateInit {
    pub candidate: String,
    #[serde(default)]
    pub sdp_mid: Option<String>,
    #[serde(default, rename = "sdpMLineIndex")]
    pub sdp_m_line_index: Option<u32>,
    #[serde(default)]
    pub username_fragment: Option<String>,
}

/// Why an SDP, candidate or datagram could not be used.
#[derive(Debug, thiserror::Error)]
pub enum PeerError {
    #[error(transparent)]
    Rtc(#[from] RtcError),
    #[error("{0}")]
    Invalid(String),
}

/// A peer connection and the bookkeeping the session needs around it.
pub struct Peer {
    /// The str0m instance.
    pub rtc: Rtc,
    /// Our ICE ufrag (routes STUN on the shared port).
    pub ufrag: String,
    /// Our offer awaiting the client's answer (server-offered PC only).
    pub pending_offer: Option<SdpPendingOffer>,
    /// Open data channels by kind.
    channels: HashMap<ChannelId, ChannelKind>,
    /// The address our candidate advertises (packets' destination).
    local: SocketAddr,
    /// ICE + DTLS connected.
    pub connected: bool,
    /// str0m's next timeout, as of the last drain of this connection.
    pub next_timeout: Instant,
    /// Where the DTLS handshake leaves its SRTP keying material, for RTP
    /// we protect ourselves (`super::srtp_tx`).
    pub keys: Arc<KeySink>,
    /// Our own sending contexts, from `keys` once connected
    /// (`super::direct`).
    pub direct: Option<DirectPath>,
    /// Where str0m's media-path transmits last went.
    pub media_dest: MediaDestination,
    /// Audio written into str0m that it has not sent yet.
    pub handover: Handover,
    /// The RED payload type the remote description lists on each audio
    /// mid, from the last one applied: str0m folds RED into the Opus
    /// params and keeps no per-mid record of it ([`Peer::pt_for`]).
    remote_red: HashMap<Mid, Pt>,
    /// When str0m last ran a timeout round ([`Peer::timeout_round`]).
    last_round: Instant,
    /// Until when SCTP counts as active ([`SCTP_ACTIVE`]).
    sctp_until: Instant,
}

impl Peer {
    /// A new peer connection whose only candidate is the host candidate
    /// `local` (node_ip:udp_port), with send-side BWE when it will send
    /// media (`sends_media`: not a dual-PC publisher connection, which only
    /// receives; it still sends transport-cc feedback). Fails only if the
    /// candidate is invalid.
    pub fn new(local: SocketAddr, now: Instant, sends_media: bool) -> Result<Self, PeerError> {
        let mut builder = Rtc::builder()
            .set_rtp_mode(true)
            .set_ice_lite(true)
            .clear_codecs()
            .enable_opus(true, true)
            .enable_vp8(true)
            .enable_h264(true)
            .enable_vp9(true)
            .enable_av1(true)
            // AV1/VP9 SVC needs the dependency descriptor forwarded
            // (`super::extensions`).
            .set_extension(
                super::extensions::DEPENDENCY_DESCRIPTOR_ID,
                super::extensions::dependency_descriptor(),
            )
            // Send-side BWE (transport-cc): its estimate drives the
            // subscriber's simulcast layers (`Session::allocate_bandwidth`,
            // which also tells it the bitrate to probe for). Forwarded
            // media is not paced (see `Session::forward`); the pacer only
            // spaces probes and padding.
            // Egress stats carry the NACK counts for the metrics.
            .set_stats_interval(Some(std::time::Duration::from_secs(5)));
        if sends_media {
            // Without it, an idle receive-only connection still ran str0m's
            // pacer and BWE timers every few ms.
            builder = builder.enable_bwe(Some(Bitrate::bps(INITIAL_BWE_BPS)));
        }
        let (mut rtc, keys) = super::dtls_keys::build(builder, now);
        let candidate = Candidate::host(local, "udp")
            .map_err(|e| PeerError::Invalid(format!("host candidate: {e}")))?;
        rtc.add_local_candidate(candidate);
        let ufrag = rtc.direct_api().local_ice_credentials().ufrag;
        Ok(Self {
            rtc,
            ufrag,
            pending_offer: None,
            channels: HashMap::new(),
            local,
            connected: false,
            next_timeout: now,
            keys,
            direct: None,
            media_dest: MediaDestination::default(),
            handover: Handover::default(),
            remote_red: HashMap::new(),
            last_round: now,
            sctp_until: now,
        })
    }

    /// Runs str0m's timeout round at `at` (str0m ignores a time before
    /// one it was given).
    pub fn timeout_round(&mut self, at: Instant) -> Result<(), RtcError> {
        self.last_round = self.last_round.max(at);
        self.rtc.handle_input(Input::Timeout(at))
    }

    /// Sets [`Peer::next_timeout`] from str0m's `Output::Timeout(at)`.
    /// Once connected, a round str0m asks for only for its BWE delay
    /// controller comes at most every [`BWE_IDLE_ROUND`]: the controller
    /// asks every 25 ms whether or not there is anything to estimate (no
    /// transport-cc feedback: audio only, or nothing sent), and with audio
    /// sent without str0m (`super::direct`) those rounds were most of
    /// str0m's work for an audio subscriber. A connection sending video
    /// gets a round with every packet anyway.
    ///
    /// Once connected, a round for housekeeping only ([`is_housekeeping`])
    /// is also put off to the next [`HOUSEKEEPING_GRID`] step: 200 audio
    /// subscribers each asking for rounds at their own instants woke an
    /// egress worker about 1,000 times a second, each wake a context switch
    /// and an epoll round for one str0m round. Pacing, NACK, TWCC feedback
    /// and BWE probes keep their exact times, and so does everything before
    /// the connection is up (ICE checks and the DTLS handshake). While SCTP
    /// is active ([`SCTP_ACTIVE`]) the BWE controller's rounds are only put
    /// on the grid, so SCTP's timers, hidden behind them, are at most one
    /// grid step late.
    pub fn schedule(&mut self, at: Instant) {
        let reason = self.rtc.last_timeout_reason();
        self.next_timeout = if !self.connected {
            at
        } else if reason == Reason::BweDelayControl && self.last_round >= self.sctp_until {
            on_grid(at.max(self.last_round + BWE_IDLE_ROUND), HOUSEKEEPING_GRID)
        } else if is_housekeeping(reason) {
            on_grid(at, HOUSEKEEPING_GRID)
        } else {
            at
        };
    }

    /// Feeds one datagram from `source`.
    pub fn receive(
        &mut self,
        source: SocketAddr,
        at: Instant,
        contents: &[u8],
    ) -> Result<(), RtcError> {
        if demux::kind(contents) == Kind::Dtls {
            // Once connected, DTLS carries SCTP.
            self.sctp_until = self.sctp_until.max(at + SCTP_ACTIVE);
        }
        let Ok(contents) = contents.try_into() else {
            return Ok(()); // Not a protocol str0m speaks: ignore.
        };
        let input = Input::Receive(
            at,
            Receive {
                proto: Protocol::Udp,
                source,
                destination: self.local,
                contents,
            },
        );
        if self.rtc.accepts(&input) {
            self.rtc.handle_input(input)
        } else {
            Ok(())
        }
    }

    /// Accepts a client offer (SDP text) and returns str0m's answer text,
    /// both without transport-cc on audio ([`super::sdp::audio_without_transport_cc`]),
    /// the answer with RED only where the offer had it ([`super::sdp::without_red`]).
    pub fn accept_offer(&mut self, sdp: &str) -> Result<String, PeerError> {
        // Transport-cc on video only, as LiveKit negotiates it: str0m then
        // sends no transport sequence numbers on audio.
        let offer = super::sdp::audio_without_transport_cc(sdp);
        let offer = SdpOffer::from_sdp_string(&offer).map_err(RtcError::Sdp)?;
        let answer = self.rtc.sdp_api().accept_offer(offer)?;
        self.remote_red = remote_red(sdp);
        let answer = super::sdp::without_red(&answer.to_sdp_string(), |mid| {
            self.remote_red.contains_key(&Mid::from(mid))
        });
        Ok(super::sdp::audio_without_transport_cc(&answer))
    }

    /// Applies the client's answer to our pending offer.
    pub fn accept_answer(&mut self, sdp: &str) -> Result<(), PeerError> {
        let answer = SdpAnswer::from_sdp_string(sdp).map_err(RtcError::Sdp)?;
        match self.pending_offer.take() {
            Some(pending) => {
                self.rtc.sdp_api().accept_answer(pending, answer)?;
                self.remote_red = remote_red(sdp);
                Ok(())
            }
            None => Err(PeerError::Invalid("answer without a pending offer".into())),
        }
    }

    /// Adds a remote ICE candidate from trickle JSON. Malformed input is an error.
    pub fn add_remote_candidate(&mut self, candidate_init: &str) -> Result<(), String> {
        let init: CandidateInit =
            serde_json::from_str(candidate_init).map_err(|e| format!("candidateInit: {e}"))?;
        if init.candidate.is_empty() {
            return Ok(()); // End of candidates.
        }
        let c =
            Candidate::from_sdp_string(&init.candidate).map_err(|e| format!("candidate: {e}"))?;
        self.rtc.add_remote_candidate(c);
        Ok(())
    }

    /// Records a data channel that opened.
    pub fn channel_opened(&mut self, id: ChannelId, label: &str) {
        self.channels.insert(id, ChannelKind::from_label(label));
    }

    /// Forgets a closed data channel.
    pub fn channel_closed(&mut self, id: ChannelId) {
        self.channels.remove(&id);
    }

    /// The kind of an open channel.
    pub fn channel_kind(&self, id: ChannelId) -> ChannelKind {
        self.channels
            .get(&id)
            .copied()
            .unwrap_or(ChannelKind::Other)
    }

    /// Sends a binary message on the reliable or lossy channel, if open, at
    /// `now` (SCTP is then active, [`SCTP_ACTIVE`]). Returns false when the
    /// channel is not open or its buffer is full.
    pub fn send_data(&mut self, reliable: bool, bytes: &[u8], now: Instant) -> bool {
        let want = if reliable {
            ChannelKind::Reliable
        } else {
            ChannelKind::Lossy
        };
        let Some(id) = self
            .channels
            .iter()
            .find(|(_, k)| **k == want)
            .map(|(id, _)| *id)
        else {
            return false;
        };
        let written = self
            .rtc
            .channel(id)
            .is_some_and(|mut ch| ch.write(true, bytes).unwrap_or(false));
        if written {
            self.sctp_until = self.sctp_until.max(now + SCTP_ACTIVE);
        }
        written
    }

    /// The payload type negotiated on `mid` for `codec`, if any. RED
    /// (RFC 2198) is carried by str0m as an attribute of the Opus params,
    /// one for the whole connection: it counts on `mid` only when the
    /// remote description listed that same payload type there.
    pub fn pt_for(&self, mid: Mid, codec: Codec) -> Option<Pt> {
        let media = self.rtc.media(mid)?;
        let config = self.rtc.codec_config();
        let remote = media.remote_pts();
        let base = if codec == Codec::Red {
            Codec::Opus
        } else {
            codec
        };
        let params = config.params().iter().find(|p| {
            remote.contains(&p.pt()) && Codec::from_name(&p.spec().codec.to_string()) == base
        })?;
        if codec == Codec::Red {
            params
                .red()
                .filter(|red| self.remote_red.get(&mid) == Some(red))
        } else {
            Some(params.pt())
        }
    }

    /// The codec and RTP clock rate (Hz) of payload type `pt`.
    pub fn codec_of(&self, pt: Pt) -> (Codec, u32) {
        for p in self.rtc.codec_config().params() {
            let clock = p.spec().clock_rate.get();
            if p.pt() == pt {
                return (Codec::from_name(&p.spec().codec.to_string()), clock);
            }
            if p.red() == Some(pt) {
                return (Codec::Red, clock);
            }
        }
        (Codec::Other, 90_000)
    }

    /// The kind of media at `mid`.
    pub fn kind(&self, mid: Mid) -> Option<MediaKind> {
        self.rtc.media(mid).map(|m| m.kind())
    }
}

/// The RED payload type of each audio m-section of a remote description
/// that lists one ([`super::sdp::Section::red_pt`]).
fn remote_red(sdp: &str) -> HashMap<Mid, Pt> {
    super::sdp::sections(sdp)
        .into_iter()
        .filter_map(|s| Some((Mid::from(s.mid.as_str()), Pt::from(s.red_pt?))))
        .collect()
}

/// Whether a round str0m asks for with this reason can come up to one
/// [`HOUSEKEEPING_GRID`] step late: ICE consent and cleanup (ICE-lite sends
/// no checks), SCTP retransmission and acknowledgement timers (hundreds of
/// ms; sending is driven by input), data channel allocation, stats, RTCP
/// reports, pause checks, send stream upkeep and the BWE delay controller.
/// Not the pacer, NACKs, TWCC feedback, BWE probes or anything unnamed.
pub fn is_housekeeping(reason: Reason) -> bool {
    matches!(
        reason,
        Reason::NotHappening
            | Reason::Ice
            | Reason::Sctp
            | Reason::Channel
            | Reason::Stats
            | Reason::Feedback
            | Reason::PauseCheck
            | Reason::SendStream
            | Reason::BweDelayControl
    )
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use str0m::{Output, Reason};

    use super::super::test_pair::Pair;
    use super::{is_housekeeping, BWE_IDLE_ROUND, HOUSEKEEPING_GRID, SCTP_ACTIVE};
    use crate::grid::on_grid;

    /// Advances the pair 7 ms, runs the server's round then, and schedules
    /// the next from str0m's deadline. Returns (the round's time, str0m's
    /// deadline).
    fn round_and_schedule(pair: &mut Pair) -> (std::time::Instant, std::time::Instant) {
        pair.advance(Duration::from_millis(7), |_| {});
        let now = pair.now;
        pair.server.timeout_round(now).expect("round");
        let at = loop {
            match pair.server.rtc.poll_output().expect("poll") {
                Output::Timeout(t) => break t,
                _ => continue,
            }
        };
        pair.server.schedule(at);
        (now, at)
    }

    /// A round the BWE delay controller alone asks for (every 25 ms) is
    /// put off to [`BWE_IDLE_ROUND`] after the last round, other housekeeping rounds
    /// to the next grid step, and the rest are kept.
    #[test]
    fn idle_bwe_rounds_are_put_off_onto_the_grid() {
        let mut pair = Pair::connected();
        // As the session sets it on str0m's `Event::Connected`.
        pair.server.connected = true;
        let mut throttled = 0;
        for _ in 0..40 {
            let (now, at) = round_and_schedule(&mut pair);
            let reason = pair.server.rtc.last_timeout_reason();
            let next = pair.server.next_timeout;
            if reason == Reason::BweDelayControl {
                assert!(at < now + BWE_IDLE_ROUND, "str0m asked sooner");
                assert_eq!(next, on_grid(now + BWE_IDLE_ROUND, HOUSEKEEPING_GRID));
                throttled += 1;
            } else if is_housekeeping(reason) {
                assert_eq!(next, on_grid(at, HOUSEKEEPING_GRID), "{reason:?}");
            } else {
                assert_eq!(next, at, "{reason:?}");
            }
            assert!(next >= at, "never sooner than str0m asked");
        }
        assert!(throttled > 0, "the BWE delay controller asked for a round");
    }

    /// While SCTP is active (here: a DTLS record came in) the BWE
    /// controller's rounds only go onto the grid; [`SCTP_ACTIVE`] after
    /// it they are put off again.
    #[test]
    fn bwe_rounds_are_not_put_off_while_sctp_is_active() {
        let mut pair = Pair::connected();
        pair.server.connected = true;
        // A DTLS 1.2 application-data record header (content type 23), as
        // SCTP travels: str0m drops this empty one.
        let record = [23, 0xfe, 0xfd, 0, 1, 0, 0, 0, 0, 0, 9, 0, 0];
        let start = pair.now;
        let _ = pair.server.receive(pair.client_addr, start, &record);
        let (mut kept, mut put_off) = (0, 0);
        for _ in 0..600 {
            let (now, at) = round_and_schedule(&mut pair);
            if pair.server.rtc.last_timeout_reason() != Reason::BweDelayControl {
                continue;
            }
            let next = pair.server.next_timeout;
            if now < start + SCTP_ACTIVE {
                assert_eq!(
                    next,
                    on_grid(at, HOUSEKEEPING_GRID),
                    "active at {:?}",
                    now - start
                );
                kept += 1;
            } else {
                assert_eq!(next, on_grid(now + BWE_IDLE_ROUND, HOUSEKEEPING_GRID));
                put_off += 1;
            }
        }
        assert!(
            kept > 0 && put_off > 0,
            "both seen: {kept} kept, {put_off} put off"
        );
    }

    /// Before the connection is up every round keeps str0m's time.
    #[test]
    fn rounds_before_connecting_keep_their_time() {
        let mut pair = Pair::connected();
        pair.server.connected = false;
        let at = pair.now + Duration::from_micros(12_345);
        pair.server.schedule(at);
        assert_eq!(pair.server.next_timeout, at);
    }
}
