//! A session's queue of signal messages waiting to be written.
//!
//! Participant updates queued back to back are merged into one
//! `ParticipantUpdate`, keeping the newest info per participant sid: in a
//! join storm each participant is told of every other one, and a session
//! whose task is behind would otherwise write (and its client parse) one
//! message per join. A client applies the infos of one update as it would
//! those of several in a row; it just skips the states in between.

use livekit_protocol as proto;
use proto::signal_response::Message as Msg;

/// Queues `msg` on `outbox`, merging a participant update into one queued
/// right before it.
pub(super) fn push(outbox: &mut Vec<Msg>, msg: Msg) {
    match (outbox.last_mut(), msg) {
        (Some(Msg::Update(queued)), Msg::Update(update)) => merge(queued, update),
        (_, msg) => outbox.push(msg),
    }
}

/// Adds `update`'s infos to `into`: an info replaces the queued one for
/// the same sid unless that one has a higher version; new sids are
/// appended in order.
fn merge(into: &mut proto::ParticipantUpdate, update: proto::ParticipantUpdate) {
    for info in update.participants {
        match into.participants.iter_mut().find(|p| p.sid == info.sid) {
            Some(queued) if queued.version > info.version => {}
            Some(queued) => *queued = info,
            None => into.participants.push(info),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(
        sid: &str,
        version: u32,
        state: proto::participant_info::State,
    ) -> proto::ParticipantInfo {
        proto::ParticipantInfo {
            sid: sid.into(),
            identity: format!("id-{sid}"),
            version,
            state: state as i32,
            ..Default::default()
        }
    }

    fn update(infos: Vec<proto::ParticipantInfo>) -> Msg {
        Msg::Update(proto::ParticipantUpdate {
            participants: infos,
        })
    }

    fn infos(msg: &Msg) -> Vec<(String, u32)> {
        match msg {
            Msg::Update(u) => u
                .participants
                .iter()
                .map(|p| (p.sid.clone(), p.version))
                .collect(),
            other => panic!("not an update: {other:?}"),
        }
    }

    use proto::participant_info::State::{Active, Disconnected, Joined};

    #[test]
    fn back_to_back_updates_merge_with_the_newest_info_per_sid() {
        let mut outbox = Vec::new();
        push(&mut outbox, update(vec![info("PA_a", 1, Joined)]));
        push(
            &mut outbox,
            update(vec![info("PA_b", 1, Joined), info("PA_a", 2, Active)]),
        );
        // An older info (out of order) does not replace a newer one.
        push(
            &mut outbox,
            update(vec![info("PA_b", 0, Joined), info("PA_c", 3, Joined)]),
        );
        assert_eq!(outbox.len(), 1);
        assert_eq!(
            infos(&outbox[0]),
            vec![("PA_a".into(), 2), ("PA_b".into(), 1), ("PA_c".into(), 3)]
        );
        // The same version again (a state change the room did not version)
        // takes the later one.
        push(&mut outbox, update(vec![info("PA_c", 3, Disconnected)]));
        match &outbox[0] {
            Msg::Update(u) => assert_eq!(u.participants[2].state, Disconnected as i32),
            other => panic!("not an update: {other:?}"),
        }
    }

    #[test]
    fn other_messages_keep_their_place_between_updates() {
        let mut outbox = Vec::new();
        push(&mut outbox, update(vec![info("PA_a", 1, Joined)]));
        push(&mut outbox, Msg::Pong(7));
        push(&mut outbox, update(vec![info("PA_a", 2, Active)]));
        assert_eq!(outbox.len(), 3);
        assert_eq!(infos(&outbox[0]), vec![("PA_a".into(), 1)]);
        assert!(matches!(outbox[1], Msg::Pong(7)));
        assert_eq!(infos(&outbox[2]), vec![("PA_a".into(), 2)]);
    }
}
