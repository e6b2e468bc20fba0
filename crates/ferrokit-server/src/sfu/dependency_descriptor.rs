//! The AV1 dependency descriptor (DD) RTP header extension (AV1 RTP
//! specification, Appendix A), as the SFU carries it: opaque bytes read
//! from a published packet and written unchanged on every downtrack.
//!
//! Chromium's AV1 receiver needs the DD to assemble frames and find their
//! references (AV1's payload has no picture IDs), so an SVC stream without
//! it is never decoded. Passing the bytes through unchanged is valid while
//! every layer of the stream is forwarded (spatial and temporal layers go
//! through whole, and the DD's frame numbers, templates and chains stay
//! consistent). Dropping layers, or switching between simulcast streams
//! (each with its own frame numbering and template structure), would need
//! the DD rewritten (frame numbers, active decode targets), which is not
//! done: [`forwards_unchanged`] says when the bytes may be passed through.
//!
//! Only the mandatory fields (Appendix A.4.1, `mandatory_descriptor_fields`)
//! and the first extended flag are read; the rest of the descriptor
//! (template structure, custom DTIs, fdiffs, chains) is never parsed.

use std::fmt;

use super::codec::Codec;

/// The extension's URI in `a=extmap` (AV1 RTP specification, Appendix A).
pub const URI: &str =
    "https://aomediacodec.github.io/av1-rtp-spec/#dependency-descriptor-rtp-header-extension";

/// Size of the mandatory fields (start_of_frame, end_of_frame,
/// frame_dependency_template_id, frame_number: 1 + 1 + 6 + 16 bits), the
/// shortest valid descriptor.
pub const MIN_LEN: usize = 3;

/// Longest descriptor an RTP header extension element can carry: the
/// two-byte header form's 8-bit length (RFC 8285 §4.3).
pub const MAX_LEN: usize = 255;

/// Longest element the one-byte header form carries (RFC 8285 §4.2); a
/// longer descriptor needs the two-byte form.
pub const MAX_ONE_BYTE_LEN: usize = 16;

/// One packet's dependency descriptor: its raw bytes, [`MIN_LEN`] to
/// [`MAX_LEN`] of them, stored inline so that reading one costs a single
/// allocation (the `Arc` str0m keeps it in) and packets without the
/// extension cost none.
#[derive(Clone, PartialEq, Eq)]
pub struct DependencyDescriptor {
    len: u8,
    bytes: [u8; MAX_LEN],
}

impl DependencyDescriptor {
    /// The descriptor in `bytes` (an extension element's data), or None if
    /// it is shorter than the mandatory fields or longer than [`MAX_LEN`].
    /// Nothing beyond the length is validated.
    pub fn from_bytes(bytes: &[u8]) -> Option<Self> {
        if !(MIN_LEN..=MAX_LEN).contains(&bytes.len()) {
            return None;
        }
        let len = u8::try_from(bytes.len()).ok()?;
        let mut out = Self {
            len,
            bytes: [0; MAX_LEN],
        };
        out.bytes[..bytes.len()].copy_from_slice(bytes);
        Some(out)
    }

    /// The raw descriptor, as received.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..usize::from(self.len)]
    }

    /// `start_of_frame`: the packet is the first of its frame.
    pub fn start_of_frame(&self) -> bool {
        self.bytes[0] & 0x80 != 0
    }

    /// `end_of_frame`: the packet is the last of its frame.
    pub fn end_of_frame(&self) -> bool {
        self.bytes[0] & 0x40 != 0
    }

    /// `frame_dependency_template_id` (6 bits).
    pub fn template_id(&self) -> u8 {
        self.bytes[0] & 0x3f
    }

    /// `frame_number` (16 bits, wrapping), increasing in decode order.
    pub fn frame_number(&self) -> u16 {
        u16::from_be_bytes([self.bytes[1], self.bytes[2]])
    }

    /// `template_dependency_structure_present_flag`: the descriptor
    /// carries the template structure (the first extended field; absent in
    /// a 3-byte descriptor). Senders attach it to keyframes.
    pub fn has_structure(&self) -> bool {
        self.len > MIN_LEN as u8 && self.bytes[MIN_LEN] & 0x80 != 0
    }

    /// Whether the descriptor is too long for the one-byte header form.
    pub fn needs_two_byte_form(&self) -> bool {
        usize::from(self.len) > MAX_ONE_BYTE_LEN
    }

    /// Copies the descriptor into `buf` and returns its length, or 0 (write
    /// nothing) when `buf` is too short.
    pub fn write_to(&self, buf: &mut [u8]) -> usize {
        let src = self.as_bytes();
        match buf.get_mut(..src.len()) {
            Some(dst) => {
                dst.copy_from_slice(src);
                src.len()
            }
            None => 0,
        }
    }
}

impl fmt::Debug for DependencyDescriptor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DependencyDescriptor")
            .field("len", &self.len)
            .field("start", &self.start_of_frame())
            .field("end", &self.end_of_frame())
            .field("template", &self.template_id())
            .field("frame", &self.frame_number())
            .field("structure", &self.has_structure())
            .finish()
    }
}

/// Whether a published packet's descriptor may be forwarded unchanged:
/// only for the SVC codecs (AV1, VP9) sent as one stream, whose layers a
/// downtrack forwards whole. For simulcast (several rids), a layer switch
/// changes the stream under the descriptor's frame numbering, and VP8 and
/// H264 decode without it, so it is left out there (livekit-server too
/// forwards it only for VP9/AV1 in SVC mode).
pub fn forwards_unchanged(codec: Codec, simulcast: bool) -> bool {
    matches!(codec, Codec::Av1 | Codec::Vp9) && !simulcast
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mandatory_fields() {
        // start, not end, template 5, frame 0x1234
        let d = DependencyDescriptor::from_bytes(&[0x80 | 5, 0x12, 0x34]).unwrap();
        assert!(d.start_of_frame());
        assert!(!d.end_of_frame());
        assert_eq!(d.template_id(), 5);
        assert_eq!(d.frame_number(), 0x1234);
        assert!(!d.has_structure());
        assert!(!d.needs_two_byte_form());
        assert_eq!(d.as_bytes(), &[0x85, 0x12, 0x34]);

        let d = DependencyDescriptor::from_bytes(&[0x7f, 0xff, 0xff, 0x80, 0x01]).unwrap();
        assert!(!d.start_of_frame());
        assert!(d.end_of_frame());
        assert_eq!(d.template_id(), 63);
        assert_eq!(d.frame_number(), 0xffff);
        assert!(d.has_structure());
        // Extended fields without the structure flag.
        let d = DependencyDescriptor::from_bytes(&[0xc0, 0, 1, 0x40]).unwrap();
        assert!(!d.has_structure());
    }

    #[test]
    fn absent_short_and_oversized_are_rejected() {
        assert!(DependencyDescriptor::from_bytes(&[]).is_none());
        assert!(DependencyDescriptor::from_bytes(&[0x80]).is_none());
        assert!(DependencyDescriptor::from_bytes(&[0x80, 0]).is_none());
        assert!(DependencyDescriptor::from_bytes(&[0xaa; MAX_LEN + 1]).is_none());
        assert!(DependencyDescriptor::from_bytes(&[0xaa; 4096]).is_none());
    }

    #[test]
    fn longest_descriptor_round_trips_in_two_byte_form() {
        let src: Vec<u8> = (0..MAX_LEN).map(|i| i as u8).collect();
        let d = DependencyDescriptor::from_bytes(&src).unwrap();
        assert!(d.needs_two_byte_form());
        let mut buf = [0u8; 300];
        assert_eq!(d.write_to(&mut buf), MAX_LEN);
        assert_eq!(&buf[..MAX_LEN], &src[..]);

        let d = DependencyDescriptor::from_bytes(&src[..MAX_ONE_BYTE_LEN]).unwrap();
        assert!(!d.needs_two_byte_form());
        let d = DependencyDescriptor::from_bytes(&src[..MAX_ONE_BYTE_LEN + 1]).unwrap();
        assert!(d.needs_two_byte_form());
    }

    #[test]
    fn write_to_a_short_buffer_writes_nothing() {
        let d = DependencyDescriptor::from_bytes(&[1, 2, 3, 4, 5]).unwrap();
        let mut buf = [0u8; 4];
        assert_eq!(d.write_to(&mut buf), 0);
        assert_eq!(buf, [0; 4]);
        assert_eq!(d.write_to(&mut []), 0);
    }

    #[test]
    fn arbitrary_bytes_never_panic() {
        // Every length from 0 to past the limit, with every first byte.
        for len in 0..=MAX_LEN + 2 {
            for first in [0u8, 0x3f, 0x80, 0xc0, 0xff] {
                let mut src = vec![0x5a; len];
                if let Some(b) = src.first_mut() {
                    *b = first;
                }
                let Some(d) = DependencyDescriptor::from_bytes(&src) else {
                    assert!(!(MIN_LEN..=MAX_LEN).contains(&len));
                    continue;
                };
                let _ = (
                    d.start_of_frame(),
                    d.end_of_frame(),
                    d.template_id(),
                    d.frame_number(),
                    d.has_structure(),
                    format!("{d:?}"),
                );
                let mut out = vec![0u8; len];
                assert_eq!(d.write_to(&mut out), len);
                assert_eq!(out, src);
            }
        }
    }

    #[test]
    fn only_svc_codecs_on_one_stream_forward_unchanged() {
        assert!(forwards_unchanged(Codec::Av1, false));
        assert!(forwards_unchanged(Codec::Vp9, false));
        assert!(!forwards_unchanged(Codec::Av1, true));
        assert!(!forwards_unchanged(Codec::Vp9, true));
        assert!(!forwards_unchanged(Codec::Vp8, false));
        assert!(!forwards_unchanged(Codec::H264, false));
        assert!(!forwards_unchanged(Codec::Opus, false));
    }
}
