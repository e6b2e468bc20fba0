//! What the server API (Twirp `RoomService`) does to a room: room metadata,
//! removing and muting participants, changing their info and permissions,
//! their subscriptions, and data sent by the server. Pure logic like the rest
//! of [`Room`]; the Twirp edge maps [`AdminError`] to Twirp error codes.

use livekit_protocol as proto;
use prost::Message;
use proto::signal_response::Message as Msg;

use super::{leave, DataDelivery, Output, Room};
use crate::auth::VideoGrant;

/// Why an API call on a room failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AdminError {
    /// No participant with this identity, or no such track (Twirp `not_found`).
    #[error("{0} not found")]
    NotFound(String),
    /// The request cannot be carried out as asked (Twirp `invalid_argument`).
    #[error("{0}")]
    InvalidArgument(String),
    /// The server is configured to refuse it (Twirp `failed_precondition`).
    #[error("{0}")]
    FailedPrecondition(String),
}

impl Room {
    /// Applies the settings of a `CreateRoomRequest` to a room it created.
    pub fn configure(&mut self, req: &proto::CreateRoomRequest) {
        if req.empty_timeout > 0 {
            self.info.empty_timeout = req.empty_timeout;
        }
        if req.departure_timeout > 0 {
            self.info.departure_timeout = req.departure_timeout;
        }
        self.info.max_participants = req.max_participants;
        self.info.metadata = req.metadata.clone();
    }

    /// `empty_timeout`, departure_timeout and max_participants as configured.
    pub fn max_participants(&self) -> u32 {
        self.info.max_participants
    }

    /// The participant with this identity.
    pub fn participant_by_identity(&self, identity: &str) -> Option<&super::Participant> {
        self.participants
            .iter()
            .find(|p| p.info.identity == identity)
    }

    fn sid_of(&self, identity: &str) -> Result<String, AdminError> {
        self.participant_by_identity(identity)
            .map(|p| p.sid().to_string())
            .ok_or_else(|| AdminError::NotFound(format!("participant {identity:?}")))
    }

    /// Subscriptions in the room (one per subscriber and track).
    pub fn subscription_count(&self) -> usize {
        self.participants
            .iter()
            .map(|p| p.subscriptions.len())
            .sum()
    }

    /// Every participant's info (ListParticipants), hidden ones included.
    pub fn participants_info(&self) -> Vec<proto::ParticipantInfo> {
        self.participants.iter().map(|p| p.info.clone()).collect()
    }

    /// UpdateRoomMetadata: everyone gets `room_update`.
    pub fn set_room_metadata(&mut self, metadata: &str) -> (proto::Room, Vec<Output>) {
        self.info.metadata = metadata.to_string();
        let info = self.info();
        let msg = Msg::RoomUpdate(proto::RoomUpdate {
            room: Some(info.clone()),
        });
        let out = self
            .participants
            .iter()
            .map(|p| Output::Signal {
                to: p.sid().to_string(),
                msg: msg.clone(),
            })
            .collect();
        (info, out)
    }

    /// RemoveParticipant: `leave` (PARTICIPANT_REMOVED), then the participant
    /// is removed and its session closed.
    pub fn remove_participant(
        &mut self,
        identity: &str,
        now: std::time::Instant,
    ) -> Result<Vec<Output>, AdminError> {
        let sid = self.sid_of(identity)?;
        let mut out = vec![Output::Signal {
            to: sid.clone(),
            msg: Msg::Leave(leave(proto::DisconnectReason::ParticipantRemoved)),
        }];
        out.extend(self.leave(&sid, now));
        out.push(Output::Disconnect { sid });
        Ok(out)
    }

    /// Closes the room (DeleteRoom, shutdown): everyone gets `leave` with
    /// `reason`, is removed (so webhooks hear they left) and disconnected.
    pub fn close(
        &mut self,
        reason: proto::DisconnectReason,
        now: std::time::Instant,
    ) -> Vec<Output> {
        let mut out = Vec::new();
        for sid in self.participant_sids() {
            out.push(Output::Signal {
                to: sid.clone(),
                msg: Msg::Leave(leave(reason)),
            });
            out.extend(self.leave(&sid, now));
            out.push(Output::Disconnect { sid });
        }
        out
    }

    /// MutePublishedTrack: the publisher is told to mute (`mute` signal) and
    /// everyone sees the track muted. Unmuting needs `remote_unmute`
    /// (livekit.yaml `room.enable_remote_unmute`).
    pub fn mute_published_track(
        &mut self,
        identity: &str,
        track_sid: &str,
        muted: bool,
        remote_unmute: bool,
    ) -> Result<(proto::TrackInfo, Vec<Output>), AdminError> {
        let sid = self.sid_of(identity)?;
        if !muted && !remote_unmute {
            return Err(AdminError::FailedPrecondition(
                "remote unmute not enabled".into(),
            ));
        }
        let known = self
            .participant(&sid)
            .is_some_and(|p| p.track(track_sid).is_some());
        if !known {
            return Err(AdminError::NotFound(format!("track {track_sid:?}")));
        }
        let mut out = vec![Output::Signal {
            to: sid.clone(),
            msg: Msg::Mute(proto::MuteTrackRequest {
                sid: track_sid.to_string(),
                muted,
            }),
        }];
        out.extend(self.set_muted(&sid, track_sid, muted));
        let track = self
            .participant(&sid)
            .and_then(|p| p.track(track_sid))
            .cloned()
            .unwrap_or_default();
        Ok((track, out))
    }

    /// UpdateParticipant: metadata, name and attributes (an empty attribute
    /// value deletes the key), and permission. A participant losing
    /// canSubscribe is unsubscribed from everything (and, when it
    /// auto-subscribes, subscribed again when it gets it back); losing
    /// canPublish unpublishes its tracks.
    pub fn update_participant(
        &mut self,
        req: &proto::UpdateParticipantRequest,
    ) -> Result<(proto::ParticipantInfo, Vec<Output>), AdminError> {
        let sid = self.sid_of(&req.identity)?;
        let Some(p) = self.participant_mut(&sid) else {
            return Err(AdminError::NotFound(format!(
                "participant {:?}",
                req.identity
            )));
        };
        p.update_info(&req.name, &req.metadata, &req.attributes);
        let mut out = Vec::new();
        let mut lost_subscribe = false;
        let mut gained_subscribe = false;
        let mut lost_publish = Vec::new();
        if let Some(perm) = &req.permission {
            let before = p.grant.clone();
            apply_permission(&mut p.grant, perm);
            p.info.permission = Some(p.grant.to_permission());
            lost_subscribe = before.can_subscribe() && !p.grant.can_subscribe();
            gained_subscribe = !before.can_subscribe() && p.grant.can_subscribe();
            if before.can_publish() && !p.grant.can_publish() {
                lost_publish = p.info.tracks.iter().map(|t| t.sid.clone()).collect();
            }
        }
        p.bump();
        if lost_subscribe {
            out.extend(self.unsubscribe_everything(&sid));
        }
        if gained_subscribe {
            out.extend(self.auto_subscribe_existing(&sid));
        }
        for track_sid in lost_publish {
            out.extend(self.unpublish_track(&sid, &track_sid));
        }
        out.extend(self.broadcast_update(&sid, true));
        let info = self
            .participant(&sid)
            .map(|p| p.info.clone())
            .unwrap_or_default();
        Ok((info, out))
    }

    /// UpdateSubscriptions on behalf of `identity`.
    pub fn update_subscriptions_of(
        &mut self,
        identity: &str,
        req: &proto::UpdateSubscription,
    ) -> Result<Vec<Output>, AdminError> {
        let sid = self.sid_of(identity)?;
        Ok(self.update_subscription(&sid, req))
    }

    /// SendData: a user packet from the server (no sender identity) to
    /// everyone, or to `destination_identities` / `destination_sids`.
    pub fn send_server_data(&self, req: &proto::SendDataRequest) -> Vec<Output> {
        let reliable = req.kind != proto::data_packet::Kind::Lossy as i32;
        #[allow(deprecated)]
        let sids = &req.destination_sids;
        let packet = proto::DataPacket {
            kind: req.kind,
            destination_identities: req.destination_identities.clone(),
            value: Some(proto::data_packet::Value::User(proto::UserPacket {
                payload: req.data.clone(),
                topic: req.topic.clone(),
                destination_identities: req.destination_identities.clone(),
                nonce: req.nonce.clone(),
                ..Default::default()
            })),
            ..Default::default()
        };
        let data = DataDelivery {
            bytes: packet.encode_to_vec().into(),
            reliable,
        };
        let everyone = req.destination_identities.is_empty() && sids.is_empty();
        self.participants
            .iter()
            .filter(|p| {
                everyone
                    || req.destination_identities.contains(&p.info.identity)
                    || sids.iter().any(|s| s == p.sid())
            })
            .map(|p| Output::Data {
                to: p.sid().to_string(),
                data: data.clone(),
            })
            .collect()
    }

    /// Ends every subscription of `subscriber`.
    fn unsubscribe_everything(&mut self, subscriber: &str) -> Vec<Output> {
        let Some(s) = self.participant_mut(subscriber) else {
            return Vec::new();
        };
        let tracks: Vec<String> = s.subscriptions.drain().collect();
        tracks
            .into_iter()
            .filter_map(|track_sid| {
                let publisher = self.publisher_of(&track_sid)?;
                Some(Output::Unsubscribe {
                    subscriber: subscriber.to_string(),
                    publisher,
                    track_sid,
                })
            })
            .collect()
    }
}

/// Copies a `ParticipantPermission` into a grant (the grant keeps what the
/// permission does not carry: room, roomAdmin...).
fn apply_permission(grant: &mut VideoGrant, perm: &proto::ParticipantPermission) {
    grant.can_publish = Some(perm.can_publish);
    grant.can_subscribe = Some(perm.can_subscribe);
    grant.can_publish_data = Some(perm.can_publish_data);
    grant.can_update_own_metadata = Some(perm.can_update_metadata);
    grant.hidden = perm.hidden;
    grant.can_publish_sources = perm
        .can_publish_sources
        .iter()
        .filter_map(|s| proto::TrackSource::try_from(*s).ok())
        .map(|s| s.as_str_name().to_ascii_lowercase())
        .collect();
}
