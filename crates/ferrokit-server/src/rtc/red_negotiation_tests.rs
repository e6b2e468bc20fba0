//! Tests only: RED (RFC 2198) is sent on a mid only when the remote
//! description listed it on that mid ([`Peer::pt_for`]), whichever side
//! offered: the client's offer (single PC, and the publisher PC) or the
//! client's answer to our offer (dual PC subscriber PC).

use std::net::SocketAddr;
use std::time::Instant;

use str0m::change::SdpOffer;
use str0m::media::{Direction, MediaKind, Mid};
use str0m::Rtc;

use super::peer::Peer;
use super::sdp::{sections, without_red};
use crate::sfu::Codec;

fn server(now: Instant) -> Peer {
    let addr: SocketAddr = "10.0.0.1:7882".parse().expect("addr");
    Peer::new(addr, now, true).expect("server peer")
}

/// A client that takes Opus with RED, as Chrome does.
fn client(now: Instant) -> Rtc {
    Rtc::builder()
        .set_rtp_mode(true)
        .clear_codecs()
        .enable_opus(true, true)
        .build(now)
}

/// `sdp` with RED taken out of `mid`'s m-section, as a browser writes a
/// section whose receiver refuses RED.
fn refusing_red(sdp: &str, mid: Mid) -> String {
    without_red(sdp, |m| Mid::from(m) != mid)
}

#[test]
fn red_only_on_the_offered_mids_that_list_it() {
    let now = Instant::now();
    let mut server = server(now);
    let mut client = client(now);
    let mut api = client.sdp_api();
    let with = api.add_media(MediaKind::Audio, Direction::RecvOnly, None, None, None);
    let without = api.add_media(MediaKind::Audio, Direction::RecvOnly, None, None, None);
    let (offer, _pending) = api.apply().expect("offer");
    let offer = refusing_red(&offer.to_sdp_string(), without);
    let answer = server.accept_offer(&offer).expect("answer");

    let red = server.pt_for(with, Codec::Red).expect("RED where offered");
    let answered: Vec<_> = sections(&answer).iter().map(|s| s.red_pt).collect();
    assert_eq!(
        answered,
        [Some(*red), None],
        "the answer lists RED as the offer"
    );
    assert_eq!(server.pt_for(without, Codec::Red), None);
    assert!(server.pt_for(without, Codec::Opus).is_some());
}

#[test]
fn red_only_on_the_answered_mids_that_list_it() {
    let now = Instant::now();
    let mut server = server(now);
    let mut client = client(now);
    let mut api = server.rtc.sdp_api();
    let with = api.add_media(MediaKind::Audio, Direction::SendOnly, None, None, None);
    let without = api.add_media(MediaKind::Audio, Direction::SendOnly, None, None, None);
    let (offer, pending) = api.apply().expect("offer");
    server.pending_offer = Some(pending);
    let offer = SdpOffer::from_sdp_string(&offer.to_sdp_string()).expect("offer sdp");
    let answer = client.sdp_api().accept_offer(offer).expect("answer");
    let full = answer.to_sdp_string();
    server
        .accept_answer(&refusing_red(&full, without))
        .expect("accept answer");

    assert!(server.pt_for(with, Codec::Red).is_some());
    assert_eq!(server.pt_for(without, Codec::Red), None);
    assert!(server.pt_for(without, Codec::Opus).is_some());
}
