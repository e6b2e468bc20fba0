pub mod codec_order;
pub mod extensions;
pub mod peer;
pub mod sdp;
