pub mod sdp;
