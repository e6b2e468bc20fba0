//! What happened in a room, for webhooks (livekit_webhook.proto event names)
//! and metrics. The room reports these as [`super::Output::Event`].

use livekit_protocol as proto;

/// A room event, with the infos as they were when it happened.
#[derive(Debug, Clone, PartialEq)]
pub enum RoomEvent {
    /// The participant's media transport connected (state ACTIVE):
    /// `participant_joined`.
    ParticipantJoined(proto::ParticipantInfo),
    /// The participant left: `participant_left`, or
    /// `participant_connection_aborted` when it never became ACTIVE.
    ParticipantLeft {
        participant: proto::ParticipantInfo,
        aborted: bool,
    },
    /// A track's media arrived: `track_published`.
    TrackPublished {
        participant: proto::ParticipantInfo,
        track: proto::TrackInfo,
    },
    /// A published track ended: `track_unpublished`.
    TrackUnpublished {
        participant: proto::ParticipantInfo,
        track: proto::TrackInfo,
    },
}

impl RoomEvent {
    /// The webhook event name (`WebhookEvent.event`).
    pub fn name(&self) -> &'static str {
        match self {
            Self::ParticipantJoined(_) => "participant_joined",
            Self::ParticipantLeft { aborted: false, .. } => "participant_left",
            Self::ParticipantLeft { aborted: true, .. } => "participant_connection_aborted",
            Self::TrackPublished { .. } => "track_published",
            Self::TrackUnpublished { .. } => "track_unpublished",
        }
    }

    /// The `WebhookEvent` for this event in `room` (id and created_at are
    /// stamped by the sender).
    pub fn to_webhook(&self, room: proto::Room) -> proto::WebhookEvent {
        let (participant, track) = match self {
            Self::ParticipantJoined(p) | Self::ParticipantLeft { participant: p, .. } => {
                (Some(p.clone()), None)
            }
            Self::TrackPublished { participant, track }
            | Self::TrackUnpublished { participant, track } => {
                (Some(participant.clone()), Some(track.clone()))
            }
        };
        proto::WebhookEvent {
            event: self.name().to_string(),
            room: Some(room),
            participant,
            track,
            ..Default::default()
        }
    }
}
