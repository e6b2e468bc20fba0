//! Active speakers (`speakers_changed`, livekit_rtc.proto `SpeakersChanged`).
//!
//! A publisher's session reports its participant's audio level whenever it
//! changes (see `sfu::audio_level`); the room sends only that change, as a
//! `SpeakerInfo`, to the speaker itself and to the participants subscribed
//! to one of its tracks.

use livekit_protocol as proto;
use proto::signal_response::Message as Msg;

use super::{Output, Room};

impl Room {
    /// `sid`'s speaking level: `Some(level)` (0..1] while speaking, `None`
    /// when silent. Sends `speakers_changed` only when it changed.
    pub fn set_speaker_level(&mut self, sid: &str, level: Option<f32>) -> Vec<Output> {
        let Some(p) = self.participant_mut(sid) else {
            return Vec::new();
        };
        if p.speaking == level {
            return Vec::new();
        }
        p.speaking = level;
        let speaker = proto::SpeakerInfo {
            sid: sid.to_string(),
            level: level.unwrap_or(0.0),
            active: level.is_some(),
        };
        let msg = Msg::SpeakersChanged(proto::SpeakersChanged {
            speakers: vec![speaker],
        });
        self.to_self_and_subscribers(sid, msg)
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::publisher_subscriber_lurker;
    use super::*;

    fn speakers_to(out: &[Output], to: &str) -> Vec<proto::SpeakerInfo> {
        out.iter()
            .filter_map(|o| match o {
                Output::Signal {
                    to: t,
                    msg: Msg::SpeakersChanged(s),
                } if t == to => Some(s.speakers.clone()),
                _ => None,
            })
            .flatten()
            .collect()
    }

    #[test]
    fn changes_go_to_the_speaker_and_its_subscribers_only() {
        let (mut r, a, b, c) = publisher_subscriber_lurker();

        let out = r.set_speaker_level(&a, Some(0.5));
        for to in [&a, &b] {
            let s = speakers_to(&out, to);
            assert_eq!(s.len(), 1);
            assert_eq!(
                (s[0].sid.as_str(), s[0].level, s[0].active),
                (a.as_str(), 0.5, true)
            );
        }
        assert!(speakers_to(&out, &c).is_empty(), "not subscribed");
        assert!(r.set_speaker_level(&a, Some(0.5)).is_empty(), "no change");
        let out = r.set_speaker_level(&a, None);
        let s = speakers_to(&out, &b);
        assert_eq!((s[0].level, s[0].active), (0.0, false));
    }
}
