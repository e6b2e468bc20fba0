//! ferrokit-server: a LiveKit-compatible selective forwarding unit as a library.
//!
//! [`Server::start`] binds the HTTP/WebSocket listener and the shared UDP
//! media port and returns a handle. Layout: `auth` (tokens), `config`,
//! `room` (sans-IO room logic), `service` (HTTP/WebSocket edge), `rtc`
//! (one participant's WebRTC transport), `sfu` (forwarding decisions),
//! `net` (sockets).

// Clients still read LiveKit's deprecated protocol fields (UserPacket sender
// fields, TrackInfo.layers...), so the server fills them.
#![allow(deprecated)]

pub mod auth;
pub mod config;
pub mod ids;
pub mod room;
pub mod net;
pub mod rtc;
pub mod sfu;
