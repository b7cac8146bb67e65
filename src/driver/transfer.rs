//! A volume's data moved from one backend's image to another's (a host-assisted migration):
//! read as clients see it (through any parent, so a layered clone arrives flat), written only
//! where the source holds data and the chunk is not all zeros (holes stay holes, as with
//! `cp --sparse=always`), paced like every copy, then read back on both sides and compared.
//!
//! The target is an image made empty for the copy. A copy interrupted by a crash is started
//! over on an empty image (the migration removes the partial one first), so no checkpoint has
//! to be trusted across a crash.

use super::pace::{self, Pacer};
use super::verify::{Readable, VerifyReport, compare};
use super::{DriverError, Progress};

/// An image a copy writes into.
pub trait Writable: Readable {
    fn write_at(&self, buf: &[u8], off: u64) -> Result<(), String>;
    /// Makes what was written durable (`fdatasync`, `rbd_flush`) before the copy counts it.
    fn flush(&self) -> Result<(), String>;
}

/// What a copy moved.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Copied {
    /// The volume's size: every byte of it is accounted for.
    pub size_bytes: u64,
    /// Bytes read where the source holds data.
    pub read_bytes: u64,
    /// Bytes written (the rest of what was read was all zeros, left as holes).
    pub written_bytes: u64,
}

/// Progress of one phase of a two-phase call (copy, then compare): each reports over its own
/// range of one bar, so the operator sees one figure from 0 to 100 %.
pub struct Phase<'a> {
    pub inner: &'a dyn Progress,
    /// Which phase this is (0 or 1) of two.
    pub index: u64,
}

impl Progress for Phase<'_> {
    fn update(&self, done: u64, total: u64) -> bool {
        self.inner
            .update(self.index * total + done, total.saturating_mul(2))
    }

    fn storage_client(&self, address: &str) -> bool {
        self.inner.storage_client(address)
    }
}

/// Copies `src` into `dst` (an empty image at least as large), at most `bps_limit` bytes a
/// second (0: no limit), and flushes `dst`. None: cancelled.
pub fn copy(
    src: &dyn Readable,
    dst: &dyn Writable,
    bps_limit: u64,
    progress: &dyn Progress,
) -> Result<Option<Copied>, String> {
    let len = src.size();
    if dst.size() < len {
        return Err(format!(
            "the target holds {} bytes, the source {len}",
            dst.size()
        ));
    }
    let mut out = Copied {
        size_bytes: len,
        ..Default::default()
    };
    let mut pacer = Pacer::new(bps_limit, 0, len, progress);
    let chunk = pace::chunk_for(bps_limit);
    let mut buf = vec![0u8; chunk as usize];
    let mut pos = 0;
    for (s, e) in src.extents()? {
        let (s, e) = (s.min(len), e.min(len));
        if s >= e {
            continue;
        }
        if !pacer.skip(s.saturating_sub(pos)) {
            return Ok(None);
        }
        let mut at = s.max(pos);
        while at < e {
            let end = pace::chunk_end(at, e, chunk);
            let n = (end - at) as usize;
            src.read_at(&mut buf[..n], at)?;
            out.read_bytes += n as u64;
            if buf[..n].iter().any(|b| *b != 0) {
                dst.write_at(&buf[..n], at)?;
                out.written_bytes += n as u64;
            }
            if !pacer.moved(n as u64) {
                return Ok(None);
            }
            at = end;
        }
        pos = pos.max(e);
    }
    dst.flush()?;
    if !pacer.skip(len - pos.min(len)) {
        return Ok(None);
    }
    Ok(Some(out))
}

/// A copy followed by a comparison of both sides over the whole size: the copy is only
/// trusted once its target reads back equal. `fail` names a failure for the backend.
pub fn copy_verified(
    backend: &str,
    src: &dyn Readable,
    dst: &dyn Writable,
    bps_limit: u64,
    progress: &dyn Progress,
    fail: impl Fn(String) -> DriverError,
) -> Result<(Copied, VerifyReport), DriverError> {
    let cancelled = || DriverError::Cancelled {
        backend: backend.to_string(),
        op: "migrate",
    };
    let copied = copy(
        src,
        dst,
        bps_limit,
        &Phase {
            inner: progress,
            index: 0,
        },
    )
    .map_err(&fail)?
    .ok_or_else(cancelled)?;
    let report = compare(
        src,
        dst,
        bps_limit,
        &Phase {
            inner: progress,
            index: 1,
        },
    )
    .map_err(&fail)?
    .ok_or_else(cancelled)?;
    if !report.identical() {
        return Err(fail(report.summary("the copy", "its source")));
    }
    Ok((copied, report))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::driver::NoProgress;
    use std::cell::RefCell;

    /// An image in memory whose extents are its non-zero 64 KiB blocks, like a sparse file.
    struct Mem(RefCell<Vec<u8>>, RefCell<u64>);

    impl Readable for Mem {
        fn size(&self) -> u64 {
            self.0.borrow().len() as u64
        }
        fn extents(&self) -> Result<Vec<(u64, u64)>, String> {
            let d = self.0.borrow();
            let blk = 64 << 10;
            Ok((0..d.len())
                .step_by(blk)
                .filter(|&o| d[o..(o + blk).min(d.len())].iter().any(|b| *b != 0))
                .map(|o| (o as u64, (o + blk).min(d.len()) as u64))
                .collect())
        }
        fn read_at(&self, buf: &mut [u8], off: u64) -> Result<(), String> {
            let d = self.0.borrow();
            for (i, b) in buf.iter_mut().enumerate() {
                *b = d.get(off as usize + i).copied().unwrap_or(0);
            }
            Ok(())
        }
    }

    impl Writable for Mem {
        fn write_at(&self, buf: &[u8], off: u64) -> Result<(), String> {
            *self.1.borrow_mut() += buf.len() as u64;
            let mut d = self.0.borrow_mut();
            d[off as usize..off as usize + buf.len()].copy_from_slice(buf);
            Ok(())
        }
        fn flush(&self) -> Result<(), String> {
            Ok(())
        }
    }

    #[test]
    fn a_copy_equals_its_source_and_leaves_holes_alone() {
        let seed: u64 = std::env::var("EMBER_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(rand::random);
        eprintln!("seed {seed} (EMBER_SEED={seed} replays it)");
        let mut rng = <rand::rngs::StdRng as rand::SeedableRng>::seed_from_u64(seed);
        use rand::Rng;
        for round in 0..20 {
            let len = rng.random_range(1..(3 << 20));
            let mut src = vec![0u8; len];
            for _ in 0..rng.random_range(0..12) {
                let at = rng.random_range(0..len);
                let n = rng.random_range(1..(300 << 10)).min(len - at);
                let fill = rng.random_range(0..=255u8);
                src[at..at + n].fill(fill);
            }
            let src = Mem(RefCell::new(src), RefCell::new(0));
            let dst = Mem(RefCell::new(vec![0u8; len]), RefCell::new(0));
            let bps = [0, 1 << 30][round % 2];
            let (copied, report) = copy_verified("t", &src, &dst, bps, &NoProgress, |e| {
                DriverError::Invalid {
                    backend: "t".into(),
                    op: "migrate",
                    message: e,
                }
            })
            .unwrap_or_else(|e| panic!("seed {seed} round {round}: {e}"));
            assert_eq!(
                *src.0.borrow(),
                *dst.0.borrow(),
                "seed {seed} round {round}"
            );
            assert!(report.identical());
            // Only non-zero chunks were written.
            assert_eq!(*dst.1.borrow(), copied.written_bytes);
            let nonzero = src.0.borrow().iter().filter(|b| **b != 0).count() as u64;
            // Every non-zero byte was in a written chunk; all-zero chunks were not written.
            assert!(copied.written_bytes >= nonzero, "seed {seed} round {round}");
            assert!(copied.written_bytes <= copied.read_bytes);
        }
    }

    #[test]
    fn a_cancel_stops_the_copy() {
        struct Stop;
        impl Progress for Stop {
            fn update(&self, _: u64, _: u64) -> bool {
                false
            }
        }
        let src = Mem(RefCell::new(vec![7u8; 1 << 20]), RefCell::new(0));
        let dst = Mem(RefCell::new(vec![0u8; 1 << 20]), RefCell::new(0));
        assert_eq!(copy(&src, &dst, 0, &Stop), Ok(None));
    }
}
