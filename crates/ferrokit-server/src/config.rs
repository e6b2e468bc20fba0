//! Server settings, with livekit.yaml's names for what ferrokit supports.
//!
//! ```yaml
//! port: 7880                 # HTTP / WebSocket
//! bind_addresses: ["127.0.0.1"]
//! rtc: { udp_port: 7882, node_ip: 127.0.0.1 }
//! keys: { devkey: secret }
//! room: { empty_timeout: 300, departure_timeout: 20 }
//! logging: { level: info }
//! key_file: keys.yaml        # more keys, "key: secret" lines
//! webhook: { api_key: devkey, urls: ["https://example.com/hook"] }
//! prometheus_port: 6789      # /metrics; absent or 0: off
//! ```
//!
//! Keys ferrokit does not know are reported as warnings (livekit.yaml has
//! many more); a value of the wrong type is an error that names its key.

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

/// Dev-mode API key (livekit-server `--dev`).
pub const DEV_API_KEY: &str = "devkey";
/// Dev-mode API secret.
pub const DEV_API_SECRET: &str = "secret";

/// Everything the server needs to start.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct Config {
    /// TCP port for HTTP and WebSocket signaling (default 7880).
    pub port: u16,
    /// Addresses the HTTP and UDP listeners bind to.
    pub bind_addresses: Vec<IpAddr>,
    /// WebRTC transport settings.
    pub rtc: RtcConfig,
    /// API key -> secret.
    pub keys: HashMap<String, String>,
    /// Room defaults.
    pub room: RoomConfig,
    /// Log settings.
    pub logging: LoggingConfig,
    /// A YAML file of more `key: secret` pairs (livekit-server's `key_file`).
    pub key_file: Option<PathBuf>,
    /// Webhook delivery.
    pub webhook: WebhookConfig,
    /// Port of the Prometheus `/metrics` listener; `None` or 0 turns it off.
    pub prometheus_port: Option<u16>,
}

/// `webhook:` section (livekit.yaml): every event is POSTed to each URL,
/// signed with `api_key`'s secret.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct WebhookConfig {
    /// The API key whose secret signs the `Authorization` JWT.
    pub api_key: String,
    /// Endpoints (http or https).
    pub urls: Vec<String>,
}

/// `rtc:` section.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct RtcConfig {
    /// The one UDP port for all ICE/media traffic (default 7882).
    pub udp_port: u16,
    /// Address put in ICE host candidates; defaults to the first bind address.
    pub node_ip: Option<IpAddr>,
}

/// `room:` section.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct RoomConfig {
    /// Seconds an empty room lives before it closes (default 300).
    pub empty_timeout: u32,
    /// Seconds a participant whose signal connection dropped is kept (default 20).
    pub departure_timeout: u32,
    /// Most participants a room admits; 0 means no limit (default 0).
    pub max_participants: u32,
    /// Whether MutePublishedTrack may unmute (default false, as livekit-server).
    pub enable_remote_unmute: bool,
}

/// `logging:` section.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct LoggingConfig {
    /// `debug`, `info`, `warn` or `error` (default info).
    pub level: String,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            port: 7880,
            bind_addresses: vec![IpAddr::from([127, 0, 0, 1])],
            rtc: RtcConfig::default(),
            keys: HashMap::new(),
            room: RoomConfig::default(),
            logging: LoggingConfig::default(),
            key_file: None,
            webhook: WebhookConfig::default(),
            prometheus_port: None,
        }
    }
}

impl Default for RtcConfig {
    fn default() -> Self {
        Self {
            udp_port: 7882,
            node_ip: None,
        }
    }
}

impl Default for RoomConfig {
    fn default() -> Self {
        Self {
            empty_timeout: 300,
            departure_timeout: 20,
            max_participants: 0,
            enable_remote_unmute: false,
        }
    }
}

impl Default for LoggingConfig {
    fn default() -> Self {
        Self {
            level: "info".into(),
        }
    }
}

/// A config file that could not be used; the message names the key.
#[derive(Debug, thiserror::Error)]
#[error("invalid config: {0}")]
pub struct ConfigError(pub String);

impl Config {
    /// Parses livekit.yaml-style YAML. Returns the config and the dotted
    /// paths of keys ferrokit ignores (to warn about); a mistyped value is an
    /// error naming its key.
    pub fn from_yaml(text: &str) -> Result<(Self, Vec<String>), ConfigError> {
        if text.trim().is_empty() {
            return Ok((Self::default(), Vec::new()));
        }
        let mut unknown = Vec::new();
        let de = serde_yaml::Deserializer::from_str(text);
        let config = serde_ignored::deserialize(de, |path| unknown.push(path.to_string()))
            .map_err(|e: serde_yaml::Error| ConfigError(e.to_string()))?;
        Ok((config, unknown))
    }

    /// Reads `key_file` (YAML `key: secret` pairs) into the keys.
    pub fn load_key_file(&mut self) -> Result<(), ConfigError> {
        let Some(path) = &self.key_file else {
            return Ok(());
        };
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigError(format!("key_file {}: {e}", path.display())))?;
        let keys: HashMap<String, String> = serde_yaml::from_str(&text)
            .map_err(|e| ConfigError(format!("key_file {}: {e}", path.display())))?;
        self.keys.extend(keys);
        Ok(())
    }

    /// Dev mode: `devkey` / `secret` added to the keys.
    pub fn with_dev_keys(mut self) -> Self {
        self.keys
            .insert(DEV_API_KEY.to_string(), DEV_API_SECRET.to_string());
        self
    }

    /// Parses livekit-server's `--keys` form, `"key: secret"` (several
    /// separated by newlines or commas), into the keys.
    pub fn add_keys_str(&mut self, text: &str) -> Result<(), ConfigError> {
        for entry in text
            .split([',', '\n'])
            .map(str::trim)
            .filter(|s| !s.is_empty())
        {
            let (k, s) = entry.split_once(':').ok_or_else(|| {
                ConfigError(format!("keys: expected \"key: secret\", got {entry:?}"))
            })?;
            let (k, s) = (k.trim(), s.trim());
            if k.is_empty() || s.is_empty() {
                return Err(ConfigError(format!(
                    "keys: empty key or secret in {entry:?}"
                )));
            }
            self.keys.insert(k.to_string(), s.to_string());
        }
        Ok(())
    }

    /// The address put in ICE candidates: `rtc.node_ip`, else the first bind
    /// address, else loopback.
    pub fn node_ip(&self) -> IpAddr {
        self.rtc
            .node_ip
            .or_else(|| self.bind_addresses.first().copied())
            .filter(|ip| !ip.is_unspecified())
            .unwrap_or(IpAddr::from([127, 0, 0, 1]))
    }

    /// The first bind address (all interfaces when none is given).
    pub fn bind_ip(&self) -> IpAddr {
        self.bind_addresses
            .first()
            .copied()
            .unwrap_or(IpAddr::from([0, 0, 0, 0]))
    }

    /// `room.empty_timeout` as a duration.
    pub fn empty_timeout(&self) -> Duration {
        Duration::from_secs(self.room.empty_timeout.into())
    }

    /// What a new room gets unless CreateRoom says otherwise.
    pub fn room_defaults(&self) -> crate::rooms::RoomDefaults {
        crate::rooms::RoomDefaults {
            empty_timeout: self.empty_timeout(),
            departure_timeout: self.departure_timeout(),
            max_participants: self.room.max_participants,
        }
    }

    /// `room.departure_timeout` as a duration.
    pub fn departure_timeout(&self) -> Duration {
        Duration::from_secs(self.room.departure_timeout.into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_livekit_yaml_subset() {
        let c = Config::from_yaml(
            "port: 9000\nbind_addresses: [\"0.0.0.0\"]\nrtc:\n  udp_port: 9001\n  node_ip: 10.1.2.3\nkeys:\n  k1: s1\nroom:\n  empty_timeout: 10\n  departure_timeout: 5\nlogging:\n  level: debug\n",
        )
        .unwrap()
        .0;
        assert_eq!(c.port, 9000);
        assert_eq!(c.rtc.udp_port, 9001);
        assert_eq!(c.node_ip().to_string(), "10.1.2.3");
        assert_eq!(c.keys["k1"], "s1");
        assert_eq!(c.empty_timeout(), Duration::from_secs(10));
        assert_eq!(c.logging.level, "debug");
    }

    #[test]
    fn unknown_keys_are_listed_and_mistyped_keys_name_the_key() {
        let (c, unknown) =
            Config::from_yaml("prot: 1\nport: 9\nrtc:\n  tcp_port: 7881\n  udp_port: 5\n").unwrap();
        assert_eq!(
            unknown,
            vec!["prot".to_string(), "rtc.tcp_port".to_string()]
        );
        assert_eq!((c.port, c.rtc.udp_port), (9, 5));
        let e = Config::from_yaml("rtc:\n  udp_port: many\n").unwrap_err();
        assert!(e.to_string().contains("udp_port"), "{e}");
    }

    #[test]
    fn webhook_prometheus_and_key_file() {
        let dir = std::env::temp_dir().join(format!("ferrokit-keys-{}", std::process::id()));
        std::fs::write(&dir, "k2: s2\n").unwrap();
        let yaml = format!(
            "webhook:\n  api_key: k1\n  urls: [\"http://127.0.0.1:1/h\"]\nprometheus_port: 6789\nkey_file: {}\n",
            dir.display()
        );
        let (mut c, unknown) = Config::from_yaml(&yaml).unwrap();
        assert!(unknown.is_empty());
        assert_eq!(c.webhook.api_key, "k1");
        assert_eq!(c.webhook.urls.len(), 1);
        assert_eq!(c.prometheus_port, Some(6789));
        c.load_key_file().unwrap();
        std::fs::remove_file(&dir).unwrap();
        assert_eq!(c.keys["k2"], "s2");
    }

    #[test]
    fn keys_flag_form() {
        let mut c = Config::default();
        c.add_keys_str("a: b, c: d").unwrap();
        assert_eq!(c.keys["a"], "b");
        assert_eq!(c.keys["c"], "d");
        assert!(c.add_keys_str("nocolon").is_err());
    }

    #[test]
    fn node_ip_falls_back_to_loopback_for_unspecified_bind() {
        let c = Config {
            bind_addresses: vec![IpAddr::from([0, 0, 0, 0])],
            ..Default::default()
        };
        assert_eq!(c.node_ip().to_string(), "127.0.0.1");
    }
}
