//! One participant's task: its signal WebSocket, its peer connection(s) and
//! its place in the room. Everything for a participant happens here, in
//! order: signal requests, room commands, datagrams, media from publishers
//! and str0m timeouts.

mod control;
mod media;
mod negotiation;
mod signal;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::ws::{Message as WsMessage, WebSocket};
use futures_util::{SinkExt, StreamExt};
use livekit_protocol as proto;
use prost::Message as _;
use proto::signal_response::Message as Msg;
use str0m::media::Mid;
use str0m::rtp::Ssrc;
use tokio::sync::mpsc;

use crate::net::{Datagram, UdpMux};
use crate::rooms::{Command, Mailbox, MediaItem, RoomEntry, MEDIA_QUEUE_LEN};
use crate::rtc::peer::Peer;
use crate::sfu::{Codec, Downtrack};

/// Seconds between client pings (JoinResponse.ping_interval).
pub const PING_INTERVAL_SECS: i32 = 5;
/// Seconds of silence after which a client gives up (JoinResponse.ping_timeout).
pub const PING_TIMEOUT_SECS: i32 = 15;
/// Interval of WebSocket-level pings from the server.
const WS_PING_EVERY: Duration = Duration::from_secs(10);
/// Interval of `refresh_token` messages.
const TOKEN_REFRESH_EVERY: Duration = Duration::from_secs(300);
/// Interval of the session's control work: a publisher's speaking level
/// and dynacast layers, a subscriber's stream states.
const CONTROL_INTERVAL: Duration = Duration::from_millis(400);
/// str0m's timer is set this much before its deadline, and str0m is then
/// given the deadline as the time: tokio's timer has 1 ms steps and fires
/// late, and str0m's BWE probes send bursts 2 ms apart, so a late timer
/// stretched every probe by about half and the estimate followed (probes
/// measured about 2/3 of their rate).
/// `drain_all` likewise runs a str0m timeout due within this much at once.
pub(super) const STR0M_TIMER_EARLY: Duration = Duration::from_millis(1);
/// Signal requests read ahead of the session task.
const SIGNAL_QUEUE_LEN: usize = 64;
/// Forwarded packets written to str0m before one drain.
const MEDIA_BATCH: usize = 256;
/// Minimum interval between keyframe requests sent to a publisher per track.
const KEYFRAME_REQUEST_INTERVAL: Duration = Duration::from_millis(300);

/// What the session needs from the server around it.
pub struct SessionContext {
    /// The shared UDP port.
    pub mux: UdpMux,
    /// Address in our ICE candidates (node_ip:udp_port).
    pub candidate_addr: SocketAddr,
    /// How long a participant whose signal closed is kept.
    pub departure_timeout: Duration,
    /// Mints a refreshed token for this participant (None: no refresh).
    pub refresh_token: Box<dyn Fn() -> Option<String> + Send + Sync>,
    /// Server metrics.
    pub metrics: Arc<crate::metrics::Metrics>,
}

/// A published track's media as the publisher task sees it.
struct Incoming {
    track_sid: Arc<str>,
    started: bool,
    /// Subscribers' media inboxes.
    downtracks: Vec<(String, mpsc::Sender<MediaItem>)>,
    last_keyframe_request: Option<Instant>,
    rids: Vec<String>,
    /// Loudness over the current speaker interval (audio tracks).
    level: crate::sfu::AudioLevelObserver,
    /// The codec `add_track` asked for (its first `simulcast_codecs`
    /// entry), put first in our answers.
    wanted_codec: Option<String>,
    /// Muted by the publisher (media is expected to stop).
    muted: bool,
    /// Video: which layers subscribers want (`subscribed_quality_update`).
    dynacast: Option<crate::sfu::Dynacast>,
    /// The codec of the media received, once some arrived.
    codec: Option<Codec>,
}

/// An incoming SSRC: its m-line and simulcast layer, and the codec of the
/// last payload type seen on it (looked up again only when the PT changes).
#[derive(Clone, Copy)]
struct SsrcInfo {
    mid: Mid,
    layer: u8,
    pt: str0m::media::Pt,
    codec: Codec,
    clock_rate: u32,
}

/// A subscribed track as the subscriber task sees it.
struct Subscribed {
    publisher: String,
    track: proto::TrackInfo,
    video: bool,
    /// Peer connection index and mid, once negotiated.
    mid: Option<Mid>,
    /// The client has our description carrying this mid.
    active: bool,
    dt: Downtrack,
    pt_cache: Option<(Codec, str0m::media::Pt)>,
    /// The highest layer the publisher was told we take (None: disabled).
    wish: Option<u8>,
    /// The client was last told this stream is PAUSED.
    stream_paused: bool,
    /// What each layer of the track costs (bandwidth allocation).
    rates: crate::sfu::allocation::LayerRates,
}

/// A participant's task state.
pub struct Session {
    sid: String,
    room: Arc<RoomEntry>,
    ctx: Arc<SessionContext>,
    single_pc: bool,
    /// [publisher (or the single PC), subscriber (dual PC only)].
    pcs: Vec<Peer>,
    json: bool,
    ws_open: bool,
    departure_deadline: Option<Instant>,
    closing: bool,
    /// Publisher side: mid -> incoming track.
    incoming: HashMap<Mid, Incoming>,
    /// Publisher side: what each incoming SSRC carries.
    ssrc_info: HashMap<Ssrc, SsrcInfo>,
    /// Subscriber side: track sid -> subscription.
    subscribed: HashMap<String, Subscribed>,
    /// Single PC: receive slots of the last offer left unused (true = video).
    free_mids: Vec<(Mid, bool)>,
    /// Dual PC: m-lines whose subscription ended, to be offered inactive next.
    ended_mids: Vec<Mid>,
    /// M-lines that carried a track and stay inactive for good.
    retired_mids: Vec<Mid>,
    /// Dual PC: a new offer is needed once the pending one is answered.
    renegotiate: bool,
    offer_id: u32,
    outbox: Vec<Msg>,
    /// Reused buffer for str0m events collected while draining.
    events: Vec<(usize, str0m::Event)>,
    warned: std::collections::HashSet<&'static str>,
    /// Media counts not yet added to the server metrics.
    counters: crate::metrics::MediaCounters,
    /// Last cumulative NACK count per (peer connection, mid, rid) from
    /// str0m's egress stats.
    nacks_seen: HashMap<(usize, Mid, Option<str0m::media::Rid>), u64>,
    /// Connection quality measurement.
    quality: control::QualityState,
    /// Subscriber side: str0m's estimate of our outgoing bandwidth, bps.
    bwe_bps: Option<u64>,
    /// Subscriber side: bandwidth allocation state.
    bandwidth: control::BandwidthState,
}

/// What the signal reader task hands the session.
enum Inbound {
    /// A decoded request; `json` when it came as a text frame.
    Request {
        request: Box<proto::SignalRequest>,
        json: bool,
    },
    /// A frame that did not decode, with the decoder's reason.
    Malformed(String),
    /// The WebSocket closed or failed.
    Closed,
}

/// Reads and decodes signal frames until the WebSocket closes or the
/// session goes away.
async fn read_signal(
    mut stream: futures_util::stream::SplitStream<WebSocket>,
    tx: mpsc::Sender<Inbound>,
) {
    loop {
        let inbound = match stream.next().await {
            Some(Ok(WsMessage::Binary(b))) => match proto::SignalRequest::decode(b.as_ref()) {
                Ok(request) => Inbound::Request {
                    request: Box::new(request),
                    json: false,
                },
                Err(e) => Inbound::Malformed(e.to_string()),
            },
            Some(Ok(WsMessage::Text(t))) => {
                match serde_json::from_str::<proto::SignalRequest>(t.as_str()) {
                    Ok(request) => Inbound::Request {
                        request: Box::new(request),
                        json: true,
                    },
                    Err(e) => Inbound::Malformed(e.to_string()),
                }
            }
            Some(Ok(_)) => continue,
            Some(Err(_)) | None => Inbound::Closed,
        };
        let closed = matches!(inbound, Inbound::Closed);
        if tx.send(inbound).await.is_err() || closed {
            return;
        }
    }
}

/// Channels the task reads.
pub struct Inboxes {
    ctrl: mpsc::UnboundedReceiver<Command>,
    media: mpsc::Receiver<MediaItem>,
    udp: mpsc::Receiver<Datagram>,
}

/// Creates a participant's mailbox and the task's inboxes.
pub fn mailbox() -> (
    Mailbox,
    mpsc::UnboundedReceiver<Command>,
    mpsc::Receiver<MediaItem>,
) {
    let (ctrl_tx, ctrl_rx) = mpsc::unbounded_channel();
    let (media_tx, media_rx) = mpsc::channel(MEDIA_QUEUE_LEN);
    (
        Mailbox {
            ctrl: ctrl_tx,
            media: media_tx,
        },
        ctrl_rx,
        media_rx,
    )
}

impl Session {
    /// Builds the session's peer connections and registers their ufrags.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        sid: String,
        room: Arc<RoomEntry>,
        ctx: Arc<SessionContext>,
        single_pc: bool,
        ctrl: mpsc::UnboundedReceiver<Command>,
        media: mpsc::Receiver<MediaItem>,
    ) -> Result<(Self, Inboxes), crate::rtc::peer::PeerError> {
        let now = Instant::now();
        let (udp_tx, udp_rx) = mpsc::channel(crate::net::udp::QUEUE_LEN);
        let count = if single_pc { 1 } else { 2 };
        let mut pcs = Vec::with_capacity(count);
        for i in 0..count {
            let peer = Peer::new(ctx.candidate_addr, now)?;
            ctx.mux.register(&peer.ufrag, i, udp_tx.clone());
            pcs.push(peer);
        }
        let session = Self {
            sid,
            room,
            ctx,
            single_pc,
            pcs,
            json: false,
            ws_open: true,
            departure_deadline: None,
            closing: false,
            incoming: HashMap::new(),
            ssrc_info: HashMap::new(),
            subscribed: HashMap::new(),
            free_mids: Vec::new(),
            ended_mids: Vec::new(),
            retired_mids: Vec::new(),
            renegotiate: false,
            offer_id: 0,
            outbox: Vec::new(),
            events: Vec::new(),
            warned: Default::default(),
            counters: Default::default(),
            nacks_seen: HashMap::new(),
            quality: control::QualityState::new(now),
            bwe_bps: None,
            bandwidth: Default::default(),
        };
        Ok((
            session,
            Inboxes {
                ctrl,
                media,
                udp: udp_rx,
            },
        ))
    }

    /// Queues a signal message; it is written after the current step.
    fn send(&mut self, msg: Msg) {
        self.outbox.push(msg);
    }

    /// Logs a warning once per kind for this participant.
    fn warn_once(&mut self, what: &'static str, detail: impl std::fmt::Display) {
        if self.warned.insert(what) {
            tracing::warn!(participant = %self.sid, "{what}: {detail}");
        }
    }

    /// Runs the participant until it leaves. `first` holds messages that
    /// must go out first (the JoinResponse); `publisher_offer` is the offer
    /// carried in a v1 JoinRequest.
    pub async fn run(
        mut self,
        mut inboxes: Inboxes,
        ws: WebSocket,
        first: Vec<Msg>,
        publisher_offer: Option<proto::SessionDescription>,
    ) {
        let (mut sink, stream) = ws.split();
        // The WebSocket is read on its own task: polling it from the select
        // below on every media packet made tungstenite zero its read buffer
        // each time (a third of the server's CPU in a 200-subscriber room).
        let (signal_tx, mut signal_rx) = mpsc::channel(SIGNAL_QUEUE_LEN);
        let reader = tokio::spawn(read_signal(stream, signal_tx));
        self.outbox.extend(first);
        if let Some(refreshed) = (self.ctx.refresh_token)() {
            self.send(Msg::RefreshToken(refreshed));
        }
        if !self.single_pc {
            self.negotiate_subscriber();
        }
        if let Some(offer) = publisher_offer {
            self.on_offer(offer);
        }
        // First ping one period in (a plain interval would fire at once).
        let mut ws_ping =
            tokio::time::interval_at(tokio::time::Instant::now() + WS_PING_EVERY, WS_PING_EVERY);
        let mut refresh = tokio::time::interval(TOKEN_REFRESH_EVERY);
        refresh.tick().await;
        let mut control_tick = tokio::time::interval(CONTROL_INTERVAL);
        control_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut next_timeout = self.drain_all();
        // One timer each for str0m's timeout and the departure deadline,
        // reset only when their deadline comes sooner (or fired).
        let str0m_timer = tokio::time::sleep_until((next_timeout - STR0M_TIMER_EARLY).into());
        tokio::pin!(str0m_timer);
        // Armed for real once the signal connection is lost.
        let departure_timer = tokio::time::sleep(Duration::from_secs(3600));
        tokio::pin!(departure_timer);
        let mut departure_armed = false;
        loop {
            if !self.flush(&mut sink).await {
                self.lost_signal();
            }
            if self.closing {
                break;
            }
            if let (Some(deadline), false) = (self.departure_deadline, departure_armed) {
                departure_timer.as_mut().reset(deadline.into());
                departure_armed = true;
            }
            // Biased: a wake for one packet polls the cheap, usually empty
            // inboxes and stops at the first ready branch; the timers behind
            // them are polled only when nothing else is ready.
            tokio::select! {
                biased;
                Some(cmd) = inboxes.ctrl.recv() => self.on_command(cmd),
                Some(d) = inboxes.udp.recv() => {
                    self.on_datagram(d);
                    for _ in 0..64 {
                        self.drain_all();
                        match inboxes.udp.try_recv() {
                            Ok(d) => self.on_datagram(d),
                            Err(_) => break,
                        }
                    }
                }
                Some(item) = inboxes.media.recv() => {
                    let now = Instant::now();
                    self.forward(item, now);
                    // Whatever else is queued goes into the same drain: str0m
                    // queues written packets until the next poll.
                    for _ in 0..MEDIA_BATCH {
                        match inboxes.media.try_recv() {
                            Ok(item) => self.forward(item, now),
                            Err(_) => break,
                        }
                    }
                }
                inbound = signal_rx.recv(), if self.ws_open => match inbound {
                    Some(Inbound::Request { request, json }) => {
                        self.json |= json;
                        self.on_request(*request);
                    }
                    Some(Inbound::Malformed(e)) => self.bad_frame(&e),
                    Some(Inbound::Closed) | None => self.lost_signal(),
                },
                _ = &mut str0m_timer => {
                    // The timer fires up to STR0M_TIMER_EARLY early: str0m
                    // gets its own deadline.
                    let now = Instant::now().max(next_timeout);
                    for pc in &mut self.pcs {
                        let _ = pc.rtc.handle_input(str0m::Input::Timeout(now));
                    }
                }
                _ = ws_ping.tick(), if self.ws_open => {
                    if sink.send(WsMessage::Ping(Default::default())).await.is_err() {
                        self.lost_signal();
                    }
                }
                _ = control_tick.tick() => {
                    let now = Instant::now();
                    if !self.incoming.is_empty() {
                        self.update_speaking();
                        self.update_dynacast(now);
                    }
                    self.allocate_bandwidth(now);
                    self.update_stream_states(now);
                    self.update_quality(now);
                    self.ctx.metrics.add(&mut self.counters);
                }
                _ = refresh.tick(), if self.ws_open => {
                    if let Some(t) = (self.ctx.refresh_token)() {
                        self.send(Msg::RefreshToken(t));
                    }
                }
                _ = &mut departure_timer, if departure_armed => {
                    tracing::info!(participant = %self.sid, "departure timeout");
                    self.closing = true;
                }
            }
            let next = self.drain_all();
            // A later deadline leaves the timer armed: firing early costs
            // one cheap str0m round, re-arming on every packet cost a timer
            // wheel update each (str0m's deadline moves with each packet).
            if next < next_timeout || str0m_timer.is_elapsed() {
                next_timeout = next;
                str0m_timer
                    .as_mut()
                    .reset((next - STR0M_TIMER_EARLY).into());
            }
            if self.pcs.iter().all(|pc| !pc.rtc.is_alive()) && self.departure_deadline.is_some() {
                self.closing = true;
            }
        }
        reader.abort();
        self.ctx.metrics.add(&mut self.counters);
        let _ = self.flush(&mut sink).await;
        let _ = sink.send(WsMessage::Close(None)).await;
        self.cleanup();
    }

    /// Writes queued signal messages. False if the socket failed.
    async fn flush(
        &mut self,
        sink: &mut futures_util::stream::SplitSink<WebSocket, WsMessage>,
    ) -> bool {
        if self.outbox.is_empty() || !self.ws_open {
            self.outbox.clear();
            return true;
        }
        for msg in std::mem::take(&mut self.outbox) {
            self.ctx.metrics.signal_out(&msg);
            if tracing::enabled!(tracing::Level::DEBUG) {
                let text = format!("{msg:?}");
                tracing::debug!(participant = %self.sid, "signal response: {}", &text[..text.len().min(300)]);
            }
            if let Msg::Offer(sd) | Msg::Answer(sd) = &msg {
                tracing::trace!(participant = %self.sid, "sdp sent:\n{}", sd.sdp);
            }
            let resp = proto::SignalResponse { message: Some(msg) };
            let frame = if self.json {
                match serde_json::to_string(&resp) {
                    Ok(s) => WsMessage::Text(s.into()),
                    Err(_) => continue,
                }
            } else {
                WsMessage::Binary(resp.encode_to_vec().into())
            };
            if sink.send(frame).await.is_err() {
                return false;
            }
        }
        true
    }

    /// The signal connection closed without `leave`: keep the participant
    /// for `departure_timeout`, then remove it.
    fn lost_signal(&mut self) {
        if self.ws_open {
            self.ws_open = false;
            self.departure_deadline = Some(Instant::now() + self.ctx.departure_timeout);
            tracing::info!(participant = %self.sid, "signal connection closed");
        }
    }

    /// An undecodable frame: `leave` would be too harsh for one frame, so the
    /// client gets a `request_response` and the frame is logged once.
    fn bad_frame(&mut self, err: &str) {
        self.warn_once("malformed signal frame", err);
        self.send(Msg::RequestResponse(proto::RequestResponse {
            reason: proto::request_response::Reason::InvalidRequest as i32,
            message: format!("malformed signal request: {err}"),
            ..Default::default()
        }));
    }

    /// Publisher side: the incoming media of a published track.
    fn incoming_track(&mut self, track_sid: &str) -> Option<&mut Incoming> {
        self.incoming
            .values_mut()
            .find(|i| &*i.track_sid == track_sid)
    }

    fn on_command(&mut self, cmd: Command) {
        match cmd {
            Command::Signal(msg) => {
                if let Msg::Update(u) = &msg {
                    self.note_track_mutes(u);
                }
                self.send(msg)
            }
            Command::Subscribe { publisher, track } => self.on_subscribe(publisher, track),
            Command::Unsubscribe { track_sid } => self.on_unsubscribe(&track_sid),
            Command::AddDowntrack {
                track_sid,
                subscriber,
                media,
            } => {
                if let Some(inc) = self.incoming_track(&track_sid) {
                    if let Some(d) = &mut inc.dynacast {
                        d.set(&subscriber, Some(2));
                    }
                    inc.downtracks.retain(|(s, _)| *s != subscriber);
                    inc.downtracks.push((subscriber, media));
                }
                self.update_dynacast(Instant::now());
                self.request_keyframe(&track_sid, None);
            }
            Command::RemoveDowntrack {
                track_sid,
                subscriber,
            } => {
                if let Some(inc) = self.incoming_track(&track_sid) {
                    if let Some(d) = &mut inc.dynacast {
                        d.remove(&subscriber);
                    }
                    inc.downtracks.retain(|(s, _)| *s != subscriber);
                }
            }
            Command::SubscriberLayer {
                track_sid,
                subscriber,
                max_layer,
            } => {
                if let Some(d) = self
                    .incoming_track(&track_sid)
                    .and_then(|i| i.dynacast.as_mut())
                {
                    d.set(&subscriber, max_layer);
                }
                self.update_dynacast(Instant::now());
            }
            Command::KeyframeRequest { track_sid, layer } => {
                self.request_keyframe(&track_sid, Some(layer))
            }
            Command::Data(d) => {
                // Dual PC: the subscriber PC carries server->client data once open.
                let sent = self.pcs.len() > 1 && self.pcs[1].send_data(d.reliable, &d.bytes);
                if !sent && !self.pcs[0].send_data(d.reliable, &d.bytes) && d.reliable {
                    self.warn_once("data dropped", "no open data channel");
                }
            }
            Command::Disconnect => self.closing = true,
        }
    }

    fn cleanup(&mut self) {
        let sid = self.sid.clone();
        self.room
            .update(|r| ((), r.leave(&sid, std::time::Instant::now())));
        self.room.remove_mailbox(&sid);
        for pc in &self.pcs {
            self.ctx.mux.unregister(&pc.ufrag);
        }
        tracing::info!(participant = %sid, "participant left");
    }
}
