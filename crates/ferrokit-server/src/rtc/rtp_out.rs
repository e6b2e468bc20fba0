//! RTP headers of the packets the server protects and sends itself
//! (forwarded audio, see `session::direct`): the fixed header (RFC 3550
//! §5.1) and the header extensions str0m would have written, in the
//! one-byte form (RFC 8285 §4.2) or, when an id is above 14, the two-byte
//! form (§4.3), in ascending id order as str0m writes them.

use std::time::{Instant, SystemTime, UNIX_EPOCH};

use str0m::rtp::{Extension, ExtensionMap};

/// The clocks one fan-out's packets are written with, read once for all
/// of its subscribers.
#[derive(Debug, Clone, Copy)]
pub struct SendClock {
    /// Monotonic time, for the downtracks' state.
    pub now: Instant,
    /// abs-send-time of the same moment ([`abs_send_time`]).
    pub abs_send_time: [u8; 3],
}

impl SendClock {
    /// Reads both clocks.
    pub fn read() -> Self {
        Self {
            now: Instant::now(),
            abs_send_time: abs_send_time(SystemTime::now()),
        }
    }
}

/// The extension ids an m-line negotiated for what we write.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ExtensionIds {
    /// `urn:ietf:params:rtp-hdrext:sdes:mid` (RFC 8843 §15).
    pub mid: Option<u8>,
    /// `urn:ietf:params:rtp-hdrext:ssrc-audio-level` (RFC 6464).
    pub audio_level: Option<u8>,
    /// abs-send-time (webrtc.org experiment): 24-bit 6.18 seconds.
    pub abs_send_time: Option<u8>,
}

impl ExtensionIds {
    /// The ids in `map` (str0m's `Media::remote_extmap`, what it sends
    /// with).
    pub fn from_map(map: &ExtensionMap) -> Self {
        Self {
            mid: map.id_of(Extension::RtpMid),
            audio_level: map.id_of(Extension::AudioLevel),
            abs_send_time: map.id_of(Extension::AbsoluteSendTime),
        }
    }
}

/// One packet's header fields.
#[derive(Debug, Clone, Copy)]
pub struct RtpHeaderOut<'a> {
    pub payload_type: u8,
    pub marker: bool,
    pub seq: u16,
    /// Media clock units (48 kHz for Opus).
    pub timestamp: u32,
    pub ssrc: u32,
    /// The m-line's mid (1-16 bytes; longer is not written).
    pub mid: &'a [u8],
    /// Level in dBov (0 loudest, -127 silence) and voice activity.
    pub audio_level: Option<(i8, bool)>,
    /// The abs-send-time value ([`abs_send_time`]), written where the
    /// extension was negotiated. The caller reads the clock once for a
    /// whole fan-out, not once per subscriber.
    pub abs_send_time: [u8; 3],
}

/// Writes `h` with the extensions `ids` names into `buf` (cleared first);
/// returns the header length.
///
/// Built in a stack array and copied once: this runs for every forwarded
/// audio packet and subscriber.
pub fn write_header(buf: &mut Vec<u8>, h: &RtpHeaderOut, ids: &ExtensionIds) -> usize {
    // The extension elements (id, value), at most one of each kind.
    let level: [u8; 1];
    let mut elements: [(u8, &[u8]); 3] = [(0, &[]); 3];
    let mut n = 0;
    if let (Some(id), 1..=16) = (ids.mid, h.mid.len()) {
        elements[n] = (id, h.mid);
        n += 1;
    }
    if let (Some(id), Some((dbov, voice))) = (ids.audio_level, h.audio_level) {
        level = [(dbov.unsigned_abs() & 0x7f) | if voice { 0x80 } else { 0 }];
        elements[n] = (id, &level);
        n += 1;
    }
    if let Some(id) = ids.abs_send_time {
        elements[n] = (id, &h.abs_send_time);
        n += 1;
    }
    let elements = &mut elements[..n];
    // Ascending id order, as str0m writes them.
    elements.sort_unstable_by_key(|e| e.0);
    let two_byte = elements.iter().any(|e| e.0 > 14 || e.0 == 0);

    // Fixed header (12), extension block header (4), three elements of at
    // most 2 + 16 bytes, padding to a word.
    let mut out = [0u8; 72];
    out[0] = 0x90; // V=2, X=1 (str0m always writes an extension block).
    out[1] = h.payload_type & 0x7f | if h.marker { 0x80 } else { 0 };
    out[2..4].copy_from_slice(&h.seq.to_be_bytes());
    out[4..8].copy_from_slice(&h.timestamp.to_be_bytes());
    out[8..12].copy_from_slice(&h.ssrc.to_be_bytes());
    out[12..14].copy_from_slice(if two_byte {
        &[0x10, 0x00]
    } else {
        &[0xbe, 0xde]
    });
    let mut at = 16;
    for (id, value) in elements.iter() {
        let len = value.len();
        if two_byte {
            out[at] = *id;
            out[at + 1] = len as u8;
            at += 2;
        } else {
            out[at] = id << 4 | (len as u8 - 1);
            at += 1;
        }
        out[at..at + len].copy_from_slice(value);
        at += len;
    }
    let end = 16 + (at - 16).next_multiple_of(4); // padding: zeros already
    let words = ((end - 16) / 4) as u16;
    out[14..16].copy_from_slice(&words.to_be_bytes());
    buf.clear();
    buf.extend_from_slice(&out[..end]);
    end
}

/// abs-send-time of `at`: NTP seconds mod 64 and the fraction, 6.18 fixed
/// point, big-endian. The NTP epoch is 2208988800 s before the Unix epoch,
/// a multiple of 64, so Unix seconds give the same low bits.
pub fn abs_send_time(at: SystemTime) -> [u8; 3] {
    let since = at.duration_since(UNIX_EPOCH).unwrap_or_default();
    let fraction = (u64::from(since.subsec_nanos()) << 18) / 1_000_000_000;
    let v = ((since.as_secs() & 63) << 18) | fraction;
    [(v >> 16) as u8, (v >> 8) as u8, v as u8]
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn header<'a>(mid: &'a [u8]) -> RtpHeaderOut<'a> {
        RtpHeaderOut {
            payload_type: 111,
            marker: true,
            seq: 0x1234,
            timestamp: 960,
            ssrc: 0xdead_beef,
            mid,
            audio_level: Some((-30, true)),
            abs_send_time: [1, 2, 3],
        }
    }

    #[test]
    fn one_byte_form_in_id_order_padded() {
        let mut buf = Vec::new();
        let ids = ExtensionIds {
            mid: Some(4),
            audio_level: Some(1),
            abs_send_time: None,
        };
        let len = write_header(&mut buf, &header(b"0"), &ids);
        assert_eq!(len, buf.len());
        assert_eq!(
            buf,
            [
                0x90,
                0xef,
                0x12,
                0x34,
                0,
                0,
                0x03,
                0xc0,
                0xde,
                0xad,
                0xbe,
                0xef, // fixed
                0xbe,
                0xde,
                0,
                1, // one-byte form, 1 word
                0x10,
                0x80 | 30, // audio level id 1
                0x40,
                b'0', // mid id 4
            ]
        );
    }

    #[test]
    fn abs_send_time_is_the_callers_value() {
        let mut buf = Vec::new();
        let ids = ExtensionIds {
            mid: None,
            audio_level: None,
            abs_send_time: Some(3),
        };
        write_header(&mut buf, &header(b"0"), &ids);
        // One element, id 3, 3 bytes (length field 2): the value given.
        assert_eq!(&buf[12..], &[0xbe, 0xde, 0, 1, 0x32, 1, 2, 3]);
        let clock = SendClock::read();
        let later = abs_send_time(SystemTime::now());
        let ticks = |v: [u8; 3]| u32::from_be_bytes([0, v[0], v[1], v[2]]);
        // Read together: the same second mod 64 give or take a wrap.
        let gap = ticks(later).wrapping_sub(ticks(clock.abs_send_time)) & 0xff_ffff;
        assert!(gap < 1 << 18, "{gap} ticks between two reads");
    }

    #[test]
    fn two_byte_form_when_an_id_is_above_14() {
        let mut buf = Vec::new();
        let ids = ExtensionIds {
            mid: Some(15),
            audio_level: None,
            abs_send_time: None,
        };
        write_header(&mut buf, &header(b"ab"), &ids);
        assert_eq!(&buf[12..], &[0x10, 0x00, 0, 1, 15, 2, b'a', b'b']);
        // Nothing negotiated: an empty block, as str0m writes.
        write_header(&mut buf, &header(b"ab"), &ExtensionIds::default());
        assert_eq!(&buf[12..], &[0xbe, 0xde, 0, 0]);
    }

    /// Our header, with the ids the server's str0m negotiated, protected
    /// with its captured keys: the client's str0m reads the mid and the
    /// audio level.
    #[test]
    fn the_peer_reads_our_header() {
        use super::super::srtp_tx::SrtpTx;
        use super::super::test_pair::Pair;
        let mut pair = Pair::connected();
        let tx = SrtpTx::from_keying(&pair.server.keys.keying().expect("keys")).expect("ctx");
        let ids = ExtensionIds::from_map(
            pair.server
                .rtc
                .media(pair.audio)
                .expect("audio media")
                .remote_extmap(),
        );
        assert!(ids.mid.is_some() && ids.audio_level.is_some(), "{ids:?}");
        let mid = pair.audio.to_string();
        let mut buf = Vec::new();
        let h = RtpHeaderOut {
            payload_type: *pair.pt,
            ssrc: *pair.ssrc,
            seq: 1,
            ..header(mid.as_bytes())
        };
        let hlen = write_header(&mut buf, &h, &ids);
        buf.extend_from_slice(&[7; 80]);
        assert!(tx.protect_rtp(&mut buf, hlen, 1));
        pair.send_to_client(buf);
        let (payload, ext) = pair.received.first().expect("packet accepted");
        assert_eq!(payload, &vec![7u8; 80]);
        assert_eq!(ext.audio_level, Some(-30));
        assert_eq!(ext.voice_activity, Some(true));
        assert_eq!(ext.mid, Some(pair.audio));
    }

    #[test]
    fn abs_send_time_is_6_18_fixed_point() {
        let at = UNIX_EPOCH + Duration::from_millis(64 * 1000 + 1500);
        // 1.5 s: 1 << 18 | 0.5 * 2^18.
        let v = (1u32 << 18) | (1 << 17);
        assert_eq!(
            abs_send_time(at),
            [(v >> 16) as u8, (v >> 8) as u8, v as u8]
        );
    }
}
