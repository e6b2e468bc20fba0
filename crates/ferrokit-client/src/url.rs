//! Signal URLs, without IO: `ws(s)://host[:port][/base]` plus `/rtc/v1`
//! (single peer connection, a `join_request` query parameter) or `/rtc`
//! (dual peer connection, query flags). `http(s)` becomes `ws(s)`; a base
//! path is kept; an existing query or fragment is dropped.

use base64::Engine;
use livekit_protocol as proto;
use prost::Message;

use crate::ClientError;

/// Signal protocol version sent in `ClientInfo.protocol` / `protocol=`.
pub const PROTOCOL_VERSION: i32 = 16;

/// A parsed LiveKit server URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerUrl {
    /// `wss` rather than `ws`.
    pub secure: bool,
    /// `host[:port]`, IPv6 hosts in brackets.
    pub authority: String,
    /// Base path without a trailing slash (often empty).
    pub path: String,
}

fn invalid(url: &str, reason: &str) -> ClientError {
    ClientError::InvalidUrl {
        url: url.to_string(),
        reason: reason.to_string(),
    }
}

/// Percent-encodes a query component (RFC 3986 unreserved kept).
fn encode(out: &mut String, s: &str) {
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
}

impl ServerUrl {
    /// Parses `ws://`, `wss://`, `http://` or `https://` URLs.
    pub fn parse(url: &str) -> Result<Self, ClientError> {
        let (scheme, rest) = url
            .trim()
            .split_once("://")
            .ok_or_else(|| invalid(url, "missing scheme (ws://, wss://, http://, https://)"))?;
        let secure = match scheme.to_ascii_lowercase().as_str() {
            "ws" | "http" => false,
            "wss" | "https" => true,
            _ => return Err(invalid(url, "unsupported scheme")),
        };
        let rest = rest.split(['?', '#']).next().unwrap_or_default();
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], rest[i..].trim_end_matches('/')),
            None => (rest, ""),
        };
        if authority.is_empty() || authority.contains('@') {
            return Err(invalid(url, "missing host (or credentials in the URL)"));
        }
        Ok(Self {
            secure,
            authority: authority.to_string(),
            path: path.to_string(),
        })
    }

    /// Host and port (80/443 by default), for resolving the server.
    pub fn host_port(&self) -> (String, u16) {
        let default = if self.secure { 443 } else { 80 };
        let a = self.authority.as_str();
        if let Some(v6) = a.strip_prefix('[') {
            let (host, rest) = v6.split_once(']').unwrap_or((v6, ""));
            let port = rest.strip_prefix(':').and_then(|p| p.parse().ok());
            return (host.to_string(), port.unwrap_or(default));
        }
        match a.rsplit_once(':') {
            Some((h, p)) => (h.to_string(), p.parse().unwrap_or(default)),
            None => (a.to_string(), default),
        }
    }

    /// The WebSocket URL of the signal route with `query` pairs.
    pub fn signal_url(&self, single_pc: bool, query: &[(&str, &str)]) -> String {
        let mut out = format!(
            "{}://{}{}/rtc{}",
            if self.secure { "wss" } else { "ws" },
            self.authority,
            self.path,
            if single_pc { "/v1" } else { "" }
        );
        for (i, (k, v)) in query.iter().enumerate() {
            out.push(if i == 0 { '?' } else { '&' });
            encode(&mut out, k);
            out.push('=');
            encode(&mut out, v);
        }
        out
    }
}

/// What the client tells the server at join.
#[derive(Debug, Clone)]
pub struct JoinSettings {
    /// Subscribe to every track published in the room.
    pub auto_subscribe: bool,
    /// Client SDK version string.
    pub sdk_version: String,
}

/// The `/rtc/v1` query: `join_request` = base64url of a `WrappedJoinRequest`
/// (no compression) holding a `JoinRequest` with `ClientInfo` and
/// `ConnectionSettings`.
pub fn v1_query(settings: &JoinSettings) -> Vec<(&'static str, String)> {
    let jr = proto::JoinRequest {
        client_info: Some(client_info(settings)),
        connection_settings: Some(proto::ConnectionSettings {
            auto_subscribe: settings.auto_subscribe,
            ..Default::default()
        }),
        ..Default::default()
    };
    let wrapped = proto::WrappedJoinRequest {
        compression: proto::wrapped_join_request::Compression::None as i32,
        join_request: jr.encode_to_vec(),
    };
    let param = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(wrapped.encode_to_vec());
    vec![("join_request", param)]
}

/// The `/rtc` query flags.
pub fn v0_query(settings: &JoinSettings) -> Vec<(&'static str, String)> {
    vec![
        ("sdk", "rust".into()),
        ("version", settings.sdk_version.clone()),
        ("protocol", PROTOCOL_VERSION.to_string()),
        (
            "auto_subscribe",
            if settings.auto_subscribe { "1" } else { "0" }.into(),
        ),
        ("adaptive_stream", "0".into()),
    ]
}

fn client_info(settings: &JoinSettings) -> proto::ClientInfo {
    proto::ClientInfo {
        sdk: proto::client_info::Sdk::Rust as i32,
        version: settings.sdk_version.clone(),
        protocol: PROTOCOL_VERSION,
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_schemes_paths_and_ports() {
        let u = ServerUrl::parse("http://127.0.0.1:7880/").unwrap();
        assert_eq!(u.signal_url(true, &[]), "ws://127.0.0.1:7880/rtc/v1");
        assert_eq!(u.host_port(), ("127.0.0.1".into(), 7880));
        let u = ServerUrl::parse("wss://example.com/base/?x=1").unwrap();
        assert_eq!(u.signal_url(false, &[]), "wss://example.com/base/rtc");
        assert_eq!(u.host_port(), ("example.com".into(), 443));
        let u = ServerUrl::parse("ws://[::1]:9/").unwrap();
        assert_eq!(u.host_port(), ("::1".into(), 9));
        for bad in ["127.0.0.1:7880", "ftp://x", "ws://", "ws://u:p@h/"] {
            assert!(ServerUrl::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn queries_are_encoded() {
        let u = ServerUrl::parse("ws://h").unwrap();
        let s = u.signal_url(false, &[("a", "x y"), ("b", "1=2&")]);
        assert_eq!(s, "ws://h/rtc?a=x%20y&b=1%3D2%26");
    }

    #[test]
    fn v1_join_request_decodes() {
        let settings = JoinSettings {
            auto_subscribe: true,
            sdk_version: "0.1.0".into(),
        };
        let q = v1_query(&settings);
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(&q[0].1)
            .unwrap();
        let w = proto::WrappedJoinRequest::decode(bytes.as_slice()).unwrap();
        let jr = proto::JoinRequest::decode(w.join_request.as_slice()).unwrap();
        assert!(jr.connection_settings.unwrap().auto_subscribe);
        assert_eq!(jr.client_info.unwrap().protocol, PROTOCOL_VERSION);
        let v0 = v0_query(&settings);
        assert!(v0.contains(&("auto_subscribe", "1".to_string())));
    }
}
