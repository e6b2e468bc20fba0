//! One participant's task: its signal WebSocket, its peer connection(s) and
//! its place in the room. Signal requests, room commands and datagrams are
//! handled here, in order; media from publishers and str0m's timeouts are
//! handled by the session's egress worker (`egress`), under the same lock.

mod control;
mod egress;
mod forward;
mod inline;
mod media;
mod negotiation;
mod outbox;
mod signal;
mod subscriptions;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use axum::extract::ws::{Message as WsMessage, WebSocket};
use futures_util::{SinkExt, StreamExt};
use livekit_protocol as proto;
use prost::Message as _;
use proto::signal_response::Message as Msg;
use str0m::media::Mid;
use str0m::rtp::Ssrc;
use tokio::sync::mpsc;

pub use egress::{fan_out, Egress, EgressJob, SessionCell};

use crate::net::{Datagram, InlineReceiver, TxBatch, UdpMux};
use crate::rooms::{Command, Mailbox, RoomEntry};
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
/// Control ticks start on this grid (`crate::grid`), so sessions tick in
/// one of 8 phases of [`CONTROL_INTERVAL`]: a phase's sessions run in one
/// runtime wake. Ticks at each session's own instant woke a runtime thread
/// for every session 2.5 times a second (500 wakes/s for 200 subscribers).
const CONTROL_PHASE: Duration = Duration::from_millis(50);
/// str0m's timer is set this much before its deadline, and str0m is then
/// given the deadline as the time: tokio's timer has 1 ms steps and fires
/// late, and str0m's BWE probes send bursts 2 ms apart, so a late timer
/// stretched every probe by about half and the estimate followed (probes
/// measured about 2/3 of their rate).
/// `drain_all` likewise runs a str0m timeout due within this much at once.
pub(super) const STR0M_TIMER_EARLY: Duration = Duration::from_millis(1);
/// Signal requests read ahead of the session task.
const SIGNAL_QUEUE_LEN: usize = 64;
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
    /// The egress workers that write forwarded packets to subscribers.
    pub egress: Arc<Egress>,
}

/// A published track's media as the publisher task sees it.
struct Incoming {
    track_sid: Arc<str>,
    started: bool,
    /// Subscribers' sessions, by participant sid.
    downtracks: Vec<(String, Arc<SessionCell>)>,
    /// The same sessions as the egress jobs list them, each list with the
    /// worker that writes it ([`fan_out`]): a packet is queued once per list.
    groups: Vec<(usize, Arc<[Arc<SessionCell>]>)>,
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

impl Incoming {
    /// Rebuilds `groups` from `downtracks` after a change; `home` is the
    /// publisher's own egress worker.
    fn regroup(&mut self, workers: usize, home: usize) {
        let cells: Vec<_> = self.downtracks.iter().map(|(_, c)| c.clone()).collect();
        self.groups = fan_out(&cells, workers, home);
    }
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

/// A subscribed track as the subscriber's session sees it.
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
    /// SSRC of str0m's send stream for `mid`: a hash lookup, where finding
    /// the stream by mid scans every send stream. Checked on use.
    ssrc_cache: Option<Ssrc>,
    /// Audio: sent without str0m once str0m sent the first packet
    /// (`rtc::direct`).
    direct: Option<crate::rtc::direct::DirectTrack>,
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
    subscribed: subscriptions::SubscriptionTable<Subscribed>,
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
    /// The deadline the egress worker's timer holds for this session
    /// (None: none yet).
    scheduled: Option<Instant>,
    /// The egress worker of this participant's cell: where its published
    /// tracks' small fan-outs are written ([`fan_out`]).
    worker: usize,
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

/// What woke the session's task.
// One value per wake, on the stack: boxing the command would allocate.
#[allow(clippy::large_enum_variant)]
enum Step {
    Command(Command),
    Datagram(Datagram),
    Signal(Option<Inbound>),
    /// The WebSocket ping failed.
    SignalLost,
    /// An egress worker, or a WebSocket ping sent: drain and flush.
    Woken,
    Control,
    Refresh,
    Departure,
}

/// Writes signal messages on the WebSocket, buffered and flushed once
/// (one write for the lot, not one per message). False if the socket
/// failed.
async fn flush(
    sink: &mut futures_util::stream::SplitSink<WebSocket, WsMessage>,
    outbox: Vec<Msg>,
    json: bool,
    metrics: &crate::metrics::Metrics,
    sid: &str,
) -> bool {
    if outbox.is_empty() {
        return true;
    }
    for msg in outbox {
        metrics.signal_out(&msg);
        if tracing::enabled!(tracing::Level::DEBUG) {
            let text = format!("{msg:?}");
            // At most 300 characters (a byte index could split one).
            let end = text.char_indices().nth(300).map_or(text.len(), |(i, _)| i);
            tracing::debug!(participant = %sid, "signal response: {}", &text[..end]);
        }
        if let Msg::Offer(sd) | Msg::Answer(sd) = &msg {
            tracing::trace!(participant = %sid, "sdp sent:\n{}", sd.sdp);
        }
        let resp = proto::SignalResponse { message: Some(msg) };
        let frame = if json {
            match serde_json::to_string(&resp) {
                Ok(s) => WsMessage::Text(s.into()),
                Err(_) => continue,
            }
        } else {
            WsMessage::Binary(resp.encode_to_vec().into())
        };
        // Buffered: the whole outbox goes out in one write (flush below).
        if sink.feed(frame).await.is_err() {
            return false;
        }
    }
    sink.flush().await.is_ok()
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
    udp: mpsc::Receiver<Datagram>,
}

/// Creates a participant's mailbox: its control channel and the (still
/// empty) cell its session will live in, on one of `egress`'s workers.
pub fn mailbox(egress: &Egress) -> (Mailbox, mpsc::UnboundedReceiver<Command>) {
    let (ctrl_tx, ctrl_rx) = mpsc::unbounded_channel();
    (
        Mailbox {
            ctrl: ctrl_tx,
            media: egress.cell(),
        },
        ctrl_rx,
    )
}

impl Session {
    /// Builds the session's peer connections and registers their ufrags,
    /// with `cell` (where the session will run) taking their connected
    /// STUN and media datagrams on the receive loop (`inline`).
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        sid: String,
        room: Arc<RoomEntry>,
        ctx: Arc<SessionContext>,
        single_pc: bool,
        ctrl: mpsc::UnboundedReceiver<Command>,
        cell: &Arc<SessionCell>,
    ) -> Result<(Self, Inboxes), crate::rtc::peer::PeerError> {
        let now = Instant::now();
        let (udp_tx, udp_rx) = mpsc::channel(crate::net::udp::QUEUE_LEN);
        let count = if single_pc { 1 } else { 2 };
        let mut pcs = Vec::with_capacity(count);
        for i in 0..count {
            // Dual PC: the publisher connection (0) only receives.
            let peer = Peer::new(ctx.candidate_addr, now, single_pc || i == 1)?;
            let inline: Weak<dyn InlineReceiver> = Arc::downgrade(cell) as _;
            ctx.mux.register(&peer.ufrag, i, udp_tx.clone(), inline);
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
            subscribed: Default::default(),
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
            scheduled: None,
            worker: cell.worker(),
        };
        Ok((session, Inboxes { ctrl, udp: udp_rx }))
    }

    /// Queues a signal message; it is written after the current step.
    /// Participant updates queued back to back go out as one
    /// ([`outbox::push`]).
    fn send(&mut self, msg: Msg) {
        outbox::push(&mut self.outbox, msg);
    }

    /// Logs a warning once per kind for this participant.
    fn warn_once(&mut self, what: &'static str, detail: impl std::fmt::Display) {
        if self.warned.insert(what) {
            tracing::warn!(participant = %self.sid, "{what}: {detail}");
        }
    }

    /// Runs the participant until it leaves, in `cell` (shared with the
    /// egress workers). `first` holds messages that must go out first (the
    /// JoinResponse); `publisher_offer` is the offer carried in a v1
    /// JoinRequest.
    pub async fn run(
        mut self,
        cell: Arc<SessionCell>,
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
        let ctx = self.ctx.clone();
        let sid = self.sid.clone();
        let socket = ctx.mux.socket().clone();
        let mut batch = TxBatch::default();
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
        // Control ticks: the first on the phase grid, each later one
        // `control_interval` after the last (`control::next_control_tick`).
        let mut control_due = crate::grid::on_grid(Instant::now(), CONTROL_PHASE);
        let mut last_control = control_due
            .checked_sub(CONTROL_INTERVAL)
            .unwrap_or(control_due);
        let control_tick = tokio::time::sleep_until(control_due.into());
        tokio::pin!(control_tick);
        let next = self.drain_all(&mut batch);
        let first_timeout = self.note_timeout(next);
        *cell.lock() = Some(self);
        batch.send(&*socket);
        if let Some(at) = first_timeout {
            ctx.egress.schedule(&cell, at);
        }
        // Armed for real once the signal connection is lost.
        let departure_timer = tokio::time::sleep(Duration::from_secs(3600));
        tokio::pin!(departure_timer);
        let mut departure_armed = false;
        loop {
            // Signal messages go out without the lock held.
            let Some((outbox, json, ws_open, closing, departure)) = cell.lock().as_mut().map(|s| {
                (
                    std::mem::take(&mut s.outbox),
                    s.json,
                    s.ws_open,
                    s.closing,
                    s.departure_deadline,
                )
            }) else {
                break;
            };
            if ws_open && !flush(&mut sink, outbox, json, &ctx.metrics, &sid).await {
                if let Some(s) = cell.lock().as_mut() {
                    s.lost_signal();
                }
                continue;
            }
            if closing {
                break;
            }
            if let (Some(deadline), false) = (departure, departure_armed) {
                departure_timer.as_mut().reset(deadline.into());
                departure_armed = true;
            }
            // Biased: a wake polls the cheap, usually empty inboxes and
            // stops at the first ready branch; the timers behind them are
            // polled only when nothing else is ready.
            let step = tokio::select! {
                biased;
                Some(cmd) = inboxes.ctrl.recv() => Step::Command(cmd),
                Some(d) = inboxes.udp.recv() => Step::Datagram(d),
                inbound = signal_rx.recv(), if ws_open => Step::Signal(inbound),
                _ = cell.wake.notified() => Step::Woken,
                _ = ws_ping.tick(), if ws_open => {
                    if sink.send(WsMessage::Ping(Default::default())).await.is_err() {
                        Step::SignalLost
                    } else {
                        Step::Woken
                    }
                }
                _ = &mut control_tick => Step::Control,
                _ = refresh.tick(), if ws_open => Step::Refresh,
                _ = &mut departure_timer, if departure_armed => Step::Departure,
            };
            let mut guard = cell.lock();
            let Some(s) = guard.as_mut() else {
                break;
            };
            match step {
                Step::Command(cmd) => s.on_command(cmd),
                Step::Datagram(d) => {
                    s.on_datagram(d);
                    for _ in 0..64 {
                        s.drain_all(&mut batch);
                        match inboxes.udp.try_recv() {
                            Ok(d) => s.on_datagram(d),
                            Err(_) => break,
                        }
                    }
                }
                Step::Signal(Some(Inbound::Request { request, json })) => {
                    s.json |= json;
                    s.on_request(*request);
                }
                Step::Signal(Some(Inbound::Malformed(e))) => s.bad_frame(&e),
                Step::Signal(Some(Inbound::Closed) | None) | Step::SignalLost => s.lost_signal(),
                Step::Woken => {}
                Step::Control => {
                    let now = Instant::now();
                    last_control = control_due;
                    if !s.incoming.is_empty() {
                        s.update_speaking();
                        s.update_dynacast(now);
                    }
                    s.allocate_bandwidth(now);
                    s.update_stream_states(now);
                    s.update_quality(now);
                    s.ctx.metrics.add(&mut s.counters);
                }
                Step::Refresh => {
                    if let Some(t) = (s.ctx.refresh_token)() {
                        s.send(Msg::RefreshToken(t));
                    }
                }
                Step::Departure => {
                    tracing::info!(participant = %s.sid, "departure timeout");
                    s.closing = true;
                }
            }
            // A subscription or publication may have changed how often
            // control work is due.
            let due =
                control::next_control_tick(last_control, s.control_interval(), Instant::now());
            if due != control_due {
                control_due = due;
                control_tick.as_mut().reset(due.into());
            }
            let next = s.drain_all(&mut batch);
            // str0m's timeouts run on the egress worker: it is told only
            // of a deadline sooner than the one it holds.
            let sooner = s.note_timeout(next);
            if s.pcs.iter().all(|pc| !pc.rtc.is_alive()) && s.departure_deadline.is_some() {
                s.closing = true;
            }
            drop(guard);
            batch.send(&*socket);
            if let Some(at) = sooner {
                ctx.egress.schedule(&cell, at);
            }
        }
        reader.abort();
        // Out of the cell: the workers skip it from now on.
        let taken = cell.lock().take();
        if let Some(mut s) = taken {
            s.ctx.metrics.add(&mut s.counters);
            let outbox = std::mem::take(&mut s.outbox);
            if s.ws_open {
                let _ = flush(&mut sink, outbox, s.json, &ctx.metrics, &sid).await;
            }
            let _ = sink.send(WsMessage::Close(None)).await;
            s.cleanup();
        }
    }

    /// Whether the session's task must run after an egress worker drained
    /// it: a signal message waits, or the session is closing.
    pub(super) fn needs_task(&self) -> bool {
        !self.outbox.is_empty() || self.closing
    }

    /// Records str0m's next timeout after a drain. Returns it when the
    /// egress worker must be told (it holds no deadline for this session,
    /// or a later one); the session then counts it as scheduled.
    pub(super) fn note_timeout(&mut self, next: Instant) -> Option<Instant> {
        if self.scheduled.is_some_and(|d| d <= next) {
            return None;
        }
        self.scheduled = Some(next);
        Some(next)
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
                let (workers, home) = (self.ctx.egress.workers(), self.worker);
                if let Some(inc) = self.incoming_track(&track_sid) {
                    if let Some(d) = &mut inc.dynacast {
                        d.set(&subscriber, Some(2));
                    }
                    inc.downtracks.retain(|(s, _)| *s != subscriber);
                    inc.downtracks.push((subscriber, media));
                    inc.regroup(workers, home);
                }
                self.update_dynacast(Instant::now());
                self.request_keyframe(&track_sid, None);
            }
            Command::RemoveDowntrack {
                track_sid,
                subscriber,
            } => {
                let (workers, home) = (self.ctx.egress.workers(), self.worker);
                if let Some(inc) = self.incoming_track(&track_sid) {
                    if let Some(d) = &mut inc.dynacast {
                        d.remove(&subscriber);
                    }
                    inc.downtracks.retain(|(s, _)| *s != subscriber);
                    inc.regroup(workers, home);
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
                let now = Instant::now();
                let sent = self.pcs.len() > 1 && self.pcs[1].send_data(d.reliable, &d.bytes, now);
                if !sent && !self.pcs[0].send_data(d.reliable, &d.bytes, now) && d.reliable {
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
