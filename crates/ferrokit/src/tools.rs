//! `ferrokit token create` and `ferrokit generate-keys`: access tokens and
//! API key pairs, as `lk token create` and `livekit-server generate-keys`
//! make them.

use std::time::Duration;

use anyhow::{bail, Context};
use ferrokit_server::auth::{sign, unix_now, Claims, VideoGrant};
use ferrokit_server::ids::random_string;

/// `ferrokit token create` flags.
#[derive(clap::Args)]
pub struct TokenArgs {
    /// API key (the token's issuer).
    #[arg(long, env = "LIVEKIT_API_KEY")]
    pub api_key: String,
    /// API secret that signs the token.
    #[arg(long, env = "LIVEKIT_API_SECRET", hide_env_values = true)]
    pub api_secret: String,
    /// Room the token joins (the video grant's `room`).
    #[arg(long)]
    pub room: String,
    /// Participant identity (`sub`).
    #[arg(long)]
    pub identity: String,
    /// Display name.
    #[arg(long, default_value = "")]
    pub name: String,
    /// Participant metadata.
    #[arg(long, default_value = "")]
    pub metadata: String,
    /// Lifetime, e.g. `6h`, `30m`, `1h30m`.
    #[arg(long, default_value = "6h", value_parser = humantime::parse_duration)]
    pub valid_for: Duration,
    /// A video grant field, `name=value` (snake_case or camelCase), e.g.
    /// `can_publish=false`, `room_admin=true`,
    /// `can_publish_sources=camera,microphone`. Repeatable.
    #[arg(long = "grant", value_name = "NAME=VALUE")]
    pub grants: Vec<String>,
}

/// Video grant fields a `--grant` may set, in camelCase, and whether the
/// value is a list.
const GRANT_FIELDS: &[(&str, bool)] = &[
    ("roomCreate", false),
    ("roomList", false),
    ("roomRecord", false),
    ("roomAdmin", false),
    ("roomJoin", false),
    ("room", false),
    ("canPublish", false),
    ("canSubscribe", false),
    ("canPublishData", false),
    ("canPublishSources", true),
    ("canUpdateOwnMetadata", false),
    ("hidden", false),
    ("recorder", false),
    ("agent", false),
];

fn camel_case(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut upper = false;
    for ch in name.chars() {
        if ch == '_' || ch == '-' {
            upper = true;
        } else if upper {
            out.extend(ch.to_uppercase());
            upper = false;
        } else {
            out.push(ch);
        }
    }
    out
}

/// The video grant: roomJoin for `room`, then each `name=value` applied.
pub fn grant_from(room: &str, pairs: &[String]) -> anyhow::Result<VideoGrant> {
    let mut grant = serde_json::json!({ "roomJoin": true, "room": room });
    for pair in pairs {
        let (name, value) = pair
            .split_once('=')
            .with_context(|| format!("--grant {pair:?}: expected NAME=VALUE"))?;
        let field = camel_case(name.trim());
        let Some(&(_, list)) = GRANT_FIELDS.iter().find(|(f, _)| *f == field) else {
            let names: Vec<&str> = GRANT_FIELDS.iter().map(|(f, _)| *f).collect();
            bail!(
                "--grant {pair:?}: unknown grant {name:?} (known: {})",
                names.join(", ")
            );
        };
        let value = value.trim();
        let json = if list {
            serde_json::json!(value
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .collect::<Vec<_>>())
        } else if field == "room" {
            serde_json::json!(value)
        } else {
            match value {
                "true" => serde_json::json!(true),
                "false" => serde_json::json!(false),
                _ => bail!("--grant {pair:?}: expected true or false"),
            }
        };
        grant[field] = json;
    }
    serde_json::from_value(grant).context("building the video grant")
}

/// Signs the token `args` describe.
pub fn create_token(args: &TokenArgs) -> anyhow::Result<String> {
    if args.identity.is_empty() {
        bail!("--identity must not be empty");
    }
    let now = unix_now();
    let claims = Claims {
        iss: args.api_key.clone(),
        sub: args.identity.clone(),
        exp: now + args.valid_for.as_secs(),
        nbf: now,
        name: args.name.clone(),
        metadata: args.metadata.clone(),
        video: grant_from(&args.room, &args.grants)?,
        ..Default::default()
    };
    Ok(sign(&claims, &args.api_secret)?)
}

/// A fresh API key (`API` + 12 characters) and secret (43 characters, about
/// 256 bits), in livekit-server's `generate-keys` output format.
pub fn generate_keys() -> String {
    format!(
        "API Key:  API{}\nAPI Secret:  {}",
        random_string(12),
        random_string(43)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grants_apply_in_either_case() {
        let g = grant_from(
            "r",
            &[
                "can_publish=false".into(),
                "roomAdmin=true".into(),
                "can_publish_sources=camera, microphone".into(),
            ],
        )
        .unwrap();
        assert!(g.room_join && g.room_admin);
        assert_eq!(g.room, "r");
        assert_eq!(g.can_publish, Some(false));
        assert_eq!(g.can_publish_sources, vec!["camera", "microphone"]);
    }

    #[test]
    fn bad_grants_are_refused() {
        assert!(grant_from("r", &["can_fly=true".into()]).is_err());
        assert!(grant_from("r", &["can_publish=maybe".into()]).is_err());
        assert!(grant_from("r", &["can_publish".into()]).is_err());
    }

    #[test]
    fn token_verifies_with_its_secret() {
        let args = TokenArgs {
            api_key: "k".into(),
            api_secret: "s".into(),
            room: "r".into(),
            identity: "alice".into(),
            name: "Alice".into(),
            metadata: String::new(),
            valid_for: Duration::from_secs(60),
            grants: vec![],
        };
        let token = create_token(&args).unwrap();
        let keys = ferrokit_server::auth::KeyProvider::new([("k".into(), "s".into())].into());
        let c = keys.verify(&token).unwrap();
        assert_eq!((c.sub.as_str(), c.name.as_str()), ("alice", "Alice"));
        assert!(c.exp <= unix_now() + 60 && c.exp + 5 >= unix_now() + 60);
        let keys = generate_keys();
        assert!(keys.starts_with("API Key:  API") && keys.contains("\nAPI Secret:  "));
    }
}
