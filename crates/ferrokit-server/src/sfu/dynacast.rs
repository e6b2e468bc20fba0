//! Dynacast, sans-IO: which simulcast layers of one published video track
//! any subscriber wants, so the publisher can stop encoding the others
//! (LiveKit's `SubscribedQualityUpdate`).
//!
//! Each subscriber's wish is the highest layer it will take (0 = LOW ..
//! 2 = HIGH), or none when it disabled the track. The track's announced
//! maximum follows the highest wish: a rise is announced at once, so a
//! subscriber asking for more gets it without delay; a fall only after it
//! held for [`LOWER_AFTER`], so brief changes (a resized window, a
//! subscriber reconnecting) do not make the publisher's encoder churn.

use std::time::{Duration, Instant};

use livekit_protocol as proto;

use super::downtrack::MAX_LAYERS;

/// How long a lower maximum must hold before it is announced.
pub const LOWER_AFTER: Duration = Duration::from_secs(2);

/// Subscribers' layer wishes for one published video track.
#[derive(Debug)]
pub struct Dynacast {
    /// (subscriber sid, highest wanted layer; None = disabled).
    wishes: Vec<(String, Option<u8>)>,
    /// The maximum the publisher was last told (None = every layer off).
    /// Publishers start with every layer on.
    announced: Option<u8>,
    /// Since when the wanted maximum has been below `announced`.
    lower_since: Option<Instant>,
}

impl Default for Dynacast {
    fn default() -> Self {
        Self {
            wishes: Vec::new(),
            announced: Some((MAX_LAYERS - 1) as u8),
            lower_since: None,
        }
    }
}

impl Dynacast {
    /// Sets `subscriber`'s wish: the highest layer it takes, None if it
    /// disabled the track.
    pub fn set(&mut self, subscriber: &str, max_layer: Option<u8>) {
        let max_layer = max_layer.map(|l| l.min((MAX_LAYERS - 1) as u8));
        match self.wishes.iter_mut().find(|(s, _)| s == subscriber) {
            Some(w) => w.1 = max_layer,
            None => self.wishes.push((subscriber.to_string(), max_layer)),
        }
    }

    /// Forgets `subscriber` (unsubscribed or gone).
    pub fn remove(&mut self, subscriber: &str) {
        self.wishes.retain(|(s, _)| s != subscriber);
    }

    /// The highest layer anyone wants now (None: nobody wants any).
    pub fn wanted(&self) -> Option<u8> {
        self.wishes.iter().filter_map(|(_, w)| *w).max()
    }

    /// The maximum the publisher was last told (None: every layer off).
    pub fn announced(&self) -> Option<u8> {
        self.announced
    }

    /// The new maximum to announce at `now`, if it changed: a rise at
    /// once, a fall once it held for [`LOWER_AFTER`]. `Some(None)` means
    /// every layer is to be paused.
    pub fn poll(&mut self, now: Instant) -> Option<Option<u8>> {
        let wanted = self.wanted();
        if wanted >= self.announced {
            self.lower_since = None;
            if wanted == self.announced {
                return None;
            }
        } else {
            let since = *self.lower_since.get_or_insert(now);
            if now.saturating_duration_since(since) < LOWER_AFTER {
                return None;
            }
            self.lower_since = None;
        }
        self.announced = wanted;
        Some(wanted)
    }
}

/// `subscribed_quality_update` for `track_sid` whose layers up to
/// `max_layer` are wanted (none when `max_layer` is None). `codec` is the
/// track's codec as the client names it (`vp8`, `h264`, ...); the client
/// applies `subscribed_codecs` and ignores the deprecated flat list when
/// a codec is given.
pub fn subscribed_quality_update(
    track_sid: &str,
    codec: &str,
    max_layer: Option<u8>,
) -> proto::SubscribedQualityUpdate {
    use proto::VideoQuality;
    let qualities: Vec<proto::SubscribedQuality> =
        [VideoQuality::Low, VideoQuality::Medium, VideoQuality::High]
            .iter()
            .enumerate()
            .map(|(layer, q)| proto::SubscribedQuality {
                quality: *q as i32,
                enabled: max_layer.is_some_and(|m| layer as u8 <= m),
            })
            .collect();
    proto::SubscribedQualityUpdate {
        track_sid: track_sid.to_string(),
        subscribed_codecs: vec![proto::SubscribedCodec {
            codec: codec.to_string(),
            qualities: qualities.clone(),
        }],
        subscribed_qualities: qualities,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rise_is_immediate_fall_waits() {
        let t0 = Instant::now();
        let mut d = Dynacast::default();
        d.set("a", Some(2));
        assert_eq!(d.poll(t0), None, "publishers start with every layer on");
        d.set("a", Some(0));
        assert_eq!(d.poll(t0), None);
        assert_eq!(d.poll(t0 + LOWER_AFTER / 2), None);
        assert_eq!(d.poll(t0 + LOWER_AFTER), Some(Some(0)));
        assert_eq!(d.poll(t0 + LOWER_AFTER * 2), None);
        d.set("b", Some(1));
        assert_eq!(d.poll(t0 + LOWER_AFTER * 2), Some(Some(1)));
    }

    #[test]
    fn brief_dip_is_not_announced() {
        let t0 = Instant::now();
        let mut d = Dynacast::default();
        d.set("a", None);
        assert_eq!(d.poll(t0), None);
        d.set("a", Some(2));
        assert_eq!(d.poll(t0 + Duration::from_millis(500)), None);
        // The dip's clock restarts on the next fall.
        d.set("a", Some(1));
        assert_eq!(d.poll(t0 + Duration::from_millis(600)), None);
        assert_eq!(d.poll(t0 + Duration::from_millis(2000)), None);
        assert_eq!(d.poll(t0 + Duration::from_millis(2600)), Some(Some(1)));
    }

    #[test]
    fn nobody_subscribed_pauses_every_layer_then_resumes() {
        let t0 = Instant::now();
        let mut d = Dynacast::default();
        assert_eq!(d.poll(t0), None);
        assert_eq!(d.poll(t0 + LOWER_AFTER), Some(None));
        d.set("a", Some(1));
        d.set("b", None);
        assert_eq!(d.poll(t0 + LOWER_AFTER), Some(Some(1)));
        d.remove("a");
        assert_eq!(d.wanted(), None);
    }

    #[test]
    fn update_lists_enabled_layers_per_codec() {
        let u = subscribed_quality_update("TR_x", "vp8", Some(1));
        let enabled: Vec<bool> = u.subscribed_qualities.iter().map(|q| q.enabled).collect();
        assert_eq!(enabled, [true, true, false]);
        assert_eq!(u.subscribed_codecs[0].codec, "vp8");
        assert_eq!(u.subscribed_codecs[0].qualities, u.subscribed_qualities);
        let none = subscribed_quality_update("TR_x", "vp8", None);
        assert!(none.subscribed_qualities.iter().all(|q| !q.enabled));
    }
}
