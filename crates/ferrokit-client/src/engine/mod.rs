//! A room's task: it owns the signal WebSocket, the peer connection(s) and
//! their UDP sockets, the synthetic sources and the receive statistics, and
//! steps them in order: signal frames, datagrams, commands from the
//! handles, and time (str0m timeouts, media ticks, pings).

mod media;
mod negotiate;

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use livekit_protocol as proto;
use proto::signal_request::Message as Req;
use str0m::media::Mid;
use tokio::sync::{mpsc, oneshot};

use crate::peer::Peer;
use crate::room::{
    DataMessage, DisconnectReason, LocalTrackPublication, RoomEvent, RoomStats,
    SyntheticTrackOptions,
};
use crate::signal::{self, Incoming, Ws};
use crate::ClientError;

pub(crate) use media::{LocalTrack, Receiver};

/// Requests from the handles.
pub(crate) enum Command {
    Publish {
        options: SyntheticTrackOptions,
        reply: oneshot::Sender<Result<LocalTrackPublication, ClientError>>,
    },
    PublishData {
        message: DataMessage,
        reply: oneshot::Sender<Result<(), ClientError>>,
    },
    Stats {
        reply: oneshot::Sender<RoomStats>,
    },
    Close {
        reply: oneshot::Sender<()>,
    },
}

/// A publish waiting for `track_published`.
struct PendingPublish {
    cid: String,
    options: SyntheticTrackOptions,
    reply: oneshot::Sender<Result<LocalTrackPublication, ClientError>>,
}

/// The room task's state.
pub(crate) struct Engine {
    single_pc: bool,
    /// [publisher or the single PC, subscriber (dual PC only)].
    pcs: Vec<Peer>,
    ws: Ws,
    cmds: mpsc::UnboundedReceiver<Command>,
    events: mpsc::UnboundedSender<RoomEvent>,
    /// Signal requests to write after the current step.
    outbox: Vec<Req>,
    local_sid: String,
    /// Start of `Room::connect`: origin of the first-media time and of
    /// the jitter clock.
    connect_started: Instant,
    ping_interval: Duration,
    next_ping: Instant,
    rtt_ms: Option<i64>,
    /// Our offers on pcs[0]: a new one is wanted once none is pending.
    want_offer: bool,
    offer_id: u32,
    channels_added: bool,
    /// Receive slots (audio, video) to add to the next offer (single PC).
    recv_slots: (u32, u32),
    pending_publish: Vec<PendingPublish>,
    next_cid: u32,
    local_tracks: Vec<LocalTrack>,
    /// Remote participants by sid.
    participants: HashMap<String, proto::ParticipantInfo>,
    /// (pc, mid) -> remote track sid.
    mid_tracks: HashMap<(usize, Mid), String>,
    rx: Receiver,
    /// Reused str0m event buffer.
    rtc_events: Vec<str0m::Event>,
    /// Reused payload buffer for synthetic media.
    media_buf: Vec<u8>,
    closing: Option<DisconnectReason>,
    close_replies: Vec<oneshot::Sender<()>>,
}

impl Engine {
    /// Builds the peer connection(s) for a joined room.
    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn new(
        single_pc: bool,
        bind_ip: IpAddr,
        ws: Ws,
        connect_started: Instant,
        join: proto::JoinResponse,
        cmds: mpsc::UnboundedReceiver<Command>,
        events: mpsc::UnboundedSender<RoomEvent>,
    ) -> Result<Self, ClientError> {
        let now = Instant::now();
        let mut pcs = vec![Peer::new(bind_ip, now).await?];
        if !single_pc {
            pcs.push(Peer::new(bind_ip, now).await?);
        }
        let ping_interval = Duration::from_secs(join.ping_interval.max(1) as u64);
        let mut engine = Self {
            single_pc,
            pcs,
            ws,
            cmds,
            events,
            outbox: Vec::new(),
            local_sid: join
                .participant
                .as_ref()
                .map(|p| p.sid.clone())
                .unwrap_or_default(),
            connect_started,
            ping_interval,
            next_ping: now + ping_interval,
            rtt_ms: None,
            want_offer: true,
            offer_id: 0,
            channels_added: false,
            recv_slots: (0, 0),
            pending_publish: Vec::new(),
            next_cid: 0,
            local_tracks: Vec::new(),
            participants: HashMap::new(),
            mid_tracks: HashMap::new(),
            rx: Receiver::default(),
            rtc_events: Vec::new(),
            media_buf: Vec::with_capacity(crate::synthetic::MAX_VIDEO_PAYLOAD),
            closing: None,
            close_replies: Vec::new(),
        };
        for p in join.other_participants {
            engine.on_participant(p);
        }
        Ok(engine)
    }

    /// Sends a room event; a dropped receiver is fine.
    fn emit(&self, event: RoomEvent) {
        let _ = self.events.send(event);
    }

    /// Runs the room until it closes.
    pub(crate) async fn run(mut self) {
        self.negotiate();
        loop {
            let now = Instant::now();
            let next_rtc = self.drain_all(now);
            if !self.outbox.is_empty() {
                if let Err(e) = signal::send_all(&mut self.ws, &mut self.outbox).await {
                    self.close(DisconnectReason::SignalClosed(e.to_string()));
                }
            }
            if self.closing.is_some() {
                break;
            }
            let deadline = next_rtc
                .min(self.next_ping)
                .min(self.next_media_due().unwrap_or(next_rtc));
            let (first, rest) = self.pcs.split_at_mut(1);
            tokio::select! {
                frame = self.ws.next() => self.on_frame(frame),
                r = first[0].recv() => self.on_datagram(0, r),
                r = recv_opt(rest.first_mut()) => self.on_datagram(1, r),
                cmd = self.cmds.recv() => match cmd {
                    Some(cmd) => self.on_command(cmd),
                    None => self.close(DisconnectReason::ClientInitiated),
                },
                _ = tokio::time::sleep_until(deadline.into()) => self.on_tick(Instant::now()),
            }
        }
        self.finish().await;
    }

    fn on_frame(
        &mut self,
        frame: Option<
            Result<tokio_tungstenite::tungstenite::Message, tokio_tungstenite::tungstenite::Error>,
        >,
    ) {
        match signal::decode(frame) {
            Ok(Incoming::Message(msg)) => self.on_signal(*msg),
            Ok(Incoming::Nothing) => {}
            Ok(Incoming::Closed(why)) => self.close(DisconnectReason::SignalClosed(why)),
            Err(e) => tracing::warn!(participant = %self.local_sid, "signal: {e}"),
        }
    }

    /// A datagram on `pc`'s socket, then (bounded) whatever else is queued,
    /// draining str0m after each as it expects.
    fn on_datagram(&mut self, pc: usize, r: std::io::Result<(usize, std::net::SocketAddr)>) {
        let mut next = match r {
            Ok(d) => Some(d),
            Err(e) => {
                tracing::debug!("udp receive: {e}");
                None
            }
        };
        let mut budget = 64;
        while let Some((len, source)) = next.take() {
            let now = Instant::now();
            let Some(peer) = self.pcs.get_mut(pc) else {
                return;
            };
            if let Err(e) = peer.feed(len, source, now) {
                tracing::debug!("datagram refused: {e}");
            }
            self.drain_all(now);
            budget -= 1;
            if budget > 0 {
                next = self.pcs.get_mut(pc).and_then(Peer::try_recv);
            }
        }
    }

    fn on_tick(&mut self, now: Instant) {
        for pc in &mut self.pcs {
            pc.timeout(now);
        }
        self.send_media(now);
        if now >= self.next_ping {
            self.next_ping = now + self.ping_interval;
            self.outbox.push(Req::PingReq(proto::Ping {
                timestamp: unix_ms(),
                rtt: self.rtt_ms.unwrap_or(0),
            }));
        }
    }

    fn on_command(&mut self, cmd: Command) {
        match cmd {
            Command::Publish { options, reply } => self.publish(options, reply),
            Command::PublishData { message, reply } => {
                let _ = reply.send(self.send_data(message));
            }
            Command::Stats { reply } => {
                let _ = reply.send(self.stats());
            }
            Command::Close { reply } => {
                self.close_replies.push(reply);
                self.close(DisconnectReason::ClientInitiated);
            }
        }
    }

    /// Marks the room as ending (the first reason wins).
    fn close(&mut self, reason: DisconnectReason) {
        if self.closing.is_none() {
            self.closing = Some(reason);
        }
    }

    /// Leaves: `leave` when we initiated, closes everything, reports.
    async fn finish(mut self) {
        let reason = self
            .closing
            .take()
            .unwrap_or(DisconnectReason::ClientInitiated);
        if reason == DisconnectReason::ClientInitiated {
            self.outbox.push(Req::Leave(proto::LeaveRequest {
                can_reconnect: false,
                reason: proto::DisconnectReason::ClientInitiated as i32,
                action: proto::leave_request::Action::Disconnect as i32,
                regions: None,
            }));
            let _ = tokio::time::timeout(
                Duration::from_secs(2),
                signal::send_all(&mut self.ws, &mut self.outbox),
            )
            .await;
        }
        let _ = tokio::time::timeout(Duration::from_secs(2), self.ws.close(None)).await;
        for pc in &mut self.pcs {
            pc.rtc.disconnect();
        }
        for (reply, err) in self
            .pending_publish
            .drain(..)
            .map(|p| (p.reply, ClientError::Closed))
        {
            let _ = reply.send(Err(err));
        }
        self.emit(RoomEvent::Disconnected { reason });
        for reply in self.close_replies.drain(..) {
            let _ = reply.send(());
        }
    }

    /// Drains every peer connection and handles its events until nothing
    /// is left; returns the earliest str0m deadline.
    fn drain_all(&mut self, now: Instant) -> Instant {
        let mut events = std::mem::take(&mut self.rtc_events);
        let mut next = Peer::idle_deadline(now);
        for i in 0..self.pcs.len() {
            loop {
                match self.pcs[i].drain(&mut events) {
                    Ok(t) => next = next.min(t),
                    Err(e) => {
                        tracing::warn!(participant = %self.local_sid, pc = i, "peer connection failed: {e}");
                        self.pcs[i].rtc.disconnect();
                        self.close(DisconnectReason::Error(format!("peer connection: {e}")));
                    }
                }
                if events.is_empty() {
                    break;
                }
                for e in events.drain(..) {
                    self.on_rtc_event(i, e);
                }
            }
        }
        self.rtc_events = events;
        next
    }

    /// A fresh client id for a track.
    fn new_cid(&mut self) -> String {
        self.next_cid += 1;
        format!("synthetic-{}", self.next_cid)
    }
}

/// Receives on the second peer connection, or never when there is none.
async fn recv_opt(peer: Option<&mut Peer>) -> std::io::Result<(usize, std::net::SocketAddr)> {
    match peer {
        Some(p) => p.recv().await,
        None => std::future::pending().await,
    }
}

/// Milliseconds since the UNIX epoch.
pub(crate) fn unix_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
