pub mod codec_order;
pub mod peer;
pub mod sdp;
