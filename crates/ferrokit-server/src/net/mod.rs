//! The only place with sockets: the shared UDP media port.

pub mod stun;
pub mod udp;

pub use udp::{Datagram, UdpMux};
