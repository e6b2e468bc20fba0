//! ferrokit-server: a LiveKit-compatible selective forwarding unit as a library.
//!
//! [`Server::start`] binds the HTTP/WebSocket listener and the shared UDP
//! media port and returns a handle. Layout: `auth` (tokens), `config`,
//! `room` (sans-IO room logic), `rooms` (registry and mailboxes),
//! `service` (HTTP/WebSocket edge), `session` (one participant's task),
//! `rtc` (str0m peer connections, SDP), `sfu` (forwarding decisions),
//! `net` (sockets).

// Clients still read LiveKit's deprecated protocol fields (UserPacket sender
// fields, TrackInfo.layers...), so the server fills them.
#![allow(deprecated)]

pub mod auth;
pub mod config;
pub mod grid;
pub mod ids;
pub mod metrics;
pub mod net;
pub mod prefetch;
pub mod room;
pub mod rooms;
pub mod rtc;
pub mod server;
pub mod service;
pub mod session;
pub mod sfu;
pub mod webhook;

pub use config::Config;
pub use server::Server;
