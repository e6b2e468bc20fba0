//! The only place with sockets: the shared UDP media port.

pub mod batch;
pub mod demux;
pub mod gso;
pub mod port;
pub mod stun;
pub mod udp;

pub use batch::TxBatch;
pub use udp::{Datagram, InlineReceiver, MediaSocket, UdpMux};
