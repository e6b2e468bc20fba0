//! A connected session's STUN, SRTP and SRTCP datagrams, handled on the
//! shared port's receive loop ([`InlineReceiver`]) rather than queued for
//! the session's task.
//!
//! Through the queue, every datagram cost a copy, a channel hop, a task
//! wake and a `sendmmsg` of its own for the reply: a publisher's packet
//! took two hops (receive loop, publisher task, egress worker) before its
//! first subscriber got it, and each subscriber's RTCP report and STUN
//! keepalive (one every few seconds each, hundreds a second in a large
//! room) woke a task. Here the datagram is handled under the session's
//! lock as its task would, and the replies of one read go out in one batch.
//!
//! DTLS records (the handshake, and SCTP: data channel messages, which fan
//! out to the room), anything before the connection is up, and anything
//! that arrives while the session is locked still go through the task: the
//! loop must not wait on one participant while every other participant's
//! datagrams wait behind it.

use std::net::SocketAddr;
use std::time::Instant;

use super::SessionCell;
use crate::net::demux::{self, Kind};
use crate::net::{InlineReceiver, TxBatch};

/// Whether a datagram is one the receive loop may handle: STUN or
/// RTP/RTCP ([`demux::kind`]).
fn is_inline_kind(contents: &[u8]) -> bool {
    matches!(demux::kind(contents), Kind::Stun | Kind::Rtp)
}

impl InlineReceiver for SessionCell {
    fn receive_inline(
        &self,
        pc: usize,
        source: SocketAddr,
        at: Instant,
        contents: &[u8],
        batch: &mut TxBatch,
    ) -> bool {
        if !is_inline_kind(contents) {
            return false;
        }
        let wake = {
            // Never waited for: the session's task may hold it for a while
            // (an SDP offer, a DTLS handshake). The datagram then goes to
            // the queue, and the next ones follow it there until it is
            // drained (the loop's check), so none overtakes another.
            let Some(mut guard) = self.try_lock() else {
                return false;
            };
            let Some(s) = guard.as_mut() else {
                return false;
            };
            if !s.pcs.get(pc).is_some_and(|p| p.connected) {
                return false;
            }
            s.receive(pc, source, at, contents);
            let next = s.drain(Some(pc), batch);
            // Only a channel send to the worker: fine under the lock.
            if let (Some(at), Some(me)) = (s.note_timeout(next), self.me.upgrade()) {
                s.ctx.egress.schedule(&me, at);
            }
            s.needs_task()
        };
        if wake {
            self.wake.notify_one();
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::is_inline_kind;

    #[test]
    fn only_stun_and_rtp_are_handled_inline() {
        assert!(is_inline_kind(&[0x00, 0x01])); // STUN binding request
        assert!(is_inline_kind(&[0x80, 0x6f])); // RTP
        assert!(is_inline_kind(&[0x81, 0xc9])); // RTCP receiver report
        assert!(!is_inline_kind(&[22, 0xfe, 0xfd])); // DTLS handshake
        assert!(!is_inline_kind(&[23, 0xfe, 0xfd])); // DTLS application data (SCTP)
        assert!(!is_inline_kind(&[]));
        assert!(!is_inline_kind(&[64])); // TURN channel data
    }
}
