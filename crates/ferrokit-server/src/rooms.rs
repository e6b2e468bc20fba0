//! Where rooms live on this node: a registry of [`RoomEntry`]s, each a
//! sans-IO [`Room`] behind a short control-plane lock plus the mailboxes of
//! its participants' tasks. Room outputs are dispatched to mailboxes while
//! the room lock is held, so every participant sees changes in room order.
//! Media never takes these locks: packets travel on the mailboxes' media
//! channels, from publisher tasks straight to subscriber tasks.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use livekit_protocol as proto;
use tokio::sync::mpsc;

use crate::room::{DataDelivery, Output, Room};
use crate::sfu::ForwardPacket;

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
    /// Publisher side: fan `track_sid` out to `subscriber` on `media`.
    AddDowntrack {
        track_sid: String,
        subscriber: String,
        media: mpsc::Sender<MediaItem>,
    },
    /// Publisher side: stop sending `track_sid` to `subscriber`.
    RemoveDowntrack {
        track_sid: String,
        subscriber: String,
    },
    /// Publisher side: a subscriber asks for a keyframe of `track_sid` at `layer`.
    KeyframeRequest { track_sid: String, layer: u8 },
    /// Deliver a data packet on a data channel.
    Data(DataDelivery),
    /// Close the session (any `leave` was already queued as a Signal).
    Disconnect,
}

/// One forwarded packet for a subscriber task.
#[derive(Debug, Clone)]
pub struct MediaItem {
    /// The published track it belongs to.
    pub track_sid: Arc<str>,
    /// The packet, shared by every downtrack.
    pub packet: Arc<ForwardPacket>,
}

/// Media packets buffered per subscriber before new ones are dropped.
pub const MEDIA_QUEUE_LEN: usize = 4096;

/// A participant task's inboxes.
#[derive(Debug, Clone)]
pub struct Mailbox {
    /// Control: never dropped.
    pub ctrl: mpsc::UnboundedSender<Command>,
    /// Media: bounded, dropped when full (the subscriber is too slow).
    pub media: mpsc::Sender<MediaItem>,
}

/// A room and its participants' mailboxes.
pub struct RoomEntry {
    room: Mutex<Room>,
    mailboxes: Mutex<HashMap<String, Mailbox>>,
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
        self.dispatch(outputs);
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

    /// Sends `leave` to everyone and closes their sessions.
    pub fn close_all(&self, reason: proto::DisconnectReason) {
        for mb in self.lock_mailboxes().values() {
            let leave = proto::signal_response::Message::Leave(crate::room::leave(reason));
            let _ = mb.ctrl.send(Command::Signal(leave));
            let _ = mb.ctrl.send(Command::Disconnect);
        }
    }

    fn dispatch(&self, outputs: Vec<Output>) {
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
            }
        }
    }
}

/// Every room on this node, by name.
#[derive(Default)]
pub struct RoomManager {
    rooms: Mutex<HashMap<String, Arc<RoomEntry>>>,
}

impl RoomManager {
    fn lock(&self) -> MutexGuard<'_, HashMap<String, Arc<RoomEntry>>> {
        self.rooms.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The room called `name`, created (with these timeouts) if needed.
    pub fn get_or_create(
        &self,
        name: &str,
        empty_timeout: Duration,
        departure_timeout: Duration,
    ) -> Arc<RoomEntry> {
        self.lock()
            .entry(name.to_string())
            .or_insert_with(|| {
                tracing::info!(room = name, "room created");
                Arc::new(RoomEntry {
                    room: Mutex::new(Room::new(
                        name,
                        empty_timeout,
                        departure_timeout,
                        Instant::now(),
                        unix_ms(),
                    )),
                    mailboxes: Mutex::default(),
                })
            })
            .clone()
    }

    /// The room called `name`, if it exists.
    pub fn get(&self, name: &str) -> Option<Arc<RoomEntry>> {
        self.lock().get(name).cloned()
    }

    /// Closes rooms that stayed empty past their `empty_timeout`.
    pub fn reap(&self, now: Instant) {
        self.lock().retain(|name, entry| {
            let expired = entry.read(|r| r.is_empty() && r.expired(now));
            if expired {
                tracing::info!(room = name.as_str(), "room closed (empty timeout)");
            }
            !expired
        });
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
