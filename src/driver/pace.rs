//! How the drivers' own copies and reads move: in chunks aligned to [`ALIGN`], held to a rate
//! limit by sleeping between chunks (never by odd chunk sizes), reporting each chunk.
//!
//! Why aligned: a chunk that ends inside a filesystem block leaves that block allocated but
//! half written when the process dies after it; a copy that trusted "allocated" to mean
//! "copied" then lost the rest of the block (issue 22: zeros at every multiple of 2,500,000
//! bytes under `volume_copy_bps_limit = 20000000`). The file driver's flatten no longer trusts
//! allocation at all (see `copylog.rs`), and aligned chunks keep every chunk boundary a block
//! boundary as well, so a checkpoint never falls inside a block.

use std::time::{Duration, Instant};

use super::Progress;

/// Chunk boundaries are multiples of this (64 KiB: every filesystem block size ember meets,
/// and a divisor of RBD's 4 MiB objects).
pub const ALIGN: u64 = 64 << 10;

/// The largest chunk: progress, cancellation and the rate limit act at least this often.
pub const MAX_CHUNK: u64 = 8 << 20;

/// The chunk size for a rate limit: about 1/8 s of transfer under `bps_limit` (so a cancel is
/// never kept waiting behind a long throttled chunk), rounded down to [`ALIGN`].
pub fn chunk_for(bps_limit: u64) -> u64 {
    let raw = match bps_limit {
        0 => MAX_CHUNK,
        bps => (bps / 8).clamp(ALIGN, MAX_CHUNK),
    };
    (raw / ALIGN).max(1) * ALIGN
}

/// The end of the chunk that starts at `pos`, within `[pos, end)`: the next multiple of
/// `chunk` after `pos`, so every chunk boundary but the range's own ends is aligned.
pub fn chunk_end(pos: u64, end: u64, chunk: u64) -> u64 {
    ((pos / chunk + 1) * chunk).min(end)
}

/// Holds a transfer to `bps_limit` bytes per second by sleeping until each chunk is due, and
/// reports progress. One per copy or read.
pub struct Pacer<'a> {
    bps_limit: u64,
    started: Instant,
    /// Bytes moved by this pacer (the rate is measured on these, not on the progress figure,
    /// which may start above zero when a copy resumes).
    moved: u64,
    /// The progress figure: bytes done of `total`, including what an earlier run did.
    pub done: u64,
    pub total: u64,
    progress: &'a dyn Progress,
}

impl<'a> Pacer<'a> {
    pub fn new(bps_limit: u64, done: u64, total: u64, progress: &'a dyn Progress) -> Self {
        Pacer {
            bps_limit,
            started: Instant::now(),
            moved: 0,
            done,
            total,
            progress,
        }
    }

    /// Counts `n` bytes done without moving them (skipped: already there, or holes on both
    /// sides of a comparison). False: stop (cancelled).
    pub fn skip(&mut self, n: u64) -> bool {
        self.done += n;
        self.progress.update(self.done, self.total)
    }

    /// Counts `n` bytes moved, sleeps until they are due under the limit, reports progress.
    /// False: stop (cancelled).
    pub fn moved(&mut self, n: u64) -> bool {
        self.moved += n;
        self.done += n;
        if self.bps_limit > 0 {
            let due = Duration::from_secs_f64(self.moved as f64 / self.bps_limit as f64);
            if let Some(wait) = due.checked_sub(self.started.elapsed()) {
                std::thread::sleep(wait);
            }
        }
        self.progress.update(self.done, self.total)
    }

    /// Reports the current figure; false when the caller must stop.
    pub fn report(&self) -> bool {
        self.progress.update(self.done, self.total)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_are_aligned_whatever_the_limit() {
        for bps in [0, 1, 4095, 20_000_000, 33_554_432, 123_456_789, u64::MAX] {
            let c = chunk_for(bps);
            assert_eq!(c % ALIGN, 0, "{bps}: {c}");
            assert!((ALIGN..=MAX_CHUNK).contains(&c), "{bps}: {c}");
        }
        // Issue 22's case: 20 MB/s gave 2,500,000-byte chunks.
        assert_eq!(chunk_for(20_000_000), 38 * ALIGN);
        assert_eq!(chunk_end(0, 10 << 20, ALIGN), ALIGN);
        assert_eq!(chunk_end(1000, 10 << 20, ALIGN), ALIGN);
        assert_eq!(chunk_end(ALIGN, ALIGN + 5, ALIGN), ALIGN + 5);
    }
}
