//! Forwarded audio sent without str0m's per-packet work: the server writes
//! the RTP header (`super::rtp_out`), protects the packet with the
//! connection's own SRTP keys (`super::dtls_keys`, `super::srtp_tx`) and
//! hands it to the egress batch, where str0m would have queued, paced,
//! protected and polled it out, a poll of every part of the connection
//! (ICE, DTLS, SCTP, RTCP timers) per packet and subscriber.
//!
//! str0m still owns the stream: it negotiated the SSRC and extensions,
//! sends the first packet (so it has sent something and keeps reporting
//! the client's receiver reports as egress stats), and sends the sender
//! reports, whose RTP time and counts the server corrects in flight
//! ([`DirectPath::rewrite_sender_reports`], `super::srtcp`). Audio is not
//! NACK-able and carries no transport-cc here, so str0m's RTX cache and
//! bandwidth estimation have nothing to miss.

use std::net::SocketAddr;
use std::time::Instant;

use super::dtls_keys::SrtpKeying;
use super::rtp_out::{write_header, ExtensionIds, RtpHeaderOut};
use super::srtcp::{patch_sender_reports, SenderCounts};
use super::srtp_tx::{SrtpTx, SrtpTxError};
use crate::net::demux::{self, Kind};

/// One connection's sending contexts, once DTLS is up.
#[derive(Debug)]
pub struct DirectPath {
    rtp: SrtpTx,
    rtcp: SrtpTx,
}

impl DirectPath {
    /// The contexts we send with, from the handshake's keying material.
    pub fn new(keying: &SrtpKeying) -> Result<Self, SrtpTxError> {
        Ok(Self {
            rtp: SrtpTx::from_keying(keying)?,
            rtcp: SrtpTx::from_keying_rtcp(keying)?,
        })
    }

    /// Writes one packet of `track` (header, `payload`, SRTP tag) into
    /// `buf` (emptied first), and counts it for the track's sender reports. `index`
    /// is the extended sequence number (its low 16 bits go in the header);
    /// `arrival` is when the publisher's packet arrived (the wallclock of
    /// its RTP time, as str0m is given it); `abs_send_time` is the
    /// extension's value for now (`rtp_out::abs_send_time`). None if
    /// protection failed.
    #[allow(clippy::too_many_arguments)]
    pub fn write(
        &self,
        mut buf: Vec<u8>,
        track: &mut DirectTrack,
        index: u64,
        timestamp: u32,
        marker: bool,
        audio_level: Option<(i8, bool)>,
        payload: &[u8],
        arrival: Instant,
        abs_send_time: [u8; 3],
    ) -> Option<Vec<u8>> {
        let header = RtpHeaderOut {
            payload_type: track.payload_type,
            marker,
            seq: index as u16,
            timestamp,
            ssrc: track.ssrc,
            mid: track.mid(),
            audio_level,
            abs_send_time,
        };
        buf.clear();
        buf.reserve(32 + payload.len() + self.rtp.overhead());
        let header_len = write_header(&mut buf, &header, &track.ids);
        buf.extend_from_slice(payload);
        if !self.rtp.protect_rtp(&mut buf, header_len, index) {
            return None;
        }
        track.packets = track.packets.wrapping_add(1);
        track.octets = track.octets.wrapping_add(payload.len() as u32);
        track.last = Some((timestamp, arrival));
        Some(buf)
    }

    /// Where the RTP key context is (see [`SrtpTx::key_addr`]).
    pub fn key_addr(&self) -> Option<usize> {
        self.rtp.key_addr()
    }

    /// If `datagram` is an SRTCP packet (str0m's, on this connection),
    /// sets the RTP time and counts of the sender reports of the tracks
    /// `tracks` finds by SSRC. Returns whether it changed.
    pub fn rewrite_sender_reports<'a>(
        &self,
        datagram: &mut [u8],
        now: Instant,
        mut tracks: impl FnMut(u32) -> Option<&'a DirectTrack>,
    ) -> bool {
        if !is_rtcp(datagram) {
            return false;
        }
        self.rtcp.rewrite_rtcp(datagram, |compound| {
            patch_sender_reports(compound, |ssrc| tracks(ssrc).and_then(|t| t.counts(now)))
        })
    }
}

/// RTP or RTCP ([`demux::kind`]) with an RTCP packet type (200-206) in
/// the second byte: SR, RR, SDES, BYE, APP, RTPFB, PSFB.
pub fn is_rtcp(datagram: &[u8]) -> bool {
    datagram.len() >= 8 && demux::kind(datagram) == Kind::Rtp && (200..=206).contains(&datagram[1])
}

/// What str0m's own transmits tell of the connection's destination: DTLS
/// and RTP/RTCP go to the nominated pair; STUN answers whoever asked.
pub fn is_media_path(datagram: &[u8]) -> bool {
    matches!(demux::kind(datagram), Kind::Dtls | Kind::Rtp)
}

/// One downtrack sent directly: what its packets carry, and what its
/// sender reports must say.
#[derive(Debug, Clone)]
pub struct DirectTrack {
    /// str0m's SSRC for the m-line.
    pub ssrc: u32,
    pub payload_type: u8,
    /// The m-line's mid as it goes in the header (1-16 ASCII bytes),
    /// inline and ready: str0m's `Mid` checks and trims its text on each
    /// read, a cost per packet and subscriber.
    mid: [u8; 16],
    mid_len: u8,
    pub ids: ExtensionIds,
    /// RTP clock rate (Hz).
    pub clock_rate: u32,
    packets: u32,
    octets: u32,
    /// RTP time and arrival of the last packet.
    last: Option<(u32, Instant)>,
}

impl DirectTrack {
    /// A track whose first packet (`first`: RTP time, arrival, payload
    /// bytes) str0m sent.
    pub fn new(
        ssrc: u32,
        payload_type: u8,
        mid: str0m::media::Mid,
        ids: ExtensionIds,
        clock_rate: u32,
        first: (u32, Instant, usize),
    ) -> Self {
        let text = mid.as_bytes();
        let mid_len = text.len().min(16);
        let mut bytes = [0; 16];
        bytes[..mid_len].copy_from_slice(&text[..mid_len]);
        Self {
            ssrc,
            payload_type,
            mid: bytes,
            mid_len: mid_len as u8,
            ids,
            clock_rate,
            packets: 1,
            octets: first.2 as u32,
            last: Some((first.0, first.1)),
        }
    }

    /// Counts a packet of this track that str0m sent after the first
    /// (RTP time, arrival, payload bytes): the direct path waits while
    /// str0m holds one ([`Handover`]) or could not protect it.
    pub fn sent_by_str0m(&mut self, timestamp: u32, arrival: Instant, payload_len: usize) {
        self.packets = self.packets.wrapping_add(1);
        self.octets = self.octets.wrapping_add(payload_len as u32);
        self.last = Some((timestamp, arrival));
    }

    /// The m-line's mid, as written in the header.
    pub fn mid(&self) -> &[u8] {
        &self.mid[..usize::from(self.mid_len)]
    }

    /// The sender report's fields at `now`: the last packet's RTP time
    /// advanced by the wallclock since it arrived (RFC 3550 §6.4.1).
    pub fn counts(&self, now: Instant) -> Option<SenderCounts> {
        let (timestamp, arrival) = self.last?;
        let elapsed = now.saturating_duration_since(arrival);
        let ticks = (elapsed.as_nanos() * u128::from(self.clock_rate) / 1_000_000_000) as u32;
        Some(SenderCounts {
            rtp_time: timestamp.wrapping_add(ticks),
            packets: self.packets,
            octets: self.octets,
        })
    }
}

/// Where str0m's transmits went last, for datagrams we send beside it.
#[derive(Debug, Default, Clone, Copy)]
pub struct MediaDestination(pub Option<SocketAddr>);

impl MediaDestination {
    /// Notes one of str0m's transmits.
    pub fn observe(&mut self, datagram: &[u8], destination: SocketAddr) {
        if is_media_path(datagram) {
            self.0 = Some(destination);
        }
    }
}

/// The last RTP packet we wrote into str0m of each audio stream, until
/// str0m sends it. Its pacer can hold a packet for a round (a new
/// stream's first one); a packet we protect ourselves must not overtake
/// it, or the subscriber counts the held one late (negative loss).
#[derive(Debug, Default)]
pub struct Handover(Vec<(u32, u16)>);

impl Handover {
    /// We wrote RTP sequence number `seq` (its low 16 bits) of `ssrc`
    /// into str0m.
    pub fn wrote(&mut self, ssrc: u32, seq: u16) {
        match self.0.iter_mut().find(|(s, _)| *s == ssrc) {
            Some(entry) => entry.1 = seq,
            None => self.0.push((ssrc, seq)),
        }
    }

    /// Whether str0m still holds the last packet of `ssrc` we wrote.
    pub fn holds(&self, ssrc: u32) -> bool {
        self.0.iter().any(|(s, _)| *s == ssrc)
    }

    /// Notes one of str0m's transmits: SRTP leaves the RTP header's
    /// sequence number (bytes 2-3) and SSRC (bytes 8-11) in clear
    /// (RFC 3711 §3.1).
    pub fn observe(&mut self, datagram: &[u8]) {
        if self.0.is_empty() || demux::kind(datagram) != Kind::Rtp || is_rtcp(datagram) {
            return;
        }
        let (Some(seq), Some(ssrc)) = (datagram.get(2..4), datagram.get(8..12)) else {
            return;
        };
        let seq = u16::from_be_bytes([seq[0], seq[1]]);
        let ssrc = u32::from_be_bytes([ssrc[0], ssrc[1], ssrc[2], ssrc[3]]);
        self.0.retain(|&e| e != (ssrc, seq));
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn sender_report_time_follows_the_wallclock() {
        let t0 = Instant::now();
        let ids = ExtensionIds::default();
        let mut track = DirectTrack::new(7, 111, "0".into(), ids, 48_000, (5, t0, 80));
        assert_eq!(track.mid(), b"0", "the mid as written");
        let c = track.counts(t0).expect("counts");
        assert_eq!(
            (c.rtp_time, c.packets, c.octets),
            (5, 1, 80),
            "str0m's first packet"
        );
        let path = DirectPath::new(&SrtpKeying {
            profile: str0m::crypto::dtls::SrtpProfile::AEAD_AES_128_GCM,
            material: vec![3; 56],
            active: false,
        })
        .expect("path");
        let p = path
            .write(
                Vec::new(),
                &mut track,
                2,
                u32::MAX - 10,
                false,
                None,
                &[1; 100],
                t0,
                [0; 3],
            )
            .expect("written");
        assert_eq!(
            p.len(),
            12 + 4 + 100 + 16,
            "header, empty extension block, tag"
        );
        let c = track
            .counts(t0 + Duration::from_millis(20))
            .expect("counts");
        assert_eq!(c.rtp_time, 960 - 11, "960 ticks later, wrapped");
        assert_eq!((c.packets, c.octets), (2, 180));
    }

    #[test]
    fn classifies_datagrams() {
        let sr = [0x80, 200, 0, 6, 0, 0, 0, 1];
        assert!(is_rtcp(&sr));
        let rtp = [0x80, 111, 0, 1, 0, 0, 0, 1];
        assert!(!is_rtcp(&rtp));
        let mut dest = MediaDestination::default();
        let a: SocketAddr = "10.0.0.1:1".parse().expect("addr");
        let b: SocketAddr = "10.0.0.2:2".parse().expect("addr");
        dest.observe(&[0x00, 0x01], a); // STUN: not the media path
        assert_eq!(dest.0, None);
        dest.observe(&[22, 254], a); // DTLS
        dest.observe(&rtp, b);
        assert_eq!(dest.0, Some(b));
    }

    #[test]
    fn handover_waits_for_the_last_packet_written() {
        let rtp = |seq: u16, ssrc: u32| {
            let mut d = vec![0x80, 111];
            d.extend_from_slice(&seq.to_be_bytes());
            d.extend_from_slice(&[0; 4]);
            d.extend_from_slice(&ssrc.to_be_bytes());
            d.extend_from_slice(&[0; 20]);
            d
        };
        let mut h = Handover::default();
        h.wrote(7, 1);
        h.wrote(7, 2);
        h.wrote(9, 40);
        assert!(h.holds(7) && h.holds(9) && !h.holds(8));
        h.observe(&rtp(1, 7));
        assert!(h.holds(7), "an earlier packet of the stream went out");
        let mut rr = rtp(2, 7);
        rr[1] = 201;
        h.observe(&rr);
        assert!(h.holds(7), "RTCP is no RTP packet");
        h.observe(&rtp(2, 7));
        assert!(!h.holds(7) && h.holds(9));
        h.observe(&rtp(40, 9));
        assert!(!h.holds(9));
    }
}
