//! Server API operations and room events, in virtual time.

use super::tests::{add_audio, params, room, updates_to};
use super::*;
use prost::Message;

fn events(out: &[Output]) -> Vec<&'static str> {
    out.iter()
        .filter_map(|o| match o {
            Output::Event(e) => Some(e.name()),
            _ => None,
        })
        .collect()
}

fn leave_reason_to(out: &[Output], to: &str) -> Option<i32> {
    out.iter().find_map(|o| match o {
        Output::Signal {
            to: t,
            msg: Msg::Leave(l),
        } if t == to => Some(l.reason),
        _ => None,
    })
}

/// A room with `a` publishing one audio track and `b` subscribed to it.
fn publishing_room() -> (Room, String, String, proto::TrackInfo) {
    let mut r = room();
    let (a, _) = r.join(params("a"), 0);
    let (b, _) = r.join(params("b"), 0);
    let (a, b) = (a.participant.sid, b.participant.sid);
    let t = add_audio(&mut r, &a, "cid1");
    r.track_media_started(&a, &t.sid, "0", "audio/opus");
    (r, a, b, t)
}

#[test]
fn lifecycle_events_in_order() {
    let mut r = room();
    let (a, out) = r.join(params("a"), 0);
    let a = a.participant.sid;
    assert!(events(&out).is_empty(), "joined only when ACTIVE");
    assert_eq!(events(&r.set_active(&a)), vec!["participant_joined"]);
    assert!(events(&r.set_active(&a)).is_empty(), "once");
    let t = add_audio(&mut r, &a, "c");
    let out = r.track_media_started(&a, &t.sid, "0", "audio/opus");
    assert_eq!(events(&out), vec!["track_published"]);
    let out = r.leave(&a, Instant::now());
    assert_eq!(events(&out), vec!["track_unpublished", "participant_left"]);
}

#[test]
fn leaving_before_active_is_an_aborted_connection() {
    let mut r = room();
    let (a, _) = r.join(params("a"), 0);
    let out = r.leave(&a.participant.sid, Instant::now());
    assert_eq!(events(&out), vec!["participant_connection_aborted"]);
}

#[test]
fn room_metadata_reaches_everyone() {
    let mut r = room();
    let (a, _) = r.join(params("a"), 0);
    let (info, out) = r.set_room_metadata("m1");
    assert_eq!(info.metadata, "m1");
    assert!(out.iter().any(|o| matches!(o,
        Output::Signal { to, msg: Msg::RoomUpdate(u) }
            if *to == a.participant.sid && u.room.as_ref().is_some_and(|r| r.metadata == "m1"))));
}

#[test]
fn remove_participant_sends_leave_and_disconnects() {
    let (mut r, a, b, _) = publishing_room();
    let out = r.remove_participant("a", Instant::now()).unwrap();
    assert_eq!(
        leave_reason_to(&out, &a),
        Some(proto::DisconnectReason::ParticipantRemoved as i32)
    );
    assert!(out
        .iter()
        .any(|o| matches!(o, Output::Disconnect { sid } if *sid == a)));
    assert!(out.iter().any(|o| matches!(o,
        Output::Unsubscribe { subscriber, .. } if *subscriber == b)));
    assert!(r.participant(&a).is_none());
    assert_eq!(
        r.remove_participant("nobody", Instant::now()).unwrap_err(),
        AdminError::NotFound("participant \"nobody\"".into())
    );
}

#[test]
fn mute_published_track_tells_the_publisher_and_everyone() {
    let (mut r, a, b, t) = publishing_room();
    let (track, out) = r.mute_published_track("a", &t.sid, true, false).unwrap();
    assert!(track.muted);
    assert!(out.iter().any(|o| matches!(o,
        Output::Signal { to, msg: Msg::Mute(m) } if *to == a && m.sid == t.sid && m.muted)));
    assert!(updates_to(&out, &b).iter().any(|p| p.tracks[0].muted));
    assert!(matches!(
        r.mute_published_track("a", &t.sid, false, false),
        Err(AdminError::FailedPrecondition(_))
    ));
    assert!(r.mute_published_track("a", &t.sid, false, true).is_ok());
    assert!(matches!(
        r.mute_published_track("a", "TR_nope", true, false),
        Err(AdminError::NotFound(_))
    ));
}

#[test]
fn update_participant_changes_info_and_permission() {
    let (mut r, a, b, t) = publishing_room();
    let req = proto::UpdateParticipantRequest {
        identity: "b".into(),
        metadata: "meta".into(),
        name: "Bee".into(),
        attributes: [("k".to_string(), "v".to_string())].into(),
        permission: Some(proto::ParticipantPermission {
            can_subscribe: false,
            can_publish: true,
            can_publish_data: true,
            ..Default::default()
        }),
        ..Default::default()
    };
    let (info, out) = r.update_participant(&req).unwrap();
    assert_eq!(
        (info.metadata.as_str(), info.name.as_str()),
        ("meta", "Bee")
    );
    assert_eq!(info.attributes["k"], "v");
    assert!(!info.permission.unwrap().can_subscribe);
    assert!(out.iter().any(|o| matches!(o,
        Output::Unsubscribe { subscriber, track_sid, .. } if *subscriber == b && *track_sid == t.sid)));
    assert_eq!(updates_to(&out, &a)[0].name, "Bee");
    // getting canSubscribe back resubscribes an auto-subscriber
    let req = proto::UpdateParticipantRequest {
        identity: "b".into(),
        permission: Some(proto::ParticipantPermission {
            can_subscribe: true,
            can_publish: true,
            can_publish_data: true,
            ..Default::default()
        }),
        ..Default::default()
    };
    let (_, out) = r.update_participant(&req).unwrap();
    assert!(out.iter().any(|o| matches!(o,
        Output::Subscribe { subscriber, track, .. } if *subscriber == b && track.sid == t.sid)));
    // losing canPublish unpublishes
    let req = proto::UpdateParticipantRequest {
        identity: "a".into(),
        permission: Some(proto::ParticipantPermission::default()),
        ..Default::default()
    };
    let (info, out) = r.update_participant(&req).unwrap();
    assert!(info.tracks.is_empty());
    assert_eq!(events(&out), vec!["track_unpublished"]);
}

#[test]
fn server_data_reaches_destinations_with_topic() {
    let (r, a, b, _) = publishing_room();
    let req = proto::SendDataRequest {
        data: b"hi".to_vec(),
        kind: proto::data_packet::Kind::Reliable as i32,
        destination_identities: vec!["b".into()],
        topic: Some("t".into()),
        ..Default::default()
    };
    let out = r.send_server_data(&req);
    assert_eq!(out.len(), 1);
    let Output::Data { to, data } = &out[0] else {
        panic!("not data: {out:?}")
    };
    assert_eq!(*to, b);
    assert!(data.reliable);
    let packet = proto::DataPacket::decode(&data.bytes[..]).unwrap();
    let Some(proto::data_packet::Value::User(u)) = packet.value else {
        panic!("not a user packet")
    };
    assert_eq!(
        (u.payload.as_slice(), u.topic.as_deref()),
        (&b"hi"[..], Some("t"))
    );
    let everyone = r.send_server_data(&proto::SendDataRequest::default());
    let to: Vec<&str> = everyone
        .iter()
        .filter_map(|o| match o {
            Output::Data { to, .. } => Some(to.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(to.len(), 2);
    assert!(to.contains(&a.as_str()) && to.contains(&b.as_str()));
}

#[test]
fn max_participants_counts_visible_others() {
    let mut r = room();
    r.configure(&proto::CreateRoomRequest {
        max_participants: 1,
        ..Default::default()
    });
    assert!(!r.is_full_for("a"));
    r.join(params("a"), 0);
    assert!(r.is_full_for("b"));
    assert!(!r.is_full_for("a"), "a rejoining replaces itself");
}

#[test]
fn close_removes_everyone_with_the_reason() {
    let (mut r, a, b, _) = publishing_room();
    let out = r.close(proto::DisconnectReason::RoomDeleted, Instant::now());
    for sid in [&a, &b] {
        assert_eq!(
            leave_reason_to(&out, sid),
            Some(proto::DisconnectReason::RoomDeleted as i32)
        );
    }
    assert!(r.is_empty());
    assert_eq!(
        events(&out)
            .iter()
            .filter(|e| e.starts_with("participant"))
            .count(),
        2
    );
}
