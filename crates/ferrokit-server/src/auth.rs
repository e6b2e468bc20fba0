//! Access tokens: HS256 JWTs carrying LiveKit's `ClaimGrants`.
//!
//! This is the only module that knows JWT. A token's `iss` claim names the API
//! key, which selects the secret that verifies the signature. Claims are parsed
//! leniently: the Rust SDK mints tokens with every field present, including
//! `false`, empty and `null` values, and any unknown field is ignored.

use std::collections::HashMap;

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use livekit_protocol as proto;
use serde::{Deserialize, Deserializer, Serialize};

/// Clock skew allowed on `exp` and `nbf`, in seconds.
pub const CLOCK_SKEW_SECS: u64 = 60;

/// Why a token was refused. Each maps to HTTP 401 at the edge.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AuthError {
    /// No token in the `Authorization` header nor the `access_token` query.
    #[error("no access token")]
    Missing,
    /// Not a well-formed JWT, or its payload is not JSON.
    #[error("malformed access token")]
    Malformed,
    /// `iss` names an API key this server does not have.
    #[error("unknown API key")]
    UnknownKey,
    /// The signature does not verify with the key's secret.
    #[error("invalid token signature")]
    BadSignature,
    /// `exp` is in the past (beyond the allowed skew).
    #[error("token expired")]
    Expired,
    /// `nbf` is in the future (beyond the allowed skew).
    #[error("token not valid yet")]
    NotYetValid,
    /// Any other validation failure (missing `exp`, wrong algorithm...).
    #[error("invalid token: {0}")]
    Invalid(String),
}

fn null_as_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// The `video` grant of a LiveKit token (camelCase JSON, every field optional).
///
/// `None` means "absent": [`VideoGrant::can_publish`] and friends apply
/// LiveKit's defaults (publish/subscribe default to true, publishData copies
/// publish, updateOwnMetadata defaults to false).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase", default)]
pub struct VideoGrant {
    #[serde(deserialize_with = "null_as_default", skip_serializing_if = "is_false")]
    pub room_create: bool,
    #[serde(deserialize_with = "null_as_default", skip_serializing_if = "is_false")]
    pub room_list: bool,
    #[serde(deserialize_with = "null_as_default", skip_serializing_if = "is_false")]
    pub room_record: bool,
    #[serde(deserialize_with = "null_as_default", skip_serializing_if = "is_false")]
    pub room_admin: bool,
    #[serde(deserialize_with = "null_as_default", skip_serializing_if = "is_false")]
    pub room_join: bool,
    #[serde(
        deserialize_with = "null_as_default",
        skip_serializing_if = "String::is_empty"
    )]
    pub room: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub can_publish: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub can_subscribe: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub can_publish_data: Option<bool>,
    /// Lowercase source names (`camera`, `microphone`, `screen_share`,
    /// `screen_share_audio`); empty means every source.
    #[serde(
        deserialize_with = "null_as_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub can_publish_sources: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub can_update_own_metadata: Option<bool>,
    #[serde(deserialize_with = "null_as_default", skip_serializing_if = "is_false")]
    pub hidden: bool,
    #[serde(deserialize_with = "null_as_default", skip_serializing_if = "is_false")]
    pub recorder: bool,
    #[serde(deserialize_with = "null_as_default", skip_serializing_if = "is_false")]
    pub agent: bool,
}

fn is_false(b: &bool) -> bool {
    !*b
}

impl VideoGrant {
    /// canPublish, true when absent.
    pub fn can_publish(&self) -> bool {
        self.can_publish.unwrap_or(true)
    }
    /// canSubscribe, true when absent.
    pub fn can_subscribe(&self) -> bool {
        self.can_subscribe.unwrap_or(true)
    }
    /// canPublishData, a copy of canPublish when absent.
    pub fn can_publish_data(&self) -> bool {
        self.can_publish_data.unwrap_or_else(|| self.can_publish())
    }
    /// canUpdateOwnMetadata, false when absent.
    pub fn can_update_own_metadata(&self) -> bool {
        self.can_update_own_metadata.unwrap_or(false)
    }

    /// The grant as a `ParticipantPermission` (livekit_models.proto).
    pub fn to_permission(&self) -> proto::ParticipantPermission {
        proto::ParticipantPermission {
            can_subscribe: self.can_subscribe(),
            can_publish: self.can_publish(),
            can_publish_data: self.can_publish_data(),
            can_publish_sources: self
                .can_publish_sources
                .iter()
                .filter_map(|s| source_from_name(s))
                .map(|s| s as i32)
                .collect(),
            hidden: self.hidden,
            recorder: self.recorder,
            can_update_metadata: self.can_update_own_metadata(),
            agent: self.agent,
            ..Default::default()
        }
    }
}

/// Maps a lowercase grant source name to a `TrackSource`.
pub fn source_from_name(name: &str) -> Option<proto::TrackSource> {
    match name {
        "camera" => Some(proto::TrackSource::Camera),
        "microphone" => Some(proto::TrackSource::Microphone),
        "screen_share" => Some(proto::TrackSource::ScreenShare),
        "screen_share_audio" => Some(proto::TrackSource::ScreenShareAudio),
        _ => None,
    }
}

/// LiveKit's `ClaimGrants`: the JWT payload of an access token.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(default)]
pub struct Claims {
    /// API key that signed the token.
    #[serde(deserialize_with = "null_as_default")]
    pub iss: String,
    /// Participant identity.
    #[serde(deserialize_with = "null_as_default")]
    pub sub: String,
    /// Expiry, seconds since the Unix epoch.
    #[serde(deserialize_with = "null_as_default")]
    pub exp: u64,
    /// Not before, seconds since the Unix epoch (0: absent).
    #[serde(deserialize_with = "null_as_default", skip_serializing_if = "is_zero")]
    pub nbf: u64,
    #[serde(
        deserialize_with = "null_as_default",
        skip_serializing_if = "String::is_empty"
    )]
    pub name: String,
    #[serde(
        deserialize_with = "null_as_default",
        skip_serializing_if = "String::is_empty"
    )]
    pub metadata: String,
    #[serde(
        deserialize_with = "null_as_default",
        skip_serializing_if = "HashMap::is_empty"
    )]
    pub attributes: HashMap<String, String>,
    /// Participant kind name (`standard`, `agent`, `sip`, `egress`, `ingress`).
    #[serde(
        deserialize_with = "null_as_default",
        skip_serializing_if = "String::is_empty"
    )]
    pub kind: String,
    #[serde(deserialize_with = "null_as_default")]
    pub video: VideoGrant,
    /// Base64 SHA-256 of a webhook body.
    #[serde(
        deserialize_with = "null_as_default",
        skip_serializing_if = "String::is_empty"
    )]
    pub sha256: String,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

impl Claims {
    /// The participant kind as `ParticipantInfo.Kind`.
    pub fn participant_kind(&self) -> proto::participant_info::Kind {
        use proto::participant_info::Kind;
        match self.kind.as_str() {
            "agent" => Kind::Agent,
            "sip" => Kind::Sip,
            "egress" => Kind::Egress,
            "ingress" => Kind::Ingress,
            _ => Kind::Standard,
        }
    }
}

/// API keys and their secrets.
#[derive(Debug, Clone, Default)]
pub struct KeyProvider {
    keys: HashMap<String, String>,
}

impl KeyProvider {
    /// A provider over `key -> secret`.
    pub fn new(keys: HashMap<String, String>) -> Self {
        Self { keys }
    }

    /// The secret of `key`, if known.
    pub fn secret(&self, key: &str) -> Option<&str> {
        self.keys.get(key).map(String::as_str)
    }

    /// Verifies `token` (signature with the secret of its `iss`, `exp` and
    /// `nbf` with [`CLOCK_SKEW_SECS`] of skew) and returns its claims.
    pub fn verify(&self, token: &str) -> Result<Claims, AuthError> {
        let unverified: Claims = jsonwebtoken::dangerous::insecure_decode::<Claims>(token)
            .map_err(|_| AuthError::Malformed)?
            .claims;
        let secret = self.secret(&unverified.iss).ok_or(AuthError::UnknownKey)?;
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = CLOCK_SKEW_SECS;
        validation.validate_nbf = true;
        validation.validate_aud = false;
        validation.set_required_spec_claims(&["exp"]);
        jsonwebtoken::decode::<Claims>(
            token,
            &DecodingKey::from_secret(secret.as_bytes()),
            &validation,
        )
        .map(|data| data.claims)
        .map_err(|e| {
            use jsonwebtoken::errors::ErrorKind;
            match e.kind() {
                ErrorKind::InvalidSignature => AuthError::BadSignature,
                ErrorKind::ExpiredSignature => AuthError::Expired,
                ErrorKind::ImmatureSignature => AuthError::NotYetValid,
                ErrorKind::InvalidToken | ErrorKind::Base64(_) | ErrorKind::Json(_) => {
                    AuthError::Malformed
                }
                other => AuthError::Invalid(format!("{other:?}")),
            }
        })
    }
}

/// Signs `claims` with HS256 using `secret`.
///
/// Errors only if serialization fails, which plain claims never do.
pub fn sign(claims: &Claims, secret: &str) -> Result<String, AuthError> {
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    )
    .map_err(|e| AuthError::Invalid(e.to_string()))
}

/// Seconds since the Unix epoch.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn provider() -> KeyProvider {
        KeyProvider::new(HashMap::from([(
            "devkey".to_string(),
            "secret".to_string(),
        )]))
    }

    fn claims(exp: u64) -> Claims {
        Claims {
            iss: "devkey".into(),
            sub: "alice".into(),
            exp,
            video: VideoGrant {
                room_join: true,
                room: "r1".into(),
                ..Default::default()
            },
            ..Default::default()
        }
    }

    #[test]
    fn round_trip_and_defaults() {
        let token = sign(&claims(unix_now() + 600), "secret").unwrap();
        let c = provider().verify(&token).unwrap();
        assert_eq!(c.sub, "alice");
        assert!(c.video.room_join);
        assert!(c.video.can_publish());
        assert!(c.video.can_subscribe());
        assert!(c.video.can_publish_data());
        assert!(!c.video.can_update_own_metadata());
    }

    #[test]
    fn publish_data_copies_publish() {
        let g = VideoGrant {
            can_publish: Some(false),
            ..Default::default()
        };
        assert!(!g.can_publish_data());
    }

    #[test]
    fn refuses_bad_tokens() {
        let p = provider();
        let good = sign(&claims(unix_now() + 600), "secret").unwrap();
        let wrong_secret = sign(&claims(unix_now() + 600), "other").unwrap();
        assert_eq!(p.verify(&wrong_secret), Err(AuthError::BadSignature));
        let expired = sign(&claims(unix_now() - 3600), "secret").unwrap();
        assert_eq!(p.verify(&expired), Err(AuthError::Expired));
        assert_eq!(p.verify("not a token"), Err(AuthError::Malformed));
        let mut tampered = good.clone();
        tampered.insert(good.len() - 3, 'x');
        assert!(p.verify(&tampered).is_err());
        let mut other_key = claims(unix_now() + 600);
        other_key.iss = "nokey".into();
        let t = sign(&other_key, "secret").unwrap();
        assert_eq!(p.verify(&t), Err(AuthError::UnknownKey));
    }

    #[test]
    fn expiry_within_skew_is_accepted() {
        let t = sign(&claims(unix_now() - 10), "secret").unwrap();
        assert!(provider().verify(&t).is_ok());
    }

    #[test]
    fn lenient_rust_sdk_shape() {
        // Every field present, with nulls, false and empty values, as the Rust SDK mints them.
        let json = serde_json::json!({
            "iss": "devkey", "sub": "bob", "nbf": 0, "exp": unix_now() + 60,
            "name": null, "metadata": "", "attributes": null, "kind": "",
            "sha256": "", "roomPreset": "", "roomConfig": null, "sip": {"admin": false},
            "video": {"roomCreate": false, "roomJoin": true, "room": "r", "canPublish": true,
                "canSubscribe": true, "canPublishData": null, "canPublishSources": [],
                "canUpdateOwnMetadata": false, "hidden": false, "recorder": false,
                "ingressAdmin": false, "agent": false, "destinationRoom": ""}
        });
        let c: Claims = serde_json::from_value(json).unwrap();
        assert_eq!(c.sub, "bob");
        assert!(c.video.can_publish_data());
        let token = sign(&c, "secret").unwrap();
        assert!(provider().verify(&token).is_ok());
    }
}
