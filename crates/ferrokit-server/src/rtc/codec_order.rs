//! Codec preference in an answer (RFC 8829 §5.3.1: the offerer sends with
//! the first format of the answer's m-line it supports).
//!
//! The LiveKit client announces the codec it wants to publish in
//! `add_track` (`simulcast_codecs`) and leaves its own offer in the browser's
//! order (VP8 first); the server must answer with the wanted codec first, as
//! livekit-server does. [`prefer_codecs`] moves the payload types of a codec
//! (and their RTX, `a=fmtp:<rtx> apt=<pt>`) to the front of an m-line.

use std::collections::HashMap;

use super::sdp::{block_mid, blocks, line_ending};

/// Rewrites `sdp` so that, in the m-section whose `a=mid` is a key of
/// `wanted`, the payload types of that codec (encoding name, any case, e.g.
/// `VP9` or `video/vp9`) and their RTX lead the format list. Other sections,
/// and sections whose codec is absent, are unchanged.
pub fn prefer_codecs(sdp: &str, wanted: &HashMap<String, String>) -> String {
    if wanted.is_empty() {
        return sdp.to_string();
    }
    let eol = line_ending(sdp);
    let mut out = String::with_capacity(sdp.len());
    for block in blocks(sdp) {
        let codec = block_mid(&block).and_then(|m| wanted.get(m));
        for line in &block {
            match (codec, line.strip_prefix("m=")) {
                (Some(codec), Some(m)) => {
                    out.push_str("m=");
                    out.push_str(&reorder_m_line(m, &block, codec));
                }
                _ => out.push_str(line),
            }
            out.push_str(eol);
        }
    }
    out
}

/// `<media> <port> <proto> <fmt>...` with `codec`'s formats first.
fn reorder_m_line(m: &str, block: &[&str], codec: &str) -> String {
    let name = codec.rsplit('/').next().unwrap_or(codec);
    let mut parts = m.split_whitespace();
    let head: Vec<&str> = parts.by_ref().take(3).collect();
    let formats: Vec<&str> = parts.collect();
    let mut lead: Vec<&str> = block
        .iter()
        .filter_map(|l| l.strip_prefix("a=rtpmap:"))
        .filter_map(|r| {
            let (pt, enc) = r.split_once(' ')?;
            let enc_name = enc.split('/').next()?;
            enc_name.eq_ignore_ascii_case(name).then_some(pt.trim())
        })
        .collect();
    if lead.is_empty() {
        return m.to_string();
    }
    let rtx: Vec<&str> = block
        .iter()
        .filter_map(|l| l.strip_prefix("a=fmtp:"))
        .filter_map(|f| {
            let (pt, params) = f.split_once(' ')?;
            let apt = params
                .split(';')
                .find_map(|p| p.trim().strip_prefix("apt="))?;
            lead.contains(&apt.trim()).then_some(pt.trim())
        })
        .collect();
    lead.extend(rtx);
    let ordered = formats
        .iter()
        .filter(|f| lead.contains(f))
        .chain(formats.iter().filter(|f| !lead.contains(f)));
    head.into_iter()
        .chain(ordered.copied())
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    const ANSWER: &str = "v=0\r\n\
        m=audio 9 UDP/TLS/RTP/SAVPF 111\r\n\
        a=mid:0\r\n\
        a=rtpmap:111 opus/48000/2\r\n\
        m=video 9 UDP/TLS/RTP/SAVPF 96 97 102 103 98 99\r\n\
        a=mid:1\r\n\
        a=rtpmap:96 VP8/90000\r\n\
        a=rtpmap:97 rtx/90000\r\n\
        a=fmtp:97 apt=96\r\n\
        a=rtpmap:102 H264/90000\r\n\
        a=rtpmap:103 rtx/90000\r\n\
        a=fmtp:103 apt=102\r\n\
        a=rtpmap:98 VP9/90000\r\n\
        a=rtpmap:99 rtx/90000\r\n\
        a=fmtp:99 apt=98\r\n";

    #[test]
    fn moves_codec_and_its_rtx_first() {
        let wanted = HashMap::from([("1".to_string(), "video/vp9".to_string())]);
        let out = prefer_codecs(ANSWER, &wanted);
        assert!(
            out.contains("m=video 9 UDP/TLS/RTP/SAVPF 98 99 96 97 102 103\r\n"),
            "{out}"
        );
        assert!(out.contains("m=audio 9 UDP/TLS/RTP/SAVPF 111\r\n"));
        assert_eq!(out.len(), ANSWER.len());
    }

    #[test]
    fn unknown_codec_or_mid_leaves_sdp_alone() {
        let wanted = HashMap::from([("1".to_string(), "av1".to_string())]);
        assert_eq!(prefer_codecs(ANSWER, &wanted), ANSWER);
        let wanted = HashMap::from([("7".to_string(), "vp9".to_string())]);
        assert_eq!(prefer_codecs(ANSWER, &wanted), ANSWER);
    }
}
