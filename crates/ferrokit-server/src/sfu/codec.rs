//! Codec facts the forwarder needs: which payloads start a keyframe.

/// Media codecs ferrokit forwards, by MIME type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Codec {
    Opus,
    Red,
    Vp8,
    Vp9,
    H264,
    Av1,
    Other,
}

impl Codec {
    /// From a MIME type or encoding name (`video/VP8`, `vp8`, `audio/red`...).
    pub fn from_name(name: &str) -> Self {
        let n = name.rsplit('/').next().unwrap_or(name).to_ascii_lowercase();
        match n.as_str() {
            "opus" => Self::Opus,
            "red" => Self::Red,
            "vp8" => Self::Vp8,
            "vp9" => Self::Vp9,
            "h264" => Self::H264,
            "av1" => Self::Av1,
            _ => Self::Other,
        }
    }

    /// The name LiveKit clients use for the codec (`vp8`, `h264`, ...: the
    /// `codec` of `SubscribedCodec`), empty for [`Codec::Other`].
    pub fn client_name(self) -> &'static str {
        match self {
            Self::Opus => "opus",
            Self::Red => "red",
            Self::Vp8 => "vp8",
            Self::Vp9 => "vp9",
            Self::H264 => "h264",
            Self::Av1 => "av1",
            Self::Other => "",
        }
    }

    /// Whether this is a video codec (switches wait for keyframes).
    pub fn is_video(self) -> bool {
        matches!(self, Self::Vp8 | Self::Vp9 | Self::H264 | Self::Av1)
    }
}

/// Whether an RTP payload of `codec` begins a keyframe. Audio is always
/// "key": any packet can start a stream. Unknown video codecs also answer
/// true, so they are forwarded rather than held back forever.
pub fn is_keyframe(codec: Codec, payload: &[u8]) -> bool {
    match codec {
        Codec::Vp8 => vp8_keyframe(payload),
        Codec::Vp9 => vp9_keyframe(payload),
        Codec::H264 => h264_keyframe(payload),
        Codec::Av1 => av1_keyframe(payload),
        Codec::Opus | Codec::Red | Codec::Other => true,
    }
}

/// VP8 payload descriptor (RFC 7741 §4.2), then the frame header's P bit.
fn vp8_keyframe(p: &[u8]) -> bool {
    let Some(&b0) = p.first() else { return false };
    let start = b0 & 0x10 != 0;
    let pid = b0 & 0x07;
    if !start || pid != 0 {
        return false;
    }
    let mut i = 1;
    if b0 & 0x80 != 0 {
        let Some(&x) = p.get(1) else { return false };
        i = 2;
        if x & 0x80 != 0 {
            // PictureID: one or two bytes.
            let Some(&pic) = p.get(i) else { return false };
            i += if pic & 0x80 != 0 { 2 } else { 1 };
        }
        if x & 0x40 != 0 {
            i += 1; // TL0PICIDX
        }
        if x & 0x30 != 0 {
            i += 1; // TID/Y/KEYIDX
        }
    }
    p.get(i).is_some_and(|h| h & 0x01 == 0)
}

/// VP9 payload descriptor (RFC 9628 §4.2): not inter-predicted (P=0) and
/// beginning of a frame (B=1).
fn vp9_keyframe(p: &[u8]) -> bool {
    p.first().is_some_and(|b| b & 0x40 == 0 && b & 0x08 != 0)
}

/// H.264 (RFC 6184): an IDR slice or SPS, alone, in STAP-A, or starting a FU-A.
fn h264_keyframe(p: &[u8]) -> bool {
    let Some(&b0) = p.first() else { return false };
    match b0 & 0x1F {
        5 | 7 => true,
        24 => {
            // STAP-A: 2-byte sizes, then NAL units.
            let mut i = 1;
            while i + 2 < p.len() {
                let size = usize::from(u16::from_be_bytes([p[i], p[i + 1]]));
                if matches!(p[i + 2] & 0x1F, 5 | 7) {
                    return true;
                }
                i += 2 + size;
            }
            false
        }
        28 => p.get(1).is_some_and(|h| h & 0x80 != 0 && h & 0x1F == 5),
        _ => false,
    }
}

/// AV1 RTP aggregation header (AV1 RTP spec §4.4): N = new coded video sequence.
fn av1_keyframe(p: &[u8]) -> bool {
    p.first().is_some_and(|b| b & 0x08 != 0)
}

/// The primary (newest) block of an RFC 2198 RED payload: what a
/// subscriber that did not negotiate RED gets, as plain Opus. An empty
/// payload (a padding-only packet: Chrome sends bursts of them on its RED
/// stream) has an empty primary. `None` for a malformed payload.
pub fn red_primary(p: &[u8]) -> Option<&[u8]> {
    if p.is_empty() {
        return Some(p);
    }
    let mut at = 0;
    let mut redundant_len = 0usize;
    loop {
        let b = *p.get(at)?;
        if b & 0x80 == 0 {
            at += 1;
            break;
        }
        let len = usize::from(u16::from_be_bytes([*p.get(at + 2)?, *p.get(at + 3)?]) & 0x03FF);
        redundant_len += len;
        at += 4;
    }
    p.get(at + redundant_len..)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn red_primary_block() {
        // One redundant block of 2 bytes, then the primary of 3 bytes.
        let p = [0x80 | 111, 0x00, 0x04, 0x02, 111, 9, 9, 1, 2, 3];
        assert_eq!(red_primary(&p), Some(&[1u8, 2, 3][..]));
        // Primary only.
        assert_eq!(red_primary(&[111, 7]), Some(&[7u8][..]));
        // Padding only.
        assert_eq!(red_primary(&[]), Some(&[][..]));
        // Truncated.
        assert_eq!(red_primary(&[0x80 | 111, 0x00]), None);
        assert_eq!(red_primary(&[0x80 | 111, 0, 0, 9, 111]), None);
    }

    #[test]
    fn names() {
        assert_eq!(Codec::from_name("video/VP8"), Codec::Vp8);
        assert_eq!(Codec::from_name("audio/opus"), Codec::Opus);
        assert_eq!(Codec::from_name("H264"), Codec::H264);
        assert!(!Codec::Opus.is_video());
    }

    #[test]
    fn vp8() {
        // S=1, PID=0, no extension, then a key frame header (P=0).
        assert!(is_keyframe(Codec::Vp8, &[0x10, 0x00]));
        assert!(!is_keyframe(Codec::Vp8, &[0x10, 0x01]));
        // Not start of partition.
        assert!(!is_keyframe(Codec::Vp8, &[0x00, 0x00]));
        // X=1, I=1 with 2-byte picture id, then key frame.
        assert!(is_keyframe(Codec::Vp8, &[0x90, 0x80, 0x81, 0x23, 0x00]));
        assert!(!is_keyframe(Codec::Vp8, &[0x90, 0x80, 0x81, 0x23, 0x01]));
        // Truncated never panics.
        assert!(!is_keyframe(Codec::Vp8, &[0x90, 0x80]));
        assert!(!is_keyframe(Codec::Vp8, &[]));
    }

    #[test]
    fn h264() {
        assert!(is_keyframe(Codec::H264, &[0x65]));
        assert!(is_keyframe(Codec::H264, &[0x67, 0x42]));
        assert!(!is_keyframe(Codec::H264, &[0x61]));
        assert!(is_keyframe(Codec::H264, &[0x18, 0x00, 0x02, 0x67, 0x42]));
        assert!(is_keyframe(Codec::H264, &[0x7C, 0x85]));
        assert!(!is_keyframe(Codec::H264, &[0x7C, 0x05]));
    }

    #[test]
    fn vp9_av1_audio() {
        assert!(is_keyframe(Codec::Vp9, &[0x08]));
        assert!(!is_keyframe(Codec::Vp9, &[0x48]));
        assert!(is_keyframe(Codec::Av1, &[0x08]));
        assert!(!is_keyframe(Codec::Av1, &[0x00]));
        assert!(is_keyframe(Codec::Opus, &[]));
    }
}
