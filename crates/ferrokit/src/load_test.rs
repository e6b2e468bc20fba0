//! `ferrokit load-test`: like `lk load-test`. Synthetic audio and simulcast
//! video publishers and measuring subscribers join one room over
//! ferrokit-client, all on one tokio runtime; subscribers report loss,
//! jitter, end-to-end latency and join times.
//!
//! Measures: loss = expected (sequence range per SSRC) minus received;
//! latency from the send time stamped in every synthetic payload; jitter
//! per track (RFC 3550); join = `Room::connect` start (TCP, upgrade) to the
//! `join` response; first packet = `Room::connect` start to the first RTP
//! packet. With `--json` the last line is one JSON object of the results.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use ferrokit_client::stats::{percentile_of, Histogram};
use ferrokit_client::{Room, RoomOptions, RoomStats, SignalMode, SyntheticTrackOptions, TrackKind};
use ferrokit_server::auth::{sign, unix_now, Claims};
use tokio::sync::Semaphore;

/// `ferrokit load-test` flags.
#[derive(clap::Args)]
pub struct LoadTestArgs {
    /// Server URL (ws:// or http://).
    #[arg(long, default_value = "ws://127.0.0.1:7880")]
    pub url: String,
    /// API key that signs the participants' tokens.
    #[arg(long, env = "LIVEKIT_API_KEY", default_value = "devkey")]
    pub api_key: String,
    /// API secret.
    #[arg(
        long,
        env = "LIVEKIT_API_SECRET",
        default_value = "secret",
        hide_env_values = true,
        hide_default_value = true
    )]
    pub api_secret: String,
    /// Room to load (with `--rooms N > 1`, rooms `<room>-0` .. `<room>-<N-1>`).
    #[arg(long, default_value = "load-test")]
    pub room: String,
    /// Rooms, each with the given publishers and subscribers.
    #[arg(long, default_value_t = 1)]
    pub rooms: usize,
    /// Participants publishing one synthetic Opus track each.
    #[arg(long, default_value_t = 0)]
    pub audio_publishers: usize,
    /// Participants publishing one synthetic VP8 simulcast track each (q/h/f).
    #[arg(long, default_value_t = 0)]
    pub video_publishers: usize,
    /// Participants subscribing to every track.
    #[arg(long, default_value_t = 0)]
    pub subscribers: usize,
    /// Seconds of measurement after everyone joined (and `--settle`).
    #[arg(long, default_value_t = 30.0)]
    pub duration: f64,
    /// Seconds between the last join and the measurement, for the
    /// connections' set-up to end (DTLS, data channels, the server's timers
    /// that run at connect): media flows, but the `measure-start` marker
    /// on stderr waits. Subscriber figures still cover the whole run.
    #[arg(long, default_value_t = 0.0)]
    pub settle: f64,
    /// Also print one JSON object with the results on the last line.
    #[arg(long)]
    pub json: bool,
    /// One peer connection per participant (/rtc/v1, the default).
    #[arg(long, conflicts_with = "dual_pc")]
    pub single_pc: bool,
    /// Publisher and subscriber peer connections (/rtc).
    #[arg(long)]
    pub dual_pc: bool,
    /// Joins in flight at once.
    #[arg(long, default_value_t = 16)]
    pub join_concurrency: usize,
}

/// One participant's role.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Role {
    AudioPublisher,
    VideoPublisher,
    Subscriber,
}

/// A joined participant.
struct Joined {
    role: Role,
    room: Room,
    join: Duration,
}

fn token(args: &LoadTestArgs, room: &str, identity: &str, role: Role) -> anyhow::Result<String> {
    let mut grants = Vec::new();
    if role == Role::Subscriber {
        grants.push("can_publish=false".to_string());
    }
    let now = unix_now();
    let claims = Claims {
        iss: args.api_key.clone(),
        sub: identity.to_string(),
        nbf: now.saturating_sub(5),
        exp: now + 3600 + args.duration as u64,
        video: crate::tools::grant_from(room, &grants)?,
        ..Default::default()
    };
    Ok(sign(&claims, &args.api_secret)?)
}

async fn join(
    args: Arc<LoadTestArgs>,
    room: String,
    identity: String,
    role: Role,
    gate: Arc<Semaphore>,
) -> anyhow::Result<Joined> {
    let token = token(&args, &room, &identity, role)?;
    let _permit = gate.acquire_owned().await?;
    let options = RoomOptions {
        auto_subscribe: role == Role::Subscriber,
        mode: if args.dual_pc {
            SignalMode::DualPeerConnection
        } else {
            SignalMode::SinglePeerConnection
        },
        ..Default::default()
    };
    let (room, events) = Room::connect(&args.url, &token, options)
        .await
        .with_context(|| format!("{identity} joining"))?;
    // Nobody reads the events of a load participant.
    drop(events);
    let publish = match role {
        Role::AudioPublisher => Some(SyntheticTrackOptions::audio("load-audio")),
        Role::VideoPublisher => Some(SyntheticTrackOptions::simulcast_video("load-video")),
        Role::Subscriber => None,
    };
    if let Some(options) = publish {
        room.local_participant()
            .publish_synthetic(options)
            .await
            .with_context(|| format!("{identity} publishing"))?;
    }
    Ok(Joined {
        role,
        join: room.join_timing().total(),
        room,
    })
}

/// Runs the load test and prints its results.
pub fn run(args: LoadTestArgs) -> anyhow::Result<()> {
    if args.audio_publishers + args.video_publishers + args.subscribers == 0 {
        bail!("nothing to do: give --audio-publishers, --video-publishers or --subscribers");
    }
    if args.rooms == 0 {
        bail!("--rooms must be at least 1");
    }
    if !(args.duration.is_finite() && args.duration >= 0.0) {
        bail!("--duration must be a number of seconds");
    }
    if !(args.settle.is_finite() && args.settle >= 0.0) {
        bail!("--settle must be a number of seconds");
    }
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(run_async(Arc::new(args)))
}

async fn run_async(args: Arc<LoadTestArgs>) -> anyhow::Result<()> {
    let started = Instant::now();
    let gate = Arc::new(Semaphore::new(args.join_concurrency.max(1)));
    let mut roles = Vec::new();
    for r in 0..args.rooms {
        let room = if args.rooms == 1 {
            args.room.clone()
        } else {
            format!("{}-{r}", args.room)
        };
        let mut add = |n: usize, prefix: &str, role: Role| {
            roles.extend((0..n).map(|i| (room.clone(), format!("{prefix}-{i}"), role)));
        };
        add(args.audio_publishers, "audio-pub", Role::AudioPublisher);
        add(args.video_publishers, "video-pub", Role::VideoPublisher);
        add(args.subscribers, "sub", Role::Subscriber);
    }
    let tasks: Vec<_> = roles
        .into_iter()
        .map(|(room, identity, role)| {
            tokio::spawn(join(args.clone(), room, identity, role, gate.clone()))
        })
        .collect();
    let mut joined = Vec::new();
    let mut errors = Vec::new();
    for t in tasks {
        match t.await {
            Ok(Ok(j)) => joined.push(j),
            Ok(Err(e)) => errors.push(format!("{e:#}")),
            Err(e) => errors.push(format!("join task: {e}")),
        }
    }
    let join_elapsed = started.elapsed();
    if !args.json {
        println!(
            "{} joined in {:.1} s ({} failed); measuring for {} s after {} s",
            joined.len(),
            join_elapsed.as_secs_f64(),
            errors.len(),
            args.duration,
            args.settle
        );
    }
    tokio::time::sleep(Duration::from_secs_f64(args.settle)).await;
    // Markers on stderr let a benchmark driver sample the server's CPU
    // time and counters around the measurement window only.
    eprintln!("ferrokit-load-test: measure-start");
    tokio::time::sleep(Duration::from_secs_f64(args.duration)).await;
    eprintln!("ferrokit-load-test: measure-end");
    let mut stats = Vec::new();
    for j in &joined {
        let s = if j.role == Role::Subscriber {
            j.room.stats().await.ok()
        } else {
            None
        };
        stats.push(s);
    }
    let stats: Vec<_> = joined.iter().map(|j| j.role).zip(stats).collect();
    let report = Report::new(&args, &joined, &stats, &errors, started.elapsed());
    let rooms: Vec<_> = joined
        .into_iter()
        .map(|j| tokio::spawn(tokio::time::timeout(Duration::from_secs(5), j.room.close())))
        .collect();
    for r in rooms {
        let _ = r.await;
    }
    report.print(args.json);
    Ok(())
}

/// The aggregated results.
struct Report {
    publishers_connected: usize,
    subscribers_connected: usize,
    failed: usize,
    first_error: Option<String>,
    tracks_expected: usize,
    tracks_received: usize,
    packets_received: u64,
    packets_expected: u64,
    bytes_received: u64,
    jitter_ms: Vec<f64>,
    latency: Histogram,
    join_ms: Vec<f64>,
    first_packet_ms: Vec<f64>,
    duration_s: f64,
    measure_s: f64,
    video_kbps_per_track: Option<f64>,
}

impl Report {
    fn new(
        args: &LoadTestArgs,
        joined: &[Joined],
        stats: &[(Role, Option<RoomStats>)],
        errors: &[String],
        elapsed: Duration,
    ) -> Self {
        let publishers_connected = joined.iter().filter(|j| j.role != Role::Subscriber).count();
        let subs: Vec<&Joined> = joined
            .iter()
            .filter(|j| j.role == Role::Subscriber)
            .collect();
        let mut r = Report {
            publishers_connected,
            subscribers_connected: subs.len(),
            failed: errors.len(),
            first_error: errors.first().cloned(),
            // Every subscriber receives the publishers of its own room.
            tracks_expected: subs.len() * publishers_connected / args.rooms.max(1),
            tracks_received: 0,
            packets_received: 0,
            packets_expected: 0,
            bytes_received: 0,
            jitter_ms: Vec::new(),
            latency: Histogram::default(),
            join_ms: subs.iter().map(|j| ms(j.join)).collect(),
            first_packet_ms: Vec::new(),
            duration_s: elapsed.as_secs_f64(),
            measure_s: args.duration,
            video_kbps_per_track: None,
        };
        let mut video_bytes = 0u64;
        let mut video_tracks = 0u64;
        for s in stats.iter().filter_map(|(_, s)| s.as_ref()) {
            if let Some(f) = s.first_media {
                r.first_packet_ms.push(ms(f));
            }
            for t in &s.tracks {
                r.tracks_received += 1;
                r.packets_received += t.packets;
                r.packets_expected += t.expected;
                r.bytes_received += t.bytes;
                r.jitter_ms.push(t.jitter_ms);
                r.latency.merge(&t.latency_us);
                if t.kind == TrackKind::Video {
                    video_bytes += t.bytes;
                    video_tracks += 1;
                }
            }
        }
        if video_tracks > 0 && args.duration > 0.0 {
            r.video_kbps_per_track =
                Some(video_bytes as f64 * 8.0 / 1000.0 / args.duration / video_tracks as f64);
        }
        r
    }

    fn loss_pct(&self) -> f64 {
        if self.packets_expected == 0 {
            return 0.0;
        }
        let lost = self.packets_expected.saturating_sub(self.packets_received);
        lost as f64 * 100.0 / self.packets_expected as f64
    }

    fn print(mut self, json: bool) {
        let p = |v: &mut Vec<f64>, q: f64| percentile_of(v, q).map(round2);
        let lat = |q: f64| {
            self.latency
                .percentile(q)
                .map(|us| round2(us as f64 / 1000.0))
        };
        let (join50, join99) = (p(&mut self.join_ms, 50.0), p(&mut self.join_ms, 99.0));
        let (first50, first99) = (
            p(&mut self.first_packet_ms, 50.0),
            p(&mut self.first_packet_ms, 99.0),
        );
        let (jit50, jit99) = (p(&mut self.jitter_ms, 50.0), p(&mut self.jitter_ms, 99.0));
        let show = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.2}"));
        println!("{:<28}{:>14}", "metric", "value");
        let rows: Vec<(&str, String)> = vec![
            (
                "publishers connected",
                self.publishers_connected.to_string(),
            ),
            (
                "subscribers connected",
                self.subscribers_connected.to_string(),
            ),
            ("joins failed", self.failed.to_string()),
            (
                "tracks received / expected",
                format!("{}/{}", self.tracks_received, self.tracks_expected),
            ),
            ("packets received", self.packets_received.to_string()),
            ("packets expected", self.packets_expected.to_string()),
            ("packet loss %", format!("{:.3}", self.loss_pct())),
            ("bytes received", self.bytes_received.to_string()),
            ("video kbps per track", show(self.video_kbps_per_track)),
            (
                "latency ms p50 / p99",
                format!("{} / {}", show(lat(50.0)), show(lat(99.0))),
            ),
            (
                "jitter ms p50 / p99",
                format!("{} / {}", show(jit50), show(jit99)),
            ),
            (
                "join ms p50 / p99",
                format!("{} / {}", show(join50), show(join99)),
            ),
            (
                "first packet ms p50 / p99",
                format!("{} / {}", show(first50), show(first99)),
            ),
            ("duration s", format!("{:.1}", self.duration_s)),
        ];
        for (k, v) in rows {
            println!("{k:<28}{v:>14}");
        }
        if let Some(e) = &self.first_error {
            println!("first error: {e}");
        }
        if json {
            let j = serde_json::json!({
                "publishers_connected": self.publishers_connected,
                "subscribers_connected": self.subscribers_connected,
                "joins_failed": self.failed,
                "tracks_expected": self.tracks_expected,
                "tracks_received": self.tracks_received,
                "packets_received": self.packets_received,
                "packets_expected": self.packets_expected,
                "packet_loss_pct": round2(self.loss_pct() * 100.0) / 100.0,
                "bytes_received": self.bytes_received,
                "video_kbps_per_track": self.video_kbps_per_track.map(round2),
                "latency_ms_p50": lat(50.0),
                "latency_ms_p99": lat(99.0),
                "jitter_ms_p50": jit50,
                "jitter_ms_p99": jit99,
                "join_ms_p50": join50,
                "join_ms_p99": join99,
                "first_packet_ms_p50": first50,
                "first_packet_ms_p99": first99,
                "measure_s": self.measure_s,
                "duration_s": round2(self.duration_s),
                "first_error": self.first_error,
            });
            println!("{j}");
        }
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn round2(v: f64) -> f64 {
    (v * 100.0).round() / 100.0
}
