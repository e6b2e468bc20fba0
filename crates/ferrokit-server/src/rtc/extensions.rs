//! RTP header extensions that str0m does not know and carries for us
//! through its `ExtensionSerializer` hook: the AV1 dependency descriptor
//! ([`crate::sfu::dependency_descriptor`]).
//!
//! str0m parses a registered extension of each received packet into
//! `ExtensionValues::user_values` (keyed by type) and writes it from there
//! on sending, in the two-byte header form (RFC 8285 §4.3) when a value is
//! longer than 16 bytes; its SDP always carries `a=extmap-allow-mixed`, so
//! both forms may appear in one stream.

use std::sync::Arc;

use str0m::media::Mid;
use str0m::rtp::{Extension, ExtensionSerializer, ExtensionValues};
use str0m::Rtc;

use crate::sfu::dependency_descriptor::{self, DependencyDescriptor};

/// The `a=extmap` id we offer the dependency descriptor at (a client's
/// offer may move it). Free in str0m's standard map, and Chromium's own
/// choice. One-byte form ids are 1..=14 (RFC 8285 §4.2).
pub const DEPENDENCY_DESCRIPTOR_ID: u8 = 12;

/// The dependency descriptor as a str0m extension, for `RtcConfig::set_extension`.
pub fn dependency_descriptor() -> Extension {
    Extension::with_serializer(dependency_descriptor::URI, DdSerializer)
}

/// The dependency descriptor of a received packet, if it carried a valid
/// one (shared: no copy).
pub fn received_dependency_descriptor(ev: &ExtensionValues) -> Option<Arc<DependencyDescriptor>> {
    ev.user_values.get_arc::<DependencyDescriptor>()
}

/// Sets the dependency descriptor of a packet to send; str0m writes it if
/// the packet's m-line negotiated the extension.
pub fn set_dependency_descriptor(ev: &mut ExtensionValues, dd: Arc<DependencyDescriptor>) {
    ev.user_values.set_arc(dd);
}

/// Whether the m-line `mid` of `rtc` negotiated the dependency descriptor.
pub fn negotiated_dependency_descriptor(rtc: &Rtc, mid: Mid) -> bool {
    rtc.media(mid).is_some_and(|m| {
        m.remote_extmap()
            .iter()
            .any(|(_, e)| e.as_uri() == dependency_descriptor::URI)
    })
}

/// Reads and writes [`DependencyDescriptor`] values (video only).
#[derive(Debug)]
struct DdSerializer;

impl ExtensionSerializer for DdSerializer {
    fn write_to(&self, buf: &mut [u8], ev: &ExtensionValues) -> usize {
        ev.user_values
            .get::<DependencyDescriptor>()
            .map_or(0, |dd| dd.write_to(buf))
    }

    fn parse_value(&self, buf: &[u8], ev: &mut ExtensionValues) -> bool {
        match DependencyDescriptor::from_bytes(buf) {
            Some(dd) => {
                ev.user_values.set(dd);
                true
            }
            None => false,
        }
    }

    fn is_video(&self) -> bool {
        true
    }

    fn is_audio(&self) -> bool {
        false
    }

    fn requires_two_byte_form(&self, ev: &ExtensionValues) -> bool {
        ev.user_values
            .get::<DependencyDescriptor>()
            .is_some_and(|dd| dd.needs_two_byte_form())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serializer_round_trip_and_bad_input() {
        let s = DdSerializer;
        let mut ev = ExtensionValues::default();
        // Absent: nothing written, one-byte form is fine.
        let mut buf = [0u8; 64];
        assert_eq!(s.write_to(&mut buf, &ev), 0);
        assert!(!s.requires_two_byte_form(&ev));
        // Malformed (too short) is refused and leaves no value.
        assert!(!s.parse_value(&[0x80, 1], &mut ev));
        assert!(received_dependency_descriptor(&ev).is_none());

        let long: Vec<u8> = (0..40).collect();
        assert!(s.parse_value(&long, &mut ev));
        let dd = received_dependency_descriptor(&ev).unwrap();
        assert_eq!(dd.as_bytes(), &long[..]);
        assert!(s.requires_two_byte_form(&ev));

        let mut out = ExtensionValues::default();
        set_dependency_descriptor(&mut out, dd);
        assert_eq!(s.write_to(&mut buf, &out), 40);
        assert_eq!(&buf[..40], &long[..]);
        // A buffer too small for the value: nothing written, no panic.
        assert_eq!(s.write_to(&mut buf[..10], &out), 0);
    }

    #[test]
    fn extension_uri() {
        assert_eq!(dependency_descriptor().as_uri(), dependency_descriptor::URI);
    }
}
