//! Shared timer grids: deadlines that can come a little late are rounded
//! up onto a grid common to the whole process, so that many sessions'
//! periodic work runs in one wake instead of one wake each.

use std::time::{Duration, Instant};

/// `at` rounded up to the next multiple of `grid` after a process-wide
/// epoch (the first call); `at` itself if it is on the grid or before the
/// epoch, or if `grid` is zero.
pub fn on_grid(at: Instant, grid: Duration) -> Instant {
    static EPOCH: std::sync::LazyLock<Instant> = std::sync::LazyLock::new(Instant::now);
    let Some(since) = at.checked_duration_since(*EPOCH) else {
        return at;
    };
    let grid_ns = grid.as_nanos();
    if grid_ns == 0 {
        return at;
    }
    let rest = since.as_nanos() % grid_ns;
    if rest == 0 {
        return at;
    }
    // Below one grid step: fits in u64 nanoseconds.
    at + Duration::from_nanos((grid_ns - rest) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn on_grid_rounds_up_to_one_step_and_groups_nearby_instants() {
        let grid = Duration::from_millis(20);
        let base = on_grid(std::time::Instant::now() + grid, grid);
        assert_eq!(on_grid(base, grid), base, "on the grid already");
        for offset_us in [1, 7_000, 19_999] {
            let at = base + Duration::from_micros(offset_us);
            assert_eq!(on_grid(at, grid), base + grid, "{offset_us} us");
        }
        assert_eq!(on_grid(base + grid, grid), base + grid);
        assert_eq!(
            on_grid(base + Duration::from_nanos(1), Duration::ZERO),
            base + Duration::from_nanos(1)
        );
        // Before the epoch (the first call, within this test run): unchanged.
        if let Some(early) = base.checked_sub(Duration::from_secs(3600)) {
            assert_eq!(on_grid(early, grid), early);
        }
    }
}
