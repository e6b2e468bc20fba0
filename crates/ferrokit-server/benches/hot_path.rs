//! Micro-benchmarks for the forwarding hot path (issue 5).
//!
//! Run: `cargo bench -p ferrokit-server --bench hot_path`
//! (a subset: append a filter, e.g. `-- fanout/`). Results and how to read
//! them: `bench/README.md`, section "Micro-benchmarks".
//!
//! Groups, all per forwarded packet:
//! - `munge/*`: [`Downtrack::on_packet`], audio, one video layer, and
//!   simulcast with the subscriber switching layers.
//! - `fanout/*/N`: one published packet to N subscribers, the part the
//!   server does outside str0m: the shared packet and each subscriber's
//!   munge; `fanout/locked` adds the per-subscriber lock an egress worker
//!   takes (`session::egress`; one thread, so uncontended).
//! - `egress/*`: writing one packet into a connected str0m `Rtc` (RTP mode,
//!   the server's own `Peer` configuration) and polling the encrypted
//!   datagram out: SRTP plus str0m's per-packet work. A subscriber costs
//!   about `munge` + `egress`; N subscribers N times that.
//! - `egress/direct_audio_100B`: the same audio packet written and
//!   protected by the server itself (`rtc::direct`), as it sends forwarded
//!   audio after str0m's first packet.
//! - `srtp/*`: the SRTP cipher alone, through str0m's crypto provider (the
//!   calls str0m's SRTP context makes per packet) and, as a floor, through
//!   aws-lc-rs with keys expanded once, and through `rtc::gcm` (what the
//!   direct path uses).

use std::hint::black_box;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use ferrokit_server::rtc::peer::Peer;
use ferrokit_server::sfu::allocation::LayerRates;
use ferrokit_server::sfu::{Codec, Downtrack, ForwardPacket};
use str0m::change::SdpOffer;
use str0m::media::{Direction, MediaKind, Mid, Pt};
use str0m::net::{Protocol, Receive};
use str0m::rtp::{ExtensionValues, RtpWrite, SeqNo};
use str0m::{Candidate, Event, Input, Output, Rtc};

/// Audio-sized payload (Opus at ~32 kbps, 20 ms).
const AUDIO_LEN: usize = 100;
/// Video-sized payload (a full packet of a video frame).
const VIDEO_LEN: usize = 1100;

/// A VP8 payload of `len` bytes: a descriptor with a 15-bit PictureID and
/// TL0PICIDX (RFC 7741 §4.2), as Chrome sends for simulcast, then the VP8
/// frame header (P bit clear on a keyframe).
fn vp8_payload(len: usize, picture_id: u16, tl0: u8, key: bool) -> Arc<[u8]> {
    let mut p = vec![
        0x90,
        0xC0,
        0x80 | (picture_id >> 8) as u8,
        picture_id as u8,
        tl0,
        if key { 0x00 } else { 0x01 },
    ];
    p.resize(len, 0x5a);
    Arc::from(p)
}

/// The munge `Session::forward` does per subscriber before the str0m
/// write: the downtrack's decision and, when the VP8 descriptor needs
/// rewriting (after a layer switch), the rewritten copy of the payload.
fn forward_munge(dt: &mut Downtrack, p: &ForwardPacket, now: Instant) -> Option<Arc<[u8]>> {
    let f = dt.on_packet(p, now);
    black_box(dt.take_keyframe_request());
    let f = f?;
    black_box((f.seq, f.timestamp));
    Some(match f.vp8 {
        Some(vp8) => vp8.apply(&p.payload),
        None => p.payload.clone(),
    })
}

fn packet(codec: Codec, len: usize, now: Instant) -> ForwardPacket {
    ForwardPacket {
        layer: 0,
        seq: 1000,
        timestamp: 5000,
        marker: false,
        keyframe: false,
        codec,
        clock_rate: if codec.is_video() { 90_000 } else { 48_000 },
        audio_level: (!codec.is_video()).then_some((30, true)),
        payload: if codec == Codec::Vp8 {
            vp8_payload(len, 100, 1, false)
        } else {
            Arc::from(vec![0x5a; len])
        },
        dependency_descriptor: None,
        arrival: now,
    }
}

// ---------------------------------------------------------------------------
// munge
// ---------------------------------------------------------------------------

/// A simulcast publisher (3 layers, packets interleaved round-robin, one
/// packet per picture, a keyframe per layer every 90 of its packets,
/// staggered; each layer numbers its VP8 pictures on its own) and a
/// subscriber that moves its layer cap between HIGH and LOW every 300
/// packets: the downtrack keeps requesting keyframes, switching, and
/// rewriting (so copying) VP8 descriptors.
struct Simulcast {
    i: u64,
    t0: Instant,
    dt: Downtrack,
    p: ForwardPacket,
    /// Per layer, the payload of each of its 90 pictures (keyframe first).
    payloads: Vec<Vec<Arc<[u8]>>>,
}

impl Simulcast {
    fn new() -> Self {
        let t0 = Instant::now();
        let payloads = (0..3u16)
            .map(|l| {
                (0..90u16)
                    .map(|k| vp8_payload(VIDEO_LEN, 1000 * l + k, (k / 3) as u8, k == 0))
                    .collect()
            })
            .collect();
        Self {
            i: 0,
            t0,
            dt: Downtrack::new(true, t0),
            p: packet(Codec::Vp8, VIDEO_LEN, t0),
            payloads,
        }
    }

    /// Next packet of the stream through the downtrack (100 µs apart).
    fn step(&mut self) -> bool {
        let i = self.i;
        self.i += 1;
        let now = self.t0 + Duration::from_micros(i * 100);
        let layer = (i % 3) as u8;
        let n = i / 3; // packet number within its layer
        let k = ((n + 30 * u64::from(layer)) % 90) as usize;
        self.p.layer = layer;
        self.p.seq = n + 10_000 * u64::from(layer);
        self.p.timestamp = (n * 3000) as u32;
        self.p.keyframe = k == 0;
        self.p.payload = self.payloads[usize::from(layer)][k].clone();
        self.p.arrival = now;
        if i.is_multiple_of(300) {
            self.dt
                .set_max_layer(if (i / 300).is_multiple_of(2) { 2 } else { 0 });
        }
        forward_munge(&mut self.dt, &self.p, now).is_some()
    }
}

fn bench_munge(c: &mut Criterion) {
    let mut g = c.benchmark_group("munge");
    g.throughput(Throughput::Elements(1));

    for (name, codec) in [("audio", Codec::Opus), ("video_one_layer", Codec::Vp8)] {
        g.bench_function(name, |b| {
            let t0 = Instant::now();
            let mut dt = Downtrack::new(codec.is_video(), t0);
            let len = if codec.is_video() {
                VIDEO_LEN
            } else {
                AUDIO_LEN
            };
            let mut p = packet(codec, len, t0);
            p.keyframe = codec.is_video();
            forward_munge(&mut dt, &p, t0).expect("first packet forwarded");
            p.keyframe = false;
            let mut i = 0u64;
            b.iter(|| {
                i += 1;
                let now = t0 + Duration::from_micros(i * 100);
                p.seq += 1;
                p.timestamp = p.timestamp.wrapping_add(960);
                p.arrival = now;
                black_box(forward_munge(&mut dt, black_box(&p), now))
            });
        });
    }

    g.bench_function("video_simulcast_switching", |b| {
        let mut s = Simulcast::new();
        // Sanity: the subscriber gets packets and changes layers.
        let forwarded = (0..3000).filter(|_| s.step()).count();
        assert!(forwarded > 500, "simulcast stream forwarded {forwarded}");
        b.iter(|| black_box(s.step()));
    });
    g.finish();
}

// ---------------------------------------------------------------------------
// fanout
// ---------------------------------------------------------------------------

/// What a subscriber's session keeps per downtrack for the munge.
struct Sub {
    dt: Downtrack,
    rates: LayerRates,
}

fn subs(n: usize, video: bool, now: Instant) -> Vec<Sub> {
    (0..n)
        .map(|_| Sub {
            dt: Downtrack::new(video, now),
            rates: LayerRates::new(now),
        })
        .collect()
}

/// The subscriber side of `session::media::forward` up to the str0m write.
fn munge(sub: &mut Sub, packet: &ForwardPacket, now: Instant) {
    sub.rates.on_packet(packet.layer, packet.payload.len());
    black_box(forward_munge(&mut sub.dt, packet, now));
}

/// The publisher side of `session::media::on_rtp`: the received payload
/// (copied once, as str0m's `Vec` becomes an `Arc<[u8]>`) in one shared
/// packet.
fn publish(template: &ForwardPacket, payload: &[u8], seq: u64, now: Instant) -> Arc<ForwardPacket> {
    Arc::new(ForwardPacket {
        seq,
        timestamp: (seq * 3000) as u32,
        payload: Arc::from(payload),
        dependency_descriptor: template.dependency_descriptor.clone(),
        arrival: now,
        ..*template
    })
}

/// Starts every downtrack with a keyframe.
fn start(subs: &mut [Sub], template: &ForwardPacket, payload: &[u8], now: Instant) {
    let mut key = publish(template, payload, 999, now);
    Arc::get_mut(&mut key).expect("unshared").keyframe = true;
    for sub in subs {
        sub.dt.on_packet(&key, now).expect("keyframe forwarded");
    }
}

fn bench_fanout(c: &mut Criterion) {
    let mut g = c.benchmark_group("fanout");
    // One layer of VP8 video, steady state (no switch: payloads are shared,
    // not rewritten).
    let payload = vp8_payload(VIDEO_LEN, 100, 1, false).to_vec();
    for n in [1usize, 50, 200, 500] {
        g.throughput(Throughput::Elements(n as u64));

        // Shared packet + each subscriber's munge.
        g.bench_with_input(BenchmarkId::new("munge", n), &n, |b, &n| {
            let t0 = Instant::now();
            let template = packet(Codec::Vp8, 0, t0);
            let mut subs = subs(n, true, t0);
            start(&mut subs, &template, &payload, t0);
            let mut seq = 1000;
            b.iter(|| {
                seq += 1;
                let now = t0 + Duration::from_micros(seq * 100);
                let packet = publish(&template, &payload, seq, now);
                for sub in &mut subs {
                    munge(sub, &packet, now);
                }
            });
        });

        // The same with each subscriber behind its own lock, as an
        // egress worker meets the sessions.
        g.bench_with_input(BenchmarkId::new("locked", n), &n, |b, &n| {
            let t0 = Instant::now();
            let template = packet(Codec::Vp8, 0, t0);
            let mut plain = subs(n, true, t0);
            start(&mut plain, &template, &payload, t0);
            let cells: Vec<std::sync::Mutex<Sub>> =
                plain.into_iter().map(std::sync::Mutex::new).collect();
            let mut seq = 1000;
            b.iter(|| {
                seq += 1;
                let now = t0 + Duration::from_micros(seq * 100);
                let packet = publish(&template, &payload, seq, now);
                for cell in &cells {
                    let mut sub = cell.lock().expect("unpoisoned");
                    munge(&mut sub, &packet, now);
                }
            });
        });
    }
    g.finish();
}

// ---------------------------------------------------------------------------
// egress: a connected str0m pair in memory
// ---------------------------------------------------------------------------

/// The server's `Peer` (its real str0m configuration: RTP mode, ICE lite)
/// connected to a plain str0m client, in virtual time, by handing each
/// one's `Transmit`s to the other. The server offers one sendonly Opus and
/// one sendonly VP8 m-line, like a subscriber connection.
struct Link {
    server: Peer,
    client: Rtc,
    now: Instant,
    audio: Mid,
    video: Mid,
    audio_pt: Pt,
    video_pt: Pt,
    /// RTP packets the client received: (header + payload length,
    /// payload length).
    client_rtp: Vec<(usize, usize)>,
    seq: u64,
}

type Datagram = (SocketAddr, SocketAddr, Vec<u8>);

/// Polls `rtc` until its timeout; returns its datagrams and keeps the
/// lengths of the RTP packets it received.
fn drain(rtc: &mut Rtc, rtp: &mut Vec<(usize, usize)>) -> Vec<Datagram> {
    let mut out = Vec::new();
    loop {
        match rtc.poll_output().expect("poll_output") {
            Output::Timeout(_) => return out,
            Output::Transmit(t) => out.push((t.source, t.destination, t.contents.to_vec())),
            Output::Event(Event::RtpPacket(p)) => {
                rtp.push((p.header.header_len + p.payload.len(), p.payload.len()))
            }
            Output::Event(_) => {}
        }
    }
}

fn deliver(rtc: &mut Rtc, now: Instant, datagrams: Vec<Datagram>) {
    for (source, destination, contents) in datagrams {
        let input = Input::Receive(
            now,
            Receive {
                proto: Protocol::Udp,
                source,
                destination,
                contents: contents.as_slice().try_into().expect("datagram"),
            },
        );
        if rtc.accepts(&input) {
            rtc.handle_input(input).expect("handle_input");
        }
    }
}

impl Link {
    fn new() -> Self {
        let now = Instant::now();
        let server_addr: SocketAddr = "10.0.0.1:7882".parse().expect("addr");
        let client_addr: SocketAddr = "10.0.0.2:50000".parse().expect("addr");
        let mut server = Peer::new(server_addr, now, true).expect("server peer");
        let mut client = Rtc::builder().set_rtp_mode(true).build(now);
        client.add_local_candidate(Candidate::host(client_addr, "udp").expect("candidate"));

        let mut api = server.rtc.sdp_api();
        let audio = api.add_media(
            MediaKind::Audio,
            Direction::SendOnly,
            Some("PA_pub|TR_audio".into()),
            Some("TR_audio".into()),
            None,
        );
        let video = api.add_media(
            MediaKind::Video,
            Direction::SendOnly,
            Some("PA_pub|TR_video".into()),
            Some("TR_video".into()),
            None,
        );
        let (offer, pending) = api.apply().expect("offer");
        let offer = SdpOffer::from_sdp_string(&offer.to_sdp_string()).expect("offer sdp");
        let answer = client.sdp_api().accept_offer(offer).expect("answer");
        server.pending_offer = Some(pending);
        server
            .accept_answer(&answer.to_sdp_string())
            .expect("accept answer");

        let audio_pt = server.pt_for(audio, Codec::Opus).expect("opus pt");
        let video_pt = server.pt_for(video, Codec::Vp8).expect("vp8 pt");
        let mut link = Self {
            server,
            client,
            now,
            audio,
            video,
            audio_pt,
            video_pt,
            client_rtp: Vec::new(),
            seq: 0,
        };
        for _ in 0..2000 {
            if link.server.rtc.is_connected() && link.client.is_connected() {
                return link;
            }
            link.advance(Duration::from_millis(5));
        }
        panic!("str0m pair did not connect");
    }

    /// Advances virtual time and exchanges datagrams until both are quiet.
    fn advance(&mut self, d: Duration) {
        self.now += d;
        let now = self.now;
        self.server
            .rtc
            .handle_input(Input::Timeout(now))
            .expect("server timeout");
        self.client
            .handle_input(Input::Timeout(now))
            .expect("client timeout");
        for _ in 0..100 {
            let to_client = drain(&mut self.server.rtc, &mut Vec::new());
            let to_server = drain(&mut self.client, &mut self.client_rtp);
            if to_client.is_empty() && to_server.is_empty() {
                return;
            }
            deliver(&mut self.client, now, to_client);
            deliver(&mut self.server.rtc, now, to_server);
        }
    }

    /// What `Session::forward` does after the munge: queue one RTP packet
    /// on the audio or video m-line, then poll (the session's `drain_all`).
    /// str0m's null pacer only sends what it saw at its last
    /// `handle_input(Timeout)`, so this poll sends nothing yet: it returns
    /// a timeout that has already passed, see [`Link::send_queued`].
    fn write(&mut self, video: bool, payload: &Arc<[u8]>, nackable: bool) {
        self.seq += 1;
        let (mid, pt) = if video {
            (self.video, self.video_pt)
        } else {
            (self.audio, self.audio_pt)
        };
        let mut ext = ExtensionValues::default();
        if !video {
            ext.audio_level = Some(-30);
            ext.voice_activity = Some(true);
        }
        let mut api = self.server.rtc.direct_api();
        let tx = api.stream_tx_by_mid(mid, None).expect("tx stream");
        // As `Session::forward`: forwarded media is not paced.
        tx.set_unpaced(true);
        tx.write_rtp(
            RtpWrite::new(
                pt,
                SeqNo::from(self.seq),
                (self.seq * 960) as u32,
                self.now,
                payload.clone(),
            )
            .ext_vals(ext)
            .nackable(nackable),
        );
        loop {
            match self.server.rtc.poll_output().expect("poll_output") {
                Output::Timeout(_) => return,
                Output::Transmit(t) => {
                    black_box(t.contents.len());
                }
                Output::Event(_) => {}
            }
        }
    }

    /// The session's timer branch, `rounds` times: `handle_input(Timeout)`
    /// then poll until the next timeout, virtual time +1 µs a round. The
    /// queued packets are protected (SRTP) and come out. With BWE on (as
    /// `Peer::new` sets it) str0m's leaky-bucket pacer hands out at most
    /// one packet per `handle_input(Timeout)`, paced or not, and asks for
    /// a timeout 1 µs later: every packet costs one round. Returns the
    /// number of datagrams; they go nowhere (the socket is not measured,
    /// and media the client never sees costs it nothing).
    fn send_queued(&mut self, rounds: usize, mut keep: Option<&mut Vec<Datagram>>) -> usize {
        let rtc = &mut self.server.rtc;
        let mut count = 0;
        for _ in 0..rounds {
            self.now += Duration::from_micros(1);
            rtc.handle_input(Input::Timeout(self.now))
                .expect("server timeout");
            loop {
                match rtc.poll_output().expect("poll_output") {
                    Output::Timeout(_) => break,
                    Output::Transmit(t) => {
                        count += 1;
                        if let Some(k) = keep.as_mut() {
                            k.push((t.source, t.destination, t.contents.to_vec()));
                        }
                    }
                    Output::Event(_) => {}
                }
            }
        }
        count
    }

    /// One packet written, sent and delivered to the client: checks that
    /// media flows and returns the SRTP overhead (bytes on the wire minus
    /// the RTP packet the client decrypted).
    fn srtp_overhead(&mut self, payload: &Arc<[u8]>) -> usize {
        self.write(true, payload, true);
        let mut out = Vec::new();
        self.send_queued(1, Some(&mut out));
        // The only RTP (version 2) datagram: the packet written.
        let wire: usize = out
            .iter()
            .filter(|(_, _, c)| c.first().is_some_and(|b| b >> 6 == 2))
            .map(|(_, _, c)| c.len())
            .sum();
        self.client_rtp.clear();
        deliver(&mut self.client, self.now, out);
        self.advance(Duration::from_millis(1));
        let &(rtp_len, payload_len) = self.client_rtp.first().expect("client got the packet");
        assert_eq!(payload_len, payload.len());
        wire.checked_sub(rtp_len).expect("wire larger than RTP")
    }
}

fn bench_egress(c: &mut Criterion) {
    // Packets are timed in chunks; between chunks (untimed) virtual time
    // advances 1 ms per packet and the pair exchanges ICE, RTCP and DTLS
    // traffic, so str0m's timers run as in a live session.
    const CHUNK: u64 = 96;
    let mut g = c.benchmark_group("egress");
    g.throughput(Throughput::Elements(1));
    let mut link = Link::new();
    let video_payload: Arc<[u8]> = Arc::from(vec![0x5a; VIDEO_LEN]);
    let overhead = link.srtp_overhead(&video_payload);
    eprintln!(
        "egress: str0m pair connected; SRTP adds {overhead} bytes per RTP packet \
         (16: AEAD GCM tag, 10: AES_CM HMAC-SHA1-80)"
    );
    // Sanity: a burst of 16 packets takes 16 rounds, one packet each.
    let payload: Arc<[u8]> = Arc::from(vec![0x5a; AUDIO_LEN]);
    for _ in 0..16 {
        link.write(false, &payload, false);
    }
    let mut out = Vec::new();
    link.send_queued(1, Some(&mut out));
    assert_eq!(out.len(), 1, "one datagram per round");
    link.send_queued(15, Some(&mut out));
    let rtp = out.iter().filter(|(_, _, c)| c.len() > AUDIO_LEN).count();
    assert_eq!(rtp, 16, "RTP datagrams out of a burst of 16 in 16 rounds");
    link.advance(Duration::from_millis(10));
    // And idle rounds send nothing (no padding or probes: nothing asked
    // str0m's BWE for more bitrate).
    let idle = link.send_queued(1000, None);
    assert_eq!(idle, 0, "datagrams out of 1000 idle rounds");
    link.advance(Duration::from_millis(10));

    for (name, video, len, nackable) in [
        ("audio_100B", false, AUDIO_LEN, false),
        ("video_1100B_nack", true, VIDEO_LEN, true),
        ("video_1100B_no_nack", true, VIDEO_LEN, false),
    ] {
        let payload: Arc<[u8]> = Arc::from(vec![0x5a; len]);
        g.bench_function(name, |b| {
            b.iter_custom(|iters| {
                let mut timed = Duration::ZERO;
                let mut done = 0;
                while done < iters {
                    let chunk = CHUNK.min(iters - done);
                    let start = Instant::now();
                    for _ in 0..chunk {
                        link.write(video, &payload, nackable);
                        black_box(link.send_queued(1, None));
                    }
                    timed += start.elapsed();
                    done += chunk;
                    link.advance(Duration::from_millis(chunk));
                }
                timed
            });
        });
    }
    // The same audio packet sent by the server itself (`rtc::direct`): the
    // header with mid, audio level and abs-send-time, AES-256-GCM with the
    // keys expanded once, into a reused buffer. What a subscriber of
    // forwarded audio costs after str0m's first packet.
    {
        use ferrokit_server::rtc::direct::{DirectPath, DirectTrack};
        use ferrokit_server::rtc::dtls_keys::SrtpKeying;
        use ferrokit_server::rtc::rtp_out::{ExtensionIds, SendClock};
        let path = DirectPath::new(&SrtpKeying {
            profile: str0m::crypto::dtls::SrtpProfile::AEAD_AES_256_GCM,
            material: (0..88u8).collect(),
            active: false,
        })
        .expect("direct path");
        let ids = ExtensionIds {
            mid: Some(4),
            audio_level: Some(1),
            abs_send_time: Some(3),
        };
        let now = Instant::now();
        let mut track = DirectTrack::new(0x1234_5678, 111, "0".into(), ids, 48_000, (0, now, 100));
        let payload = vec![0x5a; AUDIO_LEN];
        let mut buf = Vec::new();
        let mut seq = 1u64;
        // Read once per fan-out, as an egress worker does.
        let clock = SendClock::read();
        g.bench_function("direct_audio_100B", |b| {
            b.iter(|| {
                seq += 1;
                let out = path
                    .write(
                        std::mem::take(&mut buf),
                        &mut track,
                        seq,
                        (seq * 960) as u32,
                        false,
                        Some((-30, true)),
                        &payload,
                        now,
                        clock.abs_send_time,
                    )
                    .expect("protected");
                buf = black_box(out);
            });
        });
    }
    // The fixed part of a round: `handle_input(Timeout)` and the poll, with
    // nothing queued (str0m's timers, all due checks, the pacer).
    g.bench_function("timeout_round_idle", |b| {
        b.iter_custom(|iters| {
            let mut timed = Duration::ZERO;
            let mut done = 0;
            while done < iters {
                let chunk = CHUNK.min(iters - done);
                let start = Instant::now();
                black_box(link.send_queued(chunk as usize, None));
                timed += start.elapsed();
                done += chunk;
                link.advance(Duration::from_millis(chunk));
            }
            timed
        });
    });
    g.finish();
}

// ---------------------------------------------------------------------------
// srtp
// ---------------------------------------------------------------------------

/// An RTP header as str0m writes it for video (12 bytes + a one-byte
/// extension block with abs-send-time, transport-cc and mid).
const RTP_HEADER: [u8; 28] = [
    0x90, 0x60, 0x12, 0x34, 0x00, 0x01, 0x00, 0x00, 0xde, 0xad, 0xbe, 0xef, 0xbe, 0xde, 0x00, 0x03,
    0x22, 0x01, 0x02, 0x03, 0x31, 0x00, 0x05, 0x40, 0x31, 0x00, 0x00, 0x00,
];

/// An AEAD GCM protect as str0m's SrtpContext::protect_rtp calls the
/// provider: a fresh output buffer, the body encrypted (AAD: the `hlen`
/// byte header), the 16 B tag appended, the header copied in.
fn gcm_protect(
    b: &mut criterion::Bencher,
    buf: &[u8],
    hlen: usize,
    mut encrypt: impl FnMut(&[u8], &[u8], &mut [u8]),
) {
    b.iter(|| {
        let mut out = vec![0u8; buf.len() + 16];
        encrypt(&buf[..hlen], &buf[hlen..], &mut out[hlen..]);
        out[..hlen].copy_from_slice(&buf[..hlen]);
        black_box(out)
    });
}

fn bench_srtp(c: &mut Criterion) {
    let provider = str0m::crypto::from_feature_flags();
    let srtp = provider.srtp_provider;
    let hmac = provider.sha1_hmac_provider;
    let mut g = c.benchmark_group("srtp");
    g.throughput(Throughput::Elements(1));
    for len in [AUDIO_LEN, VIDEO_LEN] {
        let mut buf = RTP_HEADER.to_vec();
        buf.resize(RTP_HEADER.len() + len, 0x5a);
        let hlen = RTP_HEADER.len();

        // AEAD GCM as str0m's SRTP context calls it (`gcm_protect`).
        let mut gcm256 = srtp.aead_aes_256_gcm().create_cipher([7; 32], true);
        g.bench_function(BenchmarkId::new("str0m_aead_aes_256_gcm", len), |b| {
            gcm_protect(b, &buf, hlen, |aad, input, out| {
                gcm256.encrypt(&[1; 12], aad, input, out).expect("encrypt")
            })
        });
        let mut gcm128 = srtp.aead_aes_128_gcm().create_cipher([7; 16], true);
        g.bench_function(BenchmarkId::new("str0m_aead_aes_128_gcm", len), |b| {
            gcm_protect(b, &buf, hlen, |aad, input, out| {
                gcm128.encrypt(&[1; 12], aad, input, out).expect("encrypt")
            })
        });
        let mut ctr = srtp.aes_128_cm_sha1_80().create_cipher([7; 16], true);
        let auth_key = [9u8; 20];
        g.bench_function(BenchmarkId::new("str0m_aes128_cm_sha1_80", len), |b| {
            b.iter(|| {
                // +15: the CTR scratch str0m allocates (then truncates).
                let mut out = vec![0u8; buf.len() + 15];
                ctr.encrypt(&[1; 16], &buf[hlen..], &mut out[hlen..])
                    .expect("encrypt");
                out[..hlen].copy_from_slice(&buf[..hlen]);
                let end = buf.len();
                let tag = hmac.sha1_hmac(&auth_key, &[&out[..end], &0u32.to_be_bytes()]);
                out[end..end + 10].copy_from_slice(&tag[..10]);
                out.truncate(end + 10);
                black_box(out)
            });
        });

        // The floor: aws-lc-rs with keys expanded once, in place.
        use aws_lc_rs::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_128_GCM};
        use aws_lc_rs::cipher::{EncryptingKey, EncryptionContext, UnboundCipherKey, AES_128};
        use aws_lc_rs::hmac;
        let gcm = LessSafeKey::new(UnboundKey::new(&AES_128_GCM, &[7; 16]).expect("gcm key"));
        let mut body = buf[hlen..].to_vec();
        g.bench_function(BenchmarkId::new("aws_lc_aes_128_gcm_in_place", len), |b| {
            b.iter(|| {
                let tag = gcm
                    .seal_in_place_separate_tag(
                        Nonce::assume_unique_for_key([1; 12]),
                        Aad::from(&buf[..hlen]),
                        &mut body,
                    )
                    .expect("seal");
                black_box(tag)
            });
        });
        // What the direct path uses: aws-lc's EVP_AEAD API with the
        // context held by us (`rtc::gcm`), in place.
        let ours = ferrokit_server::rtc::gcm::GcmKey::new(&[7; 16]).expect("gcm key");
        g.bench_function(BenchmarkId::new("gcm_key_aes_128_gcm_in_place", len), |b| {
            b.iter(|| black_box(ours.seal_in_place(&[1; 12], &buf[..hlen], &mut body)));
        });
        let ctr_key = EncryptingKey::ctr(UnboundCipherKey::new(&AES_128, &[7; 16]).expect("key"))
            .expect("ctr key");
        let hmac_key = hmac::Key::new(hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, &auth_key);
        let mut packet = buf.clone();
        g.bench_function(
            BenchmarkId::new("aws_lc_aes_128_ctr_hmac_sha1_in_place", len),
            |b| {
                b.iter(|| {
                    let iv = EncryptionContext::Iv128(
                        aws_lc_rs::iv::FixedLength::try_from(&[1u8; 16][..]).expect("iv"),
                    );
                    ctr_key
                        .less_safe_encrypt(&mut packet[hlen..], iv)
                        .expect("ctr");
                    let mut ctx = hmac::Context::with_key(&hmac_key);
                    ctx.update(&packet);
                    ctx.update(&0u32.to_be_bytes());
                    black_box(ctx.sign())
                });
            },
        );
    }
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(20);
    targets = bench_munge, bench_fanout, bench_egress, bench_srtp
}
criterion_main!(benches);
