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
//!
//! `udp/sendmmsg_loopback_epoll_paced/200`: the same, one burst every
//! 20 ms, audio's packet interval, as in `bench/run.py`'s audio-200: what
//! the kernel alone costs per forwarded datagram when nothing stays warm
//! between bursts. With `FERROKIT_BENCH_NETNS=ferrokit-bench
//! FERROKIT_BENCH_NETNS_ADDR=10.203.77.2` (after `bench/netns.py`'s setup,
//! as root) both epoll benches' receivers sit behind the veth pair
//! instead (`udp/sendmmsg_veth_epoll*`), so their receive half runs in
//! the pair's NAPI threads.

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
    sender_at("127.0.0.1")
}

/// [`sender`], bound to `ip`.
fn sender_at(ip: &str) -> StdSocket {
    let socket = StdSocket::bind((ip, 0)).expect("bind the sending socket");
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

/// Audio's packet interval (50 packets/s): the gap between the bursts of
/// `sendmmsg_loopback_epoll_paced`.
const AUDIO_INTERVAL: Duration = Duration::from_millis(20);

/// Where the receivers of the epoll benches live: this namespace on
/// loopback, or (with `FERROKIT_BENCH_NETNS=<name>` and
/// `FERROKIT_BENCH_NETNS_ADDR=<ip>`) a network namespace behind a veth
/// pair, as `bench/netns.py` sets up for `bench/run.py --veth`
/// (`ferrokit-bench`, `10.203.77.2`; root only). Returns the namespace,
/// the receivers' address and the address the sender binds.
fn receiver_site() -> (Option<String>, String, &'static str) {
    match std::env::var("FERROKIT_BENCH_NETNS") {
        Ok(name) if !name.is_empty() => {
            let addr = std::env::var("FERROKIT_BENCH_NETNS_ADDR")
                .expect("FERROKIT_BENCH_NETNS_ADDR: the namespace's address");
            (Some(name), addr, "0.0.0.0")
        }
        _ => (None, "127.0.0.1".to_string(), "127.0.0.1"),
    }
}

/// Moves the calling thread into the named network namespace
/// (`/var/run/netns/<name>`, as `ip netns add` creates it); sockets it
/// opens afterwards live there.
#[allow(unsafe_code)]
fn enter_netns(name: &str) {
    use std::os::fd::AsRawFd;
    let ns = std::fs::File::open(format!("/var/run/netns/{name}")).expect("open the namespace");
    // SAFETY: a valid namespace fd; setns only changes this thread's
    // network namespace.
    let rc = unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) };
    assert_eq!(
        rc,
        0,
        "setns into {name}: {}",
        std::io::Error::last_os_error()
    );
}

/// The epoll benches' receivers, and a sender that reaches them.
struct EpollReceivers {
    /// The receivers' addresses.
    to: Vec<SocketAddr>,
    /// Datagrams they received so far.
    received: Arc<AtomicUsize>,
    /// The sending socket ([`sender_at`]).
    socket: StdSocket,
    /// `loopback` or `veth`, for the bench's name.
    site: &'static str,
}

/// `n` tokio UDP sockets read by tasks on a runtime thread of their own,
/// as the load test's subscribers are read ([`receiver_site`] says where).
fn epoll_receivers(n: usize) -> EpollReceivers {
    let (netns, ip, sender_ip) = receiver_site();
    let site = if netns.is_some() { "veth" } else { "loopback" };
    let received = Arc::new(AtomicUsize::new(0));
    let (addr_tx, addr_rx) = std::sync::mpsc::channel();
    let counter = received.clone();
    std::thread::spawn(move || {
        if let Some(name) = &netns {
            enter_netns(name);
        }
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .build()
            .expect("receivers' runtime");
        rt.block_on(async move {
            for _ in 0..n {
                let s = tokio::net::UdpSocket::bind((ip.as_str(), 0))
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
    let to = (0..n)
        .map(|_| addr_rx.recv().expect("receiver address"))
        .collect();
    EpollReceivers {
        to,
        received,
        socket: sender_at(sender_ip),
        site,
    }
}

/// Sends one datagram to each of `to` in one [`TxBatch::send`] and returns
/// the sending thread's CPU time for it; then waits (bounded) until the
/// receivers counted them all.
fn timed_burst(
    socket: &StdSocket,
    batch: &mut TxBatch,
    to: &[SocketAddr],
    received: &AtomicUsize,
) -> Duration {
    for &addr in to {
        batch.push(addr, vec![0x80u8; DATAGRAM_LEN].into());
    }
    let want = received.load(Ordering::Relaxed) + to.len();
    let start = thread_cpu();
    let sent = batch.send(socket);
    let spent = thread_cpu() - start;
    assert_eq!(sent.sent, to.len(), "every datagram sent: {sent:?}");
    let deadline = Instant::now() + Duration::from_secs(5);
    while received.load(Ordering::Relaxed) < want {
        assert!(Instant::now() < deadline, "receivers got every datagram");
        std::thread::sleep(Duration::from_micros(200));
    }
    spent
}

fn bench_sendmmsg_epoll(c: &mut Criterion) {
    const N: usize = 200;
    let EpollReceivers {
        to,
        received,
        socket,
        site,
    } = epoll_receivers(N);
    let mut batch = TxBatch::default();
    let mut g = c.benchmark_group("udp");
    g.measurement_time(Duration::from_secs(4));
    g.throughput(Throughput::Elements(N as u64));
    g.bench_function(BenchmarkId::new(format!("sendmmsg_{site}_epoll"), N), |b| {
        b.iter_custom(|iters| {
            (0..iters)
                .map(|_| timed_burst(&socket, &mut batch, &to, &received))
                .sum()
        })
    });
    // Audio-200's pattern: one burst every 20 ms, so the sender's caches
    // and the receivers' thread go cold in between, as they do in the
    // server. The sleep is not CPU time; only the send is counted.
    g.sampling_mode(criterion::SamplingMode::Flat);
    g.sample_size(10);
    g.measurement_time(Duration::from_secs(8));
    g.bench_function(
        BenchmarkId::new(format!("sendmmsg_{site}_epoll_paced"), N),
        |b| {
            b.iter_custom(|iters| {
                (0..iters)
                    .map(|_| {
                        std::thread::sleep(AUDIO_INTERVAL);
                        timed_burst(&socket, &mut batch, &to, &received)
                    })
                    .sum()
            })
        },
    );
    g.finish();
}

criterion_group!(benches, bench_sendmmsg, bench_sendmmsg_epoll);
criterion_main!(benches);
