//! Who is speaking, from the audio-level RTP header extension (RFC 6464:
//! level in -dBov, 0 loudest, -127 silence).
//!
//! An [`AudioLevelObserver`] counts one audio track's packets over an
//! observation interval. At the end of the interval the track is speaking
//! when at least `min_percentile` % of its packets were at or above
//! `-active_level` dBov (livekit.yaml `audio.active_level` 35 and
//! `audio.min_percentile` 40 by default). Its level is the mean linear
//! amplitude (10^(dBov/20), 0..1) of those loud packets, rounded to
//! [`LEVEL_STEP`] so small wobbles do not count as changes.

/// Default loudness threshold, dBov below full scale.
pub const DEFAULT_ACTIVE_LEVEL: u8 = 35;
/// Default share of loud packets (percent) needed to be speaking.
pub const DEFAULT_MIN_PERCENTILE: u8 = 40;
/// Levels are rounded to this step.
pub const LEVEL_STEP: f32 = 0.05;

/// One audio track's loudness over the current interval.
#[derive(Debug, Clone)]
pub struct AudioLevelObserver {
    active_level: u8,
    min_percentile: u8,
    packets: u32,
    loud: u32,
    loud_amplitude: f32,
}

impl Default for AudioLevelObserver {
    fn default() -> Self {
        Self::new(DEFAULT_ACTIVE_LEVEL, DEFAULT_MIN_PERCENTILE)
    }
}

impl AudioLevelObserver {
    /// An observer speaking at `active_level` dBov or louder for at least
    /// `min_percentile` % of packets.
    pub fn new(active_level: u8, min_percentile: u8) -> Self {
        Self {
            active_level,
            min_percentile,
            packets: 0,
            loud: 0,
            loud_amplitude: 0.0,
        }
    }

    /// One packet's level from the header extension, in -dBov (-127..=0;
    /// positive values are read as their negation).
    pub fn observe(&mut self, level: i8) {
        let dbov = level.unsigned_abs().min(127);
        self.packets += 1;
        if dbov <= self.active_level {
            self.loud += 1;
            self.loud_amplitude += 10f32.powf(-f32::from(dbov) / 20.0);
        }
    }

    /// Ends the interval: the rounded level (0..1] when speaking, else None.
    pub fn take(&mut self) -> Option<f32> {
        let (packets, loud, amplitude) = (self.packets, self.loud, self.loud_amplitude);
        self.packets = 0;
        self.loud = 0;
        self.loud_amplitude = 0.0;
        if packets == 0 || loud * 100 < packets * u32::from(self.min_percentile) {
            return None;
        }
        let mean = amplitude / loud as f32;
        let rounded = (mean / LEVEL_STEP).round() * LEVEL_STEP;
        Some(rounded.clamp(LEVEL_STEP, 1.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loud_track_speaks_with_its_amplitude() {
        let mut o = AudioLevelObserver::default();
        for _ in 0..20 {
            o.observe(-6); // about half of full scale
        }
        assert_eq!(o.take(), Some(0.5));
        assert_eq!(o.take(), None, "a new interval starts empty");
    }

    #[test]
    fn silence_and_sparse_noise_do_not_speak() {
        let mut o = AudioLevelObserver::default();
        for i in 0..20 {
            o.observe(if i % 4 == 0 { -10 } else { -127 }); // 25 % loud
        }
        assert_eq!(o.take(), None);
        for _ in 0..20 {
            o.observe(-60);
        }
        assert_eq!(o.take(), None);
    }

    #[test]
    fn threshold_is_inclusive_and_min_level_is_one_step() {
        let mut o = AudioLevelObserver::default();
        for _ in 0..10 {
            o.observe(-35);
        }
        assert_eq!(o.take(), Some(LEVEL_STEP));
    }
}
