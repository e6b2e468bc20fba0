//! Server settings, with livekit.yaml's names for what ferrokit supports.
//!
//! ```yaml
//! port: 7880                 # HTTP / WebSocket
//! bind_addresses: ["127.0.0.1"]
//! rtc: { udp_port: 7882, node_ip: 127.0.0.1 }
//! keys: { devkey: secret }
//! room: { empty_timeout: 300, departure_timeout: 20 }
//! logging: { level: info }
//! ```

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::Duration;

use serde::Deserialize;

/// Dev-mode API key (livekit-server `--dev`).
pub const DEV_API_KEY: &str = "devkey";
/// Dev-mode API secret.
pub const DEV_API_SECRET: &str = "secret";

/// Everything the server needs to start.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
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
}

/// `rtc:` section.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RtcConfig {
    /// The one UDP port for all ICE/media traffic (default 7882).
    pub udp_port: u16,
    /// Address put in ICE host candidates; defaults to the first bind address.
    pub node_ip: Option<IpAddr>,
}

/// `room:` section.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RoomConfig {
    /// Seconds an empty room lives before it closes (default 300).
    pub empty_timeout: u32,
    /// Seconds a participant whose signal connection dropped is kept (default 20).
    pub departure_timeout: u32,
}

/// `logging:` section.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
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
    /// Parses livekit.yaml-style YAML. Unknown or mistyped keys are errors
    /// that name the key.
    pub fn from_yaml(text: &str) -> Result<Self, ConfigError> {
        serde_yaml::from_str(text).map_err(|e| ConfigError(e.to_string()))
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
        .unwrap();
        assert_eq!(c.port, 9000);
        assert_eq!(c.rtc.udp_port, 9001);
        assert_eq!(c.node_ip().to_string(), "10.1.2.3");
        assert_eq!(c.keys["k1"], "s1");
        assert_eq!(c.empty_timeout(), Duration::from_secs(10));
        assert_eq!(c.logging.level, "debug");
    }

    #[test]
    fn unknown_and_mistyped_keys_name_the_key() {
        let e = Config::from_yaml("prot: 1\n").unwrap_err();
        assert!(e.to_string().contains("prot"), "{e}");
        let e = Config::from_yaml("rtc:\n  udp_port: many\n").unwrap_err();
        assert!(e.to_string().contains("udp_port"), "{e}");
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
