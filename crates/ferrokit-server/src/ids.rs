//! Identifiers in LiveKit's format: a type prefix (`RM_`, `PA_`, `TR_`, `DTR_`,
//! `EV_`) followed by 12 random base57 characters.
//!
//! Clients check the prefix (the Rust SDK rejects a participant sid without
//! `PA_`), so every id the server hands out comes from here.

use rand::Rng;

/// Base57 alphabet (no `0`, `O`, `1`, `I`, `l`), the alphabet LiveKit's ids use.
const ALPHABET: &[u8] = b"23456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz";

/// Number of random characters after the prefix.
pub const ID_RANDOM_LEN: usize = 12;

/// Prefix of room sids (`Room.sid`).
pub const ROOM_PREFIX: &str = "RM_";
/// Prefix of participant sids (`ParticipantInfo.sid`).
pub const PARTICIPANT_PREFIX: &str = "PA_";
/// Prefix of media track sids (`TrackInfo.sid`).
pub const TRACK_PREFIX: &str = "TR_";
/// Prefix of data track sids (`DataTrackInfo.sid`).
pub const DATA_TRACK_PREFIX: &str = "DTR_";
/// Prefix of webhook event ids (`WebhookEvent.id`).
pub const EVENT_PREFIX: &str = "EV_";

/// A new id: `prefix` followed by [`ID_RANDOM_LEN`] random base57 characters.
pub fn new_id(prefix: &str) -> String {
    let mut rng = rand::rng();
    let mut id = String::with_capacity(prefix.len() + ID_RANDOM_LEN);
    id.push_str(prefix);
    for _ in 0..ID_RANDOM_LEN {
        id.push(ALPHABET[rng.random_range(0..ALPHABET.len())] as char);
    }
    id
}

/// A random alphanumeric string of `len` characters (API keys, secrets, ICE ufrags).
pub fn random_string(len: usize) -> String {
    let mut rng = rand::rng();
    (0..len)
        .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_have_prefix_and_base57_body() {
        for prefix in [
            ROOM_PREFIX,
            PARTICIPANT_PREFIX,
            TRACK_PREFIX,
            DATA_TRACK_PREFIX,
        ] {
            let id = new_id(prefix);
            assert!(id.starts_with(prefix));
            let body = &id[prefix.len()..];
            assert_eq!(body.len(), ID_RANDOM_LEN);
            assert!(body.bytes().all(|b| ALPHABET.contains(&b)), "{id}");
        }
    }

    #[test]
    fn ids_differ() {
        let a = new_id(PARTICIPANT_PREFIX);
        let b = new_id(PARTICIPANT_PREFIX);
        assert_ne!(a, b);
    }
}
