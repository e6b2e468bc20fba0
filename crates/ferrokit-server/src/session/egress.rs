//! Egress workers: forwarded packets are written into subscribers' peer
//! connections by a few workers (one per core), not by a wake of each
//! subscriber's task per packet.
//!
//! A session lives in a [`SessionCell`]: its task locks it to handle
//! signal requests, datagrams and timers; a worker locks it to write a
//! forwarded packet and drain what str0m transmits. A publisher's packet is
//! queued once per subscriber list of its track ([`EgressJob`]): one list
//! on the publisher's own worker, or, for a fan-out too long for one core
//! ([`FANOUT_SPLIT`]), a list per worker ([`fan_out`]). The worker writes it into
//! each of those sessions in turn, collects every transmit in one
//! [`TxBatch`] and sends the batch with one `sendmmsg`. Per packet and
//! subscriber that leaves one uncontended lock and str0m's own work, where a
//! task per subscriber cost a channel hop, a task wake and poll, timer
//! upkeep and a `sendto` each.
//!
//! The worker also runs str0m's timeouts for its sessions, from one timer
//! queue: str0m's deadlines move with every packet written (its pacer, RTCP
//! and SCTP timers), and a tokio timer per session woke each subscriber's
//! task about once per forwarded audio packet. A due deadline that a later
//! drain moved back costs a heap push, not a str0m round. A worker wakes a
//! session's task only when the session has a signal message to send or is
//! closing.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Instant;

use tokio::sync::{mpsc, Notify};

use super::forward::Forwarded;
use super::{Session, STR0M_TIMER_EARLY};
use crate::metrics::{MediaCounters, Metrics};
use crate::net::{MediaSocket, TxBatch};
use crate::prefetch;
use crate::rtc::gcm::GcmKey;
use crate::rtc::rtp_out::SendClock;
use crate::sfu::ForwardPacket;

/// Jobs queued per worker before new ones are dropped (about 0.4 s of a
/// 3-layer 1080p publisher's packets for one worker).
pub const JOB_QUEUE_LEN: usize = 4096;
/// Jobs one worker wake takes before it sends its batch.
const JOBS_PER_WAKE: usize = 64;
/// Addresses a cell keeps of its subscriber's forwarding state (one cache
/// line each), besides its key context.
pub(super) const HINTS: usize = 8;
/// The fan-out loop prefetches the cell this many subscribers ahead, and
/// (its hints having arrived by then) the state behind it this many ahead.
const CELL_AHEAD: usize = 3;
const STATE_AHEAD: usize = 1;

/// A participant's session, shared by its task and the egress workers.
/// Empty before the session starts and after it ends.
pub struct SessionCell {
    session: Mutex<Option<Session>>,
    /// Wakes the session's task (see [`Session::needs_task`]).
    pub(super) wake: Notify,
    /// The egress worker that writes this participant's downtracks.
    worker: usize,
    /// Where the subscriber's forwarding state was when its worker last
    /// wrote a packet for it (addresses, see [`Session::forward_hints`]),
    /// prefetched before its turn in the next fan-out. Only hints: a stale
    /// one costs a wasted prefetch.
    hints: [AtomicUsize; HINTS],
    /// Its AES-GCM key context, likewise ([`GcmKey::LINES`] lines).
    key_hint: AtomicUsize,
    /// The cell itself, for the receive loop to schedule its timeouts
    /// (`super::inline`).
    pub(super) me: Weak<SessionCell>,
}

/// What [`Session::forward_hints`] found: addresses of single cache lines,
/// and of a key context (0: none).
pub(super) struct Hints {
    pub lines: [usize; HINTS],
    pub key: usize,
}

impl SessionCell {
    /// Locks the session (poisoning is survived: a panic in one step leaves
    /// plain data behind, and the task goes on or ends as usual).
    pub(super) fn lock(&self) -> MutexGuard<'_, Option<Session>> {
        self.session.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Locks the session if nobody holds it (None), as [`Self::lock`].
    pub(super) fn try_lock(&self) -> Option<MutexGuard<'_, Option<Session>>> {
        match self.session.try_lock() {
            Ok(guard) => Some(guard),
            Err(std::sync::TryLockError::Poisoned(e)) => Some(e.into_inner()),
            Err(std::sync::TryLockError::WouldBlock) => None,
        }
    }

    /// Index of the worker that serves this subscriber.
    pub fn worker(&self) -> usize {
        self.worker
    }

    /// Fan-out stage 1: the cell's lock word and its hints. The lock word
    /// is at the cell's start as rustc lays `SessionCell` out today (seen
    /// in the disassembly, not guaranteed): another layout only makes
    /// this prefetch miss its line.
    fn prefetch_cell(self: &Arc<Self>) {
        prefetch::line(Arc::as_ptr(self) as usize);
        prefetch::line(prefetch::addr_of(&self.hints[0]));
        prefetch::line(prefetch::addr_of(&self.hints[HINTS - 1]));
    }

    /// Fan-out stage 2: the state the subscriber's last write touched.
    fn prefetch_state(&self) {
        for hint in &self.hints {
            prefetch::line(hint.load(Ordering::Relaxed));
        }
        prefetch::lines(self.key_hint.load(Ordering::Relaxed), GcmKey::LINES);
    }

    /// Keeps `hints` for the next fan-out (written only where they moved,
    /// so the line stays clean in the steady state).
    fn set_hints(&self, hints: Hints) {
        let slots = self.hints.iter().chain([&self.key_hint]);
        for (slot, addr) in slots.zip(hints.lines.into_iter().chain([hints.key])) {
            if slot.load(Ordering::Relaxed) != addr {
                slot.store(addr, Ordering::Relaxed);
            }
        }
    }
}

impl std::fmt::Debug for SessionCell {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionCell")
            .field("worker", &self.worker)
            .finish_non_exhaustive()
    }
}

/// One published packet for some subscribers of its track, all served by
/// one worker.
pub struct EgressJob {
    /// The published track.
    pub track_sid: Arc<str>,
    /// The packet, shared by every downtrack.
    pub packet: Arc<ForwardPacket>,
    /// The subscribers (one list per track and worker, shared by its jobs).
    pub subscribers: Arc<[Arc<SessionCell>]>,
}

/// One worker's inboxes, as the rest of the server sees them.
struct WorkerHandle {
    jobs: mpsc::Sender<EgressJob>,
    /// str0m deadlines sooner than the one the worker holds for a session.
    /// Unbounded: a lost one would stall the session's timers.
    timers: mpsc::UnboundedSender<(Arc<SessionCell>, Instant)>,
}

/// The egress workers of a server.
pub struct Egress {
    workers: Vec<WorkerHandle>,
    next: AtomicUsize,
}

impl Egress {
    /// Starts `workers` (at least one) on the current runtime, sending on
    /// `socket`.
    pub fn start(socket: Arc<MediaSocket>, workers: usize, metrics: Arc<Metrics>) -> Arc<Self> {
        let workers = (0..workers.max(1))
            .map(|_| {
                let (jobs, jobs_rx) = mpsc::channel(JOB_QUEUE_LEN);
                let (timers, timers_rx) = mpsc::unbounded_channel();
                let worker = Worker {
                    jobs: Vec::with_capacity(JOBS_PER_WAKE),
                    timers: BinaryHeap::new(),
                    order: 0,
                    batch: TxBatch::default(),
                    counters: MediaCounters::default(),
                };
                tokio::spawn(worker.run(jobs_rx, timers_rx, socket.clone(), metrics.clone()));
                WorkerHandle { jobs, timers }
            })
            .collect();
        Arc::new(Self {
            workers,
            next: AtomicUsize::new(0),
        })
    }

    /// How many workers run.
    pub fn workers(&self) -> usize {
        self.workers.len()
    }

    /// An empty cell for a new participant, on the next worker in turn.
    pub fn cell(&self) -> Arc<SessionCell> {
        let worker = self.next.fetch_add(1, Ordering::Relaxed) % self.workers.len();
        Arc::new_cyclic(|me| SessionCell {
            session: Mutex::new(None),
            wake: Notify::new(),
            worker,
            hints: Default::default(),
            key_hint: AtomicUsize::new(0),
            me: me.clone(),
        })
    }

    /// Queues `job` on `worker`. False if its queue is full (the workers
    /// are behind: the packet is lost for these subscribers) or gone.
    pub fn send(&self, worker: usize, job: EgressJob) -> bool {
        self.workers
            .get(worker)
            .is_some_and(|w| w.jobs.try_send(job).is_ok())
    }

    /// Tells `cell`'s worker to run str0m's timeout for it at `at` (see
    /// [`Session::note_timeout`]).
    pub(super) fn schedule(&self, cell: &Arc<SessionCell>, at: Instant) {
        if let Some(w) = self.workers.get(cell.worker) {
            let _ = w.timers.send((cell.clone(), at));
        }
    }
}

/// The largest fan-out that one worker writes alone. Handing part of a
/// packet's fan-out to another worker wakes a second thread (a futex wake,
/// and here, in a VM, an inter-processor interrupt: 10-20 µs of CPU
/// between both threads) and buys latency: the last subscriber gets the
/// packet after half the fan-out instead of all of it, at 4-5 µs a
/// downtrack. Small rooms (a few subscribers a track) are better off on
/// one core: in `bench/run.py rooms-20x5` one list per track cut the
/// server's CPU by 10 %. Large fan-outs keep their parallel halves: with
/// audio-200 or video-50 on one worker, latency p50 rose by 1.1 ms for no
/// CPU saving (the A/B in bench/README.md).
pub const FANOUT_SPLIT: usize = 32;

/// The subscriber lists a published track's packets are queued with, each
/// with the worker that writes it: for up to [`FANOUT_SPLIT`] subscribers
/// one list, on worker `home` (the publisher's own, so that many small
/// rooms spread over the workers as their publishers do); for more, one
/// list per worker, of the subscribers it serves (whose str0m timers it
/// also runs). Empty lists are left out. A worker that writes a cell it
/// does not serve keeps the deadlines its writes bring forward in its own
/// timer queue; whichever queue holds the session's `scheduled` deadline
/// runs it, and the other entry is skipped as stale.
pub fn fan_out(
    cells: &[Arc<SessionCell>],
    workers: usize,
    home: usize,
) -> Vec<(usize, Arc<[Arc<SessionCell>]>)> {
    let workers = workers.max(1);
    if cells.is_empty() {
        Vec::new()
    } else if cells.len() <= FANOUT_SPLIT || workers == 1 {
        vec![(home % workers, cells.iter().cloned().collect())]
    } else {
        (0..workers)
            .map(|w| (w, cells.iter().filter(|c| c.worker == w).cloned().collect()))
            .filter(|(_, group): &(usize, Arc<[_]>)| !group.is_empty())
            .collect()
    }
}

/// A session's str0m deadline in a worker's timer queue; `order` breaks
/// ties (first scheduled, first run).
struct Deadline {
    at: Instant,
    order: u64,
    cell: Arc<SessionCell>,
}

impl PartialEq for Deadline {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.order) == (other.at, other.order)
    }
}
impl Eq for Deadline {}
impl PartialOrd for Deadline {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Deadline {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.at, self.order).cmp(&(other.at, other.order))
    }
}

/// One worker's state.
struct Worker {
    /// Jobs taken in one wake.
    jobs: Vec<EgressJob>,
    /// Sessions' str0m deadlines, soonest first. An entry whose deadline is
    /// no longer the session's `scheduled` one is stale and skipped.
    timers: BinaryHeap<Reverse<Deadline>>,
    order: u64,
    /// Every transmit of one wake.
    batch: TxBatch,
    /// Packets forwarded (and failed) in one wake, flushed to the metrics
    /// after it.
    counters: MediaCounters,
}

impl Worker {
    async fn run(
        mut self,
        mut jobs: mpsc::Receiver<EgressJob>,
        mut timers: mpsc::UnboundedReceiver<(Arc<SessionCell>, Instant)>,
        socket: Arc<MediaSocket>,
        metrics: Arc<Metrics>,
    ) {
        let far = || tokio::time::Instant::now() + std::time::Duration::from_secs(3600);
        let sleep = tokio::time::sleep_until(far());
        tokio::pin!(sleep);
        let mut armed: Option<Instant> = None;
        loop {
            // The timer follows the soonest deadline, reset only when it moves.
            let soonest = self.timers.peek().map(|d| d.0.at);
            if soonest != armed {
                armed = soonest;
                sleep.as_mut().reset(match soonest {
                    Some(at) => (at - STR0M_TIMER_EARLY).into(),
                    None => far(),
                });
            }
            tokio::select! {
                biased;
                n = jobs.recv_many(&mut self.jobs, JOBS_PER_WAKE) => {
                    if n == 0 {
                        return;
                    }
                    self.write_jobs(SendClock::read());
                }
                Some((cell, at)) = timers.recv() => self.push(cell, at),
                _ = &mut sleep => {}
            }
            while let Ok((cell, at)) = timers.try_recv() {
                self.push(cell, at);
            }
            self.run_timeouts(Instant::now());
            let sent = self.batch.send(&*socket);
            self.counters.forward_errors += sent.dropped as u64;
            metrics.add(&mut self.counters);
        }
    }

    fn push(&mut self, cell: Arc<SessionCell>, at: Instant) {
        self.order += 1;
        self.timers.push(Reverse(Deadline {
            at,
            order: self.order,
            cell,
        }));
    }

    /// Runs str0m's timeout for every session whose deadline is due (within
    /// [`STR0M_TIMER_EARLY`]; str0m is given its own deadline) and drains it.
    fn run_timeouts(&mut self, now: Instant) {
        while self
            .timers
            .peek()
            .is_some_and(|d| d.0.at <= now + STR0M_TIMER_EARLY)
        {
            let Some(Reverse(due)) = self.timers.pop() else {
                break;
            };
            let (reschedule, wake) = {
                let mut guard = due.cell.lock();
                let Some(s) = guard.as_mut() else {
                    continue;
                };
                if s.scheduled != Some(due.at) {
                    continue; // Stale: a sooner deadline replaced it.
                }
                let current = s.next_timeout();
                if current > now + STR0M_TIMER_EARLY {
                    // A drain since moved str0m's deadline back.
                    s.scheduled = Some(current);
                    (current, false)
                } else {
                    // Only the connections whose own deadline is due, each
                    // given that deadline (str0m's own time) or now.
                    let mut due_pc = None;
                    let mut due_count = 0;
                    for (i, pc) in s.pcs.iter_mut().enumerate() {
                        if pc.next_timeout <= now + STR0M_TIMER_EARLY {
                            let at = now.max(pc.next_timeout);
                            let _ = pc.timeout_round(at);
                            due_pc = Some(i);
                            due_count += 1;
                        }
                    }
                    let only = if due_count == 1 { due_pc } else { None };
                    let next = s.drain(only, &mut self.batch);
                    s.scheduled = Some(next);
                    (next, s.needs_task())
                }
            };
            if wake {
                due.cell.wake.notify_one();
            }
            self.push(due.cell, reschedule);
        }
    }

    /// Writes the jobs taken (emptied) into their subscribers' sessions and
    /// drains them into the batch. Consecutive jobs for the same
    /// subscribers (a burst of one track) are written subscriber by
    /// subscriber, so each session is locked and drained once for the burst.
    ///
    /// The loop is a software pipeline (see [`crate::prefetch`]): while
    /// subscriber `i` is written, the cell of `i + CELL_AHEAD` and the
    /// state behind `i + STATE_AHEAD` (with the send buffer it will get)
    /// are on their way into the cache.
    fn write_jobs(&mut self, clock: SendClock) {
        let mut jobs = std::mem::take(&mut self.jobs);
        let mut start = 0;
        while start < jobs.len() {
            let subscribers = jobs[start].subscribers.clone();
            let end = jobs[start..]
                .iter()
                .position(|j| !Arc::ptr_eq(&j.subscribers, &subscribers))
                .map_or(jobs.len(), |n| start + n);
            for cell in subscribers.iter().take(CELL_AHEAD) {
                cell.prefetch_cell();
            }
            for (i, cell) in subscribers.iter().enumerate() {
                if let Some(ahead) = subscribers.get(i + CELL_AHEAD) {
                    ahead.prefetch_cell();
                }
                if let Some(next) = subscribers.get(i + STATE_AHEAD) {
                    next.prefetch_state();
                    self.batch.prefetch_buffer(STATE_AHEAD);
                }
                let (sooner, wake) = {
                    let mut guard = cell.lock();
                    let Some(session) = guard.as_mut() else {
                        continue;
                    };
                    let mut written = false;
                    for job in &jobs[start..end] {
                        let f = session.forward(
                            &job.track_sid,
                            &job.packet,
                            clock,
                            &mut self.batch,
                            &mut self.counters,
                        );
                        written |= f == Forwarded::Queued;
                    }
                    cell.set_hints(session.forward_hints(&jobs[start].track_sid));
                    if !written {
                        // Another layer: str0m has nothing new to send.
                        continue;
                    }
                    let sub_pc = session.sub_pc();
                    // str0m releases written media on its next timeout
                    // round: run it now rather than learn so from a poll.
                    session.media_written(sub_pc);
                    let next = session.drain(Some(sub_pc), &mut self.batch);
                    (session.note_timeout(next), session.needs_task())
                };
                if let Some(at) = sooner {
                    self.push(cell.clone(), at);
                }
                if wake {
                    cell.wake.notify_one();
                }
            }
            start = end;
        }
        jobs.clear();
        self.jobs = jobs;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn cells_take_workers_in_turn_and_large_fan_outs_split_by_worker() {
        let socket = MediaSocket::bind("127.0.0.1:0").expect("bind");
        socket.set_nonblocking(true).expect("non-blocking");
        let socket = Arc::new(socket);
        let egress = Egress::start(socket, 2, Arc::new(Metrics::new()));
        assert_eq!(egress.workers(), 2);
        let cells: Vec<_> = (0..5).map(|_| egress.cell()).collect();
        let workers: Vec<usize> = cells.iter().map(|c| c.worker()).collect();
        assert_eq!(workers, vec![0, 1, 0, 1, 0]);
        // A small fan-out: one list, in order, on the home worker.
        let small = fan_out(&cells, egress.workers(), 3);
        assert_eq!(small.len(), 1);
        assert_eq!(small[0].0, 1);
        assert_eq!(small[0].1.len(), 5);
        assert!(Arc::ptr_eq(&small[0].1[4], &cells[4]));
        assert!(fan_out(&[], 2, 0).is_empty());
        // A large one: a list per worker, of the cells it serves.
        let mut cells = cells;
        cells.extend((5..=FANOUT_SPLIT).map(|_| egress.cell()));
        let groups = fan_out(&cells, egress.workers(), 1);
        assert_eq!(groups.len(), 2);
        assert_eq!(
            (groups[0].0, groups[0].1.len()),
            (0, FANOUT_SPLIT.div_ceil(2) + 1)
        );
        assert_eq!((groups[1].0, groups[1].1.len()), (1, FANOUT_SPLIT / 2));
        assert!(Arc::ptr_eq(&groups[0].1[1], &cells[2]));
        assert!(Arc::ptr_eq(&groups[1].1[1], &cells[3]));
        assert!(groups
            .iter()
            .all(|(w, g)| g.iter().all(|c| c.worker() == *w)));
        // One worker: everything on it.
        assert_eq!(fan_out(&cells, 1, 1)[0].0, 0);
        // An empty cell (session not started or ended) is skipped by the
        // worker, and a job for it is still accepted.
        assert!(cells[0].lock().is_none());
        let job = EgressJob {
            track_sid: Arc::from("TR_x"),
            packet: Arc::new(crate::sfu::ForwardPacket {
                layer: 0,
                seq: 1,
                timestamp: 0,
                marker: false,
                keyframe: false,
                codec: crate::sfu::Codec::Opus,
                clock_rate: 48_000,
                audio_level: None,
                payload: Arc::from(&[0u8; 10][..]),
                dependency_descriptor: None,
                arrival: Instant::now(),
            }),
            subscribers: groups[0].1.clone(),
        };
        assert!(egress.send(0, job));
    }

    #[test]
    fn hints_are_kept_and_any_hint_is_safe_to_prefetch() {
        let cell = Arc::new_cyclic(|me| SessionCell {
            session: Mutex::new(None),
            wake: Notify::new(),
            worker: 0,
            hints: Default::default(),
            key_hint: AtomicUsize::new(0),
            me: me.clone(),
        });
        cell.prefetch_cell();
        cell.prefetch_state(); // all 0: skipped
        let live = [0u8; 64];
        let gone = prefetch::addr_of(&*Box::new(0u64));
        let mut lines = [usize::MAX; HINTS];
        lines[0] = prefetch::addr_of(&live[..]);
        lines[1] = gone;
        let key = GcmKey::new(&[1; 16]).expect("key");
        cell.set_hints(Hints {
            lines,
            key: key.addr(),
        });
        let kept: Vec<usize> = cell
            .hints
            .iter()
            .map(|h| h.load(Ordering::Relaxed))
            .collect();
        assert_eq!(kept, lines.to_vec());
        assert_eq!(cell.key_hint.load(Ordering::Relaxed), key.addr());
        cell.prefetch_state();
        drop(key);
        cell.prefetch_state(); // the key's context is freed: still a hint
        cell.set_hints(Hints {
            lines: [0; HINTS],
            key: 0,
        });
        assert_eq!(cell.key_hint.load(Ordering::Relaxed), 0);
        assert!(cell.hints.iter().all(|h| h.load(Ordering::Relaxed) == 0));
    }
}
