//! The public face of a connection: [`Room::connect`], the handle, the
//! events it reports and the requests it takes. Everything runs on one
//! tokio task per room ([`crate::engine`]); handles talk to it over a
//! channel.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use livekit_protocol as proto;
use tokio::sync::{mpsc, oneshot};

use crate::engine::{Command, Engine};
use crate::stats::Histogram;
use crate::synthetic::{VideoLayer, SIMULCAST_LAYERS};
use crate::url::{JoinSettings, ServerUrl};
use crate::{signal, ClientError};

/// How media is carried.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SignalMode {
    /// One peer connection (`/rtc/v1`): the client always offers; the
    /// server asks for receive slots with `media_sections_requirement`.
    #[default]
    SinglePeerConnection,
    /// Publisher and subscriber peer connections (`/rtc`): the server
    /// offers on the subscriber connection.
    DualPeerConnection,
}

/// Options of [`Room::connect`].
#[derive(Debug, Clone)]
pub struct RoomOptions {
    /// Subscribe to every track in the room (default true).
    pub auto_subscribe: bool,
    /// Single or dual peer connection (default single).
    pub mode: SignalMode,
    /// Bound on WebSocket open plus `join` (default 10 s).
    pub join_timeout: Duration,
    /// Local address for the UDP sockets; default: the interface that
    /// routes to the server (127.0.0.1 for a loopback server).
    pub bind_ip: Option<IpAddr>,
}

impl Default for RoomOptions {
    fn default() -> Self {
        Self {
            auto_subscribe: true,
            mode: SignalMode::default(),
            join_timeout: Duration::from_secs(10),
            bind_ip: None,
        }
    }
}

/// Audio or video.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TrackKind {
    /// Opus (`TrackType::AUDIO`).
    Audio,
    /// VP8 (`TrackType::VIDEO`).
    Video,
}

/// Why a room ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DisconnectReason {
    /// [`Room::close`] or every handle dropped.
    ClientInitiated,
    /// The server sent `leave` with this reason.
    Server(proto::DisconnectReason),
    /// The signal connection closed or failed without `leave`.
    SignalClosed(String),
    /// A protocol or transport failure on our side.
    Error(String),
}

/// What happens in a room. Participants already present at join are
/// reported first, as `ParticipantConnected` and `TrackPublished`.
#[derive(Debug, Clone)]
pub enum RoomEvent {
    /// A remote participant joined (from `join` or `update`).
    ParticipantConnected { sid: String, identity: String },
    /// A remote participant left (`update` with state DISCONNECTED).
    ParticipantDisconnected { sid: String, identity: String },
    /// A remote track was published (`update` lists a new `TrackInfo`).
    TrackPublished {
        participant_sid: String,
        track: proto::TrackInfo,
    },
    /// A remote track was unpublished.
    TrackUnpublished {
        participant_sid: String,
        track_sid: String,
    },
    /// A remote track's media is negotiated on `mid` and will flow.
    TrackSubscribed {
        participant_sid: String,
        track_sid: String,
        kind: TrackKind,
        mid: String,
    },
    /// A subscribed track's m-line stopped carrying it.
    TrackUnsubscribed { track_sid: String },
    /// Someone subscribed to one of our tracks (`track_subscribed`).
    LocalTrackSubscribed { track_sid: String },
    /// ICE and DTLS connected on a peer connection (0: publisher or the
    /// single one, 1: subscriber).
    MediaConnected { pc: usize },
    /// A user data packet (`DataPacket.user`) arrived on a data channel.
    DataReceived {
        participant_sid: String,
        participant_identity: String,
        topic: Option<String>,
        payload: Vec<u8>,
        reliable: bool,
    },
    /// The room ended; no events follow.
    Disconnected { reason: DisconnectReason },
}

/// Durations of the join.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JoinTiming {
    /// From the start of [`Room::connect`] to the WebSocket being open
    /// (TCP connect and HTTP upgrade, where the server validates the token).
    pub websocket_open: Duration,
    /// From the WebSocket being open to the `join` response (often ~0: the
    /// server sends it right behind the upgrade response).
    pub join_response: Duration,
}

impl JoinTiming {
    /// From the start of [`Room::connect`] to the `join` response.
    pub fn total(&self) -> Duration {
        self.websocket_open + self.join_response
    }
}

/// A synthetic track to publish.
#[derive(Debug, Clone)]
pub struct SyntheticTrackOptions {
    /// Track name (`AddTrackRequest.name`).
    pub name: String,
    /// What to generate.
    pub kind: SyntheticKind,
}

/// What a synthetic track generates.
#[derive(Debug, Clone)]
pub enum SyntheticKind {
    /// Opus-sized audio, 50 packets/s, audio level -30 dBov.
    Audio,
    /// VP8 with one simulcast layer per entry (rids from the layers).
    Video {
        /// Simulcast layers, low to high.
        layers: Vec<VideoLayer>,
        /// Frames per second.
        fps: u32,
        /// Interval between periodic keyframes (also sent on PLI).
        keyframe_interval: Duration,
    },
}

impl SyntheticTrackOptions {
    /// A microphone track of synthetic Opus.
    pub fn audio(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            kind: SyntheticKind::Audio,
        }
    }

    /// A camera track of three-layer VP8 simulcast (q 180p ~150 kbps,
    /// h 360p ~500 kbps, f 720p ~1.5 Mbps) at 30 fps, a keyframe every 3 s.
    pub fn simulcast_video(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            kind: SyntheticKind::Video {
                layers: SIMULCAST_LAYERS.to_vec(),
                fps: 30,
                keyframe_interval: Duration::from_secs(3),
            },
        }
    }
}

/// A published local track.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalTrackPublication {
    /// Server-assigned track sid (`TR_...`).
    pub sid: String,
    /// Our client id for the track (`AddTrackRequest.cid`, the msid track id).
    pub cid: String,
    /// Audio or video.
    pub kind: TrackKind,
}

/// A user data packet to send.
#[derive(Debug, Clone, Default)]
pub struct DataMessage {
    /// Application bytes (`UserPacket.payload`).
    pub payload: Vec<u8>,
    /// `UserPacket.topic`.
    pub topic: Option<String>,
    /// `_reliable` (ordered, retransmitted) rather than `_lossy`.
    pub reliable: bool,
    /// Only these identities receive it (empty: everyone).
    pub destination_identities: Vec<String>,
}

/// Receive statistics of one subscribed track.
#[derive(Debug, Clone)]
pub struct TrackStats {
    /// Publisher (`PA_...`).
    pub participant_sid: String,
    /// Track (`TR_...`).
    pub track_sid: String,
    /// Audio or video.
    pub kind: TrackKind,
    /// RTP packets received.
    pub packets: u64,
    /// RTP payload bytes received.
    pub bytes: u64,
    /// Packets the sequence ranges (per SSRC) say were sent.
    pub expected: u64,
    /// `expected - packets` per SSRC, summed (never below zero per SSRC).
    pub lost: u64,
    /// Interarrival jitter (RFC 3550), ms: the largest over its SSRCs.
    pub jitter_ms: f64,
    /// End-to-end latency from the synthetic payload stamps, microseconds.
    pub latency_us: Histogram,
}

/// A snapshot of a room's media statistics.
#[derive(Debug, Clone, Default)]
pub struct RoomStats {
    /// Subscribed tracks that received media.
    pub tracks: Vec<TrackStats>,
    /// From the start of [`Room::connect`] to the first media packet received.
    pub first_media: Option<Duration>,
    /// RTP packets our synthetic tracks sent.
    pub sent_packets: u64,
    /// Payload bytes of `sent_packets`.
    pub sent_bytes: u64,
    /// Last signal round trip (`ping_req` / `pong_resp`), ms.
    pub signal_rtt_ms: Option<i64>,
}

/// What the server said about the room at join.
#[derive(Debug, Clone)]
pub struct RoomInfo {
    /// Room name.
    pub name: String,
    /// Room sid (`RM_...`).
    pub sid: String,
    /// `server_info.version`.
    pub server_version: String,
}

/// A connected room. Dropping every handle (this and its
/// [`LocalParticipant`]s) leaves the room as [`Room::close`] does.
pub struct Room {
    info: RoomInfo,
    local: LocalParticipant,
    timing: JoinTiming,
    task: tokio::task::JoinHandle<()>,
}

/// Our participant in a room: publishes tracks and data.
#[derive(Clone)]
pub struct LocalParticipant {
    sid: String,
    identity: String,
    cmd: mpsc::UnboundedSender<Command>,
}

impl Room {
    /// Connects to the LiveKit server at `url` (`ws://`, `http://`; `wss://`
    /// needs TLS, which is not built in) with an access token, and returns
    /// once the server's `join` arrived. Events (from the join on) go to the
    /// returned receiver; it may be dropped.
    ///
    /// Errors: [`ClientError::Refused`] when the server answers the upgrade
    /// with an HTTP error (bad token 401, full room 403...),
    /// [`ClientError::Timeout`] after `options.join_timeout`, and transport
    /// errors.
    pub async fn connect(
        url: &str,
        token: &str,
        options: RoomOptions,
    ) -> Result<(Room, mpsc::UnboundedReceiver<RoomEvent>), ClientError> {
        let started = Instant::now();
        let server = ServerUrl::parse(url)?;
        if server.secure {
            return Err(ClientError::InvalidUrl {
                url: url.to_string(),
                reason: "wss:// needs TLS, which this client does not include yet".into(),
            });
        }
        let single_pc = options.mode == SignalMode::SinglePeerConnection;
        let settings = JoinSettings {
            auto_subscribe: options.auto_subscribe,
            sdk_version: env!("CARGO_PKG_VERSION").into(),
        };
        let query = if single_pc {
            crate::url::v1_query(&settings)
        } else {
            crate::url::v0_query(&settings)
        };
        let pairs: Vec<(&str, &str)> = query.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let signal_url = server.signal_url(single_pc, &pairs);
        let deadline = tokio::time::Instant::now() + options.join_timeout;
        let (ws_open, mut ws) =
            tokio::time::timeout_at(deadline, signal::connect(&signal_url, token))
                .await
                .map_err(|_| ClientError::Timeout("the signal WebSocket"))
                .and_then(|r| r.map(|ws| (Instant::now(), ws)))?;
        let join = tokio::time::timeout_at(deadline, signal::await_join(&mut ws))
            .await
            .map_err(|_| ClientError::Timeout("the join response"))??;
        let joined = Instant::now();
        let bind_ip = match options.bind_ip {
            Some(ip) => ip,
            None => local_ip_toward(&server).await?,
        };
        let participant = join.participant.clone().unwrap_or_default();
        let room = join.room.clone().unwrap_or_default();
        let info = RoomInfo {
            name: room.name,
            sid: room.sid,
            server_version: join
                .server_info
                .as_ref()
                .map(|s| s.version.clone())
                .unwrap_or_else(|| join.server_version.clone()),
        };
        let (cmd_tx, cmd_rx) = mpsc::unbounded_channel();
        let (event_tx, event_rx) = mpsc::unbounded_channel();
        let engine = Engine::new(single_pc, bind_ip, ws, started, join, cmd_rx, event_tx).await?;
        let task = tokio::spawn(engine.run());
        let local = LocalParticipant {
            sid: participant.sid,
            identity: participant.identity,
            cmd: cmd_tx,
        };
        let timing = JoinTiming {
            websocket_open: ws_open - started,
            join_response: joined - ws_open,
        };
        Ok((
            Room {
                info,
                local,
                timing,
                task,
            },
            event_rx,
        ))
    }

    /// The room as the server described it at join.
    pub fn info(&self) -> &RoomInfo {
        &self.info
    }

    /// Our participant.
    pub fn local_participant(&self) -> &LocalParticipant {
        &self.local
    }

    /// How long the join took.
    pub fn join_timing(&self) -> JoinTiming {
        self.timing
    }

    /// A snapshot of media statistics. Fails with [`ClientError::Closed`]
    /// once the room ended.
    pub async fn stats(&self) -> Result<RoomStats, ClientError> {
        let (reply, rx) = oneshot::channel();
        self.local.request(Command::Stats { reply })?;
        rx.await.map_err(|_| ClientError::Closed)
    }

    /// Leaves the room: sends `leave` (CLIENT_INITIATED), closes the peer
    /// connections and the WebSocket, and waits for the room task to end.
    pub async fn close(self) -> Result<(), ClientError> {
        let (reply, rx) = oneshot::channel();
        if self.local.request(Command::Close { reply }).is_ok() {
            let _ = rx.await;
        }
        self.task.await.map_err(|_| ClientError::Closed)
    }
}

impl LocalParticipant {
    /// Our participant sid (`PA_...`).
    pub fn sid(&self) -> &str {
        &self.sid
    }

    /// Our identity (the token's `sub`).
    pub fn identity(&self) -> &str {
        &self.identity
    }

    fn request(&self, cmd: Command) -> Result<(), ClientError> {
        self.cmd.send(cmd).map_err(|_| ClientError::Closed)
    }

    /// Publishes a synthetic track: `add_track`, then an offer carrying it
    /// (single PC: the one connection; dual: the publisher connection).
    /// Returns on `track_published`; media starts once the offer is
    /// answered, and keeps flowing until the room closes.
    ///
    /// Errors: [`ClientError::RequestRefused`] when the server refuses the
    /// track (e.g. no canPublish), [`ClientError::Timeout`] after 10 s.
    pub async fn publish_synthetic(
        &self,
        options: SyntheticTrackOptions,
    ) -> Result<LocalTrackPublication, ClientError> {
        let (reply, rx) = oneshot::channel();
        self.request(Command::Publish { options, reply })?;
        tokio::time::timeout(Duration::from_secs(10), rx)
            .await
            .map_err(|_| ClientError::Timeout("track_published"))?
            .map_err(|_| ClientError::Closed)?
    }

    /// Sends a user data packet (`DataPacket.user`) on `_reliable` or
    /// `_lossy`. Fails with [`ClientError::ChannelNotOpen`] before the
    /// channel opened.
    pub async fn publish_data(&self, message: DataMessage) -> Result<(), ClientError> {
        let (reply, rx) = oneshot::channel();
        self.request(Command::PublishData { message, reply })?;
        rx.await.map_err(|_| ClientError::Closed)?
    }
}

/// The local address used to reach the server (connect a UDP socket, read
/// its local address; nothing is sent).
async fn local_ip_toward(server: &ServerUrl) -> Result<IpAddr, ClientError> {
    let (host, port) = server.host_port();
    let target = tokio::net::lookup_host((host.as_str(), port))
        .await?
        .next()
        .ok_or_else(|| ClientError::InvalidUrl {
            url: host.clone(),
            reason: "host did not resolve".into(),
        })?;
    if target.ip().is_loopback() {
        return Ok(target.ip());
    }
    let any: IpAddr = if target.is_ipv4() {
        IpAddr::from([0, 0, 0, 0])
    } else {
        IpAddr::from([0u16; 8])
    };
    let probe = tokio::net::UdpSocket::bind((any, 0)).await?;
    probe.connect(target).await?;
    Ok(probe.local_addr()?.ip())
}
