//! One client peer connection: a str0m `Rtc` in RTP mode (a full ICE agent,
//! controlling against the ICE-lite server) with its own UDP socket and a
//! host candidate on it. Sans-IO str0m, driven by the room task: datagrams
//! and time go in, transmits go out on the socket, events are returned.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use str0m::change::{SdpAnswer, SdpOffer, SdpPendingOffer};
use str0m::channel::ChannelId;
use str0m::format::Codec;
use str0m::media::{Mid, Pt};
use str0m::net::{Protocol, Receive};
use str0m::{Candidate, Event, Input, Output, Rtc, RtcError};
use tokio::net::UdpSocket;

use crate::ClientError;

/// Label of LiveKit's reliable (ordered) data channel.
pub const RELIABLE_LABEL: &str = "_reliable";
/// Label of LiveKit's lossy (unordered, no retransmits) data channel.
pub const LOSSY_LABEL: &str = "_lossy";

/// Largest datagram read.
const RECV_BUF: usize = 2048;

/// A peer connection with its socket.
pub(crate) struct Peer {
    pub rtc: Rtc,
    socket: UdpSocket,
    local: SocketAddr,
    /// Our offer awaiting an answer.
    pub pending_offer: Option<SdpPendingOffer>,
    /// Open data channels: (reliable, id).
    channels: HashMap<ChannelId, bool>,
    /// ICE and DTLS are up.
    pub connected: bool,
    buf: Vec<u8>,
}

impl Peer {
    /// Binds a UDP socket on `ip` (port 0) and builds the `Rtc` with Opus
    /// (no RED) and VP8, its host candidate on that socket.
    pub async fn new(ip: IpAddr, now: Instant) -> Result<Self, ClientError> {
        let socket = UdpSocket::bind(SocketAddr::new(ip, 0)).await?;
        let local = socket.local_addr()?;
        let mut rtc = Rtc::builder()
            .set_rtp_mode(true)
            .clear_codecs()
            .enable_opus(true, false)
            .enable_vp8(true)
            .set_stats_interval(None)
            .build(now);
        let candidate = Candidate::host(local, "udp")
            .map_err(|e| ClientError::Protocol(format!("host candidate {local}: {e}")))?;
        rtc.add_local_candidate(candidate);
        Ok(Self {
            rtc,
            socket,
            local,
            pending_offer: None,
            channels: HashMap::new(),
            connected: false,
            buf: vec![0; RECV_BUF],
        })
    }

    /// Waits for the next datagram; returns its length and source. The
    /// bytes stay in the peer's buffer until [`Peer::feed`].
    pub async fn recv(&mut self) -> std::io::Result<(usize, SocketAddr)> {
        self.socket.recv_from(&mut self.buf).await
    }

    /// A datagram already queued on the socket, without waiting.
    pub fn try_recv(&mut self) -> Option<(usize, SocketAddr)> {
        self.socket.try_recv_from(&mut self.buf).ok()
    }

    /// Hands the datagram read by [`Peer::recv`] to str0m.
    pub fn feed(&mut self, len: usize, source: SocketAddr, now: Instant) -> Result<(), RtcError> {
        let Some(bytes) = self.buf.get(..len) else {
            return Ok(());
        };
        let Ok(contents) = bytes.try_into() else {
            return Ok(()); // Not STUN, DTLS or (S)RTP: ignore.
        };
        let input = Input::Receive(
            now,
            Receive {
                proto: Protocol::Udp,
                source,
                destination: self.local,
                contents,
            },
        );
        if self.rtc.accepts(&input) {
            self.rtc.handle_input(input)
        } else {
            Ok(())
        }
    }

    /// Advances str0m's clock.
    pub fn timeout(&mut self, now: Instant) {
        if let Err(e) = self.rtc.handle_input(Input::Timeout(now)) {
            tracing::debug!("str0m timeout: {e}");
        }
    }

    /// Drains str0m: transmits go to the socket, events into `events`.
    /// Returns when str0m next wants time.
    pub fn drain(&mut self, events: &mut Vec<Event>) -> Result<Instant, RtcError> {
        loop {
            match self.rtc.poll_output()? {
                Output::Timeout(t) => return Ok(t),
                Output::Transmit(t) => {
                    // UDP: a full send buffer drops the datagram, as the
                    // network would.
                    let _ = self.socket.try_send_to(&t.contents, t.destination);
                }
                Output::Event(e) => events.push(e),
            }
        }
    }

    /// Far-future deadline for a peer that is not alive.
    pub fn idle_deadline(now: Instant) -> Instant {
        now + Duration::from_secs(3600)
    }

    /// Accepts a server offer; returns the answer SDP.
    pub fn accept_offer(&mut self, sdp: &str) -> Result<String, ClientError> {
        let offer = SdpOffer::from_sdp_string(sdp).map_err(RtcError::Sdp)?;
        let answer = self.rtc.sdp_api().accept_offer(offer)?;
        Ok(answer.to_sdp_string())
    }

    /// Applies the server's answer to our pending offer.
    pub fn accept_answer(&mut self, sdp: &str) -> Result<(), ClientError> {
        let answer = SdpAnswer::from_sdp_string(sdp).map_err(RtcError::Sdp)?;
        let pending = self
            .pending_offer
            .take()
            .ok_or_else(|| ClientError::Protocol("answer without a pending offer".into()))?;
        Ok(self.rtc.sdp_api().accept_answer(pending, answer)?)
    }

    /// Records an opened data channel.
    pub fn channel_opened(&mut self, id: ChannelId, label: &str) {
        match label {
            RELIABLE_LABEL => self.channels.insert(id, true),
            LOSSY_LABEL => self.channels.insert(id, false),
            _ => None,
        };
    }

    /// Forgets a closed data channel.
    pub fn channel_closed(&mut self, id: ChannelId) {
        self.channels.remove(&id);
    }

    /// Whether `id` is the reliable channel (None: not a LiveKit channel).
    pub fn channel_reliable(&self, id: ChannelId) -> Option<bool> {
        self.channels.get(&id).copied()
    }

    /// Sends binary `bytes` on the reliable or lossy channel. False when
    /// it is not open or its buffer is full.
    pub fn send_data(&mut self, reliable: bool, bytes: &[u8]) -> bool {
        let Some(id) = self
            .channels
            .iter()
            .find(|(_, r)| **r == reliable)
            .map(|(id, _)| *id)
        else {
            return false;
        };
        self.rtc
            .channel(id)
            .is_some_and(|mut ch| ch.write(true, bytes).unwrap_or(false))
    }

    /// The payload type negotiated on `mid` for `codec`.
    pub fn pt_for(&self, mid: Mid, codec: Codec) -> Option<Pt> {
        let media = self.rtc.media(mid)?;
        let remote = media.remote_pts();
        self.rtc
            .codec_config()
            .params()
            .iter()
            .find(|p| remote.contains(&p.pt()) && p.spec().codec == codec)
            .map(|p| p.pt())
    }
}
