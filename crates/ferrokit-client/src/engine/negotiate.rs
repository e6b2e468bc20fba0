//! Signal messages from the server and SDP negotiation: our offers on the
//! publisher (or single) connection, the server's offers on the subscriber
//! connection (dual PC), receive slots on request (single PC), and the
//! room's participants and tracks.

use livekit_protocol as proto;
use proto::signal_request::Message as Req;
use proto::signal_response::Message as Msg;
use str0m::channel::{ChannelConfig, Reliability};
use str0m::media::{Direction, MediaKind, Mid, Simulcast, SimulcastLayer};
use tokio::sync::oneshot;

use super::{media::LocalTrack, Engine, PendingPublish};
use crate::peer::{LOSSY_LABEL, RELIABLE_LABEL};
use crate::room::{
    DisconnectReason, LocalTrackPublication, RoomEvent, SyntheticKind, SyntheticTrackOptions,
    TrackKind,
};
use crate::sdp;
use crate::ClientError;

impl Engine {
    pub(super) fn on_signal(&mut self, msg: Msg) {
        match msg {
            Msg::Answer(sd) => self.on_answer(sd),
            Msg::Offer(sd) => self.on_offer(sd),
            Msg::Update(u) => {
                for p in u.participants {
                    self.on_participant(p);
                }
            }
            Msg::TrackPublished(tp) => self.on_track_published(tp),
            Msg::TrackSubscribed(ts) => self.emit(RoomEvent::LocalTrackSubscribed {
                track_sid: ts.track_sid,
            }),
            Msg::MediaSectionsRequirement(r) => self.on_media_sections(r),
            Msg::PongResp(p) => self.rtt_ms = Some(super::unix_ms() - p.last_ping_timestamp),
            Msg::Leave(l) => {
                let reason = proto::DisconnectReason::try_from(l.reason)
                    .unwrap_or(proto::DisconnectReason::UnknownReason);
                self.close(DisconnectReason::Server(reason));
            }
            Msg::RequestResponse(r) => self.on_request_response(r),
            Msg::Trickle(t) => {
                // The server is ICE-lite and puts its candidate in the SDP;
                // trickled ones are used too.
                tracing::debug!(participant = %self.local_sid, "trickle from server: {}", t.candidate_init);
            }
            // Refreshed tokens, speakers, quality, stream state, room updates:
            // nothing a synthetic client acts on yet.
            _ => {}
        }
    }

    /// Creates and sends an offer on pcs[0] when one is wanted and none is
    /// pending: data channels on the first, new send tracks, receive slots.
    pub(super) fn negotiate(&mut self) {
        if !self.want_offer || self.pcs[0].pending_offer.is_some() {
            return;
        }
        self.want_offer = false;
        let (audios, videos) = std::mem::take(&mut self.recv_slots);
        let first = !self.channels_added;
        self.channels_added = true;
        let local_sid = self.local_sid.clone();
        let pc = &mut self.pcs[0];
        let mut api = pc.rtc.sdp_api();
        if first {
            api.add_channel(RELIABLE_LABEL.to_string());
            api.add_channel_with_config(ChannelConfig {
                label: LOSSY_LABEL.to_string(),
                ordered: false,
                reliability: Reliability::MaxRetransmits { retransmits: 0 },
                ..Default::default()
            });
        }
        for track in self.local_tracks.iter_mut().filter(|t| t.mid.is_none()) {
            let (kind, simulcast) = match &track.rids {
                None => (MediaKind::Audio, None),
                Some(rids) => {
                    let mut s = Simulcast::new();
                    for rid in rids {
                        s.add_send_layer(SimulcastLayer::new(rid));
                    }
                    (MediaKind::Video, Some(s))
                }
            };
            track.mid = Some(api.add_media(
                kind,
                Direction::SendOnly,
                Some(format!("{local_sid}|{}", track.cid)),
                Some(track.cid.clone()),
                simulcast,
            ));
        }
        for _ in 0..audios {
            api.add_media(MediaKind::Audio, Direction::RecvOnly, None, None, None);
        }
        for _ in 0..videos {
            api.add_media(MediaKind::Video, Direction::RecvOnly, None, None, None);
        }
        if !api.has_changes() {
            return;
        }
        let Some((offer, pending)) = api.apply() else {
            return;
        };
        pc.pending_offer = Some(pending);
        self.offer_id += 1;
        self.outbox.push(Req::Offer(proto::SessionDescription {
            r#type: "offer".into(),
            sdp: offer.to_sdp_string(),
            id: self.offer_id,
            mid_to_track_id: Default::default(),
        }));
    }

    /// The server's answer to our offer on pcs[0].
    fn on_answer(&mut self, sd: proto::SessionDescription) {
        if let Err(e) = self.pcs[0].accept_answer(&sd.sdp) {
            tracing::warn!(participant = %self.local_sid, "answer refused: {e}");
            self.close(DisconnectReason::Error(format!("answer refused: {e}")));
            return;
        }
        self.activate_local_tracks();
        if self.single_pc {
            self.map_remote_tracks(0, &sd);
        }
        self.negotiate();
    }

    /// The server's offer on the subscriber connection (dual PC).
    fn on_offer(&mut self, sd: proto::SessionDescription) {
        let Some(pc) = self.pcs.get_mut(1) else {
            tracing::warn!(participant = %self.local_sid, "server offer in single PC mode");
            return;
        };
        match pc.accept_offer(&sd.sdp) {
            Ok(answer) => {
                self.outbox.push(Req::Answer(proto::SessionDescription {
                    r#type: "answer".into(),
                    sdp: answer,
                    id: sd.id,
                    mid_to_track_id: Default::default(),
                }));
                self.map_remote_tracks(1, &sd);
            }
            Err(e) => {
                tracing::warn!(participant = %self.local_sid, "offer refused: {e}");
                self.close(DisconnectReason::Error(format!("offer refused: {e}")));
            }
        }
    }

    /// Learns which remote track each m-line of the server's description
    /// carries (`mid_to_track_id`, else the msid), and which stopped.
    fn map_remote_tracks(&mut self, pc: usize, sd: &proto::SessionDescription) {
        for s in sdp::media_sections(&sd.sdp) {
            let mid = Mid::from(s.mid.as_str());
            let track = sd
                .mid_to_track_id
                .get(&s.mid)
                .cloned()
                .or(s.track_sid)
                .filter(|_| s.sends);
            let old = self.mid_tracks.get(&(pc, mid)).cloned();
            if old == track {
                continue;
            }
            if let Some(old) = old {
                self.mid_tracks.remove(&(pc, mid));
                self.rx.forget_mid(pc, mid);
                self.emit(RoomEvent::TrackUnsubscribed { track_sid: old });
            }
            if let Some(track_sid) = track {
                let participant_sid = self
                    .owner_of(&track_sid)
                    .or(s.participant_sid)
                    .unwrap_or_default();
                self.mid_tracks.insert((pc, mid), track_sid.clone());
                self.emit(RoomEvent::TrackSubscribed {
                    participant_sid,
                    track_sid,
                    kind: if s.video {
                        TrackKind::Video
                    } else {
                        TrackKind::Audio
                    },
                    mid: s.mid,
                });
            }
        }
    }

    /// The sid of the remote participant publishing `track_sid`.
    pub(super) fn owner_of(&self, track_sid: &str) -> Option<String> {
        self.participants
            .values()
            .find(|p| p.tracks.iter().any(|t| t.sid == track_sid))
            .map(|p| p.sid.clone())
    }

    /// `media_sections_requirement` (single PC): add receive slots and offer
    /// again. A request for none still needs a fresh offer when a known
    /// remote track has no slot yet; str0m cannot re-offer without a
    /// change, so one slot of that kind is added.
    fn on_media_sections(&mut self, r: proto::MediaSectionsRequirement) {
        let (mut audios, mut videos) = (r.num_audios, r.num_videos);
        if audios + videos == 0 {
            let unmapped = self
                .participants
                .values()
                .flat_map(|p| p.tracks.iter())
                .find(|t| !self.mid_tracks.values().any(|m| *m == t.sid));
            match unmapped {
                Some(t) if t.r#type == proto::TrackType::Video as i32 => videos = 1,
                Some(_) => audios = 1,
                None => return,
            }
        }
        self.recv_slots.0 += audios;
        self.recv_slots.1 += videos;
        self.want_offer = true;
        self.negotiate();
    }

    /// A participant's info from `join` or `update`.
    pub(super) fn on_participant(&mut self, p: proto::ParticipantInfo) {
        if p.sid == self.local_sid {
            return;
        }
        let gone = p.state == proto::participant_info::State::Disconnected as i32;
        let old = self.participants.remove(&p.sid);
        if let Some(old) = &old {
            if old.version > p.version && p.version != 0 {
                self.participants.insert(p.sid.clone(), old.clone());
                return;
            }
        }
        let old_tracks: Vec<String> = old
            .as_ref()
            .map(|o| o.tracks.iter().map(|t| t.sid.clone()).collect())
            .unwrap_or_default();
        if old.is_none() && !gone {
            self.emit(RoomEvent::ParticipantConnected {
                sid: p.sid.clone(),
                identity: p.identity.clone(),
            });
        }
        for t in &p.tracks {
            if !gone && !old_tracks.contains(&t.sid) {
                self.emit(RoomEvent::TrackPublished {
                    participant_sid: p.sid.clone(),
                    track: t.clone(),
                });
            }
        }
        for t in old_tracks {
            if gone || !p.tracks.iter().any(|n| n.sid == t) {
                self.emit(RoomEvent::TrackUnpublished {
                    participant_sid: p.sid.clone(),
                    track_sid: t,
                });
            }
        }
        if gone {
            if old.is_some() {
                self.emit(RoomEvent::ParticipantDisconnected {
                    sid: p.sid,
                    identity: p.identity,
                });
            }
        } else {
            self.participants.insert(p.sid.clone(), p);
        }
    }

    /// `publish_synthetic`: sends `add_track`; the reply waits for
    /// `track_published`.
    pub(super) fn publish(
        &mut self,
        options: SyntheticTrackOptions,
        reply: oneshot::Sender<Result<LocalTrackPublication, ClientError>>,
    ) {
        let cid = self.new_cid();
        let mut req = proto::AddTrackRequest {
            cid: cid.clone(),
            name: options.name.clone(),
            disable_red: true,
            ..Default::default()
        };
        match &options.kind {
            SyntheticKind::Audio => {
                req.r#type = proto::TrackType::Audio as i32;
                req.source = proto::TrackSource::Microphone as i32;
            }
            SyntheticKind::Video { layers, .. } => {
                req.r#type = proto::TrackType::Video as i32;
                req.source = proto::TrackSource::Camera as i32;
                let top = layers
                    .last()
                    .copied()
                    .unwrap_or(crate::synthetic::SIMULCAST_LAYERS[2]);
                req.width = top.width.into();
                req.height = top.height.into();
                let qualities = [
                    proto::VideoQuality::Low,
                    proto::VideoQuality::Medium,
                    proto::VideoQuality::High,
                ];
                req.layers = layers
                    .iter()
                    .zip(qualities)
                    .map(|(l, q)| proto::VideoLayer {
                        quality: q as i32,
                        width: l.width.into(),
                        height: l.height.into(),
                        bitrate: l.bitrate_bps,
                        ..Default::default()
                    })
                    .collect();
            }
        }
        self.outbox.push(Req::AddTrack(req));
        self.pending_publish.push(PendingPublish {
            cid,
            options,
            reply,
        });
    }

    /// `track_published`: the track gets its sid and goes into the next offer.
    fn on_track_published(&mut self, tp: proto::TrackPublishedResponse) {
        let Some(i) = self.pending_publish.iter().position(|p| p.cid == tp.cid) else {
            return;
        };
        let p = self.pending_publish.remove(i);
        let Some(info) = tp.track else {
            let _ = p.reply.send(Err(ClientError::Protocol(
                "track_published without a track".into(),
            )));
            return;
        };
        let track = LocalTrack::new(p.cid.clone(), &p.options);
        let _ = p.reply.send(Ok(LocalTrackPublication {
            sid: info.sid,
            cid: p.cid,
            kind: track.kind(),
        }));
        self.local_tracks.push(track);
        self.want_offer = true;
        self.negotiate();
    }

    /// `request_response` refusing one of our `add_track`s.
    fn on_request_response(&mut self, r: proto::RequestResponse) {
        if let Some(proto::request_response::Request::AddTrack(at)) = &r.request {
            if let Some(i) = self.pending_publish.iter().position(|p| p.cid == at.cid) {
                let p = self.pending_publish.remove(i);
                let _ = p.reply.send(Err(ClientError::RequestRefused(r.message)));
                return;
            }
        }
        tracing::warn!(participant = %self.local_sid, "request refused: {}", r.message);
    }
}
