//! One participant's state inside a room: its `ParticipantInfo`, grants,
//! tracks awaiting media, and what it subscribes to. Pure data, no IO.

use std::collections::HashSet;

use livekit_protocol as proto;

use crate::auth::VideoGrant;

/// A track announced by `add_track` whose media has not arrived yet.
#[derive(Debug, Clone)]
pub struct PendingTrack {
    /// Client id from `AddTrackRequest.cid` (matched against the offer's msid).
    pub cid: String,
    /// The info sent back in `TrackPublishedResponse`; `sid` is set.
    pub info: proto::TrackInfo,
}

/// A participant as the room sees it.
#[derive(Debug, Clone)]
pub struct Participant {
    /// What others are told (`ParticipantInfo`); `version` grows on every change.
    pub info: proto::ParticipantInfo,
    /// The token's video grant.
    pub grant: VideoGrant,
    /// Subscribe to every track published in the room (ConnectionSettings.auto_subscribe).
    pub auto_subscribe: bool,
    /// `add_track` requests waiting for their media.
    pub pending: Vec<PendingTrack>,
    /// Sids of the tracks this participant subscribes to.
    pub subscriptions: HashSet<String>,
    /// Audio level (0..1] while speaking, as last sent in `speakers_changed`.
    pub speaking: Option<f32>,
    /// Its tracks that have had a subscriber (`track_subscribed` was sent).
    pub ever_subscribed: HashSet<String>,
    /// Who may subscribe to its tracks (`subscription_permission`); None: everyone.
    pub sub_permission: Option<proto::SubscriptionPermission>,
    /// Its connection quality as last reported (`connection_quality`).
    pub quality: Option<proto::ConnectionQualityInfo>,
}

impl Participant {
    /// The participant's sid (`PA_...`).
    pub fn sid(&self) -> &str {
        &self.info.sid
    }

    /// Whether others may see it (the `hidden` grant).
    pub fn hidden(&self) -> bool {
        self.grant.hidden
    }

    /// Bumps `ParticipantInfo.version`; call after every change.
    pub fn bump(&mut self) {
        self.info.version += 1;
    }

    /// Sets a non-empty name and metadata, and merges attributes (an empty
    /// value deletes its key), as UpdateParticipantMetadata and the API's
    /// UpdateParticipant do.
    pub fn update_info(
        &mut self,
        name: &str,
        metadata: &str,
        attributes: &std::collections::HashMap<String, String>,
    ) {
        if !name.is_empty() {
            self.info.name = name.to_string();
        }
        if !metadata.is_empty() {
            self.info.metadata = metadata.to_string();
        }
        for (k, v) in attributes {
            if v.is_empty() {
                self.info.attributes.remove(k);
            } else {
                self.info.attributes.insert(k.clone(), v.clone());
            }
        }
    }

    /// A published track by sid.
    pub fn track(&self, track_sid: &str) -> Option<&proto::TrackInfo> {
        self.info.tracks.iter().find(|t| t.sid == track_sid)
    }

    /// A published track by sid, mutable.
    pub fn track_mut(&mut self, track_sid: &str) -> Option<&mut proto::TrackInfo> {
        self.info.tracks.iter_mut().find(|t| t.sid == track_sid)
    }

    /// A pending or published track by sid, mutable (mute applies to both).
    pub fn any_track_mut(&mut self, track_sid: &str) -> Option<&mut proto::TrackInfo> {
        if let Some(i) = self.info.tracks.iter().position(|t| t.sid == track_sid) {
            return self.info.tracks.get_mut(i);
        }
        self.pending
            .iter_mut()
            .map(|p| &mut p.info)
            .find(|t| t.sid == track_sid)
    }

    /// Whether the grant allows publishing from `source`.
    pub fn may_publish_source(&self, source: proto::TrackSource) -> bool {
        if !self.grant.can_publish() {
            return false;
        }
        let allowed = &self.grant.can_publish_sources;
        allowed.is_empty()
            || allowed
                .iter()
                .filter_map(|s| crate::auth::source_from_name(s))
                .any(|s| s == source)
    }
}
