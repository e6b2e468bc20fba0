//! The kernel's share of forwarding (issue 5): what one forwarded datagram
//! costs in `sendmmsg(2)` over loopback, the floor under any userspace work.
//!
//! Run: `cargo bench -p ferrokit-server --bench udp_send`.
//!
//! `udp/sendmmsg_loopback/N`: [`TxBatch::send`] of N audio-sized datagrams
//! (130 bytes: an SRTP-protected Opus packet), each to its own loopback
//! socket, as an egress worker sends one packet to N subscribers. Only the
//! send is timed; the receivers are drained between iterations. On
//! loopback the sending call also delivers each datagram into its
//! receiver's socket (the receive half of the network stack runs as
//! softirq work in the sender's context), so the figure is the sending
//! process's kernel time per datagram as `bench/run.py` counts it, where
//! the load test's subscribers receive on the same machine. Throughput is
//! in datagrams.
//!
//! `udp/sendmmsg_loopback_epoll/200`: the same send, but the 200 receivers
//! are tokio sockets read by tasks on a runtime thread of their own, as the
//! load test's subscribers are: the thread sleeps in `epoll_wait`, and each
//! datagram's delivery also runs epoll's wakeup path. Timed is the sending
//! thread's CPU time (`CLOCK_THREAD_CPUTIME_ID`), what `bench/run.py`
//! counts, not the wall time, which also counts waiting for the receiving
//! thread on shared locks. Each iteration waits until the readers got its
//! datagrams (bounded).

use std::net::{SocketAddr, UdpSocket as StdSocket};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use ferrokit_server::net::batch::TxBatch;

/// An SRTP-protected Opus packet: 12 header + 8 extensions + 100 payload +
/// 16 GCM tag, rounded.
const DATAGRAM_LEN: usize = 130;

/// Receiving sockets bound on loopback, non-blocking.
fn receivers(n: usize) -> Vec<StdSocket> {
    (0..n)
        .map(|_| {
            let s = StdSocket::bind("127.0.0.1:0").expect("bind a loopback receiver");
            s.set_nonblocking(true).expect("non-blocking receiver");
            s
        })
        .collect()
}

/// Reads everything queued on each receiver; returns the datagrams read.
fn drain(receivers: &[StdSocket]) -> usize {
    let mut buf = [0u8; 2048];
    let mut n = 0;
    for r in receivers {
        while r.recv(&mut buf).is_ok() {
            n += 1;
        }
    }
    n
}

/// A sending socket as the server's shared port has one: non-blocking and
/// in no reactor (`ferrokit_server::net::MediaSocket`).
fn sender() -> StdSocket {
    let socket = StdSocket::bind("127.0.0.1:0").expect("bind the sending socket");
    socket.set_nonblocking(true).expect("non-blocking sender");
    socket
}

fn bench_sendmmsg(c: &mut Criterion) {
    let socket = sender();
    let mut g = c.benchmark_group("udp");
    g.measurement_time(Duration::from_secs(4));
    for n in [1usize, 64, 200] {
        let rx = receivers(n);
        let to: Vec<SocketAddr> = rx
            .iter()
            .map(|r| r.local_addr().expect("receiver address"))
            .collect();
        let mut batch = TxBatch::default();
        g.throughput(Throughput::Elements(n as u64));
        g.bench_function(BenchmarkId::new("sendmmsg_loopback", n), |b| {
            b.iter_custom(|iters| {
                let mut spent = Duration::ZERO;
                for _ in 0..iters {
                    for &addr in &to {
                        batch.push(addr, vec![0x80u8; DATAGRAM_LEN].into());
                    }
                    let start = Instant::now();
                    let sent = batch.send(&socket);
                    spent += start.elapsed();
                    assert_eq!(sent.sent, n, "every datagram sent: {sent:?}");
                    assert_eq!(drain(&rx), n, "every datagram delivered");
                }
                spent
            })
        });
    }
    g.finish();
}

/// The calling thread's CPU time so far, user and system (including the
/// softirq work the kernel runs in its context), in ns:
/// clock_gettime(CLOCK_THREAD_CPUTIME_ID). (getrusage rounds small steps
/// away.)
#[allow(unsafe_code)]
fn thread_cpu() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; the call only writes it
    // and cannot fail for this clock with a valid pointer.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    Duration::new(
        ts.tv_sec.max(0) as u64,
        ts.tv_nsec.clamp(0, 999_999_999) as u32,
    )
}

fn bench_sendmmsg_epoll(c: &mut Criterion) {
    const N: usize = 200;
    let received = Arc::new(AtomicUsize::new(0));
    let (addr_tx, addr_rx) = std::sync::mpsc::channel();
    let counter = received.clone();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .build()
            .expect("receivers' runtime");
        rt.block_on(async move {
            for _ in 0..N {
                let s = tokio::net::UdpSocket::bind("127.0.0.1:0")
                    .await
                    .expect("bind a receiver");
                addr_tx
                    .send(s.local_addr().expect("receiver address"))
                    .expect("report address");
                let counter = counter.clone();
                tokio::spawn(async move {
                    let mut buf = [0u8; 2048];
                    while s.recv_from(&mut buf).await.is_ok() {
                        counter.fetch_add(1, Ordering::Relaxed);
                    }
                });
            }
            std::future::pending::<()>().await;
        });
    });
    let to: Vec<SocketAddr> = (0..N)
        .map(|_| addr_rx.recv().expect("receiver address"))
        .collect();
    let socket = sender();
    let mut batch = TxBatch::default();
    let mut g = c.benchmark_group("udp");
    g.measurement_time(Duration::from_secs(4));
    g.throughput(Throughput::Elements(N as u64));
    g.bench_function(BenchmarkId::new("sendmmsg_loopback_epoll", N), |b| {
        b.iter_custom(|iters| {
            let mut spent = Duration::ZERO;
            for _ in 0..iters {
                for &addr in &to {
                    batch.push(addr, vec![0x80u8; DATAGRAM_LEN].into());
                }
                let want = received.load(Ordering::Relaxed) + N;
                let start = thread_cpu();
                let sent = batch.send(&socket);
                spent += thread_cpu() - start;
                assert_eq!(sent.sent, N, "every datagram sent: {sent:?}");
                let deadline = Instant::now() + Duration::from_secs(5);
                while received.load(Ordering::Relaxed) < want {
                    assert!(Instant::now() < deadline, "receivers got every datagram");
                    std::thread::sleep(Duration::from_micros(200));
                }
            }
            spent
        })
    });
    g.finish();
}

criterion_group!(benches, bench_sendmmsg, bench_sendmmsg_epoll);
criterion_main!(benches);
