//! What a datagram on the shared port is, by its first byte (RFC 7983
//! section 7): STUN 0-3, DTLS 20-63, RTP and RTCP 128-191. TURN channels
//! (64-79) and anything else are neither.

/// The protocol of one datagram on the shared port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// STUN (ICE checks and keepalives).
    Stun,
    /// DTLS: the handshake, then SCTP (data channels).
    Dtls,
    /// SRTP or SRTCP.
    Rtp,
    /// Empty, or anything else.
    Other,
}

/// The kind of `datagram`, from its first byte.
pub fn kind(datagram: &[u8]) -> Kind {
    match datagram.first() {
        Some(0..=3) => Kind::Stun,
        Some(20..=63) => Kind::Dtls,
        Some(128..=191) => Kind::Rtp,
        _ => Kind::Other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_byte_ranges_of_rfc_7983() {
        for (first, want) in [
            (0, Kind::Stun),
            (3, Kind::Stun),
            (4, Kind::Other),
            (19, Kind::Other),
            (20, Kind::Dtls),
            (63, Kind::Dtls),
            (64, Kind::Other), // TURN channel data
            (127, Kind::Other),
            (128, Kind::Rtp),
            (191, Kind::Rtp),
            (192, Kind::Other),
        ] {
            assert_eq!(kind(&[first, 0]), want, "first byte {first}");
        }
        assert_eq!(kind(&[]), Kind::Other);
    }
}
