//! The kernel's coarse monotonic clock, for the hot paths that need the time on every request
//! but not to the microsecond: the breaker's default clock and auth's warm-token check.
//!
//! It is `CLOCK_MONOTONIC_COARSE` on Linux (a read of the vDSO page, about a fifth of the cost
//! of `Instant::now()` on a VM), read through `coarsetime`, and moves by kernel ticks (1-10 ms).
//! Readings are 32.32 fixed-point seconds from an unspecified origin.
//!
//! ```
//! use std::time::Duration;
//!
//! let a = flext_core::coarse::now();
//! let later = a + flext_core::coarse::fixed(Duration::from_millis(1500));
//! assert_eq!(flext_core::coarse::to_nanos(later - a), 1_500_000_000);
//! # let _ = flext_core::coarse::IS_MONOTONIC;
//! ```

use std::time::Duration;

/// Whether the coarse clock is monotonic on this platform: `CLOCK_MONOTONIC_COARSE` (Linux,
/// Android), `CLOCK_MONOTONIC_FAST` (FreeBSD, DragonFly), the approximate monotonic clock
/// (macOS), `GetTickCount64` (Windows). Elsewhere `coarsetime` reads the wall clock, which can
/// step back, and callers must use a precise monotonic clock instead.
pub const IS_MONOTONIC: bool = cfg!(any(
    target_os = "linux",
    target_os = "android",
    target_os = "macos",
    target_os = "freebsd",
    target_os = "dragonfly",
    windows
));

/// The coarse clock now, in 32.32 fixed-point seconds. Monotonic only where
/// [`IS_MONOTONIC`] says so.
#[inline]
pub fn now() -> u64 {
    coarsetime::Instant::now_without_cache_update().as_u64()
}

/// `d` in 32.32 fixed-point seconds, capped at 2^31 s (68 years) so that sums cannot wrap.
#[inline]
pub fn fixed(d: Duration) -> u64 {
    let d = d.min(Duration::from_secs(1 << 31));
    coarsetime::Duration::from(d).as_u64()
}

/// 32.32 fixed-point seconds in nanoseconds (saturating).
#[inline]
pub fn to_nanos(fixed: u64) -> u64 {
    (fixed >> 32)
        .saturating_mul(1_000_000_000)
        .saturating_add(((fixed & 0xFFFF_FFFF) * 1_000_000_000) >> 32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixed_point_round_trips_to_the_nanosecond_scale() {
        for ms in [0u64, 1, 999, 1_000, 86_400_000] {
            let n = to_nanos(fixed(Duration::from_millis(ms)));
            let want = ms * 1_000_000;
            assert!(n.abs_diff(want) <= 1, "{ms} ms -> {n} ns");
        }
        // The largest reading converts without overflow.
        assert!(to_nanos(u64::MAX) >= (u64::MAX >> 32) * 1_000_000_000);
    }

    #[test]
    fn it_moves_forward() {
        let a = now();
        std::thread::sleep(Duration::from_millis(25));
        assert!(!IS_MONOTONIC || now() > a);
    }
}
