//! Software prefetch for the fan-out loop.
//!
//! An egress worker writes one packet for each of a track's subscribers in
//! turn. Each subscriber's state (its session cell, subscription entry,
//! connection, send buffer) was last touched 20 ms earlier and has left the
//! cache by then, so a subscriber's write is a chain of dependent cache
//! misses (cell, then the subscription behind it, then the connection).
//! Asking for the next subscribers' lines while this one is written lets
//! those misses overlap with work instead of stalling it.
//!
//! A prefetch is only a hint: it never faults and has no effect a program
//! can observe, so any address, even a stale or dangling one, is allowed.

/// Asks for the cache line holding `addr` (an address as an integer; 0 is
/// skipped) to be loaded into every cache level (x86 `PREFETCHT0`). A no-op
/// on other architectures.
#[inline(always)]
pub fn line(addr: usize) {
    if addr == 0 {
        return;
    }
    #[cfg(target_arch = "x86_64")]
    #[allow(unsafe_code)]
    // SAFETY: PREFETCHT0 reads nothing into the program and cannot fault,
    // whatever the address; SSE, which it belongs to, is part of the
    // x86_64 baseline.
    unsafe {
        std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(addr as *const i8);
    }
}

/// Prefetches the `lines` cache lines (64 bytes each) from `addr` on.
#[inline(always)]
pub fn lines(addr: usize, lines: usize) {
    for i in 0..lines {
        line(addr.wrapping_add(i * 64));
    }
}

/// The address of `value`, for [`line`].
#[inline(always)]
pub fn addr_of<T: ?Sized>(value: &T) -> usize {
    value as *const T as *const u8 as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn any_address_is_a_harmless_hint() {
        let v = vec![7u8; 256];
        lines(addr_of(&v[..]), 4);
        line(0);
        line(usize::MAX);
        line(0xdead_beef);
        let gone = addr_of(&*Box::new(5u64)); // dropped at once: dangling
        line(gone);
        assert_eq!(v[255], 7);
    }
}
