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
            if a[..n] != b[..n] {
                dst.write_at(&a[..n], at).map_err(&fail)?;
                out.written_bytes += n as u64;
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::driver::NoProgress;
    use crate::driver::mem::Mem;
    use rand::Rng;

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
            for _ in 0..rng.random_range(0..6) {
                let at = rng.random_range(0..len);
                let n = rng.random_range(1..(700 << 10)).min(len - at);
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
        }
        // Unchanged: nothing written.
        let src = Mem::new(state.clone());
        let c = copy_over_verified("t", &src, &dst, 0, &NoProgress, fail).expect("copy");
        assert_eq!(c.written_bytes, 0, "seed {seed}");
    }
}
