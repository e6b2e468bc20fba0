//! Sans-IO room logic: participants, publications, subscriptions,
//! permissions and data routing.
//!
//! A [`Room`] takes commands (join, add_track, subscription, leave...) and the
//! current time, and returns [`Output`]s: signal messages for participants'
//! sessions and subscription changes for their transports. It never touches
//! a socket or a task, so tests drive it directly.

mod admin;
mod data;
mod event;
mod participant;
mod permissions;
mod quality;
mod speakers;
mod subscriptions;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use livekit_protocol as proto;
use proto::signal_response::Message as Msg;

use crate::auth::VideoGrant;
use crate::ids;
pub use admin::AdminError;
pub use data::DataDelivery;
pub use event::RoomEvent;
pub use participant::{Participant, PendingTrack};

/// Something the IO layer must carry out for the room.
#[derive(Debug, Clone)]
// Control plane only (never per packet): boxing would buy nothing.
#[allow(clippy::large_enum_variant)]
pub enum Output {
    /// Send `msg` on participant `to`'s signal connection.
    Signal { to: String, msg: Msg },
    /// Start forwarding `track` of `publisher` to `subscriber`.
    Subscribe {
        subscriber: String,
        publisher: String,
        track: proto::TrackInfo,
    },
    /// Stop forwarding `track_sid` of `publisher` to `subscriber`.
    Unsubscribe {
        subscriber: String,
        publisher: String,
        track_sid: String,
    },
    /// Deliver a data packet to `to`.
    Data { to: String, data: DataDelivery },
    /// Close participant `sid`'s session (a `leave` was sent before, when due).
    Disconnect { sid: String },
    /// Tell webhooks and metrics.
    Event(RoomEvent),
}

/// Who is joining, from the token and the join request.
#[derive(Debug, Clone, Default)]
pub struct JoinParams {
    pub identity: String,
    pub name: String,
    pub metadata: String,
    pub attributes: HashMap<String, String>,
    pub kind: proto::participant_info::Kind,
    pub grant: VideoGrant,
    /// ConnectionSettings.auto_subscribe.
    pub auto_subscribe: bool,
    /// ClientInfo.protocol of the joining client.
    pub client_protocol: i32,
}

/// What a join produced: the participant's own info and the room as it sees it.
#[derive(Debug, Clone)]
pub struct Joined {
    pub participant: proto::ParticipantInfo,
    pub others: Vec<proto::ParticipantInfo>,
    pub room: proto::Room,
}

/// A refusal sent back as `request_response` (or `subscription_response`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub reason: proto::request_response::Reason,
    pub message: String,
}

impl Refusal {
    fn new(reason: proto::request_response::Reason, message: impl Into<String>) -> Self {
        Self {
            reason,
            message: message.into(),
        }
    }
}

/// One room's state.
#[derive(Debug)]
pub struct Room {
    info: proto::Room,
    participants: Vec<Participant>,
    empty_since: Option<Instant>,
    had_participants: bool,
}

impl Room {
    /// A new empty room. `now_ms` is Unix time in ms (for `creation_time`).
    pub fn new(
        name: &str,
        empty_timeout: Duration,
        departure_timeout: Duration,
        now: Instant,
        now_ms: i64,
    ) -> Self {
        Self {
            info: proto::Room {
                sid: ids::new_id(ids::ROOM_PREFIX),
                name: name.to_string(),
                empty_timeout: empty_timeout.as_secs().try_into().unwrap_or(u32::MAX),
                departure_timeout: departure_timeout.as_secs().try_into().unwrap_or(u32::MAX),
                creation_time: now_ms / 1000,
                creation_time_ms: now_ms,
                ..Default::default()
            },
            participants: Vec::new(),
            empty_since: Some(now),
            had_participants: false,
        }
    }

    /// The room's info with current counts.
    pub fn info(&self) -> proto::Room {
        let mut info = self.info.clone();
        info.num_participants = self.participants.iter().filter(|p| !p.hidden()).count() as u32;
        info.num_publishers = self
            .participants
            .iter()
            .filter(|p| !p.info.tracks.is_empty())
            .count() as u32;
        info
    }

    /// Room name.
    pub fn name(&self) -> &str {
        &self.info.name
    }

    /// Room sid (`RM_...`).
    pub fn sid(&self) -> &str {
        &self.info.sid
    }

    /// A participant by sid.
    pub fn participant(&self, sid: &str) -> Option<&Participant> {
        self.participants.iter().find(|p| p.sid() == sid)
    }

    fn participant_mut(&mut self, sid: &str) -> Option<&mut Participant> {
        self.participants.iter_mut().find(|p| p.sid() == sid)
    }

    /// Number of participants, hidden ones included.
    pub fn len(&self) -> usize {
        self.participants.len()
    }

    /// Whether nobody is in the room.
    pub fn is_empty(&self) -> bool {
        self.participants.is_empty()
    }

    /// True once the room has been empty long enough to close: for
    /// `empty_timeout` when nobody ever joined, for `departure_timeout` after
    /// the last participant left (livekit.yaml semantics).
    pub fn expired(&self, now: Instant) -> bool {
        let secs = if self.had_participants {
            self.info.departure_timeout
        } else {
            self.info.empty_timeout
        };
        self.empty_since.is_some_and(|since| {
            now.saturating_duration_since(since) >= Duration::from_secs(secs.into())
        })
    }

    /// Adds a participant. A participant with the same identity is replaced:
    /// it gets `leave` (DUPLICATE_IDENTITY) and is removed first.
    pub fn join(&mut self, params: JoinParams, now_ms: i64) -> (Joined, Vec<Output>) {
        let mut out = Vec::new();
        if let Some(old) = self
            .participants
            .iter()
            .find(|p| p.info.identity == params.identity)
            .map(|p| p.sid().to_string())
        {
            out.push(Output::Signal {
                to: old.clone(),
                msg: Msg::Leave(leave(proto::DisconnectReason::DuplicateIdentity)),
            });
            out.extend(self.remove(&old));
            out.push(Output::Disconnect { sid: old });
        }
        let info = proto::ParticipantInfo {
            sid: ids::new_id(ids::PARTICIPANT_PREFIX),
            identity: params.identity,
            name: params.name,
            metadata: params.metadata,
            attributes: params.attributes,
            state: proto::participant_info::State::Joined as i32,
            joined_at: now_ms / 1000,
            joined_at_ms: now_ms,
            version: 1,
            permission: Some(params.grant.to_permission()),
            kind: params.kind as i32,
            client_protocol: params.client_protocol,
            ..Default::default()
        };
        let participant = Participant {
            info,
            grant: params.grant,
            auto_subscribe: params.auto_subscribe,
            pending: Vec::new(),
            subscriptions: Default::default(),
            speaking: None,
            ever_subscribed: Default::default(),
            sub_permission: None,
            quality: None,
        };
        let sid = participant.sid().to_string();
        let others = self
            .participants
            .iter()
            .filter(|p| !p.hidden())
            .map(|p| p.info.clone())
            .collect();
        let me = participant.info.clone();
        let hidden = participant.hidden();
        self.participants.push(participant);
        self.empty_since = None;
        self.had_participants = true;
        if !hidden {
            out.extend(self.broadcast_update(&sid, false));
        }
        out.extend(self.auto_subscribe_existing(&sid));
        let joined = Joined {
            participant: me,
            others,
            room: self.info(),
        };
        (joined, out)
    }

    /// Marks the participant ACTIVE (its media transport connected).
    pub fn set_active(&mut self, sid: &str) -> Vec<Output> {
        let Some(p) = self.participant_mut(sid) else {
            return Vec::new();
        };
        if p.info.state == proto::participant_info::State::Active as i32 {
            return Vec::new();
        }
        p.info.state = proto::participant_info::State::Active as i32;
        p.bump();
        let joined = RoomEvent::ParticipantJoined(p.info.clone());
        let mut out = self.broadcast_update(sid, true);
        out.push(Output::Event(joined));
        out
    }

    /// Whether a new participant `identity` would exceed max_participants
    /// (hidden participants do not count; a rejoining identity replaces itself).
    pub fn is_full_for(&self, identity: &str) -> bool {
        let max = self.info.max_participants as usize;
        max > 0
            && self
                .participants
                .iter()
                .filter(|p| !p.hidden() && p.info.identity != identity)
                .count()
                >= max
    }

    /// Handles `add_track`: checks grants and answers with the new track's
    /// info (for `TrackPublishedResponse`). The track stays pending until
    /// [`Room::track_media_started`].
    pub fn add_track(
        &mut self,
        sid: &str,
        req: &proto::AddTrackRequest,
    ) -> Result<proto::TrackInfo, Refusal> {
        use proto::request_response::Reason;
        let p = self
            .participant_mut(sid)
            .ok_or_else(|| Refusal::new(Reason::NotFound, "participant not found"))?;
        let source =
            proto::TrackSource::try_from(req.source).unwrap_or(proto::TrackSource::Unknown);
        if !p.may_publish_source(source) {
            return Err(Refusal::new(
                Reason::NotAllowed,
                format!("not allowed to publish {}", source.as_str_name()),
            ));
        }
        if req.cid.is_empty() {
            return Err(Refusal::new(
                Reason::InvalidRequest,
                "add_track without cid",
            ));
        }
        if let Some(existing) = p.pending.iter().find(|t| t.cid == req.cid) {
            return Ok(existing.info.clone());
        }
        let info = proto::TrackInfo {
            sid: ids::new_id(ids::TRACK_PREFIX),
            name: req.name.clone(),
            r#type: req.r#type,
            muted: req.muted,
            width: req.width,
            height: req.height,
            simulcast: req.layers.len() > 1
                || req.simulcast_codecs.iter().any(|c| c.layers.len() > 1),
            disable_dtx: req.disable_dtx,
            source: req.source,
            layers: req.layers.clone(),
            stereo: req.stereo,
            disable_red: req.disable_red,
            encryption: req.encryption,
            stream: req.stream.clone(),
            audio_features: req.audio_features.clone(),
            backup_codec_policy: req.backup_codec_policy,
            codecs: req
                .simulcast_codecs
                .iter()
                .map(|c| proto::SimulcastCodecInfo {
                    mime_type: c.codec.clone(),
                    cid: c.cid.clone(),
                    layers: c.layers.clone(),
                    video_layer_mode: c.video_layer_mode,
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        };
        p.pending.push(PendingTrack {
            cid: req.cid.clone(),
            info: info.clone(),
        });
        Ok(info)
    }

    /// Pending tracks of a participant (for matching offer m-lines).
    pub fn pending_tracks(&self, sid: &str) -> &[PendingTrack] {
        self.participant(sid)
            .map(|p| p.pending.as_slice())
            .unwrap_or(&[])
    }

    /// Media of a pending track arrived: the track is published. Others are
    /// told (update) and auto-subscribers subscribe. `mid` and `mime_type`
    /// describe what the transport negotiated.
    pub fn track_media_started(
        &mut self,
        sid: &str,
        track_sid: &str,
        mid: &str,
        mime_type: &str,
    ) -> Vec<Output> {
        let Some(p) = self.participant_mut(sid) else {
            return Vec::new();
        };
        let Some(i) = p.pending.iter().position(|t| t.info.sid == track_sid) else {
            return Vec::new();
        };
        let mut track = p.pending.remove(i).info;
        track.mid = mid.to_string();
        track.mime_type = mime_type.to_string();
        if let Some(c) = track.codecs.first_mut() {
            c.mid = mid.to_string();
        }
        p.info.tracks.push(track.clone());
        p.info.is_publisher = true;
        p.bump();
        let published = RoomEvent::TrackPublished {
            participant: p.info.clone(),
            track: track.clone(),
        };
        let mut out = self.broadcast_update(sid, true);
        out.push(Output::Event(published));
        let subscribers: Vec<String> = self
            .participants
            .iter()
            .filter(|s| s.sid() != sid && s.auto_subscribe && s.grant.can_subscribe())
            .map(|s| s.sid().to_string())
            .collect();
        for s in subscribers {
            out.extend(self.subscribe(&s, sid, &track.sid));
        }
        out
    }

    /// The publisher removed a track's media (renegotiation) or unpublished it.
    pub fn unpublish_track(&mut self, sid: &str, track_sid: &str) -> Vec<Output> {
        let Some(p) = self.participant_mut(sid) else {
            return Vec::new();
        };
        p.pending.retain(|t| t.info.sid != track_sid);
        let Some(i) = p.info.tracks.iter().position(|t| t.sid == track_sid) else {
            return Vec::new();
        };
        let track = p.info.tracks.remove(i);
        p.bump();
        let unpublished = RoomEvent::TrackUnpublished {
            participant: p.info.clone(),
            track,
        };
        let mut out = self.unsubscribe_all_from(sid, Some(track_sid));
        out.extend(self.broadcast_update(sid, true));
        out.push(Output::Event(unpublished));
        out
    }

    /// `mute` from the publisher (or the API): sets `TrackInfo.muted`.
    pub fn set_muted(&mut self, sid: &str, track_sid: &str, muted: bool) -> Vec<Output> {
        let Some(p) = self.participant_mut(sid) else {
            return Vec::new();
        };
        let Some(t) = p.any_track_mut(track_sid) else {
            return Vec::new();
        };
        if t.muted == muted {
            return Vec::new();
        }
        t.muted = muted;
        p.bump();
        self.broadcast_update(sid, true)
    }

    /// `update_metadata`: needs canUpdateOwnMetadata.
    pub fn update_metadata(
        &mut self,
        sid: &str,
        req: &proto::UpdateParticipantMetadata,
    ) -> Result<Vec<Output>, Refusal> {
        use proto::request_response::Reason;
        let p = self
            .participant_mut(sid)
            .ok_or_else(|| Refusal::new(Reason::NotFound, "participant not found"))?;
        if !p.grant.can_update_own_metadata() {
            return Err(Refusal::new(
                Reason::NotAllowed,
                "canUpdateOwnMetadata is not granted",
            ));
        }
        p.update_info(&req.name, &req.metadata, &req.attributes);
        p.bump();
        Ok(self.broadcast_update(sid, true))
    }

    /// Removes a participant at `now`: others see it DISCONNECTED, its
    /// subscriptions and its subscribers' downtracks end, and an emptied room
    /// starts its `empty_timeout`.
    pub fn leave(&mut self, sid: &str, now: Instant) -> Vec<Output> {
        let out = self.remove(sid);
        if self.participants.is_empty() {
            self.empty_since = Some(now);
        }
        out
    }

    /// Removes a participant (see [`Room::leave`]) without touching the
    /// empty-room clock.
    fn remove(&mut self, sid: &str) -> Vec<Output> {
        let Some(i) = self.participants.iter().position(|p| p.sid() == sid) else {
            return Vec::new();
        };
        let mut out = self.unsubscribe_all_from(sid, None);
        let mut gone = self.participants.remove(i);
        for track_sid in gone.subscriptions.drain() {
            if let Some(publisher) = self.publisher_of(&track_sid) {
                out.push(Output::Unsubscribe {
                    subscriber: sid.to_string(),
                    publisher,
                    track_sid,
                });
            }
        }
        for track in &gone.info.tracks {
            out.push(Output::Event(RoomEvent::TrackUnpublished {
                participant: gone.info.clone(),
                track: track.clone(),
            }));
        }
        let aborted = gone.info.state != proto::participant_info::State::Active as i32;
        if !gone.hidden() {
            gone.info.state = proto::participant_info::State::Disconnected as i32;
            gone.bump();
            let update = Msg::Update(proto::ParticipantUpdate {
                participants: vec![gone.info.clone()],
            });
            for p in &self.participants {
                out.push(Output::Signal {
                    to: p.sid().to_string(),
                    msg: update.clone(),
                });
            }
        } else {
            gone.info.state = proto::participant_info::State::Disconnected as i32;
        }
        out.push(Output::Event(RoomEvent::ParticipantLeft {
            participant: gone.info,
            aborted,
        }));
        out
    }

    /// Sids of everyone in the room.
    pub fn participant_sids(&self) -> Vec<String> {
        self.participants
            .iter()
            .map(|p| p.sid().to_string())
            .collect()
    }

    /// `update` with `sid`'s info to everyone else (and to itself when
    /// `include_self`). Hidden participants are only told about themselves.
    fn broadcast_update(&self, sid: &str, include_self: bool) -> Vec<Output> {
        let Some(p) = self.participant(sid) else {
            return Vec::new();
        };
        let msg = Msg::Update(proto::ParticipantUpdate {
            participants: vec![p.info.clone()],
        });
        self.participants
            .iter()
            .filter(|o| {
                if o.sid() == sid {
                    include_self
                } else {
                    !p.hidden()
                }
            })
            .map(|o| Output::Signal {
                to: o.sid().to_string(),
                msg: msg.clone(),
            })
            .collect()
    }
}

/// A `LeaveRequest` that tells the client not to come back.
pub fn leave(reason: proto::DisconnectReason) -> proto::LeaveRequest {
    proto::LeaveRequest {
        can_reconnect: false,
        reason: reason as i32,
        action: proto::leave_request::Action::Disconnect as i32,
        regions: None,
    }
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod admin_tests;
