//! Room logic in virtual time.

use super::*;
use crate::auth::VideoGrant;
use prost::Message;

pub(super) fn params(identity: &str) -> JoinParams {
    JoinParams {
        identity: identity.into(),
        grant: VideoGrant {
            room_join: true,
            room: "r".into(),
            ..Default::default()
        },
        auto_subscribe: true,
        ..Default::default()
    }
}

pub(super) fn room() -> Room {
    Room::new(
        "r",
        Duration::from_secs(300),
        Duration::from_secs(20),
        Instant::now(),
        0,
    )
}

pub(super) fn updates_to(out: &[Output], to: &str) -> Vec<proto::ParticipantInfo> {
    out.iter()
        .filter_map(|o| match o {
            Output::Signal {
                to: t,
                msg: Msg::Update(u),
            } if t == to => Some(u.participants.clone()),
            _ => None,
        })
        .flatten()
        .collect()
}

pub(super) fn add_audio(room: &mut Room, sid: &str, cid: &str) -> proto::TrackInfo {
    let req = proto::AddTrackRequest {
        cid: cid.into(),
        r#type: proto::TrackType::Audio as i32,
        source: proto::TrackSource::Microphone as i32,
        ..Default::default()
    };
    room.add_track(sid, &req).unwrap()
}

/// A room where `a` publishes an audio track whose media started, `b`
/// auto-subscribes to it and `c` does not: (room, a, b, c sids).
pub(super) fn publisher_subscriber_lurker() -> (Room, String, String, String) {
    let mut r = room();
    let (a, _) = r.join(params("a"), 0);
    let (b, _) = r.join(params("b"), 0);
    let mut lurker = params("c");
    lurker.auto_subscribe = false;
    let (c, _) = r.join(lurker, 0);
    let (a, b, c) = (a.participant.sid, b.participant.sid, c.participant.sid);
    let t = add_audio(&mut r, &a, "cid");
    r.track_media_started(&a, &t.sid, "0", "audio/opus");
    (r, a, b, c)
}

#[test]
fn join_tells_others_and_returns_them() {
    let mut r = room();
    let (a, _) = r.join(params("a"), 0);
    assert!(a.participant.sid.starts_with("PA_"));
    assert!(a.room.sid.starts_with("RM_"));
    assert!(a.others.is_empty());
    let (b, out) = r.join(params("b"), 0);
    assert_eq!(b.others.len(), 1);
    assert_eq!(b.others[0].identity, "a");
    let seen = updates_to(&out, &a.participant.sid);
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].identity, "b");
}

#[test]
fn hidden_participants_are_invisible() {
    let mut r = room();
    let (a, _) = r.join(params("a"), 0);
    let mut hp = params("h");
    hp.grant.hidden = true;
    let (_, out) = r.join(hp, 0);
    assert!(updates_to(&out, &a.participant.sid).is_empty());
    let (c, _) = r.join(params("c"), 0);
    assert!(c.others.iter().all(|p| p.identity != "h"));
    assert_eq!(r.info().num_participants, 2);
}

#[test]
fn duplicate_identity_replaces_older_session() {
    let mut r = room();
    let (old, _) = r.join(params("a"), 0);
    let (new, out) = r.join(params("a"), 0);
    assert_ne!(old.participant.sid, new.participant.sid);
    assert!(out.iter().any(|o| matches!(o, Output::Signal { to, msg: Msg::Leave(l) }
        if *to == old.participant.sid && l.reason == proto::DisconnectReason::DuplicateIdentity as i32)));
    assert!(out
        .iter()
        .any(|o| matches!(o, Output::Disconnect { sid } if *sid == old.participant.sid)));
    assert_eq!(r.len(), 1);
}

#[test]
fn published_track_reaches_auto_subscribers_and_versions_grow() {
    let mut r = room();
    let (a, _) = r.join(params("a"), 0);
    let (b, _) = r.join(params("b"), 0);
    let a_sid = a.participant.sid.clone();
    let t = add_audio(&mut r, &a_sid, "cid1");
    assert!(t.sid.starts_with("TR_"));
    // Same cid again: the same track.
    assert_eq!(add_audio(&mut r, &a_sid, "cid1").sid, t.sid);
    let v0 = r.participant(&a_sid).unwrap().info.version;
    let out = r.track_media_started(&a_sid, &t.sid, "0", "audio/opus");
    assert!(r.participant(&a_sid).unwrap().info.version > v0);
    let seen = updates_to(&out, &b.participant.sid);
    assert_eq!(seen[0].tracks[0].sid, t.sid);
    assert!(out
        .iter()
        .any(|o| matches!(o, Output::Subscribe { subscriber, track, .. }
        if *subscriber == b.participant.sid && track.sid == t.sid)));
    // A late joiner subscribes on join.
    let (_, out) = r.join(params("c"), 0);
    assert!(out
        .iter()
        .any(|o| matches!(o, Output::Subscribe { track, .. } if track.sid == t.sid)));
}

#[test]
fn grants_limit_publishing_and_subscribing() {
    let mut r = room();
    let mut p = params("a");
    p.grant.can_publish_sources = vec!["camera".into()];
    let (a, _) = r.join(p, 0);
    let req = proto::AddTrackRequest {
        cid: "c".into(),
        source: proto::TrackSource::Microphone as i32,
        ..Default::default()
    };
    let e = r.add_track(&a.participant.sid, &req).unwrap_err();
    assert_eq!(e.reason, proto::request_response::Reason::NotAllowed);

    let mut p = params("b");
    p.grant.can_subscribe = Some(false);
    let (b, _) = r.join(p, 0);
    let (c, _) = r.join(params("c"), 0);
    let t = add_audio(&mut r, &c.participant.sid, "x");
    let out = r.track_media_started(&c.participant.sid, &t.sid, "0", "audio/opus");
    assert!(!out
        .iter()
        .any(|o| matches!(o, Output::Subscribe { subscriber, .. }
        if *subscriber == b.participant.sid)));
}

#[test]
fn explicit_unsubscribe_and_resubscribe() {
    let mut r = room();
    let (a, _) = r.join(params("a"), 0);
    let (b, _) = r.join(params("b"), 0);
    let t = add_audio(&mut r, &a.participant.sid, "c");
    r.track_media_started(&a.participant.sid, &t.sid, "0", "audio/opus");
    let req = |subscribe| proto::UpdateSubscription {
        track_sids: vec![t.sid.clone()],
        subscribe,
        participant_tracks: vec![],
    };
    let out = r.update_subscription(&b.participant.sid, &req(false));
    assert!(matches!(out.as_slice(), [Output::Unsubscribe { .. }]));
    assert!(r
        .update_subscription(&b.participant.sid, &req(false))
        .is_empty());
    let out = r.update_subscription(&b.participant.sid, &req(true));
    assert!(matches!(out.as_slice(), [Output::Subscribe { .. }]));
    let missing = proto::UpdateSubscription {
        track_sids: vec!["TR_nope".into()],
        subscribe: true,
        participant_tracks: vec![],
    };
    let out = r.update_subscription(&b.participant.sid, &missing);
    assert!(matches!(
        out.as_slice(),
        [Output::Signal {
            msg: Msg::SubscriptionResponse(_),
            ..
        }]
    ));
}

#[test]
fn leave_ends_downtracks_and_tells_others() {
    let mut r = room();
    let (a, _) = r.join(params("a"), 0);
    let (b, _) = r.join(params("b"), 0);
    let t = add_audio(&mut r, &a.participant.sid, "c");
    r.track_media_started(&a.participant.sid, &t.sid, "0", "audio/opus");
    let out = r.leave(&a.participant.sid, Instant::now());
    assert!(out
        .iter()
        .any(|o| matches!(o, Output::Unsubscribe { subscriber, .. }
        if *subscriber == b.participant.sid)));
    let seen = updates_to(&out, &b.participant.sid);
    assert_eq!(
        seen[0].state,
        proto::participant_info::State::Disconnected as i32
    );
    r.leave(&b.participant.sid, Instant::now());
    assert!(r.is_empty());
}

#[test]
fn unused_room_expires_after_empty_timeout() {
    let t0 = Instant::now();
    let r = Room::new("r", Duration::from_secs(10), Duration::from_secs(5), t0, 0);
    assert!(!r.expired(t0 + Duration::from_secs(9)));
    assert!(r.expired(t0 + Duration::from_secs(10)));
}

#[test]
fn left_room_expires_after_departure_timeout() {
    let t0 = Instant::now();
    let mut r = Room::new("r", Duration::from_secs(10), Duration::from_secs(5), t0, 0);
    let (a, _) = r.join(params("a"), 0);
    assert!(!r.expired(t0 + Duration::from_secs(60)));
    let t1 = t0 + Duration::from_secs(100);
    r.leave(&a.participant.sid, t1);
    assert!(!r.expired(t1 + Duration::from_secs(4)));
    assert!(r.expired(t1 + Duration::from_secs(5)));
}

#[test]
fn mute_and_metadata_updates() {
    let mut r = room();
    let (a, _) = r.join(params("a"), 0);
    let (b, _) = r.join(params("b"), 0);
    let t = add_audio(&mut r, &a.participant.sid, "c");
    r.track_media_started(&a.participant.sid, &t.sid, "0", "audio/opus");
    let out = r.set_muted(&a.participant.sid, &t.sid, true);
    assert!(updates_to(&out, &b.participant.sid)[0].tracks[0].muted);
    assert!(r.set_muted(&a.participant.sid, &t.sid, true).is_empty());

    let md = proto::UpdateParticipantMetadata {
        metadata: "m".into(),
        ..Default::default()
    };
    assert!(r.update_metadata(&a.participant.sid, &md).is_err());
    let mut p = params("c");
    p.grant.can_update_own_metadata = Some(true);
    let (c, _) = r.join(p, 0);
    let out = r.update_metadata(&c.participant.sid, &md).unwrap();
    assert_eq!(updates_to(&out, &a.participant.sid)[0].metadata, "m");
}

#[test]
fn data_routing_by_destination_and_grant() {
    let mut r = room();
    let (a, _) = r.join(params("a"), 0);
    let (b, _) = r.join(params("b"), 0);
    let (c, _) = r.join(params("c"), 0);
    let packet = |dest: Vec<String>| proto::DataPacket {
        destination_identities: dest,
        value: Some(proto::data_packet::Value::User(proto::UserPacket {
            payload: b"hi".to_vec(),
            ..Default::default()
        })),
        ..Default::default()
    };
    let out = r
        .route_data(&a.participant.sid, packet(vec![]), true)
        .unwrap();
    let to: Vec<_> = out
        .iter()
        .map(|o| match o {
            Output::Data { to, data } => {
                let p = proto::DataPacket::decode(&*data.bytes).unwrap();
                assert_eq!(p.participant_identity, "a");
                assert_eq!(p.participant_sid, a.participant.sid);
                to.clone()
            }
            _ => panic!("unexpected {o:?}"),
        })
        .collect();
    assert_eq!(
        to,
        vec![b.participant.sid.clone(), c.participant.sid.clone()]
    );
    let out = r
        .route_data(&a.participant.sid, packet(vec!["c".into()]), false)
        .unwrap();
    assert!(
        matches!(out.as_slice(), [Output::Data { to, data }] if *to == c.participant.sid && !data.reliable)
    );

    let mut p = params("d");
    p.grant.can_publish = Some(false);
    let (d, _) = r.join(p, 0);
    assert_eq!(
        r.route_data(&d.participant.sid, packet(vec![]), true)
            .unwrap_err(),
        data::DataRefusal::NotAllowed
    );
}
