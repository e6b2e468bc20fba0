//! The session's media half: draining str0m, fanning published RTP out to
//! downtracks (writing it on one is `super::forward`), keyframe requests
//! and data channels.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use livekit_protocol as proto;
use prost::Message as _;
use str0m::bwe::BweKind;
use str0m::media::KeyframeRequestKind;
use str0m::rtp::RtpPacket;
use str0m::{Event, Output};

use super::{EgressJob, Session, SsrcInfo, KEYFRAME_REQUEST_INTERVAL, STR0M_TIMER_EARLY};
use crate::net::{Datagram, TxBatch};
use crate::rooms::Command;
use crate::rtc::direct::DirectPath;
use crate::rtc::extensions::received_dependency_descriptor;
use crate::rtc::peer::ChannelKind;
use crate::sfu::{dependency_descriptor, is_keyframe, red_primary, Codec, ForwardPacket};

/// Timeout rounds one drain runs for str0m without waiting (each releases
/// one paced packet); a burst longer than this continues on the timer.
const IMMEDIATE_ROUNDS: usize = 128;
/// RTP clock rate of Opus (RFC 7587 §4.1), the only audio codec offered.
pub(super) const OPUS_CLOCK_RATE: u32 = 48_000;

/// Simulcast layer of a rid: `q`/`h`/`f` by name, else by its position
/// among the section's rids (listed low to high by LiveKit clients).
pub(super) fn layer_of(rid: Option<&str>, rids: &[String]) -> u8 {
    match rid {
        None => 0,
        Some("q") => 0,
        Some("h") => 1,
        Some("f") => 2,
        Some(r) => rids.iter().position(|x| x == r).unwrap_or(0).min(2) as u8,
    }
}

/// MIME type LiveKit reports for a codec.
pub(super) fn mime(codec: Codec) -> &'static str {
    match codec {
        Codec::Opus => "audio/opus",
        Codec::Red => "audio/red",
        Codec::Vp8 => "video/VP8",
        Codec::Vp9 => "video/VP9",
        Codec::H264 => "video/H264",
        Codec::Av1 => "video/AV1",
        Codec::Other => "",
    }
}

impl Session {
    /// Drains every peer connection: transmits go to `batch` (the caller
    /// sends it), events are handled, until nothing is left. Returns the
    /// next str0m timeout of all of them.
    pub(super) fn drain_all(&mut self, batch: &mut TxBatch) -> Instant {
        self.drain(None, batch)
    }

    /// Drains peer connection `only` (all of them when None, or once an
    /// event was handled), as [`Session::drain_all`]. An egress worker
    /// that wrote to the subscriber PC drains just that one: with two peer
    /// connections, polling the idle publisher PC too doubled str0m's work
    /// per forwarded packet.
    pub(super) fn drain(&mut self, only: Option<usize>, batch: &mut TxBatch) -> Instant {
        let mut events = std::mem::take(&mut self.events);
        let mut only = only;
        // The connection whose SRTCP may carry sender reports of audio we
        // send ourselves (once one of its tracks goes direct); str0m's
        // RTCP anywhere else is sent as it is, without decrypting it.
        let sub_pc = self.sub_pc();
        loop {
            let now = Instant::now();
            for (i, pc) in self.pcs.iter_mut().enumerate() {
                if only.is_some_and(|o| o != i) {
                    continue;
                }
                let mut rounds = 0;
                loop {
                    match pc.rtc.poll_output() {
                        // With BWE on, str0m's pacer releases one queued
                        // packet per timeout round and asks for the next
                        // round at once: run those rounds here rather than
                        // one timer wake (of 1 ms granularity) per packet.
                        Ok(Output::Timeout(t))
                            if t <= now + STR0M_TIMER_EARLY && rounds < IMMEDIATE_ROUNDS =>
                        {
                            rounds += 1;
                            // str0m ignores a time before one it was given.
                            if pc.timeout_round(t.max(now)).is_err() {
                                pc.next_timeout = now + Duration::from_secs(1);
                                break;
                            }
                        }
                        Ok(Output::Timeout(t)) => {
                            pc.schedule(t);
                            break;
                        }
                        Ok(Output::Transmit(t)) => {
                            pc.media_dest.observe(&t.contents, t.destination);
                            pc.handover.observe(&t.contents);
                            match &pc.direct {
                                Some(direct)
                                    if i == sub_pc
                                        && crate::rtc::direct::is_rtcp(&t.contents)
                                        && self.subscribed.values().any(|s| s.direct.is_some()) =>
                                {
                                    // str0m's sender reports of the audio we
                                    // send ourselves: our times and counts.
                                    let mut datagram: Vec<u8> = t.contents.into();
                                    let subscribed = &self.subscribed;
                                    direct.rewrite_sender_reports(&mut datagram, now, |ssrc| {
                                        subscribed
                                            .values()
                                            .filter_map(|s| s.direct.as_ref())
                                            .find(|d| d.ssrc == ssrc)
                                    });
                                    batch.push(t.destination, datagram.into());
                                }
                                _ => batch.push(t.destination, t.contents),
                            }
                        }
                        Ok(Output::Event(e)) => events.push((i, e)),
                        Err(e) => {
                            tracing::warn!(participant = %self.sid, "peer connection failed: {e}");
                            pc.rtc.disconnect();
                            pc.next_timeout = now + Duration::from_secs(1);
                            break;
                        }
                    }
                }
            }
            if events.is_empty() {
                break;
            }
            // An event may act on any peer connection: drain them all next.
            only = None;
            for (i, e) in events.drain(..) {
                self.on_event(i, e);
            }
        }
        self.events = events;
        self.next_timeout()
    }

    /// Runs str0m's timeout round on peer connection `pc` after media was
    /// written to it. str0m queues written RTP until a timeout round takes
    /// a snapshot of its send queues, and a poll would only answer with a
    /// timeout due now: running the round first spares that poll, about a
    /// third of str0m's work per forwarded packet.
    pub(super) fn media_written(&mut self, pc: usize) {
        let Some(pc) = self.pcs.get_mut(pc) else {
            return;
        };
        if pc.timeout_round(Instant::now()).is_err() {
            pc.next_timeout = Instant::now();
        }
    }

    /// str0m's next timeout over every peer connection, as of their last
    /// drains.
    pub(super) fn next_timeout(&self) -> Instant {
        self.pcs
            .iter()
            .map(|pc| pc.next_timeout)
            .min()
            .unwrap_or_else(|| Instant::now() + Duration::from_secs(1))
    }

    pub(super) fn on_datagram(&mut self, d: Datagram) {
        self.receive(d.pc, d.source, d.at, &d.contents);
    }

    /// Feeds one datagram of peer connection `pc` from `source`, read at
    /// `at`, to str0m (drained by the caller).
    pub(super) fn receive(&mut self, pc: usize, source: SocketAddr, at: Instant, contents: &[u8]) {
        let Some(peer) = self.pcs.get_mut(pc) else {
            return;
        };
        if let Err(e) = peer.receive(source, at, contents) {
            self.warn_once("bad datagram", e);
        }
    }

    fn on_event(&mut self, pc: usize, e: Event) {
        match e {
            Event::Connected => {
                let first = self.pcs.iter().all(|p| !p.connected);
                self.pcs[pc].connected = true;
                if let Some(keying) = self.pcs[pc].keys.keying() {
                    tracing::debug!(participant = %self.sid, pc, profile = ?keying.profile, "SRTP keys");
                    match DirectPath::new(&keying) {
                        Ok(direct) => self.pcs[pc].direct = Some(direct),
                        // Audio keeps going through str0m.
                        Err(e) => self.warn_once("own SRTP context", e),
                    }
                }
                if first {
                    let sid = self.sid.clone();
                    self.room.update(|r| ((), r.set_active(&sid)));
                    tracing::info!(participant = %sid, pc, "media connected");
                }
            }
            Event::ChannelOpen(id, label) => self.pcs[pc].channel_opened(id, &label),
            Event::ChannelClose(id) => self.pcs[pc].channel_closed(id),
            Event::ChannelData(d) => {
                let reliable = match self.pcs[pc].channel_kind(d.id) {
                    ChannelKind::Reliable => true,
                    ChannelKind::Lossy => false,
                    ChannelKind::DataTrack | ChannelKind::Other => return,
                };
                match proto::DataPacket::decode(d.data.as_slice()) {
                    Ok(packet) => {
                        let sid = self.sid.clone();
                        let routed =
                            self.room
                                .update(|r| match r.route_data(&sid, packet, reliable) {
                                    Ok(out) => (Ok(()), out),
                                    Err(e) => (Err(e), Vec::new()),
                                });
                        if let Err(e) = routed {
                            self.warn_once("data packet dropped", e);
                        }
                    }
                    Err(e) => self.warn_once("malformed data packet", e),
                }
            }
            Event::RtpPacket(p) if pc == 0 => self.on_rtp(p),
            Event::MediaIngressStats(st) if pc == 0 => self.on_ingress_stats(&st),
            Event::EgressBitrateEstimate(
                BweKind::Twcc { estimate, .. } | BweKind::Remb { estimate, .. },
            ) if pc == self.sub_pc() => self.bwe_bps = Some(estimate.as_u64()),
            Event::MediaEgressStats(st) => {
                if pc == self.sub_pc() {
                    self.on_egress_stats(&st);
                }
                let seen = self.nacks_seen.entry((pc, st.mid, st.rid)).or_insert(0);
                self.counters.nacks += st.nacks.saturating_sub(*seen);
                *seen = st.nacks;
            }
            Event::KeyframeRequest(req) => {
                self.counters.plis += 1;
                let sub_pc = if self.single_pc { 0 } else { 1 };
                if pc != sub_pc {
                    return;
                }
                let found = self
                    .subscribed
                    .iter()
                    .find(|(_, s)| s.mid == Some(req.mid))
                    .map(|(t, s)| (t.clone(), s.publisher.clone(), s.dt.current_layer()));
                if let Some((track_sid, publisher, layer)) = found {
                    self.ask_publisher_for_keyframe(&publisher, track_sid, layer.unwrap_or(0));
                }
            }
            _ => {}
        }
    }

    /// A published packet: start the track on its first packet, then fan
    /// it out to every downtrack as one shared packet.
    fn on_rtp(&mut self, p: RtpPacket) {
        self.counters.packets_in += 1;
        self.counters.bytes_in += p.payload.len() as u64;
        let ssrc = p.header.ssrc;
        let pt = p.header.payload_type;
        let info = match self.ssrc_info.get(&ssrc).copied() {
            Some(info) if info.pt == pt => info,
            cached => {
                let (mid, layer) = match cached {
                    Some(info) => (info.mid, info.layer),
                    None => {
                        let mut api = self.pcs[0].rtc.direct_api();
                        let Some((mid, rid)) = api.stream_rx(&ssrc).map(|rx| (rx.mid(), rx.rid()))
                        else {
                            return;
                        };
                        let rids = self
                            .incoming
                            .get(&mid)
                            .map(|i| i.rids.as_slice())
                            .unwrap_or(&[]);
                        (mid, layer_of(rid.as_ref().map(|r| r.as_ref()), rids))
                    }
                };
                let (codec, clock_rate) = self.pcs[0].codec_of(pt);
                let info = SsrcInfo {
                    mid,
                    layer,
                    pt,
                    codec,
                    clock_rate,
                };
                self.ssrc_info.insert(ssrc, info);
                info
            }
        };
        let SsrcInfo {
            mid,
            layer,
            codec,
            clock_rate,
            ..
        } = info;
        let Some(inc) = self.incoming.get_mut(&mid) else {
            self.warn_once("media without a track", format_args!("mid {mid}"));
            return;
        };
        if !inc.started {
            inc.started = true;
            inc.codec = Some(codec);
            let track_sid = inc.track_sid.to_string();
            let sid = self.sid.clone();
            let mid_s = mid.to_string();
            self.room.update(|r| {
                (
                    (),
                    r.track_media_started(&sid, &track_sid, &mid_s, mime(codec)),
                )
            });
        }
        if codec == Codec::Red && red_primary(&p.payload).is_none() {
            // Subscribers without RED get it empty (`Session::forward`).
            self.warn_once("malformed RED payload", format_args!("mid {mid}"));
        }
        let Some(inc) = self.incoming.get_mut(&mid) else {
            return;
        };
        let ext = &p.header.ext_vals;
        if let (Some(level), false) = (ext.audio_level, codec.is_video()) {
            inc.level.observe(level);
        }
        if inc.downtracks.is_empty() {
            return;
        }
        let packet = Arc::new(ForwardPacket {
            layer,
            seq: *p.seq_no,
            timestamp: p.header.timestamp,
            marker: p.header.marker,
            keyframe: codec.is_video() && is_keyframe(codec, &p.payload),
            codec,
            clock_rate,
            audio_level: ext
                .audio_level
                .map(|l| (l, ext.voice_activity.unwrap_or(false))),
            payload: p.payload,
            dependency_descriptor: received_dependency_descriptor(ext)
                .filter(|_| dependency_descriptor::forwards_unchanged(codec, inc.rids.len() > 1)),
            arrival: p.timestamp,
        });
        // Once per subscriber list, to the worker that writes it.
        for (worker, group) in &inc.groups {
            let job = EgressJob {
                track_sid: inc.track_sid.clone(),
                packet: packet.clone(),
                subscribers: group.clone(),
            };
            if !self.ctx.egress.send(*worker, job) {
                self.counters.forward_errors += group.len() as u64;
            }
        }
    }

    /// Publisher side: asks the client for a keyframe of `track_sid`
    /// (every layer when `layer` is None), at most every 300 ms.
    pub(super) fn request_keyframe(&mut self, track_sid: &str, layer: Option<u8>) {
        let now = Instant::now();
        let Some((mid, inc)) = self
            .incoming
            .iter_mut()
            .find(|(_, i)| &*i.track_sid == track_sid)
        else {
            return;
        };
        if inc
            .last_keyframe_request
            .is_some_and(|t| now.saturating_duration_since(t) < KEYFRAME_REQUEST_INTERVAL)
        {
            return;
        }
        inc.last_keyframe_request = Some(now);
        let mid = *mid;
        let rids: Vec<Option<str0m::media::Rid>> = if inc.rids.is_empty() {
            vec![None]
        } else {
            inc.rids
                .iter()
                .filter(|r| layer.is_none_or(|l| layer_of(Some(r), &inc.rids) == l))
                .map(|r| Some(str0m::media::Rid::from(r.as_str())))
                .collect()
        };
        let mut api = self.pcs[0].rtc.direct_api();
        for rid in rids {
            if let Some(rx) = api.stream_rx_by_mid(mid, rid) {
                rx.request_keyframe(KeyframeRequestKind::Pli);
            }
        }
    }

    pub(super) fn ask_publisher_for_keyframe(&self, publisher: &str, track_sid: String, layer: u8) {
        if let Some(ctrl) = self.room.ctrl_of(publisher) {
            let _ = ctrl.send(Command::KeyframeRequest { track_sid, layer });
        }
    }

    pub(super) fn sub_pc(&self) -> usize {
        if self.single_pc {
            0
        } else {
            1
        }
    }
}
