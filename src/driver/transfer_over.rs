//! A copy onto a target that already holds an earlier state of the source: a migration that
//! carries snapshots writes the oldest snapshot into an empty image (`transfer::copy_verified`),
//! snapshots the target, then brings the target to each later snapshot and at last to the
//! volume itself. Each step writes only what differs, zeros included (what the source no
//! longer holds must go), and is then read back from both sides and compared byte for byte.

use super::pace::{self, Pacer};
use super::transfer::{Copied, Phase, Writable, chunks};
use super::verify::{Readable, compare, either_holds};
use super::{DriverError, Progress};

/// Makes `dst` equal to `src` over `src`'s size, where `dst` (at least that large) may hold
/// data already, then reads both back and compares them ([`compare`], as `volume verify`
/// does); at most `bps_limit` bytes a second in each pass. The source is read twice: nothing
/// is trusted of what an earlier step left on the target. Errors name the first byte that
/// differs.
pub fn copy_over_verified(
    backend: &str,
    src: &dyn Readable,
    dst: &dyn Writable,
    bps_limit: u64,
    progress: &dyn Progress,
    fail: impl Fn(String) -> DriverError,
) -> Result<Copied, DriverError> {
    let len = src.size();
    if dst.size() < len {
        return Err(fail(format!(
            "the target holds {} bytes, the source {len}",
            dst.size()
        )));
    }
    let cancelled = || DriverError::Cancelled {
        backend: backend.to_string(),
        op: "migrate",
    };
    let (copying, checking) = (
        Phase {
            inner: progress,
            index: 0,
        },
        Phase {
            inner: progress,
            index: 1,
        },
    );
    let ranges = either_holds(src, dst, len).map_err(&fail)?;
    let mut out = Copied::default();
    out.size_bytes = len;
    let mut pacer = Pacer::new(bps_limit, 0, len, &copying);
    let chunk = pace::chunk_for(bps_limit);
    let (mut a, mut b) = (vec![0u8; chunk as usize], vec![0u8; chunk as usize]);
    let mut pos = 0;
    for &(s, e) in &ranges {
        if !pacer.skip(s - pos) {
            return Err(cancelled());
        }
        for (at, end) in chunks(s, e, chunk) {
            let n = (end - at) as usize;
            src.read_at(&mut a[..n], at).map_err(&fail)?;
            dst.read_at(&mut b[..n], at).map_err(&fail)?;
            for (s, e) in differing(&a[..n], &b[..n], at) {
                dst.write_at(&a[s..e], at + s as u64).map_err(&fail)?;
                out.written_bytes += (e - s) as u64;
            }
            out.read_bytes += n as u64;
            if !pacer.moved(n as u64) {
                return Err(cancelled());
            }
        }
        pos = e;
    }
    dst.flush().map_err(&fail)?;
    if !pacer.skip(len - pos) {
        return Err(cancelled());
    }
    let report = compare(src, dst, bps_limit, &checking)
        .map_err(&fail)?
        .ok_or_else(cancelled)?;
    if let Some(at) = report.first_difference {
        return Err(fail(format!(
            "the copy read back differs from its source at byte {at} (0x{at:x})"
        )));
    }
    Ok(out)
}

/// The unit a copy over an earlier state writes: what did not change in a 4 KiB block is
/// not written, so a clone made over its parent's snapshot on the target (a file image's own
/// blocks) holds no more of its own than it did on the source.
const BLOCK: usize = 4096;

/// The runs of `BLOCK`s in which `a` and `b` (read at offset `at`) differ, as ranges of
/// them. Blocks are aligned to the image, not to the buffer: a run never spills into a
/// storage block it did not change (a copy range may start anywhere, as at the end of a
/// clone's parent).
fn differing(a: &[u8], b: &[u8], at: u64) -> Vec<(usize, usize)> {
    let mut runs: Vec<(usize, usize)> = vec![];
    if a == b {
        return runs;
    }
    let mut s = 0;
    while s < a.len() {
        let e = (s + BLOCK - ((at as usize + s) % BLOCK)).min(a.len());
        if a[s..e] != b[s..e] {
            match runs.last_mut() {
                Some(last) if last.1 == s => last.1 = e,
                _ => runs.push((s, e)),
            }
        }
        s = e;
    }
    runs
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::driver::NoProgress;
    use crate::driver::mem::Mem;
    use rand::Rng;

    /// Runs end at the image's block boundaries, wherever the buffer starts.
    #[test]
    fn runs_follow_the_image_blocks() {
        let a = vec![0u8; 3 * BLOCK];
        let mut b = a.clone();
        // The buffer starts 96 bytes before a block boundary.
        let at = (BLOCK - 96) as u64;
        b[50] = 1;
        assert_eq!(differing(&a, &b, at), vec![(0, 96)]);
        b[96] = 1;
        assert_eq!(differing(&a, &b, at), vec![(0, 96 + BLOCK)]);
        b[3 * BLOCK - 1] = 1;
        assert_eq!(
            differing(&a, &b, at),
            vec![(0, 96 + BLOCK), (96 + 2 * BLOCK, 3 * BLOCK)]
        );
        assert!(differing(&a, &a, at).is_empty());
    }

    /// Each state of a seeded chain of writes (zeros among them) copied over the previous
    /// one: the target equals it byte for byte, and what did not change is not written.
    #[test]
    fn each_state_over_the_last_equals_it() {
        let (seed, mut rng) = crate::driver::seeded_rng();
        let len = rng.random_range(1..(6 << 20));
        let mut state = vec![0u8; len];
        let dst = Mem::new(vec![0u8; len]);
        let fail = |e: String| DriverError::Invalid {
            backend: "t".into(),
            op: "migrate",
            message: e,
        };
        for step in 0..6 {
            // The 4 KiB blocks this step writes: at most these are written over the last.
            let mut touched = std::collections::BTreeSet::new();
            for _ in 0..rng.random_range(0..6) {
                let at = rng.random_range(0..len);
                let n = rng.random_range(1..(700 << 10)).min(len - at);
                touched.extend(at / BLOCK..=(at + n - 1) / BLOCK);
                let fill = if rng.random_bool(0.3) {
                    0
                } else {
                    rng.random()
                };
                state[at..at + n].fill(fill);
            }
            let src = Mem::new(state.clone());
            let bps = [0, 1 << 30][step % 2];
            let c = copy_over_verified("t", &src, &dst, bps, &NoProgress, fail)
                .unwrap_or_else(|e| panic!("seed {seed} step {step}: {e}"));
            let mut got = vec![0u8; len];
            dst.read_at(&mut got, 0).expect("read");
            assert!(got == state, "seed {seed} step {step}: the target differs");
            assert!(c.written_bytes <= c.read_bytes, "seed {seed} step {step}");
            assert!(
                c.written_bytes <= (touched.len() * BLOCK) as u64,
                "seed {seed} step {step}: {} bytes written for {} blocks changed",
                c.written_bytes,
                touched.len()
            );
        }
        // Unchanged: nothing written.
        let src = Mem::new(state.clone());
        let c = copy_over_verified("t", &src, &dst, 0, &NoProgress, fail).expect("copy");
        assert_eq!(c.written_bytes, 0, "seed {seed}");
    }
}
