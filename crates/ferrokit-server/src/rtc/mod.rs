pub mod codec_order;
pub mod direct;
pub mod dtls_keys;
pub mod extensions;
pub mod gcm;
pub mod peer;
#[cfg(test)]
mod red_negotiation_tests;
pub mod rtp_out;
pub mod sdp;
pub mod srtcp;
pub mod srtp_tx;
#[cfg(test)]
mod test_pair;
