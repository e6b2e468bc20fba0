//! Webhook delivery (livekit.yaml `webhook:`), as livekit-server does it.
//!
//! Each event becomes a protobuf-JSON `WebhookEvent` (livekit_webhook.proto)
//! with a fresh `EV_` id and `created_at` (Unix seconds), POSTed with
//! `Content-Type: application/webhook+json` and an `Authorization` header
//! holding an HS256 JWT from the configured API key whose `sha256` claim is
//! the standard-base64 SHA-256 of the body.
//!
//! Delivery never blocks a room: [`Webhooks::notify`] only queues. Every URL
//! has its own bounded queue and task, which sends events in order and
//! retries a failed one with exponential backoff a bounded number of times.
//! Events that do not fit the queue, or that still fail, are dropped with a
//! log line.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use livekit_protocol as proto;
use tokio::sync::mpsc;

use crate::auth::{sign, unix_now, Claims};
use crate::config::WebhookConfig;
use crate::ids;

/// Events waiting per URL before new ones are dropped.
pub const QUEUE_LEN: usize = 1024;
/// Attempts per event (the first and the retries).
pub const MAX_ATTEMPTS: u32 = 5;
/// Delay before the first retry; doubled before each next one.
pub const FIRST_RETRY_DELAY: Duration = Duration::from_millis(250);
/// Timeout of one POST.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// Lifetime of the signing token, seconds.
const TOKEN_VALID_SECS: u64 = 300;

/// One event ready to send: the body and its `Authorization` value.
#[derive(Debug)]
struct Delivery {
    event: String,
    id: String,
    body: Arc<[u8]>,
    authorization: Arc<str>,
}

/// Queues webhook events for every configured URL.
#[derive(Debug, Default)]
pub struct Webhooks {
    queues: Vec<(String, mpsc::Sender<Delivery>)>,
    signer: Option<(String, String)>,
}

/// Why webhooks could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    #[error("webhook.api_key {0:?} is not among the configured keys")]
    UnknownKey(String),
    #[error("webhook.urls given without webhook.api_key")]
    NoKey,
    #[error("webhook URL {0:?} is not an http(s) URL")]
    BadUrl(String),
    #[error("HTTP client: {0}")]
    Client(String),
}

impl Webhooks {
    /// Starts one delivery task per URL (none when `urls` is empty). Must run
    /// inside a tokio runtime. `secret_of` finds the API key's secret.
    pub fn start(
        config: &WebhookConfig,
        secret_of: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, WebhookError> {
        if config.urls.is_empty() {
            return Ok(Self::default());
        }
        if config.api_key.is_empty() {
            return Err(WebhookError::NoKey);
        }
        let secret = secret_of(&config.api_key)
            .ok_or_else(|| WebhookError::UnknownKey(config.api_key.clone()))?;
        for url in &config.urls {
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                return Err(WebhookError::BadUrl(url.clone()));
            }
        }
        let client = reqwest::Client::builder()
            .timeout(REQUEST_TIMEOUT)
            .build()
            .map_err(|e| WebhookError::Client(e.to_string()))?;
        let queues = config
            .urls
            .iter()
            .map(|url| {
                let (tx, rx) = mpsc::channel(QUEUE_LEN);
                tokio::spawn(deliver(client.clone(), url.clone(), rx));
                (url.clone(), tx)
            })
            .collect();
        Ok(Self {
            queues,
            signer: Some((config.api_key.clone(), secret)),
        })
    }

    /// Whether any URL is configured.
    pub fn enabled(&self) -> bool {
        !self.queues.is_empty()
    }

    /// Stamps `event` with an id and the time, signs it and queues it for
    /// every URL. Never waits.
    pub fn notify(&self, mut event: proto::WebhookEvent) {
        let Some((key, secret)) = &self.signer else {
            return;
        };
        event.id = ids::new_id(ids::EVENT_PREFIX);
        event.created_at = unix_now() as i64;
        let body: Arc<[u8]> = match serde_json::to_vec(&event) {
            Ok(b) => b.into(),
            Err(e) => {
                tracing::error!(event = %event.event, "webhook: cannot encode event: {e}");
                return;
            }
        };
        let authorization = match sign_body(&body, key, secret) {
            Ok(a) => Arc::<str>::from(a),
            Err(e) => {
                tracing::error!(event = %event.event, "webhook: cannot sign event: {e}");
                return;
            }
        };
        for (url, tx) in &self.queues {
            let delivery = Delivery {
                event: event.event.clone(),
                id: event.id.clone(),
                body: body.clone(),
                authorization: authorization.clone(),
            };
            if let Err(e) = tx.try_send(delivery) {
                let d = match e {
                    mpsc::error::TrySendError::Full(d) | mpsc::error::TrySendError::Closed(d) => d,
                };
                tracing::warn!(url = %url, event = %d.event, id = %d.id,
                    "webhook queue full, event dropped");
            }
        }
    }
}

/// `Bearer`-less JWT for a body, as livekit-server sends it: `iss` the API
/// key, valid 5 minutes, `sha256` the base64 SHA-256 of the body.
pub fn sign_body(body: &[u8], key: &str, secret: &str) -> Result<String, crate::auth::AuthError> {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, body);
    let now = unix_now();
    let claims = Claims {
        iss: key.to_string(),
        exp: now + TOKEN_VALID_SECS,
        nbf: now.saturating_sub(1),
        sha256: base64::engine::general_purpose::STANDARD.encode(digest.as_ref()),
        ..Default::default()
    };
    sign(&claims, secret)
}

/// Sends a URL's events in order until every [`Webhooks`] handle is gone.
async fn deliver(client: reqwest::Client, url: String, mut rx: mpsc::Receiver<Delivery>) {
    while let Some(d) = rx.recv().await {
        let mut delay = FIRST_RETRY_DELAY;
        for attempt in 1..=MAX_ATTEMPTS {
            match post(&client, &url, &d).await {
                Ok(()) => break,
                Err(e) if attempt == MAX_ATTEMPTS => {
                    tracing::warn!(url = %url, event = %d.event, id = %d.id,
                        "webhook failed {MAX_ATTEMPTS} times, event dropped: {e}");
                }
                Err(e) => {
                    tracing::debug!(url = %url, event = %d.event, attempt, "webhook failed: {e}");
                    tokio::time::sleep(delay).await;
                    delay *= 2;
                }
            }
        }
    }
}

async fn post(client: &reqwest::Client, url: &str, d: &Delivery) -> Result<(), String> {
    let res = client
        .post(url)
        .header(reqwest::header::CONTENT_TYPE, "application/webhook+json")
        .header(reqwest::header::AUTHORIZATION, &*d.authorization)
        .body(d.body.to_vec())
        .send()
        .await
        .map_err(|e| e.to_string())?;
    if res.status().is_success() {
        Ok(())
    } else {
        Err(format!("HTTP {}", res.status()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::KeyProvider;

    #[test]
    fn signature_carries_body_hash_and_verifies() {
        let body = br#"{"event":"room_started"}"#;
        let token = sign_body(body, "k", "s").unwrap();
        let keys = KeyProvider::new([("k".to_string(), "s".to_string())].into());
        let claims = keys.verify(&token).unwrap();
        assert_eq!(claims.iss, "k");
        // printf '%s' BODY | sha256sum | xxd -r -p | base64
        assert_eq!(
            claims.sha256,
            "w9NV0uLHjSON8P7eonnkKXDHY4ICORefbHDCviKIgX8="
        );
    }

    #[test]
    fn config_errors() {
        let cfg = WebhookConfig {
            api_key: "nokey".into(),
            urls: vec!["http://127.0.0.1:1/h".into()],
        };
        assert!(matches!(
            Webhooks::start(&cfg, |_| None),
            Err(WebhookError::UnknownKey(_))
        ));
        let cfg = WebhookConfig {
            api_key: "k".into(),
            urls: vec!["ftp://x".into()],
        };
        assert!(matches!(
            Webhooks::start(&cfg, |_| Some("s".into())),
            Err(WebhookError::BadUrl(_))
        ));
    }
}
