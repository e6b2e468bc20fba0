//! UDP generic segmentation offload (`UDP_SEGMENT`, udp(7); Linux 4.18):
//! consecutive datagrams of a batch to one destination go out as one
//! message (see [`super::batch`]). The stack builds, routes and queues one
//! buffer, cut into the original datagrams on its way out (by the NIC, or
//! by the kernel just before the device), instead of doing all of that per
//! datagram. The receiver sees the same datagrams.
//!
//! Which datagrams may share a message, the control message that carries
//! the segment size, and the process-wide switch that turns GSO off once
//! the kernel refuses it.

use std::sync::atomic::AtomicBool;

use socket2::SockAddr;
use str0m::net::DatagramSend;

/// Most datagrams one GSO message carries (`UDP_MAX_SEGMENTS` is 64 on
/// kernels before 6.4).
pub const MAX_SEGMENTS: usize = 64;
/// Most bytes one GSO message carries (one IP datagram's payload).
pub const MAX_BYTES: usize = 65_000;

/// Set once the kernel refused a GSO message (no `UDP_SEGMENT` support, or
/// a route that cannot take it): from then on every datagram goes alone,
/// in every batch of the process.
pub static REFUSED: AtomicBool = AtomicBool::new(false);

/// How many datagrams from the start of `items` one GSO message can carry:
/// the same destination, each but the last exactly as long as the first
/// (the segment size), the last no longer, within [`MAX_SEGMENTS`]
/// and [`MAX_BYTES`]. 1 when nothing can join the first.
pub fn run(items: &[(SockAddr, DatagramSend)]) -> usize {
    let Some((dest, first)) = items.first() else {
        return 0;
    };
    let size = first.len();
    let mut bytes = size;
    let mut n = 1;
    while let Some((to, next)) = items.get(n) {
        let previous_full = items[n - 1].1.len() == size;
        if n == MAX_SEGMENTS
            || !previous_full
            || to != dest
            || next.len() > size
            || next.is_empty()
            || bytes + next.len() > MAX_BYTES
        {
            break;
        }
        bytes += next.len();
        n += 1;
    }
    n
}

/// A control message giving a GSO message's segment size (`UDP_SEGMENT`),
/// laid out as `CMSG_SPACE(2)` bytes: the header, then the u16 at
/// `CMSG_DATA`.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct Control {
    hdr: libc::cmsghdr,
    segment: u16,
    _pad: [u8; 6],
}

/// `CMSG_LEN` of a u16.
#[allow(unsafe_code)]
// SAFETY: CMSG_LEN is arithmetic on its argument.
const CMSG_LEN_U16: libc::c_uint = unsafe { libc::CMSG_LEN(std::mem::size_of::<u16>() as _) };

impl Control {
    /// The control message for segments of `segment` bytes.
    pub fn new(segment: u16) -> Self {
        let mut hdr = EMPTY_CMSGHDR;
        hdr.cmsg_len = CMSG_LEN_U16 as _;
        hdr.cmsg_level = libc::SOL_UDP;
        hdr.cmsg_type = libc::UDP_SEGMENT;
        Self {
            hdr,
            segment,
            _pad: [0; 6],
        }
    }
}

/// A control message header with nothing set.
const EMPTY_CMSGHDR: libc::cmsghdr = libc::cmsghdr {
    cmsg_len: 0,
    cmsg_level: 0,
    cmsg_type: 0,
};

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::SocketAddr;

    #[test]
    fn gso_runs_stop_at_a_new_destination_a_longer_datagram_or_after_a_short_one() {
        let a = SockAddr::from("127.0.0.1:1000".parse::<SocketAddr>().expect("addr"));
        let b = SockAddr::from("127.0.0.1:1001".parse::<SocketAddr>().expect("addr"));
        let items = |plan: &[(&SockAddr, usize)]| -> Vec<(SockAddr, DatagramSend)> {
            plan.iter()
                .map(|(to, len)| ((*to).clone(), vec![0u8; *len].into()))
                .collect()
        };
        assert_eq!(run(&items(&[(&a, 100), (&a, 100), (&a, 40), (&a, 100)])), 3);
        assert_eq!(run(&items(&[(&a, 100), (&a, 100), (&b, 100)])), 2);
        assert_eq!(run(&items(&[(&a, 100), (&a, 120)])), 1);
        assert_eq!(run(&items(&[(&a, 100)])), 1);
        assert_eq!(run(&items(&[])), 0);
        let many = vec![(&a, 1100); 100];
        assert_eq!(run(&items(&many)), MAX_BYTES / 1100, "byte cap");
        let small = vec![(&a, 10); 100];
        assert_eq!(run(&items(&small)), MAX_SEGMENTS, "segment cap");
        assert_eq!(
            CMSG_LEN_U16 as usize + 6,
            std::mem::size_of::<Control>(),
            "CMSG_SPACE(2): the u16 then padding to 8"
        );
    }
}
