pub mod codec_order;
pub mod dtls_keys;
pub mod extensions;
pub mod peer;
pub mod sdp;
pub mod srtp_tx;
