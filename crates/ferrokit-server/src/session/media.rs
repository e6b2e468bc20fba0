//! The session's media half: draining str0m, fanning published RTP out to
//! downtracks, writing forwarded RTP, data channels, and negotiation of the
//! server's sending m-lines.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use livekit_protocol as proto;
use prost::Message as _;
use str0m::bwe::BweKind;
use str0m::media::KeyframeRequestKind;
use str0m::rtp::{ExtensionValues, RtpPacket, RtpWrite, SeqNo};
use str0m::{Event, Output};

use super::{egress, EgressJob, Session, SsrcInfo, KEYFRAME_REQUEST_INTERVAL, STR0M_TIMER_EARLY};
use crate::metrics::MediaCounters;
use crate::net::{Datagram, TxBatch};
use crate::rooms::Command;
use crate::rtc::direct::{DirectPath, DirectTrack};
use crate::rtc::extensions::{
    negotiated_dependency_descriptor, received_dependency_descriptor, set_dependency_descriptor,
};
use crate::rtc::peer::ChannelKind;
use crate::rtc::rtp_out::{ExtensionIds, SendClock};
use crate::sfu::{dependency_descriptor, is_keyframe, red_primary, Codec, ForwardPacket};

/// Timeout rounds one drain runs for str0m without waiting (each releases
/// one paced packet); a burst longer than this continues on the timer.
const IMMEDIATE_ROUNDS: usize = 128;
/// RTP clock rate of Opus (RFC 7587 §4.1), the only audio codec offered.
const OPUS_CLOCK_RATE: u32 = 48_000;

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
fn mime(codec: Codec) -> &'static str {
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

    /// Subscriber side: the addresses a forward of `track_sid` touches
    /// (session fields, the subscriber connection's direct path, the
    /// subscription entry; 0 where there is nothing) and its AES-GCM key
    /// context, kept by the cell so the egress worker can prefetch them
    /// before this subscriber's next turn ([`crate::prefetch`]).
    pub(super) fn forward_hints(&mut self, track_sid: &Arc<str>) -> egress::Hints {
        use crate::prefetch::addr_of;
        let mut lines = [0; egress::HINTS];
        let mut key = 0;
        lines[0] = addr_of(&self.pcs);
        lines[1] = addr_of(&self.subscribed);
        lines[2] = addr_of(&self.single_pc);
        if let Some(peer) = self.pcs.get(self.sub_pc()) {
            lines[3] = addr_of(&peer.direct);
            lines[4] = addr_of(&peer.media_dest);
            key = peer.direct.as_ref().and_then(|d| d.key_addr()).unwrap_or(0);
        }
        if let Some(sub) = self.subscribed.for_job(track_sid) {
            lines[5] = addr_of(&sub.active);
            lines[6] = addr_of(&sub.dt);
            lines[7] = addr_of(&sub.direct);
        }
        egress::Hints { lines, key }
    }

    /// Subscriber side: writes one forwarded packet of `track_sid` on its
    /// downtrack: into str0m, which sends it on the next drain, or, for
    /// audio once str0m sent the first packet, protected by us into
    /// `batch` (`rtc::direct`). Counts what it sends, or fails to, in
    /// `counters` (the egress worker's, flushed once per wake: a session's
    /// own would be flushed only on its control tick).
    pub(super) fn forward(
        &mut self,
        track_sid: &Arc<str>,
        packet: &ForwardPacket,
        clock: SendClock,
        batch: &mut TxBatch,
        counters: &mut MediaCounters,
    ) -> Forwarded {
        let now = clock.now;
        let pc = self.sub_pc();
        if !self.pcs[pc].connected {
            // str0m would hold the packets until DTLS is up and send them
            // after the first ones we protect ourselves: the subscriber
            // would count them late (negative loss). The downtrack starts
            // once connected, video from a keyframe it asks for.
            return Forwarded::Nothing;
        }
        let Some(sub) = self.subscribed.for_job(track_sid) else {
            return Forwarded::Nothing;
        };
        let (Some(mid), true) = (sub.mid, sub.active) else {
            return Forwarded::Nothing;
        };
        sub.rates.on_packet(packet.layer, packet.payload.len());
        let f = sub.dt.on_packet(packet, now);
        let sub = match sub.dt.take_keyframe_request() {
            None => sub,
            Some(layer) => {
                let publisher = sub.publisher.clone();
                self.ask_publisher_for_keyframe(&publisher, track_sid.to_string(), layer);
                let Some(sub) = self.subscribed.for_job(track_sid) else {
                    return Forwarded::Nothing;
                };
                sub
            }
        };
        let Some(f) = f else {
            return Forwarded::Nothing;
        };
        let p = packet;
        // Payload type for this codec on this m-line; RED falls back to Opus.
        let (codec, pt) = match sub.pt_cache {
            Some((c, pt)) if c == p.codec || (p.codec == Codec::Red && c == Codec::Opus) => (c, pt),
            _ => {
                let found = self.pcs[pc]
                    .pt_for(mid, p.codec)
                    .map(|pt| (p.codec, pt))
                    .or_else(|| {
                        (p.codec == Codec::Red)
                            .then(|| {
                                self.pcs[pc]
                                    .pt_for(mid, Codec::Opus)
                                    .map(|pt| (Codec::Opus, pt))
                            })
                            .flatten()
                    });
                let Some(found) = found else {
                    counters.forward_errors += 1;
                    self.warn_once("codec not negotiated by subscriber", mime(p.codec));
                    return Forwarded::Nothing;
                };
                sub.pt_cache = Some(found);
                found
            }
        };
        // VP8 PictureID / TL0PICIDX continued across a layer switch: as a
        // patch str0m applies while copying the payload into the packet,
        // or (a field str0m's parser refused) in a copy of our own.
        let vp8_patch = f.vp8.and_then(|v| v.to_patch(&p.payload));
        // The bytes to send, borrowed where they can be: the published
        // payload (not cloned, so the egress workers, one per core, do not
        // bump one shared `Arc` count per subscriber), or its RED primary
        // block (a slice of it: audio from a RED publisher to an Opus-only
        // subscriber allocates nothing on the direct path), or a VP8 copy.
        let red_to_opus = p.codec == Codec::Red && codec == Codec::Opus;
        let rewritten: Option<Arc<[u8]>> = match (f.vp8, vp8_patch) {
            (Some(vp8), None) => Some(vp8.apply(&p.payload)),
            _ => None,
        };
        let bytes: &[u8] = if red_to_opus {
            // A malformed payload goes out empty, as a padding-only packet
            // does: the downtrack numbered it, and a skipped number would
            // count as lost at the subscriber.
            red_primary(&p.payload).unwrap_or_else(|| {
                counters.forward_errors += 1;
                &[]
            })
        } else {
            rewritten.as_deref().unwrap_or(&p.payload)
        };
        let video = sub.video;
        counters.packets_out += 1;
        counters.bytes_out += bytes.len() as u64;
        let held = |track: &DirectTrack| self.pcs[pc].handover.holds(track.ssrc);
        if let (Some(track), Some(direct), Some(dest)) = (
            sub.direct.as_mut().filter(|t| !held(t)),
            &self.pcs[pc].direct,
            self.pcs[pc].media_dest.0,
        ) {
            track.payload_type = *pt;
            let written = direct.write(
                batch.buffer(),
                track,
                f.seq,
                f.timestamp,
                p.marker,
                p.audio_level,
                bytes,
                p.arrival,
                clock.abs_send_time,
            );
            if let Some(datagram) = written {
                batch.push(dest, datagram.into());
                return Forwarded::Sent;
            }
            // Not protected: str0m sends it (same sequence number).
        }
        let mut ext = ExtensionValues::default();
        if let Some((level, vad)) = p.audio_level {
            ext.audio_level = Some(level);
            ext.voice_activity = Some(vad);
        }
        // The dependency descriptor goes out as received (valid while the
        // whole SVC stream is forwarded, see `sfu::dependency_descriptor`),
        // on m-lines that negotiated it.
        if let Some(dd) = &p.dependency_descriptor {
            if negotiated_dependency_descriptor(&self.pcs[pc].rtc, mid) {
                set_dependency_descriptor(&mut ext, dd.clone());
            }
        }
        let cached = sub.ssrc_cache;
        let mut api = self.pcs[pc].rtc.direct_api();
        let by_ssrc = cached.filter(|ssrc| api.stream_tx(ssrc).is_some_and(|tx| tx.mid() == mid));
        let tx = match by_ssrc {
            Some(ssrc) => api.stream_tx(&ssrc),
            None => api.stream_tx_by_mid(mid, None),
        };
        let Some(tx) = tx else {
            return Forwarded::Nothing;
        };
        sub.ssrc_cache = Some(tx.ssrc());
        // Forwarded media goes out as it comes (the publisher paced it);
        // str0m's pacer would hold video to 1.1x the estimate.
        tx.set_unpaced(true);
        let payload_len = bytes.len();
        let payload: Arc<[u8]> = match rewritten {
            Some(copy) => copy,
            None if red_to_opus => Arc::from(bytes),
            None => p.payload.clone(),
        };
        let mut write = RtpWrite::new(pt, SeqNo::from(f.seq), f.timestamp, p.arrival, payload)
            .marker(p.marker)
            .ext_vals(ext)
            .nackable(video);
        if let Some(patch) = vp8_patch {
            write = write.vp8_patch(patch);
        }
        tx.write_rtp(write);
        let ssrc = *tx.ssrc();
        if !video {
            self.pcs[pc].handover.wrote(ssrc, f.seq as u16);
        }
        if let Some(track) = sub.direct.as_mut() {
            track.sent_by_str0m(f.timestamp, p.arrival, payload_len);
        } else if !video && self.pcs[pc].direct.is_some() {
            // str0m sent the first packet; ours from the next.
            if let Some(media) = self.pcs[pc].rtc.media(mid) {
                sub.direct = Some(DirectTrack::new(
                    ssrc,
                    *pt,
                    mid,
                    ExtensionIds::from_map(media.remote_extmap()),
                    OPUS_CLOCK_RATE,
                    (f.timestamp, p.arrival, payload_len),
                ));
            }
        }
        Forwarded::Queued
    }
}

/// What [`Session::forward`] did with a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Forwarded {
    /// Nothing to send (another layer, a paused or unnegotiated downtrack).
    Nothing,
    /// Written into str0m: a drain sends it.
    Queued,
    /// Protected and added to the batch (`rtc::direct`).
    Sent,
}
