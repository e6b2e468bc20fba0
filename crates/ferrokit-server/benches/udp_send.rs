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

use std::net::{SocketAddr, UdpSocket as StdSocket};
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

fn bench_sendmmsg(c: &mut Criterion) {
    // Non-blocking and in no reactor, as the server's shared port is for
    // sending (`ferrokit_server::net::MediaSocket`).
    let socket = StdSocket::bind("127.0.0.1:0").expect("bind the sending socket");
    socket.set_nonblocking(true).expect("non-blocking sender");
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

criterion_group!(benches, bench_sendmmsg);
criterion_main!(benches);
