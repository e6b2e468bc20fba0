//! Against an in-process ferrokit server, in both signal modes: a publisher
//! sends synthetic audio and simulcast video, a subscriber receives both
//! with no loss and measured latency, and a data packet goes across.

use std::time::Duration;

use ferrokit_client::{
    DataMessage, Room, RoomEvent, RoomOptions, SignalMode, SyntheticTrackOptions, TrackKind,
};
use ferrokit_server::auth::{sign, unix_now, Claims, VideoGrant};
use ferrokit_server::config::{DEV_API_KEY, DEV_API_SECRET};
use ferrokit_server::{Config, Server};
use tokio::sync::mpsc::UnboundedReceiver;
use tokio::time::timeout;

fn token(room: &str, identity: &str) -> String {
    let claims = Claims {
        iss: DEV_API_KEY.into(),
        sub: identity.into(),
        exp: unix_now() + 600,
        video: VideoGrant {
            room_join: true,
            room: room.into(),
            ..Default::default()
        },
        ..Default::default()
    };
    sign(&claims, DEV_API_SECRET).expect("sign")
}

async fn start_server() -> Server {
    let mut config = Config::default().with_dev_keys();
    config.port = 0;
    config.rtc.udp_port = 0;
    Server::start(config).await.expect("server starts")
}

/// Waits (bounded) for the first event `pick` accepts.
async fn wait_for<T>(
    events: &mut UnboundedReceiver<RoomEvent>,
    what: &str,
    mut pick: impl FnMut(&RoomEvent) -> Option<T>,
) -> T {
    let found = timeout(Duration::from_secs(15), async {
        while let Some(e) = events.recv().await {
            if let Some(t) = pick(&e) {
                return Some(t);
            }
            if let RoomEvent::Disconnected { reason } = e {
                panic!("disconnected while waiting for {what}: {reason:?}");
            }
        }
        None
    })
    .await;
    match found {
        Ok(Some(t)) => t,
        _ => panic!("timed out waiting for {what}"),
    }
}

async fn roundtrip(mode: SignalMode) {
    let server = start_server().await;
    let url = format!("ws://{}", server.http_addr());
    let options = RoomOptions {
        mode,
        ..Default::default()
    };
    let (publisher, mut pub_events) = Room::connect(&url, &token("r", "alice"), options.clone())
        .await
        .expect("publisher joins");
    let (subscriber, mut sub_events) = Room::connect(&url, &token("r", "bob"), options)
        .await
        .expect("subscriber joins");
    assert!(subscriber.info().sid.starts_with("RM_"));
    assert!(publisher.local_participant().sid().starts_with("PA_"));

    let local = publisher.local_participant();
    let audio = local
        .publish_synthetic(SyntheticTrackOptions::audio("mic"))
        .await
        .expect("audio published");
    let video = local
        .publish_synthetic(SyntheticTrackOptions::simulcast_video("camera"))
        .await
        .expect("video published");
    assert!(audio.sid.starts_with("TR_") && video.sid.starts_with("TR_"));

    let mut subscribed = Vec::new();
    while subscribed.len() < 2 {
        let (sid, kind) = wait_for(&mut sub_events, "track_subscribed", |e| match e {
            RoomEvent::TrackSubscribed {
                track_sid, kind, ..
            } => Some((track_sid.clone(), *kind)),
            _ => None,
        })
        .await;
        subscribed.push((sid, kind));
    }
    assert!(subscribed.contains(&(audio.sid.clone(), TrackKind::Audio)));
    assert!(subscribed.contains(&(video.sid.clone(), TrackKind::Video)));

    // Let media flow for a while.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let stats = subscriber.stats().await.expect("stats");
    let first = stats.first_media.expect("media arrived");
    assert!(
        first < Duration::from_secs(10),
        "first media after {first:?}"
    );
    for (sid, kind) in &subscribed {
        let t = stats
            .tracks
            .iter()
            .find(|t| t.track_sid == *sid)
            .unwrap_or_else(|| panic!("no stats for {kind:?} {sid}: {stats:?}"));
        assert_eq!(t.kind, *kind);
        assert_eq!(t.participant_sid, publisher.local_participant().sid());
        let min = if *kind == TrackKind::Audio { 80 } else { 60 };
        assert!(t.packets >= min, "{kind:?}: {} packets", t.packets);
        assert!(
            t.lost * 100 <= t.expected,
            "{kind:?}: lost {} of {}",
            t.lost,
            t.expected
        );
        let p50 = t.latency_us.percentile(50.0).expect("latency measured");
        eprintln!(
            "{mode:?} {kind:?}: {} packets, {} bytes, lost {}/{}, jitter {:.2} ms, latency p50 {} us p99 {:?} us",
            t.packets,
            t.bytes,
            t.lost,
            t.expected,
            t.jitter_ms,
            p50,
            t.latency_us.percentile(99.0)
        );
        // Loopback: audio goes straight through; video may wait in the
        // server's pacer while its bandwidth estimate ramps up.
        let bound = if *kind == TrackKind::Audio {
            100_000
        } else {
            1_000_000
        };
        assert!(p50 < bound, "{kind:?}: latency p50 {p50} us");
        assert_eq!(t.latency_us.count(), t.packets, "every payload is stamped");
    }
    let pub_stats = publisher.stats().await.expect("publisher stats");
    assert!(pub_stats.sent_packets > 0 && pub_stats.sent_bytes > 0);

    // A reliable user packet from the subscriber to the publisher.
    let message = DataMessage {
        payload: b"hello".to_vec(),
        topic: Some("greeting".into()),
        reliable: true,
        destination_identities: Vec::new(),
    };
    let sent = timeout(Duration::from_secs(10), async {
        loop {
            match subscriber
                .local_participant()
                .publish_data(message.clone())
                .await
            {
                Ok(()) => return,
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
    })
    .await;
    assert!(sent.is_ok(), "data channel never opened");
    let (from, payload) = wait_for(&mut pub_events, "data", |e| match e {
        RoomEvent::DataReceived {
            participant_identity,
            payload,
            topic,
            reliable,
            ..
        } => {
            assert_eq!(topic.as_deref(), Some("greeting"));
            assert!(*reliable);
            Some((participant_identity.clone(), payload.clone()))
        }
        _ => None,
    })
    .await;
    assert_eq!((from.as_str(), payload.as_slice()), ("bob", &b"hello"[..]));

    timeout(Duration::from_secs(5), subscriber.close())
        .await
        .expect("subscriber closes in time")
        .expect("subscriber closes");
    // The publisher hears that the subscriber left.
    wait_for(&mut pub_events, "participant_disconnected", |e| match e {
        RoomEvent::ParticipantDisconnected { identity, .. } => (identity == "bob").then_some(()),
        _ => None,
    })
    .await;
    timeout(Duration::from_secs(5), publisher.close())
        .await
        .expect("publisher closes in time")
        .expect("publisher closes");
    server.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn single_pc_media_and_data() {
    roundtrip(SignalMode::SinglePeerConnection).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dual_pc_media_and_data() {
    roundtrip(SignalMode::DualPeerConnection).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_token_is_refused_with_status() {
    let server = start_server().await;
    let url = format!("ws://{}", server.http_addr());
    let err = Room::connect(&url, "garbage", RoomOptions::default())
        .await
        .err()
        .expect("refused");
    assert!(
        matches!(
            err,
            ferrokit_client::ClientError::Refused { status: 401, .. }
        ),
        "{err}"
    );
    server.shutdown(Duration::from_secs(1)).await;
}
