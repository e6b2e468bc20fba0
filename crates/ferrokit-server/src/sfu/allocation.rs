//! Bandwidth allocation, sans-IO: which simulcast layer of each video
//! track a subscriber's estimated bandwidth can carry.
//!
//! Each subscriber's task measures what every layer of its tracks costs
//! ([`LayerRates`], from the packets it sees) and takes the estimate of its
//! outgoing bandwidth (str0m's TWCC-based BWE, RFC 8888 / transport-cc).
//! [`allocate`] first gives every track its lowest live layer, in order,
//! while the budget lasts (a track that gets none is paused for
//! bandwidth), then raises tracks one layer at a time, round-robin, up to
//! what the subscriber asked for. Raising a track above the layer it has
//! now needs [`UPGRADE_HEADROOM`] of the budget spare, so a rate near the
//! limit does not make the layer flap.

use std::time::{Duration, Instant};

use super::downtrack::MAX_LAYERS;

/// Fraction of the budget an upgrade must leave unused.
pub const UPGRADE_HEADROOM: f64 = 0.15;
/// Length of one rate measurement window.
pub const RATE_WINDOW: Duration = Duration::from_secs(1);

/// Bitrate of each simulcast layer of one track, measured over
/// [`RATE_WINDOW`]s of payload bytes.
#[derive(Debug, Clone)]
pub struct LayerRates {
    bytes: [u64; MAX_LAYERS],
    rates_bps: [u64; MAX_LAYERS],
    started: Instant,
}

impl LayerRates {
    /// An empty measurement starting at `now`.
    pub fn new(now: Instant) -> Self {
        Self {
            bytes: [0; MAX_LAYERS],
            rates_bps: [0; MAX_LAYERS],
            started: now,
        }
    }

    /// Counts one packet of `len` payload bytes on `layer`.
    pub fn on_packet(&mut self, layer: u8, len: usize) {
        let l = usize::from(layer).min(MAX_LAYERS - 1);
        self.bytes[l] += len as u64;
    }

    /// Closes the window when [`RATE_WINDOW`] has passed; rates keep the
    /// last full window's values (bps, payload only) until the next one.
    pub fn roll(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.started);
        if elapsed < RATE_WINDOW {
            return;
        }
        let secs = elapsed.as_secs_f64();
        for l in 0..MAX_LAYERS {
            self.rates_bps[l] = (self.bytes[l] as f64 * 8.0 / secs) as u64;
            self.bytes[l] = 0;
        }
        self.started = now;
    }

    /// Last measured bitrate per layer, bps (0: the layer carried nothing).
    pub fn rates(&self) -> [u64; MAX_LAYERS] {
        self.rates_bps
    }

    /// Sum over layers, bps.
    pub fn total(&self) -> u64 {
        self.rates_bps.iter().sum()
    }
}

/// What one video track asks of the allocation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Demand {
    /// Highest layer the subscriber takes.
    pub max_layer: u8,
    /// Bitrate of each layer, bps; 0 for a layer that is not flowing.
    pub rates: [u64; MAX_LAYERS],
    /// The cap the track has now (None: paused for bandwidth).
    pub current: Option<u8>,
}

/// Per track, the highest layer `budget_bps` allows (None: not even the
/// lowest fits). A track with no live layer up to its maximum is not
/// limited (`Some(max_layer)`): it costs nothing now.
pub fn allocate(budget_bps: u64, demands: &[Demand]) -> Vec<Option<u8>> {
    let live = |d: &Demand| -> Vec<u8> {
        (0..=d.max_layer.min((MAX_LAYERS - 1) as u8))
            .filter(|&l| d.rates[usize::from(l)] > 0)
            .collect()
    };
    let layers: Vec<Vec<u8>> = demands.iter().map(live).collect();
    let headroom = (budget_bps as f64 * UPGRADE_HEADROOM) as u64;
    let mut left = budget_bps;
    // Index into `layers[i]` of each track's allocation.
    let mut at: Vec<Option<usize>> = vec![None; demands.len()];
    for (i, d) in demands.iter().enumerate() {
        let Some(&lowest) = layers[i].first() else {
            continue;
        };
        let cost = d.rates[usize::from(lowest)];
        // Resuming a paused track is an upgrade: it needs the headroom.
        let need = if d.current.is_none() {
            cost + headroom
        } else {
            cost
        };
        if need <= left {
            left -= cost;
            at[i] = Some(0);
        }
    }
    loop {
        let mut raised = false;
        for (i, d) in demands.iter().enumerate() {
            let Some(k) = at[i] else { continue };
            let Some(&next) = layers[i].get(k + 1) else {
                continue;
            };
            let cur = layers[i][k];
            let extra = d.rates[usize::from(next)].saturating_sub(d.rates[usize::from(cur)]);
            let upgrade = d.current.is_none_or(|c| next > c);
            let need = if upgrade { extra + headroom } else { extra };
            if need <= left {
                left -= extra;
                at[i] = Some(k + 1);
                raised = true;
            }
        }
        if !raised {
            break;
        }
    }
    demands
        .iter()
        .enumerate()
        .map(|(i, d)| {
            if layers[i].is_empty() {
                return Some(d.max_layer);
            }
            at[i].map(|k| layers[i][k])
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const RATES: [u64; 3] = [150_000, 500_000, 1_500_000];

    fn demand(max_layer: u8, current: Option<u8>) -> Demand {
        Demand {
            max_layer,
            rates: RATES,
            current,
        }
    }

    #[test]
    fn ample_budget_gives_every_track_its_maximum() {
        let d = [demand(2, Some(2)), demand(1, Some(1))];
        assert_eq!(allocate(10_000_000, &d), [Some(2), Some(1)]);
    }

    #[test]
    fn tight_budget_lowers_layers_then_pauses() {
        let d = [demand(2, Some(2)), demand(2, Some(2))];
        // 1.2 Mbps: both get LOW (300k), then MEDIUM for both (+700k).
        assert_eq!(allocate(1_200_000, &d), [Some(1), Some(1)]);
        // 700 kbps: one MEDIUM, one LOW.
        assert_eq!(allocate(700_000, &d), [Some(1), Some(0)]);
        // 200 kbps: one LOW, the other paused.
        assert_eq!(allocate(200_000, &d), [Some(0), None]);
    }

    #[test]
    fn upgrades_need_headroom_but_holding_does_not() {
        // Holding MEDIUM at exactly its cost: kept.
        assert_eq!(allocate(500_000, &[demand(2, Some(1))]), [Some(1)]);
        // Rising from LOW to MEDIUM at the same budget: refused.
        assert_eq!(allocate(500_000, &[demand(2, Some(0))]), [Some(0)]);
        // A paused track resumes only with headroom.
        assert_eq!(allocate(150_000, &[demand(2, None)]), [None]);
        assert_eq!(allocate(200_000, &[demand(2, None)]), [Some(0)]);
    }

    #[test]
    fn tracks_without_live_layers_are_not_limited() {
        let quiet = Demand {
            max_layer: 2,
            rates: [0, 0, 0],
            current: Some(2),
        };
        let high_only = Demand {
            max_layer: 2,
            rates: [0, 0, 1_000_000],
            current: Some(2),
        };
        assert_eq!(allocate(0, &[quiet]), [Some(2)]);
        assert_eq!(allocate(500_000, &[high_only]), [None]);
    }

    #[test]
    fn rates_are_measured_per_window() {
        let t0 = Instant::now();
        let mut r = LayerRates::new(t0);
        for _ in 0..100 {
            r.on_packet(0, 1000);
        }
        r.on_packet(7, 500);
        r.roll(t0 + Duration::from_millis(500));
        assert_eq!(r.rates(), [0, 0, 0], "window not over");
        r.roll(t0 + RATE_WINDOW);
        assert_eq!(r.rates(), [800_000, 0, 4000]);
        assert_eq!(r.total(), 804_000);
    }
}
