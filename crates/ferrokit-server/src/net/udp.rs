//! The shared UDP port: one socket for every participant's ICE, DTLS, SRTP
//! and SCTP traffic.
//!
//! Incoming datagrams are routed by source address; an unknown address is
//! learned from the USERNAME of its first STUN binding request, whose server
//! half is the ufrag a transport registered with [`UdpMux::register`].
//!
//! A transport may also take its datagrams where they are read
//! ([`InlineReceiver`]): the receive loop then hands it each datagram as a
//! slice, with the batch its replies go out in, instead of copying the
//! datagram into the transport's queue and waking its task.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, Weak};
use std::time::Instant;

use tokio::io::unix::AsyncFd;
use tokio::io::Interest;
use tokio::sync::mpsc;

use super::batch::{RxBatch, TxBatch};
use super::stun;

/// One received datagram, for the transport that owns its 5-tuple.
#[derive(Debug)]
pub struct Datagram {
    /// Which of the participant's peer connections it belongs to.
    pub pc: usize,
    /// Remote address.
    pub source: SocketAddr,
    /// Receive time.
    pub at: Instant,
    /// Payload.
    pub contents: Vec<u8>,
}

/// The shared port's socket: non-blocking, registered with the reactor for
/// reading only. Sends ([`super::TxBatch::send`]) are made without waiting
/// for readiness; with write interest too, each datagram the kernel freed
/// after sending (on loopback, right after delivering it) raised an
/// `EPOLLOUT` edge that woke a runtime thread parked in `epoll_wait`.
pub type MediaSocket = AsyncFd<std::net::UdpSocket>;

/// A transport that handles some of its datagrams in the receive loop.
pub trait InlineReceiver: Send + Sync {
    /// Handles one datagram of peer connection `pc` from `source`, read at
    /// `at`, queueing whatever it sends in reply in `batch` (sent once the
    /// loop has handled every datagram of one read). Returns false, having
    /// done nothing, when the datagram must go through the transport's
    /// queue instead. Called on the receive loop, so it must not block for
    /// long: every participant's datagrams wait behind it.
    fn receive_inline(
        &self,
        pc: usize,
        source: SocketAddr,
        at: Instant,
        contents: &[u8],
        batch: &mut TxBatch,
    ) -> bool;
}

/// Where datagrams for one peer connection go.
#[derive(Clone)]
struct Route {
    pc: usize,
    tx: mpsc::Sender<Datagram>,
    /// Tried first, while the queue is empty (a datagram handled here
    /// must not overtake one still queued).
    inline: Option<Weak<dyn InlineReceiver>>,
}

#[derive(Default)]
struct Routes {
    by_ufrag: HashMap<String, Route>,
    by_addr: HashMap<SocketAddr, Route>,
}

/// The shared UDP socket and its routing table.
#[derive(Clone)]
pub struct UdpMux {
    socket: Arc<MediaSocket>,
    routes: Arc<Mutex<Routes>>,
}

/// Kernel receive and send buffer asked for on the shared port, bytes. The
/// kernel caps it at `net.core.rmem_max` / `wmem_max` (4 MiB on our test
/// machines, 208 KiB on a stock kernel). With the default 208 KiB, a
/// receive loop held up for ~100 ms in a 200-subscriber room overflowed it
/// (`RcvbufErrors`), and a lost publisher packet is lost for every
/// subscriber.
pub const SOCKET_BUFFER_BYTES: usize = 8 << 20;

/// A non-blocking UDP socket bound to `addr` with [`SOCKET_BUFFER_BYTES`]
/// buffers (best effort: a smaller cap is not an error).
fn bind_with_buffers(addr: SocketAddr) -> std::io::Result<std::net::UdpSocket> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    if let Err(e) = socket.set_recv_buffer_size(SOCKET_BUFFER_BYTES) {
        tracing::warn!("udp: receive buffer of {SOCKET_BUFFER_BYTES} bytes refused: {e}");
    }
    if let Err(e) = socket.set_send_buffer_size(SOCKET_BUFFER_BYTES) {
        tracing::warn!("udp: send buffer of {SOCKET_BUFFER_BYTES} bytes refused: {e}");
    }
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    Ok(socket.into())
}

/// Datagrams buffered per participant before new ones are dropped.
pub const QUEUE_LEN: usize = 1024;

impl UdpMux {
    /// Binds `addr` and starts the receive loop on the current runtime.
    pub async fn bind(addr: SocketAddr) -> std::io::Result<Self> {
        let socket = Arc::new(AsyncFd::with_interest(
            bind_with_buffers(addr)?,
            Interest::READABLE,
        )?);
        let mux = Self {
            socket,
            routes: Arc::default(),
        };
        let recv = mux.clone();
        tokio::spawn(async move { recv.recv_loop().await });
        Ok(mux)
    }

    /// The bound address.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.socket.get_ref().local_addr()
    }

    /// The socket, for sending.
    pub fn socket(&self) -> &Arc<MediaSocket> {
        &self.socket
    }

    /// Routes datagrams whose STUN USERNAME starts with `ufrag` (and then
    /// their source address) to `tx`, tagged with `pc`; `inline`, while it
    /// lives, is offered each of them first.
    pub fn register(
        &self,
        ufrag: &str,
        pc: usize,
        tx: mpsc::Sender<Datagram>,
        inline: Option<Weak<dyn InlineReceiver>>,
    ) {
        if let Ok(mut r) = self.routes.lock() {
            r.by_ufrag
                .insert(ufrag.to_string(), Route { pc, tx, inline });
        }
    }

    /// Forgets `ufrag` and every address learned for it.
    pub fn unregister(&self, ufrag: &str) {
        if let Ok(mut r) = self.routes.lock() {
            if let Some(route) = r.by_ufrag.remove(ufrag) {
                r.by_addr
                    .retain(|_, v| !(v.tx.same_channel(&route.tx) && v.pc == route.pc));
            }
        }
    }

    fn route(&self, source: SocketAddr, contents: &[u8]) -> Option<Route> {
        let mut r = self.routes.lock().ok()?;
        if let Some(route) = r.by_addr.get(&source) {
            if !route.tx.is_closed() {
                return Some(route.clone());
            }
            r.by_addr.remove(&source);
        }
        let ufrag = stun::local_ufrag(contents)?;
        let route = r.by_ufrag.get(ufrag)?.clone();
        r.by_addr.insert(source, route.clone());
        Some(route)
    }

    async fn recv_loop(self) {
        let mut batch = RxBatch::default();
        let mut replies = TxBatch::default();
        loop {
            let mut ready = match self.socket.readable().await {
                Ok(ready) => ready,
                Err(e) => {
                    tracing::warn!("udp: socket not readable: {e}");
                    return;
                }
            };
            // `try_io` clears the readiness when the socket has nothing left.
            let Ok(received) = ready.try_io(|socket| batch.recv(socket.get_ref())) else {
                continue;
            };
            let n = match received {
                Ok(n) => n,
                Err(e) => {
                    // ICMP port unreachable and the like surface here; keep going.
                    tracing::debug!("udp recv: {e}");
                    continue;
                }
            };
            let at = Instant::now();
            for i in 0..n {
                let Some((Some(source), contents)) = batch.get(i) else {
                    continue;
                };
                let Some(route) = self.route(source, contents) else {
                    tracing::trace!(%source, "datagram from unknown source dropped");
                    continue;
                };
                if let Some(inline) = route.inline.as_ref().and_then(Weak::upgrade) {
                    if route.tx.capacity() == route.tx.max_capacity()
                        && inline.receive_inline(route.pc, source, at, contents, &mut replies)
                    {
                        continue;
                    }
                }
                let d = Datagram {
                    pc: route.pc,
                    source,
                    at,
                    contents: contents.to_vec(),
                };
                if route.tx.try_send(d).is_err() {
                    tracing::debug!(%source, "participant queue full, datagram dropped");
                }
            }
            replies.send(self.socket.get_ref());
        }
    }
}
