//! The session's subscriber half of negotiation: placing subscriptions
//! on m-lines (the client's receive slots in single PC, our own offers on
//! the subscriber PC in dual PC), retiring freed m-lines, and starting
//! downtracks once the client has the description that carries them.

use std::collections::HashMap;
use std::time::Instant;

use livekit_protocol as proto;
use proto::signal_response::Message as Msg;
use str0m::channel::ChannelConfig;
use str0m::media::{Direction, MediaKind, Mid};

use super::{Session, Subscribed};
use crate::rtc::peer::{LOSSY_LABEL, RELIABLE_LABEL};
use crate::rtc::sdp::{self, Kind, SendSlot};
use crate::sfu::Downtrack;

impl Session {
    /// Subscriber side: a new subscription from the room.
    pub(super) fn on_subscribe(&mut self, publisher: String, track: proto::TrackInfo) {
        let video = track.r#type == proto::TrackType::Video as i32;
        self.subscribed.insert(
            track.sid.clone(),
            Subscribed {
                publisher,
                track,
                video,
                mid: None,
                active: false,
                dt: Downtrack::new(video, Instant::now()),
                pt_cache: None,
                ssrc_cache: None,
                direct: None,
                wish: Some(2),
                stream_paused: false,
                rates: crate::sfu::allocation::LayerRates::new(Instant::now()),
            },
        );
        if self.single_pc {
            self.request_media_sections();
        } else {
            self.negotiate_subscriber();
        }
    }

    /// Subscriber side: the subscription ended.
    pub(super) fn on_unsubscribe(&mut self, track_sid: &str) {
        let Some(sub) = self.subscribed.remove(track_sid) else {
            return;
        };
        // A freed m-line is never reused: the client does not play a track
        // raised again on an m-line that carried one before. Single PC
        // retires it now (answered inactive from the next offer on); dual PC
        // offers it inactive first.
        if let Some(mid) = sub.mid {
            if self.single_pc {
                self.retired_mids.push(mid);
            } else {
                self.ended_mids.push(mid);
            }
        }
        if self.single_pc {
            // A fresh offer lets the answer mark the slot inactive.
            self.send(Msg::MediaSectionsRequirement(
                proto::MediaSectionsRequirement {
                    num_audios: 0,
                    num_videos: 0,
                },
            ));
        } else {
            self.negotiate_subscriber();
        }
    }

    /// Single PC: assigns unplaced subscriptions to the offer's free receive
    /// slots; returns how every receive slot is answered.
    pub(super) fn place_downtracks(
        &mut self,
        sections: &[sdp::Section],
    ) -> HashMap<String, SendSlot> {
        self.free_mids.clear();
        let mut slots = HashMap::new();
        for s in sections
            .iter()
            .filter(|s| s.kind != Kind::Application && s.author_receives())
        {
            let mid = Mid::from(s.mid.as_str());
            let video = s.kind == Kind::Video;
            if self.retired_mids.contains(&mid) {
                slots.insert(s.mid.clone(), SendSlot::Unused);
                continue;
            }
            let owner = self
                .subscribed
                .iter()
                .find(|(_, sub)| sub.mid == Some(mid))
                .map(|(t, _)| t.clone())
                .or_else(|| {
                    self.subscribed
                        .iter()
                        .find(|(_, sub)| sub.mid.is_none() && sub.video == video)
                        .map(|(t, _)| t.clone())
                });
            let slot = match owner.and_then(|t| self.subscribed.get_mut(&t).map(|s| (t, s))) {
                Some((track_sid, sub)) => {
                    if sub.mid != Some(mid) {
                        sub.direct = None;
                    }
                    sub.mid = Some(mid);
                    SendSlot::Track {
                        stream: format!("{}|{}", sub.publisher, track_sid),
                        track: track_sid,
                    }
                }
                None => {
                    self.free_mids.push((mid, video));
                    SendSlot::Unused
                }
            };
            slots.insert(s.mid.clone(), slot);
        }
        slots
    }

    /// Single PC: asks the client for more receive slots (or just a fresh
    /// offer) when subscriptions wait for one.
    pub(super) fn request_media_sections(&mut self) {
        let waiting = |video: bool| {
            self.subscribed
                .values()
                .filter(|s| s.mid.is_none() && s.video == video)
                .count() as u32
        };
        let free = |video: bool| self.free_mids.iter().filter(|(_, v)| *v == video).count() as u32;
        let (wa, wv) = (waiting(false), waiting(true));
        if wa + wv == 0 {
            return;
        }
        self.send(Msg::MediaSectionsRequirement(
            proto::MediaSectionsRequirement {
                num_audios: wa.saturating_sub(free(false)),
                num_videos: wv.saturating_sub(free(true)),
            },
        ));
    }

    /// After a description exchange on `pc`, placed subscriptions start
    /// flowing, beginning with a keyframe.
    pub(super) fn activate_negotiated(&mut self, pc: usize) {
        if pc != self.sub_pc() {
            return;
        }
        let mut ask = Vec::new();
        for (track_sid, sub) in self.subscribed.iter_mut() {
            // The description may have changed the codecs of its mid (RED).
            sub.pt_cache = None;
            if sub.mid.is_some() && !sub.active {
                sub.active = true;
                ask.push((sub.publisher.clone(), track_sid.clone()));
            }
        }
        for (publisher, track_sid) in ask {
            self.ask_publisher_for_keyframe(&publisher, track_sid, 2);
        }
    }

    /// Dual PC: offers the subscriber PC's current state (data channels on
    /// first use, an m-line per subscription, inactive for ended ones).
    pub(super) fn negotiate_subscriber(&mut self) {
        if self.pcs.len() < 2 {
            return;
        }
        if self.pcs[1].pending_offer.is_some() {
            self.renegotiate = true;
            return;
        }
        let first = self.offer_id == 0;
        let mut slots = HashMap::new();
        // Freed m-lines go inactive and are not reused: a client does not
        // raise a track again on an m-line that carried it before.
        let freed = std::mem::take(&mut self.ended_mids);
        let pc = &mut self.pcs[1];
        let mut api = pc.rtc.sdp_api();
        if first {
            api.add_channel(RELIABLE_LABEL.to_string());
            api.add_channel_with_config(ChannelConfig {
                label: LOSSY_LABEL.to_string(),
                ordered: false,
                reliability: str0m::channel::Reliability::MaxRetransmits { retransmits: 0 },
                ..Default::default()
            });
        }
        for mid in &freed {
            api.set_direction(*mid, Direction::Inactive);
        }
        self.retired_mids.extend(freed);
        // Every later description keeps retired m-lines bare and inactive,
        // or str0m's original msid would appear twice.
        for mid in &self.retired_mids {
            slots.insert(mid.to_string(), SendSlot::Unused);
        }
        for (track_sid, sub) in self.subscribed.iter_mut() {
            let stream = format!("{}|{}", sub.publisher, track_sid);
            if sub.mid.is_none() {
                let kind = if sub.video {
                    MediaKind::Video
                } else {
                    MediaKind::Audio
                };
                let mid = api.add_media(
                    kind,
                    Direction::SendOnly,
                    Some(stream.clone()),
                    Some(track_sid.clone()),
                    None,
                );
                sub.direct = None;
                sub.mid = Some(mid);
            }
            if let Some(mid) = sub.mid {
                slots.insert(
                    mid.to_string(),
                    SendSlot::Track {
                        stream,
                        track: track_sid.clone(),
                    },
                );
            }
        }
        if !api.has_changes() {
            return;
        }
        let Some((offer, pending)) = api.apply() else {
            return;
        };
        pc.pending_offer = Some(pending);
        self.offer_id += 1;
        // Transport-cc on video only (see `sdp::audio_without_transport_cc`).
        let sdp = sdp::audio_without_transport_cc(&sdp::rewrite_send_slots(
            &offer.to_sdp_string(),
            &slots,
        ));
        self.send(Msg::Offer(proto::SessionDescription {
            r#type: "offer".into(),
            sdp,
            id: self.offer_id,
            mid_to_track_id: Default::default(),
        }));
    }
}
