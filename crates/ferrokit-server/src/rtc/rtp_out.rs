//! RTP headers of the packets the server protects and sends itself
//! (forwarded audio, see `session::direct`): the fixed header (RFC 3550
//! §5.1) and the header extensions str0m would have written, in the
//! one-byte form (RFC 8285 §4.2) or, when an id is above 14, the two-byte
//! form (§4.3), in ascending id order as str0m writes them.

use std::time::{SystemTime, UNIX_EPOCH};

use str0m::rtp::{Extension, ExtensionMap};

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
}

/// Writes `h` with the extensions `ids` names into `buf` (cleared first);
/// returns the header length.
pub fn write_header(buf: &mut Vec<u8>, h: &RtpHeaderOut, ids: &ExtensionIds) -> usize {
    buf.clear();
    buf.push(0x90); // V=2, X=1 (str0m always writes an extension block).
    buf.push(h.payload_type & 0x7f | if h.marker { 0x80 } else { 0 });
    buf.extend_from_slice(&h.seq.to_be_bytes());
    buf.extend_from_slice(&h.timestamp.to_be_bytes());
    buf.extend_from_slice(&h.ssrc.to_be_bytes());

    let mut elements: [(u8, [u8; 16], usize); 3] = [(0, [0; 16], 0); 3];
    let mut n = 0;
    if let (Some(id), 1..=16) = (ids.mid, h.mid.len()) {
        let mut v = [0u8; 16];
        v[..h.mid.len()].copy_from_slice(h.mid);
        elements[n] = (id, v, h.mid.len());
        n += 1;
    }
    if let (Some(id), Some((level, voice))) = (ids.audio_level, h.audio_level) {
        let mut v = [0u8; 16];
        v[0] = (level.unsigned_abs() & 0x7f) | if voice { 0x80 } else { 0 };
        elements[n] = (id, v, 1);
        n += 1;
    }
    if let Some(id) = ids.abs_send_time {
        let mut v = [0u8; 16];
        v[..3].copy_from_slice(&abs_send_time(SystemTime::now())[..]);
        elements[n] = (id, v, 3);
        n += 1;
    }
    let elements = &mut elements[..n];
    elements.sort_unstable_by_key(|e| e.0);
    let two_byte = elements.iter().any(|e| e.0 > 14 || e.0 == 0);
    let start = buf.len();
    buf.extend_from_slice(if two_byte {
        &[0x10, 0x00]
    } else {
        &[0xbe, 0xde]
    });
    buf.extend_from_slice(&[0, 0]); // length, set below
    for (id, value, len) in elements.iter() {
        if two_byte {
            buf.push(*id);
            buf.push(*len as u8);
        } else {
            buf.push(id << 4 | (*len as u8 - 1));
        }
        buf.extend_from_slice(&value[..*len]);
    }
    while !(buf.len() - start).is_multiple_of(4) {
        buf.push(0);
    }
    let words = ((buf.len() - start - 4) / 4) as u16;
    buf[start + 2..start + 4].copy_from_slice(&words.to_be_bytes());
    buf.len()
}

/// abs-send-time of `at`: NTP seconds mod 64 and the fraction, 6.18 fixed
/// point, big-endian. The NTP epoch is 2208988800 s before the Unix epoch,
/// a multiple of 64, so Unix seconds give the same low bits.
fn abs_send_time(at: SystemTime) -> [u8; 3] {
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
