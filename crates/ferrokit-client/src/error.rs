//! Errors of the client.

/// Why connecting, publishing or a request failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The server URL could not be used (scheme, host).
    #[error("invalid server URL {url:?}: {reason}")]
    InvalidUrl {
        /// The URL given.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The server refused the join with an HTTP status (401 bad token,
    /// 403 room full, 404 no such room...) and a plain-text reason.
    #[error("join refused: HTTP {status}: {reason}")]
    Refused {
        /// HTTP status.
        status: u16,
        /// The server's plain-text reason.
        reason: String,
    },
    /// WebSocket transport error.
    #[error("signal connection: {0}")]
    WebSocket(#[from] tokio_tungstenite::tungstenite::Error),
    /// A signal frame that is not a `SignalResponse`.
    #[error("malformed signal message: {0}")]
    Decode(#[from] prost::DecodeError),
    /// The server broke the protocol (e.g. a first message other than `join`).
    #[error("protocol error: {0}")]
    Protocol(String),
    /// The server sent `leave` or closed the signal connection.
    #[error("disconnected: {0}")]
    Disconnected(String),
    /// A wait exceeded its bound.
    #[error("timed out waiting for {0}")]
    Timeout(&'static str),
    /// UDP socket error.
    #[error("network: {0}")]
    Io(#[from] std::io::Error),
    /// str0m refused an SDP, candidate or input.
    #[error("WebRTC: {0}")]
    Rtc(#[from] str0m::RtcError),
    /// The server refused a request (`request_response`).
    #[error("request refused: {0}")]
    RequestRefused(String),
    /// The data channel to send on is not open (yet).
    #[error("data channel {0} is not open")]
    ChannelNotOpen(&'static str),
    /// The room's task has ended (closed or disconnected).
    #[error("the room is closed")]
    Closed,
}
