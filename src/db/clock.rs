//! One clock for every age: the database's.
//!
//! Hosts' clocks drift; a host whose clock runs a minute fast would otherwise see every peer's
//! heartbeat as a minute old (and call it down), and stamp its own rows a minute into the
//! future. So each process measures how far the database's clock is from its own (at connect,
//! and again with every heartbeat) and [`now_ms`] reads the local clock corrected by that
//! offset. Reading it costs nothing, so every timestamp ember writes and every age it shows
//! comes from the same clock without a round trip. The measured skew is recorded in the
//! service's row, where `ember doctor` reports a host that drifts.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicI64, Ordering};

/// The database's clock minus this host's, in milliseconds (0 until measured).
static OFFSET_MS: AtomicI64 = AtomicI64::new(0);

/// Fault injection for tests: `EMBER_FAULT_CLOCK_SKEW_MS` shifts this process's idea of its
/// own clock, as a host whose clock drifted would have.
fn injected_skew_ms() -> i64 {
    static SKEW: OnceLock<i64> = OnceLock::new();
    *SKEW.get_or_init(|| {
        std::env::var("EMBER_FAULT_CLOCK_SKEW_MS")
            .ok()
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0)
    })
}

/// This host's own clock, in Unix milliseconds.
pub fn local_ms() -> i64 {
    chrono::Utc::now().timestamp_millis() + injected_skew_ms()
}

/// The database's clock as this process best knows it, in Unix milliseconds: what every
/// timestamp written and every age computed uses.
pub fn now_ms() -> i64 {
    local_ms() + OFFSET_MS.load(Ordering::Relaxed)
}

/// How far this host's clock is ahead of the database's (negative: behind), in milliseconds.
pub fn skew_ms() -> i64 {
    -OFFSET_MS.load(Ordering::Relaxed)
}

/// Records one measurement: the database said `db_ms` between the local readings `before` and
/// `after` (its answer is taken as made halfway).
pub fn observe(before: i64, db_ms: i64, after: i64) {
    let mid = before + (after - before) / 2;
    OFFSET_MS.store(db_ms - mid, Ordering::Relaxed);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn corrected_clock_follows_the_database() {
        let before = local_ms();
        observe(before, before + 60_000, before + 10);
        let now = now_ms();
        assert!((now - (before + 60_000)).abs() < 1_000, "{now} vs {before}");
        assert!((skew_ms() + 59_995).abs() < 10, "{}", skew_ms());
        observe(0, 0, 0);
    }
}
