//! Signal requests (livekit_rtc.proto `SignalRequest`) from the client.

use std::collections::HashMap;

use livekit_protocol as proto;
use proto::signal_request::Message as Req;
use proto::signal_response::Message as Msg;
use str0m::media::Mid;

use super::{Incoming, Session};
use crate::metrics::request_type;
use crate::rooms::Command;
use crate::rtc::codec_order;
use crate::rtc::sdp::{self, Kind, SendSlot};

impl Session {
    pub(super) fn on_request(&mut self, req: proto::SignalRequest) {
        let Some(msg) = req.message else {
            self.bad_frame("empty SignalRequest");
            return;
        };
        let sid = self.sid.clone();
        tracing::debug!(participant = %sid, "signal request: {}", request_type(&msg));
        self.ctx.metrics.signal_in(&msg);
        match msg {
            Req::Offer(sd) => self.on_offer(sd),
            Req::Answer(sd) => self.on_answer(sd),
            Req::Trickle(t) => {
                let pc = if self.single_pc || t.target == proto::SignalTarget::Publisher as i32 {
                    0
                } else {
                    1
                };
                if let Err(e) = self.pcs[pc].add_remote_candidate(&t.candidate_init) {
                    self.warn_once("bad trickle candidate", &e);
                }
            }
            Req::AddTrack(at) => {
                let result = self.room.update(|r| (r.add_track(&sid, &at), Vec::new()));
                match result {
                    Ok(track) => self.send(Msg::TrackPublished(proto::TrackPublishedResponse {
                        cid: at.cid.clone(),
                        track: Some(track),
                    })),
                    Err(refusal) => {
                        tracing::info!(participant = %sid, "add_track refused: {}", refusal.message);
                        self.send(Msg::RequestResponse(proto::RequestResponse {
                            reason: refusal.reason as i32,
                            message: refusal.message,
                            request: Some(proto::request_response::Request::AddTrack(at)),
                            ..Default::default()
                        }));
                    }
                }
            }
            Req::Mute(m) => self
                .room
                .update(|r| ((), r.set_muted(&sid, &m.sid, m.muted))),
            Req::Subscription(s) => self.room.update(|r| ((), r.update_subscription(&sid, &s))),
            Req::TrackSetting(ts) => self.on_track_setting(&ts),
            Req::Leave(_) => {
                tracing::info!(participant = %sid, "client left");
                self.closing = true;
            }
            Req::UpdateMetadata(md) => {
                let result = self.room.update(|r| match r.update_metadata(&sid, &md) {
                    Ok(out) => (Ok(()), out),
                    Err(e) => (Err(e), Vec::new()),
                });
                if let Err(refusal) = result {
                    self.send(Msg::RequestResponse(proto::RequestResponse {
                        request_id: md.request_id,
                        reason: refusal.reason as i32,
                        message: refusal.message,
                        request: Some(proto::request_response::Request::UpdateMetadata(md)),
                    }));
                }
            }
            Req::Ping(_) => self.send(Msg::Pong(crate::rooms::unix_ms())),
            Req::PingReq(p) => self.send(Msg::PongResp(proto::Pong {
                last_ping_timestamp: p.timestamp,
                timestamp: crate::rooms::unix_ms(),
            })),
            Req::SubscriptionPermission(p) => self
                .room
                .update(|r| ((), r.set_subscription_permission(&sid, p))),
            Req::SyncState(_) | Req::Simulate(_) => {}
            Req::UpdateAudioTrack(_) | Req::UpdateVideoTrack(_) | Req::UpdateLayers(_) => {}
            Req::PublishDataTrackRequest(_)
            | Req::UnpublishDataTrackRequest(_)
            | Req::UpdateDataSubscription(_)
            | Req::StoreDataBlobRequest(_)
            | Req::GetDataBlobRequest(_) => {
                self.warn_once("unsupported request", "data tracks and data blobs");
                self.send(Msg::RequestResponse(proto::RequestResponse {
                    reason: proto::request_response::Reason::UnsupportedType as i32,
                    message: "not supported by this server yet".into(),
                    ..Default::default()
                }));
            }
        }
    }

    /// A client offer on the publisher PC (or the single PC): map its
    /// sending m-lines to pending tracks, place downtracks in its receive
    /// slots (single PC), and answer.
    pub(super) fn on_offer(&mut self, offer: proto::SessionDescription) {
        let sections = sdp::sections(&offer.sdp);
        self.map_published_sections(&sections);
        let answer = match self.pcs[0].accept_offer(&offer.sdp) {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!(participant = %self.sid, "offer refused: {e}");
                self.send(Msg::Leave(proto::LeaveRequest {
                    reason: proto::DisconnectReason::StateMismatch as i32,
                    action: proto::leave_request::Action::Disconnect as i32,
                    ..Default::default()
                }));
                self.closing = true;
                return;
            }
        };
        let wanted: HashMap<String, String> = self
            .incoming
            .iter()
            .filter_map(|(mid, i)| Some((mid.to_string(), i.wanted_codec.clone()?)))
            .collect();
        let answer = codec_order::prefer_codecs(&answer, &wanted);
        let mut mid_to_track_id = HashMap::new();
        let sdp = if self.single_pc {
            let slots = self.place_downtracks(&sections);
            for (mid, slot) in &slots {
                if let SendSlot::Track { track, .. } = slot {
                    mid_to_track_id.insert(mid.clone(), track.clone());
                }
            }
            sdp::rewrite_send_slots(&answer, &slots)
        } else {
            answer
        };
        self.send(Msg::Answer(proto::SessionDescription {
            r#type: "answer".into(),
            sdp,
            id: offer.id,
            mid_to_track_id,
        }));
        if self.single_pc {
            self.activate_negotiated(0);
            self.request_media_sections();
        }
    }

    /// The client's answer to our subscriber-PC offer (dual PC).
    fn on_answer(&mut self, answer: proto::SessionDescription) {
        if self.pcs.len() < 2 {
            self.warn_once(
                "unexpected answer",
                "single PC sessions never get server offers",
            );
            return;
        }
        if let Err(e) = self.pcs[1].accept_answer(&answer.sdp) {
            self.warn_once("answer refused", e);
            return;
        }
        self.activate_negotiated(1);
        if std::mem::take(&mut self.renegotiate) {
            self.negotiate_subscriber();
        }
    }

    /// Matches the offer's sending audio/video sections to tracks: known
    /// mids keep their track, new ones match a pending `add_track` by msid
    /// cid, then by simulcast codec cid, then the first pending track of the
    /// same kind. Sections that stopped sending unpublish their track.
    fn map_published_sections(&mut self, sections: &[sdp::Section]) {
        let sid = self.sid.clone();
        let mut pending = self.room.read(|r| r.pending_tracks(&sid).to_vec());
        pending.retain(|p| !self.incoming.values().any(|i| *i.track_sid == *p.info.sid));
        for s in sections.iter().filter(|s| s.kind != Kind::Application) {
            let mid = Mid::from(s.mid.as_str());
            if !s.author_sends() {
                if let Some(gone) = self.incoming.remove(&mid) {
                    let track_sid = gone.track_sid.to_string();
                    self.room
                        .update(|r| ((), r.unpublish_track(&sid, &track_sid)));
                }
                continue;
            }
            if self.incoming.contains_key(&mid) {
                continue;
            }
            let want = if s.kind == Kind::Audio {
                proto::TrackType::Audio
            } else {
                proto::TrackType::Video
            } as i32;
            let cid = s.msid.as_ref().map(|(_, track)| track.as_str());
            let idx = pending
                .iter()
                .position(|p| Some(p.cid.as_str()) == cid)
                .or_else(|| {
                    pending
                        .iter()
                        .position(|p| p.info.codecs.iter().any(|c| Some(c.cid.as_str()) == cid))
                })
                .or_else(|| pending.iter().position(|p| p.info.r#type == want));
            let Some(idx) = idx else {
                self.warn_once("offer without add_track", format_args!("mid {}", s.mid));
                continue;
            };
            let p = pending.remove(idx);
            self.incoming.insert(
                mid,
                Incoming {
                    track_sid: p.info.sid.as_str().into(),
                    started: false,
                    downtracks: Vec::new(),
                    groups: Vec::new(),
                    last_keyframe_request: None,
                    rids: s.send_rids.clone(),
                    level: Default::default(),
                    muted: p.info.muted,
                    dynacast: (want == proto::TrackType::Video as i32).then(Default::default),
                    codec: None,
                    wanted_codec: if want == proto::TrackType::Audio as i32 {
                        // RED (RFC 2198) first unless the client disabled
                        // it, as livekit-server answers publishers.
                        Some(
                            if p.info.disable_red {
                                "audio/opus"
                            } else {
                                "audio/red"
                            }
                            .into(),
                        )
                    } else {
                        p.info
                            .codecs
                            .first()
                            .map(|c| c.mime_type.clone())
                            .filter(|m| !m.is_empty())
                    },
                },
            );
        }
    }

    /// `track_setting`: pause or cap the layer of subscribed tracks, and
    /// tell the publisher what this subscriber now takes (dynacast).
    fn on_track_setting(&mut self, ts: &proto::UpdateTrackSettings) {
        for track_sid in &ts.track_sids {
            let Some(sub) = self.subscribed.get_mut(track_sid) else {
                continue;
            };
            sub.dt.set_paused(ts.disabled, std::time::Instant::now());
            let layer = if ts.width > 0 || ts.height > 0 {
                layer_for_size(&sub.track, ts.width, ts.height)
            } else {
                match proto::VideoQuality::try_from(ts.quality) {
                    Ok(proto::VideoQuality::Low) => 0,
                    Ok(proto::VideoQuality::Medium) => 1,
                    _ => 2,
                }
            };
            sub.dt.set_max_layer(layer);
            let wish = (!ts.disabled).then_some(layer);
            if sub.video && sub.wish != wish {
                sub.wish = wish;
                let cmd = Command::SubscriberLayer {
                    track_sid: track_sid.clone(),
                    subscriber: self.sid.clone(),
                    max_layer: wish,
                };
                if let Some(ctrl) = self.room.ctrl_of(&sub.publisher) {
                    let _ = ctrl.send(cmd);
                }
            }
        }
    }
}

/// The lowest layer of `track` at least `width` x `height` (HIGH if none).
fn layer_for_size(track: &proto::TrackInfo, width: u32, height: u32) -> u8 {
    let mut layers: Vec<&proto::VideoLayer> = track.layers.iter().collect();
    layers.sort_by_key(|l| l.width * l.height);
    layers
        .iter()
        .position(|l| l.width >= width && l.height >= height)
        .map(|i| i as u8)
        .unwrap_or(2)
}
