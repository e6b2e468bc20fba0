//! Connection quality (`connection_quality`, livekit_rtc.proto
//! `ConnectionQualityUpdate`).
//!
//! Each session scores its participant's media once per stats window
//! (`sfu::quality`) and reports it here; the room sends a change of
//! quality level to the participant itself and to the participants
//! subscribed to one of its tracks, as livekit-server does. A new
//! subscriber hears its publisher's current quality when it subscribes.

use livekit_protocol as proto;
use proto::signal_response::Message as Msg;

use super::{Output, Room};

impl Room {
    /// `sid`'s quality over the last window with its score (1.0..5.0).
    /// Sends `connection_quality` only when the quality level changed.
    pub fn set_connection_quality(
        &mut self,
        sid: &str,
        quality: proto::ConnectionQuality,
        score: f32,
    ) -> Vec<Output> {
        let Some(p) = self.participant_mut(sid) else {
            return Vec::new();
        };
        let info = proto::ConnectionQualityInfo {
            participant_sid: sid.to_string(),
            quality: quality as i32,
            score,
        };
        let changed = p.quality.as_ref().is_none_or(|q| q.quality != info.quality);
        p.quality = Some(info.clone());
        if !changed {
            return Vec::new();
        }
        let msg = Msg::ConnectionQuality(proto::ConnectionQualityUpdate {
            updates: vec![info],
        });
        self.to_self_and_subscribers(sid, msg)
    }

    /// `publisher`'s last quality, for a participant that just subscribed
    /// to it (nothing before the first report).
    pub(super) fn quality_for_new_subscriber(
        &self,
        subscriber: &str,
        publisher: &str,
    ) -> Option<Output> {
        let q = self.participant(publisher)?.quality.clone()?;
        Some(Output::Signal {
            to: subscriber.to_string(),
            msg: Msg::ConnectionQuality(proto::ConnectionQualityUpdate { updates: vec![q] }),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::publisher_subscriber_lurker;
    use super::*;
    use proto::ConnectionQuality as Q;

    fn updates_to(out: &[Output], to: &str) -> Vec<proto::ConnectionQualityInfo> {
        out.iter()
            .filter_map(|o| match o {
                Output::Signal {
                    to: t,
                    msg: Msg::ConnectionQuality(u),
                } if t == to => Some(u.updates.clone()),
                _ => None,
            })
            .flatten()
            .collect()
    }

    #[test]
    fn change_goes_to_self_and_subscribers_only() {
        let (mut r, a, b, c) = publisher_subscriber_lurker();
        let out = r.set_connection_quality(&a, Q::Good, 3.9);
        assert_eq!(updates_to(&out, &a)[0].quality, Q::Good as i32);
        assert_eq!(updates_to(&out, &b)[0].participant_sid, a);
        assert!(updates_to(&out, &c).is_empty());
        // Same level again: nothing; a new level: sent.
        assert!(r.set_connection_quality(&a, Q::Good, 3.8).is_empty());
        assert_eq!(r.set_connection_quality(&a, Q::Poor, 2.0).len(), 2);
        // A late subscriber hears the current level on subscribing.
        let q = r.quality_for_new_subscriber(&c, &a);
        assert!(matches!(q, Some(Output::Signal { ref to, .. }) if *to == c));
    }
}
