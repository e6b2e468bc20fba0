//! Tests only: a server [`Peer`] offering one send-only audio m-line to a
//! plain str0m client (RTP mode), connected in memory in virtual time.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use str0m::change::SdpOffer;
use str0m::media::{Direction, MediaKind, Mid, Pt};
use str0m::net::{Protocol, Receive};
use str0m::rtp::rtcp::SenderInfo;
use str0m::rtp::ExtensionValues;
use str0m::rtp::Ssrc;
use str0m::{Candidate, Event, Input, Output, Rtc};

use super::peer::Peer;
use crate::sfu::Codec;

/// (source, destination, contents).
pub type Datagram = (SocketAddr, SocketAddr, Vec<u8>);

/// A connected server/client pair.
pub struct Pair {
    pub server: Peer,
    pub client: Rtc,
    pub now: Instant,
    pub server_addr: SocketAddr,
    pub client_addr: SocketAddr,
    /// The audio m-line.
    pub audio: Mid,
    pub pt: Pt,
    /// The server's send SSRC on the audio m-line.
    pub ssrc: Ssrc,
    /// Payloads and header extensions of the RTP packets the client
    /// received.
    pub received: Vec<(Vec<u8>, ExtensionValues)>,
    /// Sender reports the client received.
    pub sender_reports: Vec<SenderInfo>,
}

impl Pair {
    /// Offers, answers and runs virtual time until both are connected.
    pub fn connected() -> Self {
        let now = Instant::now();
        let server_addr: SocketAddr = "10.0.0.1:7882".parse().expect("addr");
        let client_addr: SocketAddr = "10.0.0.2:50000".parse().expect("addr");
        let mut server = Peer::new(server_addr, now, true).expect("server peer");
        let mut client = Rtc::builder().set_rtp_mode(true).build(now);
        client.add_local_candidate(Candidate::host(client_addr, "udp").expect("candidate"));
        let mut api = server.rtc.sdp_api();
        let audio = api.add_media(MediaKind::Audio, Direction::SendOnly, None, None, None);
        let (offer, pending) = api.apply().expect("offer");
        let offer = SdpOffer::from_sdp_string(&offer.to_sdp_string()).expect("offer sdp");
        let answer = client.sdp_api().accept_offer(offer).expect("answer");
        server.pending_offer = Some(pending);
        server
            .accept_answer(&answer.to_sdp_string())
            .expect("accept answer");
        let pt = server.pt_for(audio, Codec::Opus).expect("opus pt");
        let ssrc = server
            .rtc
            .direct_api()
            .stream_tx_by_mid(audio, None)
            .expect("send stream")
            .ssrc();
        let mut pair = Self {
            server,
            client,
            now,
            server_addr,
            client_addr,
            audio,
            pt,
            ssrc,
            received: Vec::new(),
            sender_reports: Vec::new(),
        };
        for _ in 0..400 {
            if pair.server.rtc.is_connected() && pair.client.is_connected() {
                return pair;
            }
            pair.advance(Duration::from_millis(5), |_| {});
        }
        panic!("pair did not connect");
    }

    /// Advances virtual time by `d` and exchanges datagrams until both are
    /// quiet; `edit` sees each server datagram before the client does.
    pub fn advance(&mut self, d: Duration, mut edit: impl FnMut(&mut Vec<u8>)) {
        self.now += d;
        let now = self.now;
        self.server
            .rtc
            .handle_input(Input::Timeout(now))
            .expect("server timeout");
        self.client
            .handle_input(Input::Timeout(now))
            .expect("client timeout");
        for _ in 0..50 {
            let mut to_client = drain(&mut self.server.rtc, &mut Vec::new(), &mut Vec::new());
            for d in &mut to_client {
                edit(&mut d.2);
            }
            let to_server = drain(
                &mut self.client,
                &mut self.received,
                &mut self.sender_reports,
            );
            if to_client.is_empty() && to_server.is_empty() {
                return;
            }
            deliver(&mut self.client, now, to_client);
            deliver(&mut self.server.rtc, now, to_server);
        }
    }

    /// Hands `datagram` from the server to the client, and polls it.
    pub fn send_to_client(&mut self, datagram: Vec<u8>) {
        let d = (self.server_addr, self.client_addr, datagram);
        deliver(&mut self.client, self.now, vec![d]);
        drain(
            &mut self.client,
            &mut self.received,
            &mut self.sender_reports,
        );
    }
}

/// Polls until the timeout: the datagrams; RTP payloads and sender
/// reports received go to `rtp` and `srs`.
fn drain(
    rtc: &mut Rtc,
    rtp: &mut Vec<(Vec<u8>, ExtensionValues)>,
    srs: &mut Vec<SenderInfo>,
) -> Vec<Datagram> {
    let mut out = Vec::new();
    loop {
        match rtc.poll_output().expect("poll_output") {
            Output::Timeout(_) => return out,
            Output::Transmit(t) => out.push((t.source, t.destination, t.contents.to_vec())),
            Output::Event(Event::RtpPacket(p)) => {
                rtp.push((p.payload.to_vec(), p.header.ext_vals.clone()))
            }
            Output::Event(Event::SenderFeedback(f)) => srs.push(f.sender_info),
            Output::Event(_) => {}
        }
    }
}

fn deliver(rtc: &mut Rtc, now: Instant, datagrams: Vec<Datagram>) {
    for (source, destination, contents) in datagrams {
        let Ok(contents) = contents.as_slice().try_into() else {
            continue;
        };
        let input = Input::Receive(
            now,
            Receive {
                proto: Protocol::Udp,
                source,
                destination,
                contents,
            },
        );
        if rtc.accepts(&input) {
            rtc.handle_input(input).expect("handle_input");
        }
    }
}
