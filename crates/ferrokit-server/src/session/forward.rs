//! The session's subscriber side: one forwarded packet written on a
//! downtrack, into str0m or protected by us on the direct audio path
//! (`rtc::direct`), and the addresses the egress worker prefetches for it.

use std::sync::Arc;

use str0m::rtp::{ExtensionValues, RtpWrite, SeqNo};

use super::media::{mime, OPUS_CLOCK_RATE};
use super::{egress, Session};
use crate::metrics::MediaCounters;
use crate::net::TxBatch;
use crate::rtc::direct::DirectTrack;
use crate::rtc::extensions::{negotiated_dependency_descriptor, set_dependency_descriptor};
use crate::rtc::rtp_out::{ExtensionIds, SendClock};
use crate::sfu::{red_primary, Codec, ForwardPacket};

impl Session {
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
            // str0m sends the first packet; ours from the first packet
            // after it that str0m no longer holds (`Handover`).
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
