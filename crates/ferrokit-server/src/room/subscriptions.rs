//! Subscriptions: `subscription` requests, auto-subscribe, and the
//! subscribe / unsubscribe decisions (permissions, the canSubscribe grant,
//! `track_subscribed` to publishers) that become transport commands.

use livekit_protocol as proto;
use proto::signal_response::Message as Msg;

use super::{permissions, Output, Room};

impl Room {
    /// `subscription` (UpdateSubscription) from a subscriber.
    pub fn update_subscription(
        &mut self,
        sid: &str,
        req: &proto::UpdateSubscription,
    ) -> Vec<Output> {
        let mut track_sids: Vec<&str> = req.track_sids.iter().map(String::as_str).collect();
        for pt in &req.participant_tracks {
            track_sids.extend(pt.track_sids.iter().map(String::as_str));
        }
        let mut out = Vec::new();
        for track_sid in track_sids {
            let Some(publisher) = self.publisher_of(track_sid) else {
                out.push(Output::Signal {
                    to: sid.to_string(),
                    msg: Msg::SubscriptionResponse(proto::SubscriptionResponse {
                        track_sid: track_sid.to_string(),
                        err: proto::SubscriptionError::SeTrackNotfound as i32,
                    }),
                });
                continue;
            };
            if req.subscribe {
                out.extend(self.subscribe(sid, &publisher, track_sid));
            } else {
                out.extend(self.unsubscribe(sid, &publisher, track_sid));
            }
        }
        out
    }

    pub(super) fn publisher_of(&self, track_sid: &str) -> Option<String> {
        self.participants
            .iter()
            .find(|p| p.track(track_sid).is_some())
            .map(|p| p.sid().to_string())
    }

    pub(super) fn subscribe(
        &mut self,
        subscriber: &str,
        publisher: &str,
        track_sid: &str,
    ) -> Vec<Output> {
        if subscriber == publisher {
            return Vec::new();
        }
        let Some(track) = self
            .participant(publisher)
            .and_then(|p| p.track(track_sid))
            .cloned()
        else {
            return Vec::new();
        };
        if !self.may_subscribe(subscriber, publisher, track_sid) {
            return vec![Output::Signal {
                to: subscriber.to_string(),
                msg: permissions::permission_update(publisher, track_sid, false),
            }];
        }
        let Some(s) = self.participant_mut(subscriber) else {
            return Vec::new();
        };
        if !s.grant.can_subscribe() || !s.subscriptions.insert(track_sid.to_string()) {
            return Vec::new();
        }
        let mut out = vec![Output::Subscribe {
            subscriber: subscriber.to_string(),
            publisher: publisher.to_string(),
            track,
        }];
        out.extend(self.quality_for_new_subscriber(subscriber, publisher));
        // The publisher hears `track_subscribed` once per track (LocalTrackSubscribed).
        if let Some(p) = self.participant_mut(publisher) {
            if p.ever_subscribed.insert(track_sid.to_string()) {
                out.push(Output::Signal {
                    to: publisher.to_string(),
                    msg: Msg::TrackSubscribed(proto::TrackSubscribed {
                        track_sid: track_sid.to_string(),
                    }),
                });
            }
        }
        out
    }

    pub(super) fn unsubscribe(
        &mut self,
        subscriber: &str,
        publisher: &str,
        track_sid: &str,
    ) -> Vec<Output> {
        let Some(s) = self.participant_mut(subscriber) else {
            return Vec::new();
        };
        if !s.subscriptions.remove(track_sid) {
            return Vec::new();
        }
        vec![Output::Unsubscribe {
            subscriber: subscriber.to_string(),
            publisher: publisher.to_string(),
            track_sid: track_sid.to_string(),
        }]
    }

    /// Unsubscribes everyone from `publisher`'s tracks (or just `only`,
    /// which may already be gone from its track list).
    pub(super) fn unsubscribe_all_from(
        &mut self,
        publisher: &str,
        only: Option<&str>,
    ) -> Vec<Output> {
        let tracks: Vec<String> = match (only, self.participant(publisher)) {
            (Some(track), _) => vec![track.to_string()],
            (None, Some(p)) => p.info.tracks.iter().map(|t| t.sid.clone()).collect(),
            (None, None) => return Vec::new(),
        };
        let mut out = Vec::new();
        for s in self
            .participants
            .iter_mut()
            .filter(|s| s.sid() != publisher)
        {
            for t in &tracks {
                if s.subscriptions.remove(t) {
                    out.push(Output::Unsubscribe {
                        subscriber: s.sid().to_string(),
                        publisher: publisher.to_string(),
                        track_sid: t.clone(),
                    });
                }
            }
        }
        out
    }

    pub(super) fn auto_subscribe_existing(&mut self, sid: &str) -> Vec<Output> {
        let Some(p) = self.participant(sid) else {
            return Vec::new();
        };
        if !p.auto_subscribe || !p.grant.can_subscribe() {
            return Vec::new();
        }
        let wanted: Vec<(String, String)> = self
            .participants
            .iter()
            .filter(|o| o.sid() != sid)
            .flat_map(|o| {
                o.info
                    .tracks
                    .iter()
                    .map(|t| (o.sid().to_string(), t.sid.clone()))
            })
            .collect();
        let mut out = Vec::new();
        for (publisher, track) in wanted {
            out.extend(self.subscribe(sid, &publisher, &track));
        }
        out
    }

    /// `msg` for `sid` itself and for every participant subscribed to one
    /// of its tracks (speakers, connection quality).
    pub(super) fn to_self_and_subscribers(&self, sid: &str, msg: Msg) -> Vec<Output> {
        let Some(p) = self.participant(sid) else {
            return Vec::new();
        };
        let tracks: Vec<&str> = p.info.tracks.iter().map(|t| t.sid.as_str()).collect();
        self.participants
            .iter()
            .filter(|o| o.sid() == sid || tracks.iter().any(|t| o.subscriptions.contains(*t)))
            .map(|o| Output::Signal {
                to: o.sid().to_string(),
                msg: msg.clone(),
            })
            .collect()
    }
}
