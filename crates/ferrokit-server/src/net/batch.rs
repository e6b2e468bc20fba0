//! Batched UDP: the datagrams of many peers, each to its own destination,
//! in one `sendmmsg(2)` call instead of one `sendto(2)` each, and up to
//! [`RX_BATCH`] received with one `recvmmsg(2)`.
//!
//! The egress workers collect what str0m transmits for every subscriber of
//! a forwarded packet and send it all at once; a session task does the same
//! with what one of its wakes produced. The shared port's receive loop takes
//! whatever the kernel has queued in one call.
//!
//! Consecutive datagrams to one destination (the packets of a video frame
//! to one subscriber) go out as one message with UDP generic segmentation
//! offload ([`super::gso`]).

use std::io;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::sync::atomic::Ordering;

use socket2::SockAddr;
use str0m::net::DatagramSend;

use super::gso;

/// Most messages one `sendmmsg` call takes: its headers live on the
/// stack (~5 KiB), so a call allocates nothing; a larger batch takes a few
/// calls.
const MAX_PER_CALL: usize = 64;
/// Datagrams one `recvmmsg` call takes.
pub const RX_BATCH: usize = 32;
/// Bytes per received datagram: above any MTU we announce (a longer
/// datagram is truncated, and then fails to parse).
pub const RX_BUF_LEN: usize = 2048;

/// Buffers of sent datagrams a batch keeps for [`TxBatch::buffer`].
const SPARE_BUFFERS: usize = 256;
/// A sent datagram's buffer is kept only up to this capacity.
const SPARE_CAPACITY: usize = 2048;

/// Datagrams waiting to be sent, in order.
#[derive(Default)]
pub struct TxBatch {
    items: Vec<(SockAddr, DatagramSend)>,
    /// Emptied buffers of sent datagrams, to write new ones into.
    spare: Vec<Vec<u8>>,
}

/// What one [`TxBatch::send`] did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Sent {
    /// Datagrams the kernel took.
    pub sent: usize,
    /// Datagrams dropped: the send buffer was full, or the kernel refused
    /// one (say, an unreachable destination).
    pub dropped: usize,
    /// `sendmmsg` calls made.
    pub calls: usize,
    /// Of the datagrams sent, those that went in GSO messages of several.
    pub coalesced: usize,
}

impl TxBatch {
    /// Queues one datagram for `destination`.
    pub fn push(&mut self, destination: SocketAddr, contents: DatagramSend) {
        self.items.push((SockAddr::from(destination), contents));
    }

    /// An empty buffer to write a datagram into: one a send emptied, so a
    /// steady stream of datagrams allocates nothing.
    pub fn buffer(&mut self) -> Vec<u8> {
        self.spare.pop().unwrap_or_default()
    }

    /// Prefetches the first lines of the buffer [`TxBatch::buffer`] hands
    /// out `ahead` calls from now (see [`crate::prefetch`]).
    pub fn prefetch_buffer(&self, ahead: usize) {
        let buffer = self
            .spare
            .len()
            .checked_sub(1 + ahead)
            .and_then(|i| self.spare.get(i));
        if let Some(b) = buffer {
            crate::prefetch::lines(b.as_ptr() as usize, 2);
        }
    }

    /// Datagrams queued.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// Nothing queued.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Sends everything queued on `socket` (non-blocking) and empties the
    /// batch. A datagram the kernel refuses is skipped; when the socket's
    /// buffer is full the rest is dropped (UDP: the receiver's NACK or the
    /// next packet recovers), and counted in [`Sent::dropped`].
    ///
    /// The call is made whatever the reactor knows of the socket's
    /// readiness: the shared port is registered for reading only (see
    /// `super::udp`), since with write interest every datagram the kernel
    /// freed woke a thread parked in `epoll_wait`.
    pub fn send(&mut self, socket: &impl AsRawFd) -> Sent {
        let mut done = Sent::default();
        let mut next = 0;
        while next < self.items.len() {
            let end = (next + MAX_PER_CALL).min(self.items.len());
            done.calls += 1;
            let gso = !gso::REFUSED.load(Ordering::Relaxed);
            match sendmmsg(socket, &self.items[next..end], gso) {
                Ok(call) => {
                    done.sent += call.datagrams;
                    done.coalesced += call.coalesced;
                    next += call.datagrams;
                }
                Err(e) if e.error.kind() == io::ErrorKind::WouldBlock => break,
                Err(e)
                    if e.gso
                        && matches!(e.error.raw_os_error(), Some(libc::EIO | libc::EINVAL)) =>
                {
                    // Sent again one by one, and so is everything after.
                    if !gso::REFUSED.swap(true, Ordering::Relaxed) {
                        tracing::warn!("udp: GSO refused ({}); datagrams go one by one", e.error);
                    }
                }
                Err(e) => {
                    // The first message was refused: skip it, send the rest.
                    tracing::debug!("udp send: {}", e.error);
                    done.dropped += e.datagrams;
                    next += e.datagrams;
                }
            }
        }
        done.dropped += self.items.len() - next;
        for (_, d) in self.items.drain(..) {
            let mut v = Vec::from(d);
            if self.spare.len() < SPARE_BUFFERS && v.capacity() <= SPARE_CAPACITY {
                v.clear();
                self.spare.push(v);
            }
        }
        done
    }
}

/// What one [`sendmmsg`] call sent.
struct CallSent {
    /// Datagrams the kernel took (at least one).
    datagrams: usize,
    /// Of them, those in GSO messages of several.
    coalesced: usize,
}

/// A [`sendmmsg`] call the kernel refused at its first message.
struct CallError {
    error: io::Error,
    /// Datagrams in that first message.
    datagrams: usize,
    /// Whether it was a GSO message of several.
    gso: bool,
}

/// One `sendmmsg(2)` of `items` (at most [`MAX_PER_CALL`] datagrams),
/// runs of them as GSO messages when `gso` ([`gso::run`]). Returns how
/// many datagrams the kernel took, or the error of the first message.
///
/// The workspace denies `unsafe`; this is its one exception, the FFI call
/// itself (no crate in our tree wraps `sendmmsg` for several destinations).
#[allow(unsafe_code)]
fn sendmmsg(
    socket: &impl AsRawFd,
    items: &[(SockAddr, DatagramSend)],
    gso: bool,
) -> Result<CallSent, CallError> {
    let items = &items[..items.len().min(MAX_PER_CALL)];
    let mut iovecs = [EMPTY_IOVEC; MAX_PER_CALL];
    for (iov, (_, d)) in iovecs.iter_mut().zip(items) {
        *iov = libc::iovec {
            iov_base: d.as_ptr() as *mut libc::c_void,
            iov_len: d.len(),
        };
    }
    // Messages: (first datagram, datagrams); a control message for each
    // message of several, filled before any pointer to them is taken.
    let mut runs = [(0usize, 0usize); MAX_PER_CALL];
    let mut controls = [gso::Control::new(0); MAX_PER_CALL];
    let mut count = 0;
    let mut i = 0;
    while i < items.len() {
        let run = if gso { gso::run(&items[i..]).max(1) } else { 1 };
        runs[count] = (i, run);
        if run > 1 {
            // A datagram's length fits u16 (a run is within gso::MAX_BYTES).
            controls[count] = gso::Control::new(items[i].1.len() as u16);
        }
        count += 1;
        i += run;
    }
    let mut msgs: [libc::mmsghdr; MAX_PER_CALL] = std::array::from_fn(|_| empty_mmsghdr());
    for (m, (msg, &(first, run))) in msgs.iter_mut().zip(&runs[..count]).enumerate() {
        let addr = &items[first].0;
        *msg = mmsghdr(
            addr.as_ptr() as *mut libc::c_void,
            addr.len(),
            &mut iovecs[first],
        );
        msg.msg_hdr.msg_iovlen = run as _;
        if run > 1 {
            msg.msg_hdr.msg_control = (&mut controls[m] as *mut gso::Control).cast();
            msg.msg_hdr.msg_controllen = std::mem::size_of::<gso::Control>() as _;
        }
    }
    // SAFETY: the first `count` headers' name, iovec and control pointers
    // point into `items`, `iovecs` and `controls`, which outlive the call
    // and are not touched while the pointers live; each header's iovecs
    // are `msg_iovlen` consecutive initialised entries. The kernel only
    // reads them (and writes `msg_len`).
    let n = unsafe {
        libc::sendmmsg(
            socket.as_raw_fd(),
            msgs.as_mut_ptr(),
            count as libc::c_uint,
            0,
        )
    };
    if n < 0 {
        let run = runs[0].1;
        return Err(CallError {
            error: io::Error::last_os_error(),
            datagrams: run,
            gso: run > 1,
        });
    }
    let sent = &runs[..(n as usize).min(count)];
    Ok(CallSent {
        datagrams: sent.iter().map(|r| r.1).sum(),
        coalesced: sent.iter().filter(|r| r.1 > 1).map(|r| r.1).sum(),
    })
}

/// An iovec pointing nowhere (an unused slot).
const EMPTY_IOVEC: libc::iovec = libc::iovec {
    iov_base: std::ptr::null_mut(),
    iov_len: 0,
};

/// A message header with no address and no buffer (an unused slot).
fn empty_mmsghdr() -> libc::mmsghdr {
    mmsghdr(std::ptr::null_mut(), 0, std::ptr::null_mut())
}

/// One message header for `sendmmsg`/`recvmmsg`: the socket address at
/// `name` (`name_len` bytes) and the single buffer `iov`.
#[allow(unsafe_code)]
fn mmsghdr(
    name: *mut libc::c_void,
    name_len: libc::socklen_t,
    iov: *mut libc::iovec,
) -> libc::mmsghdr {
    // SAFETY: an all-zero msghdr is valid (no control data, no flags).
    let mut hdr: libc::msghdr = unsafe { std::mem::zeroed() };
    hdr.msg_name = name;
    hdr.msg_namelen = name_len;
    hdr.msg_iov = iov;
    hdr.msg_iovlen = 1;
    libc::mmsghdr {
        msg_hdr: hdr,
        msg_len: 0,
    }
}

/// Buffers for receiving up to [`RX_BATCH`] datagrams in one call.
pub struct RxBatch {
    bufs: Vec<u8>,
    received: Vec<(Option<SocketAddr>, usize)>,
}

impl Default for RxBatch {
    fn default() -> Self {
        Self {
            bufs: vec![0; RX_BATCH * RX_BUF_LEN],
            received: Vec::with_capacity(RX_BATCH),
        }
    }
}

impl RxBatch {
    /// Receives what is queued on `socket` (at most [`RX_BATCH`]) without
    /// waiting; `WouldBlock` when nothing is (the caller awaits
    /// readiness). Returns how many datagrams [`RxBatch::get`] holds.
    pub fn recv(&mut self, socket: &impl AsRawFd) -> io::Result<usize> {
        self.received.clear();
        recvmmsg(socket, &mut self.bufs, &mut self.received)
    }

    /// Datagram `i` of the last [`RxBatch::recv`]: its source (None for an
    /// address family we do not speak) and contents.
    pub fn get(&self, i: usize) -> Option<(Option<SocketAddr>, &[u8])> {
        let (source, len) = *self.received.get(i)?;
        let start = i * RX_BUF_LEN;
        self.bufs
            .get(start..start + len.min(RX_BUF_LEN))
            .map(|b| (source, b))
    }
}

/// One `recvmmsg(2)` into `bufs` (consecutive [`RX_BUF_LEN`] slots);
/// appends each datagram's source and length to `out`.
///
/// The workspace denies `unsafe`; the exceptions are the FFI calls
/// themselves ([`sendmmsg`], this one, [`mmsghdr`]).
#[allow(unsafe_code)]
fn recvmmsg(
    socket: &impl AsRawFd,
    bufs: &mut [u8],
    out: &mut Vec<(Option<SocketAddr>, usize)>,
) -> io::Result<usize> {
    use socket2::SockAddrStorage;
    // Headers, iovecs and addresses on the stack (~7 KiB): no allocation.
    let slots = (bufs.len() / RX_BUF_LEN).min(RX_BATCH);
    let mut names: [SockAddrStorage; RX_BATCH] = std::array::from_fn(|_| SockAddrStorage::zeroed());
    let mut iovecs = [EMPTY_IOVEC; RX_BATCH];
    let mut msgs: [libc::mmsghdr; RX_BATCH] = std::array::from_fn(|_| empty_mmsghdr());
    let name_len = std::mem::size_of::<SockAddrStorage>() as libc::socklen_t;
    for (((msg, iov), name), buf) in msgs
        .iter_mut()
        .zip(iovecs.iter_mut())
        .zip(names.iter_mut())
        .zip(bufs.chunks_exact_mut(RX_BUF_LEN))
    {
        *iov = libc::iovec {
            iov_base: buf.as_mut_ptr() as *mut libc::c_void,
            iov_len: buf.len(),
        };
        *msg = mmsghdr(
            name as *mut SockAddrStorage as *mut libc::c_void,
            name_len,
            iov,
        );
    }
    // SAFETY: each header's name and iovec point into `names` and `bufs`
    // (through `iovecs`), which outlive the call and are as long as the
    // lengths given; MSG_DONTWAIT: the socket is non-blocking anyway.
    let n = unsafe {
        libc::recvmmsg(
            socket.as_raw_fd(),
            msgs.as_mut_ptr(),
            slots as libc::c_uint,
            libc::MSG_DONTWAIT,
            std::ptr::null_mut(),
        )
    };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    let n = n as usize;
    for (msg, name) in msgs.iter().zip(names).take(n) {
        // SAFETY: the kernel wrote a socket address of `msg_namelen` bytes
        // into `name`.
        let addr = unsafe { socket2::SockAddr::new(name, msg.msg_hdr.msg_namelen) };
        out.push((addr.as_socket(), msg.msg_len as usize));
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::UdpSocket;

    /// Sends `batch` on `tx` once it is writable (within 5 s).
    async fn send_all(batch: &mut TxBatch, tx: &UdpSocket) -> Sent {
        tokio::time::timeout(std::time::Duration::from_secs(5), async {
            tx.writable().await.expect("writable");
            batch.send(tx)
        })
        .await
        .expect("send within 5 s")
    }

    /// The next datagram on `sock` (within 5 s), into `buf`: its length.
    async fn recv_within(sock: &UdpSocket, buf: &mut [u8]) -> usize {
        tokio::time::timeout(std::time::Duration::from_secs(5), sock.recv(buf))
            .await
            .expect("datagram within 5 s")
            .expect("recv")
    }

    #[tokio::test]
    async fn sends_to_several_destinations_in_order() {
        let tx = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
        let a = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
        let b = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
        let (aa, ba) = (a.local_addr().expect("addr"), b.local_addr().expect("addr"));
        let mut batch = TxBatch::default();
        for i in 0..5u8 {
            batch.push(
                if i % 2 == 0 { aa } else { ba },
                vec![i; 10 + i as usize].into(),
            );
        }
        assert_eq!(batch.len(), 5);
        let sent = send_all(&mut batch, &tx).await;
        assert_eq!(
            sent,
            Sent {
                sent: 5,
                dropped: 0,
                calls: 1,
                coalesced: 0,
            }
        );
        assert!(batch.is_empty());
        let mut buf = [0u8; 64];
        for (sock, want) in [(&a, &[0u8, 2, 4][..]), (&b, &[1, 3][..])] {
            for w in want {
                let n = recv_within(sock, &mut buf).await;
                assert_eq!(n, 10 + *w as usize);
                assert!(buf[..n].iter().all(|x| x == w));
            }
        }
    }

    #[tokio::test]
    async fn a_batch_larger_than_one_call_takes_several() {
        let tx = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
        let rx = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
        let to = rx.local_addr().expect("addr");
        let mut batch = TxBatch::default();
        let total = MAX_PER_CALL * 2 + 10;
        for i in 0..total {
            batch.push(to, vec![(i % 251) as u8; 20].into());
        }
        let sent = send_all(&mut batch, &tx).await;
        assert_eq!(sent.sent, total);
        assert_eq!(sent.dropped, 0);
        assert_eq!(sent.calls, 3);
        let mut buf = [0u8; 64];
        for i in 0..total {
            let n = recv_within(&rx, &mut buf).await;
            assert_eq!(
                &buf[..n],
                &[(i % 251) as u8; 20][..],
                "datagram {i} in order"
            );
        }
    }

    /// Runs to one destination go as GSO messages (full-size datagrams,
    /// then at most one shorter); the receivers get the same datagrams in
    /// the same order.
    #[tokio::test]
    async fn runs_to_one_destination_go_as_gso_messages_and_arrive_as_sent() {
        let tx = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
        let a = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
        let b = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
        let (aa, ba) = (a.local_addr().expect("addr"), b.local_addr().expect("addr"));
        // a: 3 full + 1 short (one message), then a full one after the
        // short (a new run); b: a lone one; a: a larger one (a new run).
        let plan: [(SocketAddr, usize); 7] = [
            (aa, 1200),
            (aa, 1200),
            (aa, 1200),
            (aa, 500),
            (aa, 1200),
            (ba, 300),
            (aa, 1300),
        ];
        let mut batch = TxBatch::default();
        for (i, &(to, len)) in plan.iter().enumerate() {
            batch.push(to, vec![i as u8; len].into());
        }
        let sent = send_all(&mut batch, &tx).await;
        assert_eq!(
            sent,
            Sent {
                sent: 7,
                dropped: 0,
                calls: 1,
                coalesced: 4,
            }
        );
        let mut buf = [0u8; 2048];
        for (i, &(to, len)) in plan.iter().enumerate() {
            let sock = if to == aa { &a } else { &b };
            let n = recv_within(sock, &mut buf).await;
            assert_eq!(n, len, "datagram {i}'s length");
            assert!(
                buf[..n].iter().all(|x| *x == i as u8),
                "datagram {i} in order"
            );
        }
    }

    #[tokio::test]
    async fn sent_buffers_are_handed_out_again_empty() {
        let tx = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
        let to = tx.local_addr().expect("addr");
        let mut batch = TxBatch::default();
        assert_eq!(batch.buffer().capacity(), 0, "nothing sent yet");
        let mut b = batch.buffer();
        b.extend_from_slice(&[7; 100]);
        let ptr = b.as_ptr();
        batch.push(to, b.into());
        // Too large to keep.
        batch.push(to, vec![0; SPARE_CAPACITY + 1].into());
        send_all(&mut batch, &tx).await;
        let again = batch.buffer();
        assert!(again.is_empty() && again.capacity() >= 100);
        assert_eq!(again.as_ptr(), ptr, "the same allocation");
        assert_eq!(batch.buffer().capacity(), 0, "the large one was not kept");
    }

    #[tokio::test]
    async fn receives_several_datagrams_in_one_call() {
        let rx = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
        let tx = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
        let to = rx.local_addr().expect("addr");
        for i in 0..3u8 {
            tx.send_to(&[i; 7], to).await.expect("send");
        }
        let mut batch = RxBatch::default();
        let mut got = Vec::new();
        tokio::time::timeout(std::time::Duration::from_secs(5), async {
            while got.len() < 3 {
                rx.readable().await.expect("readable");
                match rx.try_io(tokio::io::Interest::READABLE, || batch.recv(&rx)) {
                    Ok(n) => {
                        for i in 0..n {
                            let (source, contents) = batch.get(i).expect("datagram");
                            got.push((source, contents.to_vec()));
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(e) => panic!("recvmmsg: {e}"),
                }
            }
        })
        .await
        .expect("three datagrams within 5 s");
        let from = tx.local_addr().expect("addr");
        for (i, (source, contents)) in got.iter().enumerate() {
            assert_eq!(*source, Some(from));
            assert_eq!(contents, &vec![i as u8; 7]);
        }
        assert_eq!(got.len(), 3);
    }
}
