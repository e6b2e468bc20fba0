//! Bandwidth allocation, sans-IO: which simulcast layer of each video
//! track a subscriber's estimated bandwidth can carry.
//!
//! Each subscriber's session measures what every layer of its tracks costs
//! ([`LayerRates`], from the packets it sees) and takes the estimate of its
//! outgoing bandwidth (str0m's TWCC-based BWE, transport-cc). [`allocate`]
//! first gives every track its lowest live layer (a track is never paused
//! for bandwidth, as livekit-server does by default), then raises tracks
//! one layer at a time, round-robin, up to what the subscriber asked for,
//! and finally, with what is left, caps above that (so a later request for
//! a higher layer is served at once when it fits). Raising a track above
//! the layer it has now needs [`UPGRADE_HEADROOM`] of the budget spare;
//! holding it does not.
//!
//! [`Allocator`] adds time: a downgrade of what is forwarded waits until
//! the estimate has been short for [`DOWNGRADE_CONFIRM`] (one noisy
//! estimate or a keyframe-heavy rate window does not drop a layer), and
//! an upgrade comes at most every [`UPGRADE_INTERVAL`], doubling (up to
//! [`MAX_UPGRADE_INTERVAL`]) after each upgrade that was undone within
//! [`UPGRADE_TRIAL`] (an estimate inflated by one probe), so a layer does
//! not oscillate around the limit. [`desired_bps`] is what the BWE is told
//! to probe for.

use std::time::{Duration, Instant};

use super::downtrack::MAX_LAYERS;

/// Fraction of the budget an upgrade must leave unused.
pub const UPGRADE_HEADROOM: f64 = 0.15;
/// Length of one rate measurement window.
pub const RATE_WINDOW: Duration = Duration::from_secs(1);
/// How long the estimate must stay below what the forwarded layers cost
/// before a layer is dropped: long enough for the probe that a shortfall
/// starts (see [`Allocator::bwe_desired`]) to correct a bad estimate.
pub const DOWNGRADE_CONFIRM: Duration = Duration::from_millis(1200);
/// Shortest time between two changes of forwarded layers of which the
/// later one is an upgrade.
pub const UPGRADE_INTERVAL: Duration = Duration::from_secs(3);
/// An upgrade undone within this time failed: the interval before the
/// next one doubles, up to [`MAX_UPGRADE_INTERVAL`]. One that holds this
/// long resets the interval to [`UPGRADE_INTERVAL`].
pub const UPGRADE_TRIAL: Duration = Duration::from_secs(10);
/// Longest wait before an upgrade after failed ones.
pub const MAX_UPGRADE_INTERVAL: Duration = Duration::from_secs(24);
/// Bitrate assumed for a video track whose layers are not measured yet
/// (bps), so probing starts before the first rate window closes.
pub const UNMEASURED_TRACK_BPS: u64 = 2_000_000;
/// While a track is below the layer it wants for want of bandwidth, str0m
/// is asked to probe this often (a dip of the desired bitrate, then back:
/// an increase above the estimate starts an allocation probe).
pub const PROBE_INTERVAL: Duration = Duration::from_secs(4);
/// Weight of a new window in the smoothed layer rates (0..=1).
const RATE_SMOOTHING: f64 = 0.5;
/// Highest layer index.
const TOP: u8 = (MAX_LAYERS - 1) as u8;

/// Bitrate of each simulcast layer of one track, measured over
/// [`RATE_WINDOW`]s of payload bytes and smoothed across windows.
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

    /// Closes the window when [`RATE_WINDOW`] has passed; rates keep their
    /// values (bps, payload only) until the next one. A layer's rate is the
    /// mean of its new window and its previous rate, so one keyframe-heavy
    /// window counts half; a layer that carried nothing drops to 0 at once.
    pub fn roll(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.started);
        if elapsed < RATE_WINDOW {
            return;
        }
        let secs = elapsed.as_secs_f64();
        for l in 0..MAX_LAYERS {
            let window = self.bytes[l] as f64 * 8.0 / secs;
            let old = self.rates_bps[l] as f64;
            self.rates_bps[l] = if window == 0.0 || old == 0.0 {
                window as u64
            } else {
                (old + RATE_SMOOTHING * (window - old)) as u64
            };
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

impl Demand {
    /// The layer forwarded under cap `cap`: the highest live layer up to
    /// the cap and `max_layer` (None: paused, or nothing live).
    fn forwarded(&self, cap: Option<u8>) -> Option<u8> {
        let top = self.max_layer.min(cap?).min(TOP);
        (0..=top).rev().find(|&l| self.rates[usize::from(l)] > 0)
    }

    /// Rate of the layer the subscriber wants (highest live one up to
    /// `max_layer`), bps; None if no layer was measured.
    fn wanted_bps(&self) -> Option<u64> {
        self.forwarded(Some(TOP))
            .map(|l| self.rates[usize::from(l)])
            .or_else(|| self.rates.iter().copied().find(|&r| r > 0))
    }
}

/// Per track, the highest layer `budget_bps` allows. Every track with a
/// live layer gets at least its lowest one, even over budget. A track
/// with no live layer is not limited (`Some(TOP)`): it costs nothing now.
/// A cap above `max_layer` means that much more would fit as well.
pub fn allocate(budget_bps: u64, demands: &[Demand]) -> Vec<Option<u8>> {
    // Live layers of each track, lowest first.
    let layers: Vec<Vec<u8>> = demands
        .iter()
        .map(|d| (0..=TOP).filter(|&l| d.rates[usize::from(l)] > 0).collect())
        .collect();
    let headroom = (budget_bps as f64 * UPGRADE_HEADROOM) as u64;
    let mut left = budget_bps;
    // Index into `layers[i]` of each track's allocation.
    let mut at: Vec<Option<usize>> = vec![None; demands.len()];
    for (i, d) in demands.iter().enumerate() {
        if let Some(&lowest) = layers[i].first() {
            left = left.saturating_sub(d.rates[usize::from(lowest)]);
            at[i] = Some(0);
        }
    }
    // First up to what each subscriber wants, then beyond (spare).
    for spare in [false, true] {
        loop {
            let mut raised = false;
            for (i, d) in demands.iter().enumerate() {
                let Some(k) = at[i] else { continue };
                let Some(&next) = layers[i].get(k + 1) else {
                    continue;
                };
                if !spare && next > d.max_layer {
                    continue;
                }
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
    }
    (0..demands.len())
        .map(|i| match at[i] {
            None => Some(TOP),
            // The top live layer: no limit (a layer that starts later
            // above it is not blocked until measured).
            Some(k) if k + 1 == layers[i].len() => Some(TOP),
            Some(k) => Some(layers[i][k]),
        })
        .collect()
}

/// The bitrate a subscriber would like to receive, bps: for each video
/// track the layer it wants ([`UNMEASURED_TRACK_BPS`] if not measured
/// yet), plus room for one track to rise to its top layer, plus
/// `audio_bps`, with [`UPGRADE_HEADROOM`] on top so that the estimate can
/// reach what an upgrade needs.
///
/// str0m's BWE probes up to twice this, and its periodic probes (every
/// 5 s while the media sent is well below the estimate) go to twice this
/// and set the estimate to what they measure, even when lower: a desired
/// rate far below the estimate pulls the estimate down with it. So this
/// stays above what the forwarded layers need.
pub fn desired_bps(demands: &[Demand], audio_bps: u64) -> u64 {
    let mut video = 0;
    let mut rise = 0;
    for d in demands {
        let wanted = d.wanted_bps().unwrap_or(UNMEASURED_TRACK_BPS);
        let top = d.rates.iter().copied().max().unwrap_or(0);
        video += wanted;
        rise = rise.max(top.saturating_sub(wanted));
    }
    ((video + rise + audio_bps) as f64 * (1.0 + UPGRADE_HEADROOM)) as u64
}

/// A subscriber's allocation over time: [`allocate`] with hysteresis.
#[derive(Debug, Default, Clone)]
pub struct Allocator {
    /// Since when the estimate has been too low for the forwarded layers.
    short_since: Option<Instant>,
    /// Last change of a forwarded layer (up or down).
    last_change: Option<Instant>,
    /// Last upgrade of a forwarded layer, while on trial.
    last_up: Option<Instant>,
    /// Wait between the last change and an upgrade (None: the default,
    /// [`UPGRADE_INTERVAL`]).
    up_interval: Option<Duration>,
    /// Some track is below the layer it wants (after the last update).
    deficient: bool,
    /// When the desired bitrate last dipped to start a probe (or when the
    /// deficit began).
    last_probe: Option<Instant>,
}

impl Allocator {
    /// The caps to apply at `now` for `demands` (whose `current` are the
    /// caps in force) within `budget_bps`. Caps that do not change what
    /// is forwarded follow the budget at once; a lower forwarded layer
    /// waits for [`DOWNGRADE_CONFIRM`]; a higher one for
    /// [`UPGRADE_INTERVAL`] since the last change.
    pub fn update(&mut self, now: Instant, budget_bps: u64, demands: &[Demand]) -> Vec<Option<u8>> {
        let target = allocate(budget_bps, demands);
        // -1: paused, else the forwarded layer.
        let fwd = |d: &Demand, cap: Option<u8>| d.forwarded(cap).map_or(-1, i16::from);
        let moves: Vec<i16> = demands
            .iter()
            .zip(&target)
            .map(|(d, &t)| fwd(d, t) - fwd(d, d.current))
            .collect();
        let down = moves.iter().any(|&m| m < 0);
        let up = moves.iter().any(|&m| m > 0);
        let mut allow_down = false;
        let mut allow_up = false;
        let interval = self.up_interval.unwrap_or(UPGRADE_INTERVAL);
        if self
            .last_up
            .is_some_and(|t| now.saturating_duration_since(t) >= UPGRADE_TRIAL)
        {
            // The last upgrade held.
            self.last_up = None;
            self.up_interval = None;
        }
        if down {
            let since = *self.short_since.get_or_insert(now);
            allow_down = now.saturating_duration_since(since) >= DOWNGRADE_CONFIRM;
        } else {
            self.short_since = None;
            allow_up = up
                && self
                    .last_change
                    .is_none_or(|t| now.saturating_duration_since(t) >= interval);
        }
        if allow_down && self.last_up.take().is_some() {
            // The last upgrade failed: wait longer before the next.
            self.up_interval = Some((interval * 2).min(MAX_UPGRADE_INTERVAL));
        }
        if allow_up {
            self.last_up = Some(now);
        }
        if allow_down || allow_up {
            self.short_since = None;
            self.last_change = Some(now);
        }
        let caps: Vec<Option<u8>> = demands
            .iter()
            .zip(target)
            .zip(moves)
            .map(|((d, t), m)| {
                let keep = (m < 0 && !allow_down) || (m > 0 && !allow_up);
                if keep {
                    d.current
                } else {
                    t
                }
            })
            .collect();
        self.deficient = demands
            .iter()
            .zip(&caps)
            .any(|(d, &c)| fwd(d, c) < fwd(d, Some(TOP)));
        caps
    }

    /// The desired bitrate to give str0m's BWE at `now` (bps), from
    /// `desired_bps` (see [`desired_bps`]) and the estimate. While the
    /// estimate is below `desired_bps` and some track is below the layer
    /// it wants, or the forwarded layers are about to be lowered, this
    /// returns a dip (80% of the estimate) once, at once when a shortfall
    /// begins and then every [`PROBE_INTERVAL`]; the next call, back at
    /// `desired_bps`, makes str0m probe (an increase above the estimate
    /// starts an allocation probe, and a good result further ones). So a
    /// sudden drop of the estimate (one bad probe measurement) is checked
    /// before [`DOWNGRADE_CONFIRM`] runs out, and a subscriber held on a
    /// low layer finds out when the link carries more: sending a low layer
    /// alone keeps str0m's estimate near 1.5 times that layer, as it grows
    /// the estimate no further than that from what is acknowledged.
    pub fn bwe_desired(&mut self, now: Instant, desired_bps: u64, estimate_bps: u64) -> u64 {
        let starved = self.deficient || self.short_since.is_some();
        if !starved || estimate_bps >= desired_bps {
            self.last_probe = None;
            return desired_bps;
        }
        let due = match self.last_probe {
            None => self.short_since.is_some(),
            Some(t) => now.saturating_duration_since(t) >= PROBE_INTERVAL,
        };
        if due || self.last_probe.is_none() {
            self.last_probe = Some(now);
        }
        if due {
            estimate_bps / 5 * 4
        } else {
            desired_bps
        }
    }
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
    fn ample_budget_leaves_every_track_unlimited() {
        let d = [demand(2, Some(2)), demand(1, Some(2))];
        assert_eq!(allocate(10_000_000, &d), [Some(2), Some(2)]);
    }

    #[test]
    fn tight_budget_lowers_layers_but_never_pauses() {
        let d = [demand(2, Some(2)), demand(2, Some(2))];
        // 1.2 Mbps: both get LOW (300k), then MEDIUM for both (+700k).
        assert_eq!(allocate(1_200_000, &d), [Some(1), Some(1)]);
        // 700 kbps: one MEDIUM, one LOW.
        assert_eq!(allocate(700_000, &d), [Some(1), Some(0)]);
        // 200 kbps: both stay on LOW, over budget.
        assert_eq!(allocate(200_000, &d), [Some(0), Some(0)]);
        assert_eq!(allocate(0, &d), [Some(0), Some(0)]);
    }

    #[test]
    fn upgrades_need_headroom_but_holding_does_not() {
        // Holding MEDIUM at exactly its cost: kept.
        assert_eq!(allocate(500_000, &[demand(2, Some(1))]), [Some(1)]);
        // Rising from LOW to MEDIUM at the same budget: refused.
        assert_eq!(allocate(500_000, &[demand(2, Some(0))]), [Some(0)]);
        assert_eq!(allocate(590_000, &[demand(2, Some(0))]), [Some(1)]);
    }

    #[test]
    fn what_a_track_wants_comes_before_spare_caps() {
        // Track 0 wants LOW only, track 1 wants HIGH: track 1 gets MEDIUM
        // before track 0's cap rises above LOW.
        let d = [demand(0, Some(2)), demand(2, Some(2))];
        assert_eq!(allocate(700_000, &d), [Some(0), Some(1)]);
        // With room to spare, track 0's cap rises too (it wants LOW, so
        // LOW is still what it gets).
        assert_eq!(allocate(5_000_000, &d), [Some(2), Some(2)]);
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
        assert_eq!(allocate(500_000, &[high_only]), [Some(2)]);
    }

    #[test]
    fn desired_is_the_wanted_layers_room_for_one_rise_and_audio_with_headroom() {
        let d = [demand(2, Some(0)), demand(0, Some(2))];
        // HIGH + LOW + room for the second to rise to HIGH + audio.
        let want = ((1_500_000 + 150_000 + 1_350_000 + 50_000) as f64 * 1.15) as u64;
        assert_eq!(desired_bps(&d, 50_000), want);
        let unmeasured = Demand {
            max_layer: 2,
            rates: [0; 3],
            current: Some(2),
        };
        assert_eq!(
            desired_bps(&[unmeasured], 0),
            (UNMEASURED_TRACK_BPS as f64 * 1.15) as u64
        );
    }

    #[test]
    fn rates_are_measured_per_window_and_smoothed() {
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
        // A window at twice the rate counts half; an empty one resets.
        for _ in 0..200 {
            r.on_packet(0, 1000);
        }
        r.roll(t0 + 2 * RATE_WINDOW);
        assert_eq!(r.rates(), [1_200_000, 0, 0]);
    }

    /// Steps an allocator in virtual time: every 400 ms (the control
    /// tick), the estimate given by `estimate(t)` (t in ms), applying its
    /// caps; returns the forwarded layer of a HIGH-wanting track per tick.
    fn run(secs: u64, estimate: impl Fn(u64) -> u64) -> Vec<(u64, Option<u8>)> {
        let t0 = Instant::now();
        let mut a = Allocator::default();
        let mut cap = Some(2);
        let mut out = Vec::new();
        for tick in 0..(secs * 1000 / 400) {
            let ms = tick * 400;
            let d = [demand(2, cap)];
            cap = a.update(t0 + Duration::from_millis(ms), estimate(ms), &d)[0];
            out.push((ms, demand(2, cap).forwarded(cap)));
        }
        out
    }

    fn first_at(trace: &[(u64, Option<u8>)], from_ms: u64, layer: u8) -> Option<u64> {
        trace
            .iter()
            .find(|&&(t, l)| t >= from_ms && l == Some(layer))
            .map(|&(t, _)| t)
    }

    #[test]
    fn a_limit_drops_the_layer_after_confirmation_and_lifting_it_restores_high() {
        // 5 Mbps, then 700 kbps from 4 s to 14 s, then 5 Mbps again.
        let trace = run(24, |ms| {
            if (4000..14_000).contains(&ms) {
                700_000
            } else {
                5_000_000
            }
        });
        assert_eq!(first_at(&trace, 0, 2), Some(0));
        // Down to MEDIUM (500k fits 700k) within DOWNGRADE_CONFIRM + a tick.
        let down = first_at(&trace, 4000, 1).unwrap_or(u64::MAX);
        let confirm = DOWNGRADE_CONFIRM.as_millis() as u64;
        assert!(
            (4000 + confirm..=4000 + confirm + 400).contains(&down),
            "{trace:?}"
        );
        // Never HIGH while limited, and back on HIGH once lifted, within
        // UPGRADE_INTERVAL of the downgrade or at the next tick.
        assert!(trace
            .iter()
            .all(|&(t, l)| !(down..14_000).contains(&t) || l == Some(1)));
        let up = first_at(&trace, 14_000, 2).unwrap_or(u64::MAX);
        assert!(up <= 14_000 + 400, "{trace:?}");
    }

    #[test]
    fn a_short_dip_does_not_drop_the_layer() {
        // One tick (400 ms) at 1 Mbps.
        let trace = run(6, |ms| if ms == 2000 { 1_000_000 } else { 5_000_000 });
        assert!(trace.iter().all(|&(_, l)| l == Some(2)), "{trace:?}");
    }

    #[test]
    fn an_estimate_around_the_limit_changes_layers_at_most_every_interval() {
        // 2 s just short of HIGH, 2 s with room for it, over and over:
        // each upgrade comes UPGRADE_INTERVAL or more after the change
        // before it.
        let trace = run(30, |ms| {
            if (ms / 2000) % 2 == 0 {
                1_400_000
            } else {
                1_900_000
            }
        });
        let changes: Vec<(u64, Option<u8>)> = trace
            .windows(2)
            .filter(|w| w[0].1 != w[1].1)
            .map(|w| w[1])
            .collect();
        assert!(!changes.is_empty(), "{trace:?}");
        for w in changes.windows(2) {
            if w[1].1 > w[0].1 {
                assert!(
                    w[1].0 - w[0].0 >= UPGRADE_INTERVAL.as_millis() as u64,
                    "{changes:?}"
                );
            }
        }
    }

    #[test]
    fn a_dip_shorter_than_the_confirmation_is_ignored() {
        // Two ticks in three just short of HIGH: never for 1.2 s in a row.
        let trace = run(10, |ms| {
            if (ms / 400) % 3 != 2 {
                1_400_000
            } else {
                1_900_000
            }
        });
        assert!(trace.iter().all(|&(_, l)| l == Some(2)), "{trace:?}");
    }

    #[test]
    fn upgrades_are_spaced() {
        // Limited to LOW for 2 s, then ample: after the downgrade at
        // about 1.2 s the upgrade waits for UPGRADE_INTERVAL.
        let trace = run(8, |ms| if ms < 2000 { 300_000 } else { 5_000_000 });
        let down = first_at(&trace, 0, 0).unwrap_or(u64::MAX);
        let up = first_at(&trace, down, 2).unwrap_or(u64::MAX);
        assert!(
            up >= down + UPGRADE_INTERVAL.as_millis() as u64,
            "{trace:?}"
        );
        assert!(
            up <= down + UPGRADE_INTERVAL.as_millis() as u64 + 400,
            "{trace:?}"
        );
    }

    #[test]
    fn a_higher_wish_is_served_at_once_when_the_spare_cap_allows() {
        let t0 = Instant::now();
        let mut a = Allocator::default();
        // Wants LOW; the budget also carries HIGH: the cap stays at HIGH.
        let caps = a.update(t0, 5_000_000, &[demand(0, Some(2))]);
        assert_eq!(caps, [Some(2)]);
        // Wants HIGH a moment later: no change of cap, no waiting.
        let caps = a.update(
            t0 + Duration::from_millis(400),
            5_000_000,
            &[demand(2, caps[0])],
        );
        assert_eq!(caps, [Some(2)]);
    }

    #[test]
    fn a_deficit_dips_the_desired_rate_every_probe_interval() {
        let t0 = Instant::now();
        let mut a = Allocator::default();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        // Limited to LOW (300 kbps) while wanting HIGH.
        let caps = a.update(at(0), 300_000, &[demand(2, Some(0))]);
        assert_eq!(caps, [Some(0)]);
        let dips: Vec<u64> = (0..30)
            .map(|tick| tick * 400)
            .filter(|&ms| a.bwe_desired(at(ms), 2_000_000, 300_000) < 2_000_000)
            .collect();
        assert_eq!(dips, [4000, 8000]);
        assert_eq!(a.bwe_desired(at(12_000), 2_000_000, 300_000), 240_000);
        // No deficit: the desired rate as it is.
        let caps = a.update(at(12_400), 5_000_000, &[demand(2, Some(2))]);
        assert_eq!(caps, [Some(2)]);
        assert_eq!(a.bwe_desired(at(16_400), 2_000_000, 300_000), 2_000_000);
        assert_eq!(a.bwe_desired(at(20_400), 2_000_000, 300_000), 2_000_000);
    }

    #[test]
    fn a_shortfall_probes_at_once_before_the_downgrade() {
        let t0 = Instant::now();
        let mut a = Allocator::default();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        // HIGH forwarded; the estimate falls to 1 Mbps: a dip right away,
        // back up on the next tick, the downgrade only after the confirmation.
        let caps = a.update(at(0), 1_000_000, &[demand(2, Some(2))]);
        assert_eq!(caps, [Some(2)]);
        assert_eq!(a.bwe_desired(at(0), 2_000_000, 1_000_000), 800_000);
        let caps = a.update(at(400), 1_000_000, &[demand(2, caps[0])]);
        assert_eq!(caps, [Some(2)]);
        assert_eq!(a.bwe_desired(at(400), 2_000_000, 1_000_000), 2_000_000);
        // The probe found room: no downgrade, no more dips.
        let caps = a.update(at(800), 3_000_000, &[demand(2, caps[0])]);
        assert_eq!(caps, [Some(2)]);
        assert_eq!(a.bwe_desired(at(800), 2_000_000, 3_000_000), 2_000_000);
        assert_eq!(a.bwe_desired(at(5_000), 2_000_000, 1_500_000), 2_000_000);
    }

    #[test]
    fn a_failed_upgrade_doubles_the_wait_for_the_next() {
        // Limited to MEDIUM; every estimate spike to 5 Mbps (as from a
        // probe that overshoots) lasts until HIGH is tried and undone.
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        let mut a = Allocator::default();
        let mut cap = Some(2);
        let mut ups = Vec::new();
        let mut fwd = Some(2);
        for tick in 0..150 {
            let ms = tick * 400;
            // After each upgrade, 1 s later, the link shows it was wrong.
            let wrong = ups.last().is_some_and(|&u| ms >= u + 1000 && ms < u + 4000);
            let estimate = if ms < 2000 || wrong {
                700_000
            } else {
                5_000_000
            };
            cap = a.update(at(ms), estimate, &[demand(2, cap)])[0];
            let now_fwd = demand(2, cap).forwarded(cap);
            if now_fwd > fwd {
                ups.push(ms);
            }
            fwd = now_fwd;
        }
        let gaps: Vec<u64> = ups.windows(2).map(|w| w[1] - w[0]).collect();
        assert!(gaps.len() >= 3, "{ups:?}");
        // Each gap grows until the maximum.
        for w in gaps.windows(2) {
            assert!(
                w[1] > w[0] || w[1] >= MAX_UPGRADE_INTERVAL.as_millis() as u64,
                "{gaps:?}"
            );
        }
    }

    #[test]
    fn an_upgrade_that_holds_resets_the_wait() {
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        let mut a = Allocator::default();
        // Down at 1.2 s, up at 4.4 s, undone at 6.8 s: the next
        // upgrade waits 6 s.
        let mut cap = Some(2);
        let mut trace = Vec::new();
        for tick in 0..100 {
            let ms = tick * 400;
            let estimate = if ms < 2000 || (5600..7200).contains(&ms) {
                700_000
            } else {
                5_000_000
            };
            cap = a.update(at(ms), estimate, &[demand(2, cap)])[0];
            trace.push((ms, demand(2, cap).forwarded(cap)));
        }
        let ups: Vec<u64> = trace
            .windows(2)
            .filter(|w| w[1].1 > w[0].1)
            .map(|w| w[1].0)
            .collect();
        let downs: Vec<u64> = trace
            .windows(2)
            .filter(|w| w[1].1 < w[0].1)
            .map(|w| w[1].0)
            .collect();
        assert_eq!(ups.len(), 2, "{trace:?}");
        assert!(ups[1] - downs[1] >= 6000, "{trace:?}");
        // That upgrade held for UPGRADE_TRIAL: the wait is back to 3 s.
        assert_eq!(a.up_interval, None);
    }
}
