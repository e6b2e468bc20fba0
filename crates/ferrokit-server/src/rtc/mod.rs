pub mod peer;
pub mod sdp;
