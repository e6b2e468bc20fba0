//! Subscription permissions (livekit_rtc.proto `SubscriptionPermission`):
//! a publisher says who may subscribe to its tracks. Subscribers that lose
//! the permission are unsubscribed; every subscriber concerned hears
//! `subscription_permission_update`; auto-subscribers that gain it are
//! subscribed.

use livekit_protocol as proto;
use proto::signal_response::Message as Msg;

use super::{Output, Participant, Room};

/// Whether `perm` (None: everyone) lets `subscriber` have `track_sid`.
pub(super) fn allows(
    perm: Option<&proto::SubscriptionPermission>,
    subscriber: &Participant,
    track_sid: &str,
) -> bool {
    let Some(perm) = perm else {
        return true;
    };
    perm.all_participants
        || perm.track_permissions.iter().any(|tp| {
            let who = (!tp.participant_sid.is_empty() && tp.participant_sid == subscriber.sid())
                || (!tp.participant_identity.is_empty()
                    && tp.participant_identity == subscriber.info.identity);
            who && (tp.all_tracks || tp.track_sids.iter().any(|t| t == track_sid))
        })
}

/// `subscription_permission_update` for one subscriber.
pub(super) fn permission_update(publisher: &str, track_sid: &str, allowed: bool) -> Msg {
    Msg::SubscriptionPermissionUpdate(proto::SubscriptionPermissionUpdate {
        participant_sid: publisher.to_string(),
        track_sid: track_sid.to_string(),
        allowed,
    })
}

impl Room {
    /// Whether `subscriber` may subscribe to `publisher`'s `track_sid`.
    pub(super) fn may_subscribe(&self, subscriber: &str, publisher: &str, track_sid: &str) -> bool {
        let (Some(s), Some(p)) = (self.participant(subscriber), self.participant(publisher)) else {
            return false;
        };
        allows(p.sub_permission.as_ref(), s, track_sid)
    }

    /// A publisher's `subscription_permission`.
    pub fn set_subscription_permission(
        &mut self,
        publisher: &str,
        perm: proto::SubscriptionPermission,
    ) -> Vec<Output> {
        let Some(p) = self.participant_mut(publisher) else {
            return Vec::new();
        };
        let before = p.sub_permission.replace(perm);
        let tracks: Vec<String> = p.info.tracks.iter().map(|t| t.sid.clone()).collect();
        let mut changes = Vec::new();
        for s in self.participants.iter().filter(|s| s.sid() != publisher) {
            for t in &tracks {
                let was = allows(before.as_ref(), s, t);
                let now = self.may_subscribe(s.sid(), publisher, t);
                let subscribed = s.subscriptions.contains(t);
                if was != now || (subscribed && !now) {
                    changes.push((
                        s.sid().to_string(),
                        t.clone(),
                        now,
                        subscribed,
                        s.auto_subscribe,
                    ));
                }
            }
        }
        let mut out = Vec::new();
        for (subscriber, track_sid, allowed, subscribed, auto) in changes {
            out.push(Output::Signal {
                to: subscriber.clone(),
                msg: permission_update(publisher, &track_sid, allowed),
            });
            if subscribed && !allowed {
                out.extend(self.unsubscribe(&subscriber, publisher, &track_sid));
            } else if allowed && !subscribed && auto {
                out.extend(self.subscribe(&subscriber, publisher, &track_sid));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{add_audio, params, room};
    use super::*;

    fn only(identity: &str) -> proto::SubscriptionPermission {
        proto::SubscriptionPermission {
            all_participants: false,
            track_permissions: vec![proto::TrackPermission {
                participant_identity: identity.into(),
                all_tracks: true,
                ..Default::default()
            }],
        }
    }

    #[test]
    fn revoking_unsubscribes_and_granting_resubscribes() {
        let mut r = room();
        let (a, _) = r.join(params("a"), 0);
        let (b, _) = r.join(params("b"), 0);
        let (c, _) = r.join(params("c"), 0);
        let (a, b, c) = (a.participant.sid, b.participant.sid, c.participant.sid);
        let t = add_audio(&mut r, &a, "cid");
        r.track_media_started(&a, &t.sid, "0", "audio/opus");

        let out = r.set_subscription_permission(&a, only("b"));
        assert!(out.iter().any(|o| matches!(o,
            Output::Unsubscribe { subscriber, .. } if *subscriber == c)));
        assert!(!out.iter().any(|o| matches!(o,
            Output::Unsubscribe { subscriber, .. } if *subscriber == b)));
        assert!(out.iter().any(|o| matches!(o,
            Output::Signal { to, msg: Msg::SubscriptionPermissionUpdate(u) }
                if *to == c && !u.allowed && u.track_sid == t.sid && u.participant_sid == a)));

        // an explicit subscribe is refused while not allowed
        let req = proto::UpdateSubscription {
            track_sids: vec![t.sid.clone()],
            subscribe: true,
            participant_tracks: vec![],
        };
        let out = r.update_subscription(&c, &req);
        assert!(!out.iter().any(|o| matches!(o, Output::Subscribe { .. })));

        let out = r.set_subscription_permission(
            &a,
            proto::SubscriptionPermission {
                all_participants: true,
                ..Default::default()
            },
        );
        assert!(out.iter().any(|o| matches!(o,
            Output::Subscribe { subscriber, .. } if *subscriber == c)));
        assert!(out.iter().any(|o| matches!(o,
            Output::Signal { to, msg: Msg::SubscriptionPermissionUpdate(u) } if *to == c && u.allowed)));
    }
}
