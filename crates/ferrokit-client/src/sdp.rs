//! Reading what the server's SDP says about the tracks it sends, without
//! IO: for each audio/video m-section, its mid, whether the server sends on
//! it, and the `a=msid:<stream> <track>` LiveKit uses to name the track
//! (`PA_xxx|TR_xxx TR_xxx`).

/// One audio or video m-section of a server description.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SendSection {
    /// `a=mid`.
    pub mid: String,
    /// Video rather than audio.
    pub video: bool,
    /// The author of the SDP sends media on it (sendonly/sendrecv, port != 0).
    pub sends: bool,
    /// The track sid from `a=msid`, if any.
    pub track_sid: Option<String>,
    /// The participant sid from the msid stream id (`PA_xxx|...`), if any.
    pub participant_sid: Option<String>,
}

/// The audio and video m-sections of `sdp`, in order.
pub fn media_sections(sdp: &str) -> Vec<SendSection> {
    let mut out = Vec::new();
    let mut cur: Option<SendSection> = None;
    let mut rejected = false;
    let finish = |s: Option<SendSection>, rejected: bool, out: &mut Vec<SendSection>| {
        if let Some(mut s) = s.filter(|s| !s.mid.is_empty()) {
            s.sends &= !rejected;
            out.push(s);
        }
    };
    for line in sdp.lines().map(str::trim_end) {
        if let Some(m) = line.strip_prefix("m=") {
            finish(cur.take(), rejected, &mut out);
            let mut parts = m.split_whitespace();
            let kind = parts.next();
            rejected = parts.next() == Some("0");
            cur = matches!(kind, Some("audio") | Some("video")).then(|| SendSection {
                mid: String::new(),
                video: kind == Some("video"),
                // SDP's default direction is sendrecv.
                sends: true,
                track_sid: None,
                participant_sid: None,
            });
            continue;
        }
        let (Some(s), Some(attr)) = (cur.as_mut(), line.strip_prefix("a=")) else {
            continue;
        };
        if let Some(mid) = attr.strip_prefix("mid:") {
            s.mid = mid.trim().to_string();
        } else if matches!(attr, "recvonly" | "inactive") {
            s.sends = false;
        } else if matches!(attr, "sendonly" | "sendrecv") {
            s.sends = true;
        } else if let Some(msid) = attr.strip_prefix("msid:") {
            let mut p = msid.split_whitespace();
            let stream = p.next().unwrap_or_default();
            s.participant_sid = stream
                .split('|')
                .next()
                .filter(|p| p.starts_with("PA_"))
                .map(str::to_string);
            s.track_sid = p
                .next()
                .or_else(|| stream.split('|').nth(1))
                .filter(|t| t.starts_with("TR_"))
                .map(str::to_string);
        }
    }
    finish(cur, rejected, &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const SDP: &str = "v=0\r\n\
        m=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\na=mid:0\r\n\
        m=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=mid:1\r\na=sendonly\r\n\
        a=msid:PA_abc|TR_a1 TR_a1\r\n\
        m=video 9 UDP/TLS/RTP/SAVPF 96\r\na=mid:2\r\na=inactive\r\n\
        m=video 0 UDP/TLS/RTP/SAVPF 96\r\na=mid:3\r\na=sendonly\r\n\
        m=video 9 UDP/TLS/RTP/SAVPF 96\r\na=mid:4\r\na=sendonly\r\na=msid:PA_x|camera TR_v\r\n";

    #[test]
    fn reads_sections_and_msids() {
        let s = media_sections(SDP);
        assert_eq!(s.len(), 4);
        assert_eq!(s[0].mid, "1");
        assert!(s[0].sends && !s[0].video);
        assert_eq!(s[0].track_sid.as_deref(), Some("TR_a1"));
        assert_eq!(s[0].participant_sid.as_deref(), Some("PA_abc"));
        assert!(!s[1].sends && s[1].video && s[1].track_sid.is_none());
        assert!(!s[2].sends, "port 0 is rejected");
        assert_eq!(s[3].track_sid.as_deref(), Some("TR_v"));
        assert_eq!(s[3].participant_sid.as_deref(), Some("PA_x"));
    }
}
