//! Forwarding decisions, sans-IO: which packets a downtrack sends, and how
//! their RTP headers (and VP8 payload descriptors) are rewritten.

pub mod allocation;
pub mod audio_level;
pub mod codec;
pub mod dependency_descriptor;
pub mod downtrack;
pub mod dynacast;
pub mod quality;
pub mod vp8;

pub use audio_level::AudioLevelObserver;
pub use codec::{is_keyframe, red_primary, Codec};
pub use downtrack::{Downtrack, Forward, ForwardPacket};
pub use dynacast::Dynacast;
