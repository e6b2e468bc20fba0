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

/// The shared port's socket for sending ([`super::TxBatch::send`]):
/// non-blocking and in no reactor, so nothing waits on it (see
/// [`super::port`]); sends are made without waiting for readiness.
pub type MediaSocket = std::net::UdpSocket;

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
    inline: Weak<dyn InlineReceiver>,
}

#[derive(Default)]
struct Routes {
    by_ufrag: HashMap<String, Route>,
    by_addr: HashMap<SocketAddr, Route>,
}

/// The shared UDP port's sockets and its routing table.
#[derive(Clone)]
pub struct UdpMux {
    /// Registered with the reactor for reading only: with write interest
    /// too, each datagram the kernel freed after sending raised an
    /// `EPOLLOUT` edge that woke a runtime thread parked in `epoll_wait`.
    recv: Arc<AsyncFd<std::net::UdpSocket>>,
    send: Arc<MediaSocket>,
    routes: Arc<Mutex<Routes>>,
}

/// Datagrams buffered per participant before new ones are dropped.
pub const QUEUE_LEN: usize = 1024;

impl UdpMux {
    /// Binds `addr` and starts the receive loop on the current runtime.
    pub async fn bind(addr: SocketAddr) -> std::io::Result<Self> {
        let port = super::port::bind(addr)?;
        // Without a pair, the receiving socket sends too (a second fd).
        let send = match port.send {
            Some(send) => send,
            None => port.recv.try_clone()?,
        };
        let mux = Self {
            recv: Arc::new(AsyncFd::with_interest(port.recv, Interest::READABLE)?),
            send: Arc::new(send),
            routes: Arc::default(),
        };
        let recv = mux.clone();
        tokio::spawn(async move { recv.recv_loop().await });
        Ok(mux)
    }

    /// The bound address.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.recv.get_ref().local_addr()
    }

    /// The socket, for sending.
    pub fn socket(&self) -> &Arc<MediaSocket> {
        &self.send
    }

    /// Routes datagrams whose STUN USERNAME starts with `ufrag` (and then
    /// their source address) to `tx`, tagged with `pc`; `inline`, while it
    /// lives, is offered each of them first.
    pub fn register(
        &self,
        ufrag: &str,
        pc: usize,
        tx: mpsc::Sender<Datagram>,
        inline: Weak<dyn InlineReceiver>,
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
            let mut ready = match self.recv.readable().await {
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
                if let Some(inline) = route.inline.upgrade() {
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
            replies.send(&*self.send);
        }
    }
}
