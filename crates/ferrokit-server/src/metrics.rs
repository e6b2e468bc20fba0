//! Prometheus metrics, served as OpenMetrics text on `prometheus_port`
//! (`GET /metrics`).
//!
//! Gauges (rooms, participants, tracks) are read from the rooms at scrape
//! time. Media counters are kept per session in plain integers
//! ([`MediaCounters`]) and added to the shared atomics once per batch of
//! work, so the media path does no shared-memory write per packet.

use std::sync::atomic::{AtomicI64, AtomicU64};

use livekit_protocol as proto;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::rooms::RoomManager;

/// Labels of a signal message counter: `direction` (`in`/`out`) and `type`.
type SignalLabels = Vec<(&'static str, &'static str)>;

/// Every metric of the server.
pub struct Metrics {
    registry: Registry,
    rooms: Gauge<i64, AtomicI64>,
    participants: Gauge<i64, AtomicI64>,
    published_tracks: Gauge<i64, AtomicI64>,
    subscribed_tracks: Gauge<i64, AtomicI64>,
    packets_in: Counter<u64, AtomicU64>,
    bytes_in: Counter<u64, AtomicU64>,
    packets_out: Counter<u64, AtomicU64>,
    bytes_out: Counter<u64, AtomicU64>,
    nacks: Counter<u64, AtomicU64>,
    plis: Counter<u64, AtomicU64>,
    forward_errors: Counter<u64, AtomicU64>,
    signal: Family<SignalLabels, Counter<u64, AtomicU64>>,
}

/// A session's media counts since its last [`Metrics::add`].
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct MediaCounters {
    /// RTP packets received from publishers.
    pub packets_in: u64,
    /// RTP payload bytes received from publishers.
    pub bytes_in: u64,
    /// RTP packets sent to subscribers.
    pub packets_out: u64,
    /// RTP payload bytes sent to subscribers.
    pub bytes_out: u64,
    /// NACKs received from subscribers.
    pub nacks: u64,
    /// PLIs and FIRs received from subscribers.
    pub plis: u64,
    /// Packets that could not be forwarded (no payload type, write failed,
    /// subscriber queue full).
    pub forward_errors: u64,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Registers every metric under the `livekit_` prefix.
    pub fn new() -> Self {
        let mut m = Self {
            registry: Registry::with_prefix("livekit"),
            rooms: Gauge::default(),
            participants: Gauge::default(),
            published_tracks: Gauge::default(),
            subscribed_tracks: Gauge::default(),
            packets_in: Counter::default(),
            bytes_in: Counter::default(),
            packets_out: Counter::default(),
            bytes_out: Counter::default(),
            nacks: Counter::default(),
            plis: Counter::default(),
            forward_errors: Counter::default(),
            signal: Family::default(),
        };
        let r = &mut m.registry;
        r.register("room", "Rooms on this node", m.rooms.clone());
        r.register(
            "participant",
            "Participants on this node",
            m.participants.clone(),
        );
        r.register(
            "track_published",
            "Published tracks",
            m.published_tracks.clone(),
        );
        r.register(
            "track_subscribed",
            "Subscribed tracks (one per subscriber and track)",
            m.subscribed_tracks.clone(),
        );
        r.register(
            "packet_in",
            "RTP packets received from publishers",
            m.packets_in.clone(),
        );
        r.register(
            "bytes_in",
            "RTP payload bytes received from publishers",
            m.bytes_in.clone(),
        );
        r.register(
            "packet_out",
            "RTP packets sent to subscribers",
            m.packets_out.clone(),
        );
        r.register(
            "bytes_out",
            "RTP payload bytes sent to subscribers",
            m.bytes_out.clone(),
        );
        r.register("nack", "NACKs received from subscribers", m.nacks.clone());
        r.register(
            "pli",
            "PLIs and FIRs received from subscribers",
            m.plis.clone(),
        );
        r.register(
            "forward_error",
            "Packets that could not be forwarded",
            m.forward_errors.clone(),
        );
        r.register(
            "signal_message",
            "Signal messages by direction and type",
            m.signal.clone(),
        );
        m
    }

    /// Adds a session's counts and zeroes them.
    pub fn add(&self, c: &mut MediaCounters) {
        if *c == MediaCounters::default() {
            return;
        }
        self.packets_in.inc_by(c.packets_in);
        self.bytes_in.inc_by(c.bytes_in);
        self.packets_out.inc_by(c.packets_out);
        self.bytes_out.inc_by(c.bytes_out);
        self.nacks.inc_by(c.nacks);
        self.plis.inc_by(c.plis);
        self.forward_errors.inc_by(c.forward_errors);
        *c = MediaCounters::default();
    }

    /// Counts a signal request from a client.
    pub fn signal_in(&self, msg: &proto::signal_request::Message) {
        let labels = vec![("direction", "in"), ("type", request_type(msg))];
        self.signal.get_or_create(&labels).inc();
    }

    /// Counts a signal response to a client.
    pub fn signal_out(&self, msg: &proto::signal_response::Message) {
        let labels = vec![("direction", "out"), ("type", response_type(msg))];
        self.signal.get_or_create(&labels).inc();
    }

    /// The metrics as OpenMetrics text, gauges read from `rooms` now.
    pub fn render(&self, rooms: &RoomManager) -> String {
        let all = rooms.all();
        let (mut participants, mut published, mut subscribed) = (0, 0, 0);
        for room in &all {
            room.read(|r| {
                for p in r.participants_info() {
                    participants += 1;
                    published += p.tracks.len() as i64;
                }
                subscribed += r.subscription_count() as i64;
            });
        }
        self.rooms.set(all.len() as i64);
        self.participants.set(participants);
        self.published_tracks.set(published);
        self.subscribed_tracks.set(subscribed);
        let mut text = String::new();
        // Writing to a String cannot fail.
        let _ = encode(&mut text, &self.registry);
        text
    }
}

/// The `type` label of a signal request (its oneof field name).
pub fn request_type(msg: &proto::signal_request::Message) -> &'static str {
    use proto::signal_request::Message as M;
    match msg {
        M::Offer(_) => "offer",
        M::Answer(_) => "answer",
        M::Trickle(_) => "trickle",
        M::AddTrack(_) => "add_track",
        M::Mute(_) => "mute",
        M::Subscription(_) => "subscription",
        M::TrackSetting(_) => "track_setting",
        M::Leave(_) => "leave",
        M::UpdateLayers(_) => "update_layers",
        M::SubscriptionPermission(_) => "subscription_permission",
        M::SyncState(_) => "sync_state",
        M::Simulate(_) => "simulate",
        M::Ping(_) => "ping",
        M::UpdateMetadata(_) => "update_metadata",
        M::PingReq(_) => "ping_req",
        M::UpdateAudioTrack(_) => "update_audio_track",
        M::UpdateVideoTrack(_) => "update_video_track",
        M::PublishDataTrackRequest(_) => "publish_data_track_request",
        M::UnpublishDataTrackRequest(_) => "unpublish_data_track_request",
        M::UpdateDataSubscription(_) => "update_data_subscription",
        M::StoreDataBlobRequest(_) => "store_data_blob_request",
        M::GetDataBlobRequest(_) => "get_data_blob_request",
    }
}

/// The `type` label of a signal response (its oneof field name).
pub fn response_type(msg: &proto::signal_response::Message) -> &'static str {
    use proto::signal_response::Message as M;
    match msg {
        M::Join(_) => "join",
        M::Answer(_) => "answer",
        M::Offer(_) => "offer",
        M::Trickle(_) => "trickle",
        M::Update(_) => "update",
        M::TrackPublished(_) => "track_published",
        M::Leave(_) => "leave",
        M::Mute(_) => "mute",
        M::SpeakersChanged(_) => "speakers_changed",
        M::RoomUpdate(_) => "room_update",
        M::ConnectionQuality(_) => "connection_quality",
        M::StreamStateUpdate(_) => "stream_state_update",
        M::SubscribedQualityUpdate(_) => "subscribed_quality_update",
        M::SubscriptionPermissionUpdate(_) => "subscription_permission_update",
        M::RefreshToken(_) => "refresh_token",
        M::TrackUnpublished(_) => "track_unpublished",
        M::Pong(_) => "pong",
        M::Reconnect(_) => "reconnect",
        M::PongResp(_) => "pong_resp",
        M::SubscriptionResponse(_) => "subscription_response",
        M::RequestResponse(_) => "request_response",
        M::TrackSubscribed(_) => "track_subscribed",
        M::MediaSectionsRequirement(_) => "media_sections_requirement",
        _ => "other",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_flush_and_render() {
        let m = Metrics::new();
        let mut c = MediaCounters {
            packets_in: 3,
            bytes_in: 300,
            ..Default::default()
        };
        m.add(&mut c);
        assert_eq!(c, MediaCounters::default());
        m.signal_in(&proto::signal_request::Message::Ping(1));
        let rooms = RoomManager::new(Default::default());
        let text = m.render(&rooms);
        assert!(text.contains("livekit_packet_in_total 3"), "{text}");
        assert!(text.contains("livekit_bytes_in_total 300"), "{text}");
        assert!(text.contains("livekit_room 0"), "{text}");
        assert!(
            text.contains(r#"livekit_signal_message_total{direction="in",type="ping"} 1"#),
            "{text}"
        );
    }
}
