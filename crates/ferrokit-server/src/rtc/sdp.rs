//! Pure SDP text helpers (RFC 8866 lines): reading the m-sections of an
//! offer, and rewriting the sections str0m produced so that each downtrack
//! carries LiveKit's stream ids and unused receive slots are inactive.

use std::collections::HashMap;

/// Media kind of an m-section.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Audio,
    Video,
    Application,
}

/// Direction attribute of an m-section, as written by its author.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    SendRecv,
    SendOnly,
    RecvOnly,
    Inactive,
}

impl Direction {
    fn from_attr(a: &str) -> Option<Self> {
        match a {
            "sendrecv" => Some(Self::SendRecv),
            "sendonly" => Some(Self::SendOnly),
            "recvonly" => Some(Self::RecvOnly),
            "inactive" => Some(Self::Inactive),
            _ => None,
        }
    }
}

/// What the server needs to know of one m-section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Section {
    pub kind: Kind,
    pub mid: String,
    pub direction: Direction,
    /// Port 0: rejected or stopped.
    pub rejected: bool,
    /// `a=msid:<stream> <track>`; the track id is the client's cid.
    pub msid: Option<(String, String)>,
    /// Simulcast rids the author sends (`a=rid:<id> send`).
    pub send_rids: Vec<String>,
    /// The payload type of audio RED (RFC 2198, `a=rtpmap:<pt> red/...`)
    /// when the `m=` line lists it: the author takes (or sends) RED here.
    pub red_pt: Option<u8>,
}

impl Section {
    /// Whether the author of this section sends media on it.
    pub fn author_sends(&self) -> bool {
        !self.rejected && matches!(self.direction, Direction::SendRecv | Direction::SendOnly)
    }

    /// Whether the author receives on it (a receive slot for the server).
    pub fn author_receives(&self) -> bool {
        !self.rejected && matches!(self.direction, Direction::SendRecv | Direction::RecvOnly)
    }
}

/// Reads the m-sections of an SDP. Sections without a mid are skipped.
pub fn sections(sdp: &str) -> Vec<Section> {
    let mut out = Vec::new();
    let mut cur: Option<Section> = None;
    // The current m= line's payload types (its fourth field on).
    let mut formats: Vec<&str> = Vec::new();
    for line in sdp.lines().map(str::trim_end) {
        if let Some(m) = line.strip_prefix("m=") {
            if let Some(s) = cur.take().filter(|s| !s.mid.is_empty()) {
                out.push(s);
            }
            let mut parts = m.split_whitespace();
            let kind = match parts.next() {
                Some("audio") => Kind::Audio,
                Some("video") => Kind::Video,
                _ => Kind::Application,
            };
            let rejected = parts.next() == Some("0");
            formats = parts.skip(1).collect();
            cur = Some(Section {
                kind,
                mid: String::new(),
                direction: Direction::SendRecv,
                rejected,
                msid: None,
                send_rids: Vec::new(),
                red_pt: None,
            });
            continue;
        }
        let Some(s) = cur.as_mut() else { continue };
        let Some(attr) = line.strip_prefix("a=") else {
            continue;
        };
        if let Some(mid) = attr.strip_prefix("mid:") {
            s.mid = mid.trim().to_string();
        } else if let Some(d) = Direction::from_attr(attr) {
            s.direction = d;
        } else if let Some(msid) = attr.strip_prefix("msid:") {
            let mut p = msid.split_whitespace();
            if let (Some(stream), Some(track)) = (p.next(), p.next()) {
                s.msid = Some((stream.to_string(), track.to_string()));
            }
        } else if let Some(rid) = attr.strip_prefix("rid:") {
            let mut p = rid.split_whitespace();
            if let (Some(id), Some("send")) = (p.next(), p.next()) {
                s.send_rids.push(id.to_string());
            }
        } else if let Some(pt) = red_rtpmap(attr) {
            if s.kind == Kind::Audio && formats.contains(&pt) {
                s.red_pt = pt.parse().ok();
            }
        }
    }
    if let Some(s) = cur.filter(|s| !s.mid.is_empty()) {
        out.push(s);
    }
    out
}

/// The payload type of an `rtpmap:<pt> red/<clock>[/<channels>]`
/// attribute (given without its `a=`).
fn red_rtpmap(attr: &str) -> Option<&str> {
    let mut p = attr.strip_prefix("rtpmap:")?.split_whitespace();
    let (pt, encoding) = (p.next()?, p.next()?);
    let name = encoding.split('/').next()?;
    name.eq_ignore_ascii_case("red").then_some(pt)
}

/// Takes audio RED (RFC 2198) out of the audio m-sections whose mid
/// `keeps` refuses: its payload type off the `m=` line and its
/// `a=rtpmap`, `a=fmtp` and `a=rtcp-fb` lines. Other sections are kept.
///
/// str0m's answer lists RED on every audio section once any section of
/// the connection offered it (RED rides on its Opus params), where an
/// answer may list only what that section of the offer did (RFC 8829
/// §5.3.1).
pub fn without_red(sdp: &str, keeps: impl Fn(&str) -> bool) -> String {
    let eol = line_ending(sdp);
    let mut out = String::with_capacity(sdp.len());
    for block in blocks(sdp) {
        let audio = block.first().is_some_and(|l| l.starts_with("m=audio "));
        let red = block
            .iter()
            .find_map(|l| red_rtpmap(l.strip_prefix("a=")?))
            .filter(|_| audio && !block_mid(&block).is_some_and(&keeps));
        let Some(red) = red else {
            block.iter().for_each(|l| push_line(&mut out, l, eol));
            continue;
        };
        for line in block {
            if line.starts_with("m=") {
                let fields: Vec<&str> = line
                    .split(' ')
                    .enumerate()
                    .filter(|&(i, f)| i < 3 || f != red)
                    .map(|(_, f)| f)
                    .collect();
                push_line(&mut out, &fields.join(" "), eol);
            } else if !["a=rtpmap:", "a=fmtp:", "a=rtcp-fb:"].iter().any(|a| {
                line.strip_prefix(a)
                    .and_then(|r| r.strip_prefix(red))
                    .is_some_and(|r| r.starts_with(' '))
            }) {
                push_line(&mut out, line, eol);
            }
        }
    }
    out
}

/// How the server's own description should present one sending m-section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SendSlot {
    /// Carries a downtrack: msid `<stream> <track>`.
    Track { stream: String, track: String },
    /// Unused receive slot: answered `inactive`, no msid and no SSRCs.
    Unused,
}

/// Rewrites the server's SDP: for each mid in `slots`, sets the msid of a
/// downtrack, or makes an unused slot inactive. Other sections are kept.
pub fn rewrite_send_slots(sdp: &str, slots: &HashMap<String, SendSlot>) -> String {
    let eol = line_ending(sdp);
    let blocks = blocks(sdp);
    let mut out = String::with_capacity(sdp.len() + 256);
    for block in blocks {
        let slot = block_mid(&block).and_then(|m| slots.get(m));
        for line in block {
            match slot {
                None => push_line(&mut out, line, eol),
                Some(slot) => rewrite_line(&mut out, line, slot, eol),
            }
        }
    }
    out
}

/// URI of the transport-wide sequence number header extension
/// (draft-holmer-rmcat-transport-wide-cc-extensions-01).
const TRANSPORT_CC_URI: &str =
    "http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01";

/// Removes transport-wide congestion control from the audio m-sections:
/// their `a=extmap` of the transport-cc URI and their
/// `a=rtcp-fb:<pt> transport-cc` lines. Other sections are kept as they are.
///
/// LiveKit negotiates transport-cc on video only (`pkg/rtc/config.go`,
/// publisher and subscriber configs), as Firefox does. Without it on audio a
/// subscriber's audio packets carry no transport sequence number and the
/// client sends no transport-cc feedback for them: in an audio-only room that
/// feedback (one RTCP packet per subscriber every ~50-100 ms, each processed
/// by the send-side BWE) was about a tenth of the server's CPU, for an
/// estimate only video uses.
pub fn audio_without_transport_cc(sdp: &str) -> String {
    let eol = line_ending(sdp);
    let mut out = String::with_capacity(sdp.len());
    for block in blocks(sdp) {
        let audio = block.first().is_some_and(|l| l.starts_with("m=audio"));
        for line in block {
            let drop = audio
                && ((line.starts_with("a=extmap:") && line.contains(TRANSPORT_CC_URI))
                    || (line.starts_with("a=rtcp-fb:") && line.ends_with(" transport-cc")));
            if !drop {
                push_line(&mut out, line, eol);
            }
        }
    }
    out
}

/// The SDP's line ending (`\r\n` as RFC 8866 says, or `\n`).
pub fn line_ending(sdp: &str) -> &'static str {
    if sdp.contains("\r\n") {
        "\r\n"
    } else {
        "\n"
    }
}

/// The SDP's lines in blocks: the session part, then one per m-section.
pub fn blocks(sdp: &str) -> Vec<Vec<&str>> {
    let mut blocks: Vec<Vec<&str>> = vec![Vec::new()];
    for line in sdp.lines() {
        if line.starts_with("m=") {
            blocks.push(Vec::new());
        }
        if let Some(b) = blocks.last_mut() {
            b.push(line);
        }
    }
    blocks
}

/// The `a=mid` of an m-section block.
pub fn block_mid<'a>(block: &[&'a str]) -> Option<&'a str> {
    block
        .iter()
        .find_map(|l| l.strip_prefix("a=mid:"))
        .map(str::trim)
}

fn push_line(out: &mut String, line: &str, eol: &str) {
    out.push_str(line);
    out.push_str(eol);
}

fn rewrite_line(out: &mut String, line: &str, slot: &SendSlot, eol: &str) {
    let is_dir = line
        .strip_prefix("a=")
        .and_then(Direction::from_attr)
        .is_some();
    match slot {
        SendSlot::Unused => {
            if is_dir {
                push_line(out, "a=inactive", eol);
            } else if !(line.starts_with("a=msid:")
                || line.starts_with("a=ssrc:")
                || line.starts_with("a=ssrc-group:"))
            {
                push_line(out, line, eol);
            }
        }
        SendSlot::Track { stream, track } => {
            if line.starts_with("a=msid:") {
                push_line(out, &format!("a=msid:{stream} {track}"), eol);
            } else if let Some(rest) = line.strip_prefix("a=ssrc:") {
                let mut p = rest.splitn(2, ' ');
                let ssrc = p.next().unwrap_or_default();
                let attr = p.next().unwrap_or_default();
                if attr.starts_with("msid:") {
                    push_line(out, &format!("a=ssrc:{ssrc} msid:{stream} {track}"), eol);
                } else {
                    push_line(out, line, eol);
                }
            } else {
                push_line(out, line, eol);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const OFFER: &str = "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n\
m=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=mid:0\r\na=sendonly\r\na=msid:stream1 cidA\r\n\
m=video 9 UDP/TLS/RTP/SAVPF 96\r\na=mid:1\r\na=sendonly\r\na=msid:- cidV\r\na=rid:q send\r\na=rid:h send\r\na=simulcast:send q;h\r\n\
m=audio 9 UDP/TLS/RTP/SAVPF 63 111\r\na=mid:2\r\na=recvonly\r\na=rtpmap:63 red/48000/2\r\na=rtpmap:111 opus/48000/2\r\n\
m=video 0 UDP/TLS/RTP/SAVPF 96\r\na=mid:3\r\na=inactive\r\n\
m=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\na=mid:4\r\n";

    #[test]
    fn reads_sections() {
        let s = sections(OFFER);
        assert_eq!(s.len(), 5);
        assert_eq!(s[0].kind, Kind::Audio);
        assert_eq!(s[0].msid, Some(("stream1".into(), "cidA".into())));
        assert!(s[0].author_sends());
        assert_eq!(s[1].send_rids, vec!["q", "h"]);
        assert!(s[2].author_receives() && !s[2].author_sends());
        assert_eq!((s[0].red_pt, s[2].red_pt), (None, Some(63)));
        assert!(s[3].rejected);
        assert_eq!(s[4].kind, Kind::Application);
    }

    #[test]
    fn rewrites_slots() {
        let answer = "v=0\r\nm=audio 9 X 111\r\na=mid:2\r\na=sendonly\r\na=msid:rand1 rand2\r\na=ssrc:5 cname:x\r\na=ssrc:5 msid:rand1 rand2\r\n\
m=video 9 X 96\r\na=mid:5\r\na=sendonly\r\na=msid:r3 r4\r\na=ssrc-group:FID 6 7\r\na=ssrc:6 cname:x\r\n";
        let slots = HashMap::from([
            (
                "2".to_string(),
                SendSlot::Track {
                    stream: "PA_a|TR_b".into(),
                    track: "TR_b".into(),
                },
            ),
            ("5".to_string(), SendSlot::Unused),
        ]);
        let out = rewrite_send_slots(answer, &slots);
        assert!(out.contains("a=msid:PA_a|TR_b TR_b\r\n"));
        assert!(out.contains("a=ssrc:5 msid:PA_a|TR_b TR_b\r\n"));
        assert!(out.contains("a=ssrc:5 cname:x\r\n"));
        assert!(!out.contains("rand"));
        let s = sections(&out);
        assert_eq!(s[1].direction, Direction::Inactive);
        assert!(!out.contains("a=ssrc:6") && !out.contains("ssrc-group") && !out.contains("r3"));
    }

    #[test]
    fn red_taken_out_of_the_refused_audio_sections() {
        let sdp = "v=0\r\n\
m=audio 9 X 63 111\r\na=mid:0\r\na=rtpmap:63 red/48000/2\r\na=fmtp:63 111/111\r\na=rtpmap:111 opus/48000/2\r\n\
m=audio 9 X 63 111\r\na=mid:1\r\na=rtpmap:63 red/48000/2\r\na=fmtp:63 111/111\r\na=rtpmap:111 opus/48000/2\r\na=rtcp-fb:111 nack\r\na=rtcp-fb:63 nack\r\n\
m=video 9 X 96\r\na=mid:2\r\na=rtpmap:96 VP8/90000\r\n";
        let out = without_red(sdp, |mid| mid == "0");
        let b = blocks(&out);
        assert_eq!(b[1], blocks(sdp)[1], "a kept section is unchanged");
        assert_eq!(
            b[2],
            vec![
                "m=audio 9 X 111",
                "a=mid:1",
                "a=rtpmap:111 opus/48000/2",
                "a=rtcp-fb:111 nack"
            ]
        );
        assert_eq!(b[3], blocks(sdp)[3], "video is left alone");
        assert!(out.ends_with("VP8/90000\r\n"));
        let s = sections(&out);
        assert_eq!(
            s.iter().map(|s| s.red_pt).collect::<Vec<_>>(),
            [Some(63), None, None]
        );
    }

    #[test]
    fn red_counts_only_when_the_m_line_lists_it() {
        let sdp = "v=0\r\n\
m=audio 9 X 111\r\na=mid:0\r\na=rtpmap:111 opus/48000/2\r\na=rtpmap:63 red/48000/2\r\n\
m=audio 9 X 63 111\r\na=mid:1\r\na=rtpmap:63 RED/48000/2\r\n\
m=video 9 X 96 63\r\na=mid:2\r\na=rtpmap:63 red/90000\r\n";
        let s = sections(sdp);
        assert_eq!(
            s.iter().map(|s| s.red_pt).collect::<Vec<_>>(),
            [None, Some(63), None]
        );
    }
    #[test]
    fn strips_transport_cc_from_audio_only() {
        let sdp = "v=0\r\n\
m=audio 9 X 111\r\na=mid:0\r\na=extmap:3 http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01\r\n\
a=extmap:1 urn:ietf:params:rtp-hdrext:ssrc-audio-level\r\na=rtcp-fb:111 transport-cc\r\na=rtcp-fb:111 nack\r\n\
m=video 9 X 96\r\na=mid:1\r\na=extmap:3 http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01\r\n\
a=rtcp-fb:96 transport-cc\r\n";
        let out = audio_without_transport_cc(sdp);
        let b = blocks(&out);
        assert_eq!(b.len(), 3);
        assert_eq!(
            b[1],
            vec![
                "m=audio 9 X 111",
                "a=mid:0",
                "a=extmap:1 urn:ietf:params:rtp-hdrext:ssrc-audio-level",
                "a=rtcp-fb:111 nack"
            ]
        );
        assert_eq!(b[2].len(), 4, "video keeps transport-cc: {:?}", b[2]);
        assert!(out.ends_with("transport-cc\r\n"));
    }
}
