//! Where rooms live on this node: a registry of [`RoomEntry`]s, each a
//! sans-IO [`Room`] behind a short control-plane lock plus the mailboxes of
//! its participants' tasks. Room outputs are dispatched to mailboxes while
//! the room lock is held, so every participant sees changes in room order.
//! Media never takes these locks: a publisher's task hands packets to the
//! egress workers, which write them into subscribers' sessions
//! (`session::egress`).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use livekit_protocol as proto;
use tokio::sync::mpsc;

use crate::room::{DataDelivery, Output, Room};
use crate::session::SessionCell;
use crate::webhook::Webhooks;

/// A command for a participant's task.
#[derive(Debug)]
// Control plane only (never per packet): boxing would buy nothing.
#[allow(clippy::large_enum_variant)]
pub enum Command {
    /// Send this on the signal connection.
    Signal(proto::signal_response::Message),
    /// Subscriber side: start receiving `track` of `publisher`.
    Subscribe {
        publisher: String,
        track: proto::TrackInfo,
    },
    /// Subscriber side: stop receiving a track.
    Unsubscribe { track_sid: String },
    /// Publisher side: fan `track_sid` out to `subscriber`, whose session
    /// lives in `media`.
    AddDowntrack {
        track_sid: String,
        subscriber: String,
        media: Arc<SessionCell>,
    },
    /// Publisher side: stop sending `track_sid` to `subscriber`.
    RemoveDowntrack {
        track_sid: String,
        subscriber: String,
    },
    /// Publisher side: the highest layer of `track_sid` that `subscriber`
    /// takes (None: it disabled the track), for dynacast.
    SubscriberLayer {
        track_sid: String,
        subscriber: String,
        max_layer: Option<u8>,
    },
    /// Publisher side: a subscriber asks for a keyframe of `track_sid` at `layer`.
    KeyframeRequest { track_sid: String, layer: u8 },
    /// Deliver a data packet on a data channel.
    Data(DataDelivery),
    /// Close the session (any `leave` was already queued as a Signal).
    Disconnect,
}

/// A participant task's inboxes.
#[derive(Debug, Clone)]
pub struct Mailbox {
    /// Control: never dropped.
    pub ctrl: mpsc::UnboundedSender<Command>,
    /// Media: the cell of the participant's session, where the egress
    /// workers write forwarded packets.
    pub media: Arc<SessionCell>,
}

/// A room and its participants' mailboxes.
pub struct RoomEntry {
    room: Mutex<Room>,
    mailboxes: Mutex<HashMap<String, Mailbox>>,
    webhooks: Arc<Webhooks>,
}

impl RoomEntry {
    /// Locks the room (poisoning is survived: the room state is plain data).
    fn lock_room(&self) -> MutexGuard<'_, Room> {
        self.room.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn lock_mailboxes(&self) -> MutexGuard<'_, HashMap<String, Mailbox>> {
        self.mailboxes.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Runs `f` on the room and dispatches the outputs it returns.
    pub fn update<R>(&self, f: impl FnOnce(&mut Room) -> (R, Vec<Output>)) -> R {
        let mut room = self.lock_room();
        let (r, outputs) = f(&mut room);
        self.dispatch(&room, outputs);
        r
    }

    /// Runs `f` on the room, read-only.
    pub fn read<R>(&self, f: impl FnOnce(&Room) -> R) -> R {
        f(&self.lock_room())
    }

    /// Registers a participant's mailbox (before the join's outputs go out).
    pub fn add_mailbox(&self, sid: &str, mailbox: Mailbox) {
        self.lock_mailboxes().insert(sid.to_string(), mailbox);
    }

    /// Forgets a participant's mailbox.
    pub fn remove_mailbox(&self, sid: &str) {
        self.lock_mailboxes().remove(sid);
    }

    /// A participant's control sender.
    pub fn ctrl_of(&self, sid: &str) -> Option<mpsc::UnboundedSender<Command>> {
        self.lock_mailboxes().get(sid).map(|m| m.ctrl.clone())
    }

    /// Sends `leave` to everyone, removes them and closes their sessions.
    pub fn close_all(&self, reason: proto::DisconnectReason) {
        self.update(|r| ((), r.close(reason, Instant::now())));
    }

    fn dispatch(&self, room: &Room, outputs: Vec<Output>) {
        let boxes = self.lock_mailboxes();
        let send = |to: &str, cmd: Command| {
            if let Some(mb) = boxes.get(to) {
                let _ = mb.ctrl.send(cmd);
            }
        };
        for out in outputs {
            match out {
                Output::Signal { to, msg } => send(&to, Command::Signal(msg)),
                Output::Subscribe {
                    subscriber,
                    publisher,
                    track,
                } => {
                    let Some(sub_media) = boxes.get(&subscriber).map(|m| m.media.clone()) else {
                        continue;
                    };
                    let track_sid = track.sid.clone();
                    send(
                        &subscriber,
                        Command::Subscribe {
                            publisher: publisher.clone(),
                            track,
                        },
                    );
                    send(
                        &publisher,
                        Command::AddDowntrack {
                            track_sid,
                            subscriber,
                            media: sub_media,
                        },
                    );
                }
                Output::Unsubscribe {
                    subscriber,
                    publisher,
                    track_sid,
                } => {
                    send(
                        &subscriber,
                        Command::Unsubscribe {
                            track_sid: track_sid.clone(),
                        },
                    );
                    send(
                        &publisher,
                        Command::RemoveDowntrack {
                            track_sid,
                            subscriber,
                        },
                    );
                }
                Output::Data { to, data } => send(&to, Command::Data(data)),
                Output::Disconnect { sid } => send(&sid, Command::Disconnect),
                Output::Event(ev) => {
                    tracing::debug!(room = room.name(), event = ev.name(), "room event");
                    if self.webhooks.enabled() {
                        self.webhooks.notify(ev.to_webhook(room.info()));
                    }
                }
            }
        }
    }
}

/// Settings of a room created by a join or by CreateRoom.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RoomDefaults {
    /// Seconds a room nobody joined lives.
    pub empty_timeout: Duration,
    /// Seconds a room lives after its last participant left.
    pub departure_timeout: Duration,
    /// Most participants a room admits (0: no limit).
    pub max_participants: u32,
}

/// Every room on this node, by name.
pub struct RoomManager {
    rooms: Mutex<HashMap<String, Arc<RoomEntry>>>,
    webhooks: Arc<Webhooks>,
}

impl RoomManager {
    /// An empty registry whose rooms report events to `webhooks`.
    pub fn new(webhooks: Arc<Webhooks>) -> Self {
        Self {
            rooms: Mutex::default(),
            webhooks,
        }
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<String, Arc<RoomEntry>>> {
        self.rooms.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The room called `name`, created with `defaults` if needed.
    pub fn get_or_create(&self, name: &str, defaults: RoomDefaults) -> Arc<RoomEntry> {
        self.create(name, defaults, |_| {}).0
    }

    /// The room called `name` and whether this call created it; a new room
    /// gets `defaults`, then `configure`, and webhooks hear `room_started`.
    pub fn create(
        &self,
        name: &str,
        defaults: RoomDefaults,
        configure: impl FnOnce(&mut Room),
    ) -> (Arc<RoomEntry>, bool) {
        let mut rooms = self.lock();
        if let Some(entry) = rooms.get(name) {
            return (entry.clone(), false);
        }
        let mut room = Room::new(
            name,
            defaults.empty_timeout,
            defaults.departure_timeout,
            Instant::now(),
            unix_ms(),
        );
        room.configure(&proto::CreateRoomRequest {
            max_participants: defaults.max_participants,
            ..Default::default()
        });
        configure(&mut room);
        tracing::info!(room = name, sid = room.sid(), "room created");
        self.room_event("room_started", room.info());
        let entry = Arc::new(RoomEntry {
            room: Mutex::new(room),
            mailboxes: Mutex::default(),
            webhooks: self.webhooks.clone(),
        });
        rooms.insert(name.to_string(), entry.clone());
        (entry, true)
    }

    /// The room called `name`, if it exists.
    pub fn get(&self, name: &str) -> Option<Arc<RoomEntry>> {
        self.lock().get(name).cloned()
    }

    /// DeleteRoom: everyone gets `leave` (ROOM_DELETED) and the room closes.
    /// Returns false when there is no such room.
    pub fn delete(&self, name: &str) -> bool {
        let Some(entry) = self.lock().remove(name) else {
            return false;
        };
        entry.close_all(proto::DisconnectReason::RoomDeleted);
        tracing::info!(room = name, "room deleted");
        self.room_event("room_finished", entry.read(Room::info));
        true
    }

    /// Closes rooms that stayed empty past their timeout.
    pub fn reap(&self, now: Instant) {
        let mut finished = Vec::new();
        self.lock().retain(|name, entry| {
            let expired = entry.read(|r| r.is_empty() && r.expired(now));
            if expired {
                tracing::info!(room = name.as_str(), "room closed (empty)");
                finished.push(entry.read(Room::info));
            }
            !expired
        });
        for info in finished {
            self.room_event("room_finished", info);
        }
    }

    fn room_event(&self, event: &str, room: proto::Room) {
        if self.webhooks.enabled() {
            self.webhooks.notify(proto::WebhookEvent {
                event: event.to_string(),
                room: Some(room),
                ..Default::default()
            });
        }
    }

    /// Every room.
    pub fn all(&self) -> Vec<Arc<RoomEntry>> {
        self.lock().values().cloned().collect()
    }
}

/// Unix time in milliseconds.
pub fn unix_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
