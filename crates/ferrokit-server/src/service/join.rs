//! Reading a join from the signal URL, before any upgrade, so that every
//! refusal is an HTTP status with a plain-text reason.
//!
//! `/rtc/v1?join_request=<base64url WrappedJoinRequest>` (single PC) and
//! `/rtc?access_token=..&auto_subscribe=1&protocol=..` (dual PC). The token
//! comes from `Authorization: Bearer` first, then `access_token`.

use std::collections::HashMap;
use std::io::Read;

use base64::Engine;
use livekit_protocol as proto;
use prost::Message;

use crate::auth::{AuthError, Claims, KeyProvider};

/// Largest decompressed JoinRequest accepted, bytes.
const MAX_JOIN_REQUEST: u64 = 1 << 20;

/// A refused join: HTTP status and plain-text reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinRefusal {
    pub status: u16,
    pub reason: String,
}

impl JoinRefusal {
    fn new(status: u16, reason: impl Into<String>) -> Self {
        Self {
            status,
            reason: reason.into(),
        }
    }
}

impl From<AuthError> for JoinRefusal {
    fn from(e: AuthError) -> Self {
        Self::new(401, e.to_string())
    }
}

/// Everything a valid join URL says.
#[derive(Debug, Clone)]
pub struct JoinIntent {
    pub claims: Claims,
    pub room: String,
    /// `/rtc/v1`: one peer connection.
    pub single_pc: bool,
    pub auto_subscribe: bool,
    pub adaptive_stream: bool,
    /// ClientInfo.protocol.
    pub protocol: i32,
    /// ClientInfo.client_protocol.
    pub client_protocol: i32,
    /// A resume attempt (reconnect=1 or JoinRequest.reconnect).
    pub reconnect: bool,
    /// The publisher offer carried by a v1 JoinRequest.
    pub publisher_offer: Option<proto::SessionDescription>,
}

fn flag(q: &HashMap<String, String>, key: &str, default: bool) -> bool {
    match q.get(key).map(String::as_str) {
        Some("1") | Some("true") => true,
        Some("0") | Some("false") => false,
        _ => default,
    }
}

/// Decodes `join_request`: base64 (URL-safe or standard, padded or not) of
/// a `WrappedJoinRequest`, optionally gzipped.
pub fn decode_join_request(param: &str) -> Result<proto::JoinRequest, JoinRefusal> {
    use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
    let bytes = [URL_SAFE, URL_SAFE_NO_PAD, STANDARD, STANDARD_NO_PAD]
        .iter()
        .find_map(|e| e.decode(param.trim()).ok())
        .ok_or_else(|| JoinRefusal::new(400, "join_request is not base64"))?;
    let wrapped = proto::WrappedJoinRequest::decode(bytes.as_slice()).map_err(|e| {
        JoinRefusal::new(
            400,
            format!("join_request is not a WrappedJoinRequest: {e}"),
        )
    })?;
    let inner = match proto::wrapped_join_request::Compression::try_from(wrapped.compression) {
        Ok(proto::wrapped_join_request::Compression::None) => wrapped.join_request,
        Ok(proto::wrapped_join_request::Compression::Gzip) => {
            let mut out = Vec::new();
            flate2::read::GzDecoder::new(wrapped.join_request.as_slice())
                .take(MAX_JOIN_REQUEST)
                .read_to_end(&mut out)
                .map_err(|e| JoinRefusal::new(400, format!("join_request gzip: {e}")))?;
            out
        }
        Err(_) => return Err(JoinRefusal::new(400, "join_request: unknown compression")),
    };
    proto::JoinRequest::decode(inner.as_slice())
        .map_err(|e| JoinRefusal::new(400, format!("join_request is not a JoinRequest: {e}")))
}

/// Reads and checks a join. `single_pc` is true for `/rtc/v1`.
pub fn parse_join(
    single_pc: bool,
    query: &HashMap<String, String>,
    authorization: Option<&str>,
    keys: &KeyProvider,
) -> Result<JoinIntent, JoinRefusal> {
    let token = authorization
        .and_then(|h| {
            h.strip_prefix("Bearer ")
                .or_else(|| h.strip_prefix("bearer "))
        })
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .or_else(|| query.get("access_token").map(String::as_str))
        .ok_or(AuthError::Missing)?;
    let claims = keys.verify(token)?;
    if !claims.video.room_join {
        return Err(JoinRefusal::new(401, "token has no roomJoin grant"));
    }
    if claims.video.room.is_empty() {
        return Err(JoinRefusal::new(400, "token names no room"));
    }
    if claims.sub.is_empty() {
        return Err(JoinRefusal::new(400, "token names no identity"));
    }
    let room = claims.video.room.clone();
    if single_pc {
        let param = query
            .get("join_request")
            .ok_or_else(|| JoinRefusal::new(400, "missing join_request"))?;
        let jr = decode_join_request(param)?;
        let settings = jr.connection_settings.unwrap_or_default();
        let info = jr.client_info.clone().unwrap_or_default();
        Ok(JoinIntent {
            claims,
            room,
            single_pc,
            auto_subscribe: settings.auto_subscribe,
            adaptive_stream: settings.adaptive_stream,
            protocol: info.protocol,
            client_protocol: info.client_protocol,
            reconnect: jr.reconnect,
            publisher_offer: jr.publisher_offer,
        })
    } else {
        let num = |k: &str| query.get(k).and_then(|v| v.parse().ok()).unwrap_or(0);
        Ok(JoinIntent {
            claims,
            room,
            single_pc,
            auto_subscribe: flag(query, "auto_subscribe", true),
            adaptive_stream: flag(query, "adaptive_stream", false),
            protocol: num("protocol"),
            client_protocol: num("client_protocol"),
            reconnect: flag(query, "reconnect", false),
            publisher_offer: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::{sign, unix_now, VideoGrant};
    use std::io::Write;

    fn keys() -> KeyProvider {
        KeyProvider::new(HashMap::from([("k".to_string(), "s".to_string())]))
    }

    fn token(room: &str, sub: &str) -> String {
        let c = Claims {
            iss: "k".into(),
            sub: sub.into(),
            exp: unix_now() + 60,
            video: VideoGrant {
                room_join: true,
                room: room.into(),
                ..Default::default()
            },
            ..Default::default()
        };
        sign(&c, "s").unwrap()
    }

    fn wrapped(jr: &proto::JoinRequest, gzip: bool) -> String {
        let raw = jr.encode_to_vec();
        let (bytes, compression) = if gzip {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
            e.write_all(&raw).unwrap();
            (
                e.finish().unwrap(),
                proto::wrapped_join_request::Compression::Gzip,
            )
        } else {
            (raw, proto::wrapped_join_request::Compression::None)
        };
        let w = proto::WrappedJoinRequest {
            compression: compression as i32,
            join_request: bytes,
        };
        base64::engine::general_purpose::URL_SAFE.encode(w.encode_to_vec())
    }

    #[test]
    fn v1_join_request_plain_and_gzip() {
        let jr = proto::JoinRequest {
            connection_settings: Some(proto::ConnectionSettings {
                auto_subscribe: true,
                ..Default::default()
            }),
            publisher_offer: Some(proto::SessionDescription {
                sdp: "v=0".into(),
                ..Default::default()
            }),
            ..Default::default()
        };
        for gzip in [false, true] {
            let q = HashMap::from([("join_request".to_string(), wrapped(&jr, gzip))]);
            let auth = format!("Bearer {}", token("r", "alice"));
            let j = parse_join(true, &q, Some(&auth), &keys()).unwrap();
            assert!(j.auto_subscribe && j.single_pc);
            assert_eq!(j.room, "r");
            assert_eq!(j.publisher_offer.unwrap().sdp, "v=0");
        }
    }

    #[test]
    fn v0_query_and_refusals() {
        let mut q = HashMap::from([
            ("access_token".to_string(), token("r", "bob")),
            ("auto_subscribe".to_string(), "0".to_string()),
        ]);
        let j = parse_join(false, &q, None, &keys()).unwrap();
        assert!(!j.auto_subscribe);
        assert_eq!(j.claims.sub, "bob");
        // v1 without join_request: 400.
        assert_eq!(parse_join(true, &q, None, &keys()).unwrap_err().status, 400);
        // No token: 401.
        assert_eq!(
            parse_join(false, &HashMap::new(), None, &keys())
                .unwrap_err()
                .status,
            401
        );
        // Bad token: 401; missing room or identity: 400.
        q.insert("access_token".into(), "garbage".into());
        assert_eq!(
            parse_join(false, &q, None, &keys()).unwrap_err().status,
            401
        );
        q.insert("access_token".into(), token("", "bob"));
        assert_eq!(
            parse_join(false, &q, None, &keys()).unwrap_err().status,
            400
        );
        q.insert("access_token".into(), token("r", ""));
        assert_eq!(
            parse_join(false, &q, None, &keys()).unwrap_err().status,
            400
        );
        // Garbage join_request: 400.
        let q = HashMap::from([("join_request".to_string(), "!!!".to_string())]);
        let auth = format!("Bearer {}", token("r", "a"));
        assert_eq!(
            parse_join(true, &q, Some(&auth), &keys())
                .unwrap_err()
                .status,
            400
        );
    }
}
