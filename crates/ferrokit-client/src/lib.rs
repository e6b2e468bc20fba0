//! ferrokit-client: a LiveKit client in pure Rust (no libwebrtc).
//!
//! The signal protocol runs over a WebSocket (binary protobuf
//! `SignalRequest`/`SignalResponse` from `livekit-protocol`), media over
//! str0m in RTP mode: a full ICE agent with a host candidate on its own UDP
//! socket, DTLS, SRTP and SCTP data channels. Both LiveKit modes work: one
//! peer connection (`/rtc/v1`, [`SignalMode::SinglePeerConnection`]) and
//! publisher + subscriber connections (`/rtc`,
//! [`SignalMode::DualPeerConnection`]).
//!
//! Publishing is synthetic for now: Opus-sized audio and VP8 simulcast video
//! whose payloads carry a send timestamp ([`synthetic`]), so subscribers
//! measure loss, jitter and end-to-end latency ([`stats`], [`RoomStats`]).
//!
//! ```no_run
//! # async fn demo() -> Result<(), ferrokit_client::ClientError> {
//! use ferrokit_client::{Room, RoomEvent, RoomOptions, SyntheticTrackOptions};
//! let (room, mut events) = Room::connect("ws://127.0.0.1:7880", "<token>", RoomOptions::default()).await?;
//! room.local_participant().publish_synthetic(SyntheticTrackOptions::audio("mic")).await?;
//! while let Some(event) = events.recv().await {
//!     if let RoomEvent::TrackSubscribed { track_sid, .. } = event {
//!         println!("receiving {track_sid}");
//!         break;
//!     }
//! }
//! println!("{:?}", room.stats().await?);
//! room.close().await
//! # }
//! ```
//!
//! Each room runs on one tokio task that owns its sockets and str0m
//! instances, so many rooms share a runtime cheaply.

mod engine;
mod error;
mod peer;
mod room;
pub mod sdp;
mod signal;
pub mod stats;
pub mod synthetic;
pub mod url;

pub use error::ClientError;
pub use livekit_protocol as proto;
pub use room::{
    DataMessage, DisconnectReason, JoinTiming, LocalParticipant, LocalTrackPublication, Room,
    RoomEvent, RoomInfo, RoomOptions, RoomStats, SignalMode, SyntheticKind, SyntheticTrackOptions,
    TrackKind, TrackStats,
};
