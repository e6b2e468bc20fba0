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
use super::sdp::{blocks, line_ending, sections};
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

/// `sdp` with RED taken out of `mid`'s m-section: its payload type off the
/// `m=` line and its `a=rtpmap` / `a=fmtp` / `a=rtcp-fb` lines dropped, as
/// a browser writes a section whose receiver refuses RED.
fn without_red(sdp: &str, mid: &Mid) -> String {
    let red = sections(sdp)
        .into_iter()
        .find(|s| s.mid == mid.to_string())
        .and_then(|s| s.red_pt)
        .expect("the section lists RED");
    let eol = line_ending(sdp);
    let mut out = String::new();
    for block in blocks(sdp) {
        let ours = block.iter().any(|l| *l == format!("a=mid:{mid}"));
        for line in block {
            let about_red = ["a=rtpmap:", "a=fmtp:", "a=rtcp-fb:"]
                .iter()
                .any(|p| line.starts_with(&format!("{p}{red} ")));
            if ours && about_red {
                continue;
            }
            if ours && line.starts_with("m=") {
                let kept: Vec<&str> = line
                    .split(' ')
                    .enumerate()
                    .filter(|(i, f)| *i < 3 || *f != red.to_string())
                    .map(|(_, f)| f)
                    .collect();
                out.push_str(&kept.join(" "));
            } else {
                out.push_str(line);
            }
            out.push_str(eol);
        }
    }
    out
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
    let offer = without_red(&offer.to_sdp_string(), &without);
    // str0m's answer lists RED on both mids (its codec config is one for
    // the connection); what the client said it takes is what counts.
    server.accept_offer(&offer).expect("answer");

    assert!(server.pt_for(with, Codec::Red).is_some());
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
        .accept_answer(&without_red(&full, &without))
        .expect("accept answer");

    assert!(server.pt_for(with, Codec::Red).is_some());
    assert_eq!(server.pt_for(without, Codec::Red), None);
    assert!(server.pt_for(without, Codec::Opus).is_some());
}
