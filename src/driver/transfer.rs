//! A volume's data moved from one backend's image to another's (a host-assisted migration):
//! read as clients see it (through any parent, so a layered clone arrives flat), written only
//! where the source holds data and the chunk is not all zeros (holes stay holes, as with
//! `cp --sparse=always`), paced like every copy, then the target read back and checked: every
//! 64 MiB region against the XXH3-128 of what was read from the source there, and wherever the
//! source held nothing, zeros. The source is read once, so copy and check together read no
//! more than `cp` + `cmp` do.
//!
//! The target is an image made empty for the copy. A copy interrupted by a crash is started
//! over on an empty image (the migration removes the partial one first), so no checkpoint has
//! to be trusted across a crash.

use xxhash_rust::xxh3::Xxh3;

use super::pace::{self, Pacer};
use super::verify::Readable;
use super::{DriverError, Progress};

/// The check's granularity: one hash per region of the image (16 bytes per 64 MiB, so a
/// 1 PiB volume's hashes fit in 256 MiB and a 1 TiB one's in 256 KiB).
const REGION: u64 = 64 << 20;

/// An image a copy writes into.
pub trait Writable: Readable {
    fn write_at(&self, buf: &[u8], off: u64) -> Result<(), String>;
    /// Makes what was written durable (`fdatasync`, `rbd_flush`) before the copy counts it.
    fn flush(&self) -> Result<(), String>;
    /// Writes `len` bytes of `src` (from its start) at `off`, in the kernel where the image is
    /// a file (`copy_file_range`: the bytes are not copied through this process). None: the
    /// image cannot; the caller writes what it read instead.
    fn write_from_file(
        &self,
        _src: &std::fs::File,
        _len: u64,
        _off: u64,
    ) -> Option<Result<(), String>> {
        None
    }
    /// The XXH64 (seed 0) of the `len` bytes at `off` as the storage holds them, computed
    /// where they are stored, so that a check of what was written (and flushed) need not read
    /// it back through this host (rbd: by the OSD of the object the range lies in). None: the
    /// storage cannot say; the caller reads the range back.
    fn stored_xxh64(&self, _off: u64, _len: u64) -> Option<u64> {
        None
    }
}

/// What a copy moved.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Copied {
    /// The volume's size: every byte of it is accounted for.
    pub size_bytes: u64,
    /// Bytes read where the source holds data.
    pub read_bytes: u64,
    /// Bytes written (the rest of what was read was all zeros, left as holes).
    pub written_bytes: u64,
    /// The ranges read from the source, and per region the hash of what was read there.
    #[serde(skip)]
    read: Vec<(u64, u64)>,
    #[serde(skip)]
    hashes: Vec<(u64, u128)>,
}

/// Hashes what a pass reads, region by region, in offset order.
struct Regions {
    hasher: Xxh3,
    region: Option<u64>,
    done: Vec<(u64, u128)>,
}

impl Regions {
    fn new() -> Self {
        Regions {
            hasher: Xxh3::new(),
            region: None,
            done: vec![],
        }
    }

    fn feed(&mut self, at: u64, data: &[u8]) {
        let r = at / REGION;
        if self.region != Some(r) {
            self.close();
            self.region = Some(r);
        }
        self.hasher.update(&at.to_le_bytes());
        self.hasher.update(data);
    }

    fn close(&mut self) {
        if let Some(r) = self.region.take() {
            self.done.push((r, self.hasher.digest128()));
            self.hasher.reset();
        }
    }

    fn finish(mut self) -> Vec<(u64, u128)> {
        self.close();
        self.done
    }
}

/// Splits `[s, e)` into chunks that never cross a region boundary, so both passes hash the
/// same bytes into the same region whatever their chunk size.
pub(super) fn chunks(s: u64, e: u64, chunk: u64) -> impl Iterator<Item = (u64, u64)> {
    let mut at = s;
    std::iter::from_fn(move || {
        if at >= e {
            return None;
        }
        let end = pace::chunk_end(at, e, chunk).min((at / REGION + 1) * REGION);
        let out = (at, end);
        at = end;
        Some(out)
    })
}

/// What the check found: where the target first differs from what was read from the source.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Checked {
    /// Bytes of the target read back.
    pub read_bytes: u64,
    /// The first region (its offset) whose hash differs, or the first non-zero byte where the
    /// source held nothing.
    pub first_difference: Option<u64>,
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

    fn undo_on_stop(&self) -> bool {
        self.inner.undo_on_stop()
    }
}

/// Progress of one step of a call made of several (a migration's snapshots, then its volume,
/// for each volume it moves): each step reports into its own share of one bar, so the job's
/// figure, rate and ETA run once from 0 to the whole job instead of starting over per step.
pub struct Stage<'a> {
    pub inner: &'a dyn Progress,
    /// Bytes of the bar before this step.
    pub before: u64,
    /// This step's share of the bar: its `total` is scaled to it.
    pub share: u64,
    /// The whole bar.
    pub whole: u64,
}

impl Progress for Stage<'_> {
    fn update(&self, done: u64, total: u64) -> bool {
        let part = match total {
            0 => self.share,
            t => (u128::from(done.min(t)) * u128::from(self.share) / u128::from(t)) as u64,
        };
        self.inner.update(self.before + part, self.whole)
    }

    fn storage_client(&self, address: &str) -> bool {
        self.inner.storage_client(address)
    }

    fn undo_on_stop(&self) -> bool {
        self.inner.undo_on_stop()
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
    let mut regions = Regions::new();
    for (s, e) in src.extents()? {
        let (s, e) = (s.min(len).max(pos), e.min(len));
        if s >= e {
            continue;
        }
        if !pacer.skip(s - pos) {
            return Ok(None);
        }
        for (at, end) in chunks(s, e, chunk) {
            let n = (end - at) as usize;
            src.read_at(&mut buf[..n], at)?;
            regions.feed(at, &buf[..n]);
            out.read_bytes += n as u64;
            if buf[..n].iter().any(|b| *b != 0) {
                dst.write_at(&buf[..n], at)?;
                out.written_bytes += n as u64;
            }
            if !pacer.moved(n as u64) {
                return Ok(None);
            }
        }
        out.read.push((s, e));
        pos = e;
    }
    dst.flush()?;
    if !pacer.skip(len - pos.min(len)) {
        return Ok(None);
    }
    out.hashes = regions.finish();
    Ok(Some(out))
}

/// Reads `dst` back: where the source was read, region hashes must match; anywhere else the
/// target holds data, it must read as zeros. None: cancelled.
pub fn check(
    copied: &Copied,
    dst: &dyn Readable,
    bps_limit: u64,
    progress: &dyn Progress,
) -> Result<Option<Checked>, String> {
    let len = copied.size_bytes;
    let mut out = Checked::default();
    let mut pacer = Pacer::new(bps_limit, 0, len, progress);
    let chunk = pace::chunk_for(bps_limit);
    let mut buf = vec![0u8; chunk as usize];
    let mut regions = Regions::new();
    let mut pos = 0;
    for &(s, e) in &copied.read {
        if !pacer.skip(s - pos) {
            return Ok(None);
        }
        for (at, end) in chunks(s, e, chunk) {
            let n = (end - at) as usize;
            dst.read_at(&mut buf[..n], at)?;
            regions.feed(at, &buf[..n]);
            out.read_bytes += n as u64;
            if !pacer.moved(n as u64) {
                return Ok(None);
            }
        }
        pos = e;
    }
    if !pacer.skip(len - pos.min(len)) {
        return Ok(None);
    }
    let got = regions.finish();
    let differs = got
        .iter()
        .zip(&copied.hashes)
        .find(|(a, b)| a != b)
        .map(|(a, _)| a.0)
        .or_else(|| (got.len() != copied.hashes.len()).then_some(0));
    if let Some(r) = differs {
        out.first_difference = Some(r * REGION);
        return Ok(Some(out));
    }
    // Data the target holds where the source held none (left by someone else, or a write
    // that landed at the wrong offset) must be zeros.
    out.first_difference = zeros_outside(dst, &copied.read, len, &mut buf, &mut out.read_bytes)?;
    Ok(Some(out))
}

/// Where `dst` holds data outside `written` (sorted, disjoint ranges within `len`): the first
/// byte there that is not zero, read in pieces of `buf`'s size. `read` counts what was read.
pub fn zeros_outside(
    dst: &dyn Readable,
    written: &[(u64, u64)],
    len: u64,
    buf: &mut [u8],
    read: &mut u64,
) -> Result<Option<u64>, String> {
    for (s, e) in outside(&dst.extents()?, written, len) {
        for (at, end) in chunks(s, e, buf.len() as u64) {
            let n = (end - at) as usize;
            dst.read_at(&mut buf[..n], at)?;
            *read += n as u64;
            if let Some(i) = buf[..n].iter().position(|b| *b != 0) {
                return Ok(Some(at + i as u64));
            }
        }
    }
    Ok(None)
}

/// The parts of `have` (sorted extents) outside `read` (sorted, disjoint), within `len`.
fn outside(have: &[(u64, u64)], read: &[(u64, u64)], len: u64) -> Vec<(u64, u64)> {
    let mut out = vec![];
    for &(s, e) in have {
        let (mut s, e) = (s.min(len), e.min(len));
        for &(rs, re) in read {
            if re <= s || rs >= e {
                continue;
            }
            if rs > s {
                out.push((s, rs));
            }
            s = s.max(re);
        }
        if s < e {
            out.push((s, e));
        }
    }
    out
}

/// A copy followed by its check over the whole size: the copy is only trusted once its
/// target reads back as what was read from the source. `fail` names a failure for the backend.
pub fn copy_verified(
    backend: &str,
    src: &dyn Readable,
    dst: &dyn Writable,
    bps_limit: u64,
    progress: &dyn Progress,
    fail: impl Fn(String) -> DriverError,
) -> Result<(Copied, Checked), DriverError> {
    let cancelled = || DriverError::Cancelled {
        backend: backend.to_string(),
        op: "migrate",
    };
    let phase = |index| Phase {
        inner: progress,
        index,
    };
    let copied = copy(src, dst, bps_limit, &phase(0))
        .map_err(&fail)?
        .ok_or_else(cancelled)?;
    let checked = check(&copied, dst, bps_limit, &phase(1))
        .map_err(&fail)?
        .ok_or_else(cancelled)?;
    if let Some(at) = checked.first_difference {
        return Err(fail(format!(
            "the copy read back differs from its source near byte {at} (0x{at:x}); the target is removed and the volume stays on its source"
        )));
    }
    Ok((copied, checked))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::driver::NoProgress;
    use crate::driver::mem::Mem;

    #[test]
    fn a_copy_equals_its_source_and_leaves_holes_alone() {
        let (seed, mut rng) = crate::driver::seeded_rng();
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
            let src = Mem::new(src);
            let dst = Mem::new(vec![0u8; len]);
            let bps = [0, 1 << 30][round % 2];
            let (copied, checked) = copy_verified("t", &src, &dst, bps, &NoProgress, |e| {
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
            assert_eq!(checked.first_difference, None);
            // Only non-zero chunks were written.
            assert_eq!(*dst.1.borrow(), copied.written_bytes);
            let nonzero = src.0.borrow().iter().filter(|b| **b != 0).count() as u64;
            // Every non-zero byte was in a written chunk; all-zero chunks were not written.
            assert!(copied.written_bytes >= nonzero, "seed {seed} round {round}");
            assert!(copied.written_bytes <= copied.read_bytes);
        }
    }

    /// The check reads only the target: it must still see a byte changed after the copy
    /// (in data, and in a hole the source never had), across region boundaries.
    #[test]
    fn the_check_finds_a_damaged_copy() {
        let len = (REGION as usize) + (3 << 20) + 17;
        let mut data = vec![0u8; len];
        data[1000..5000].fill(9);
        data[REGION as usize - 10..REGION as usize + 10].fill(4);
        data[len - 1] = 1;
        for (damage, at) in [
            (true, 2000usize),
            (true, REGION as usize + 5),
            (false, 3 << 20),
        ] {
            let src = Mem::new(data.clone());
            let dst = Mem::new(vec![0u8; len]);
            let Ok(Some(copied)) = copy(&src, &dst, 0, &NoProgress) else {
                panic!("the copy did not run");
            };
            let checked = |d: &Mem| match check(&copied, d, 0, &NoProgress) {
                Ok(Some(c)) => c,
                other => panic!("the check did not run: {other:?}"),
            };
            let clean = checked(&dst);
            assert_eq!(clean.first_difference, None);
            dst.0.borrow_mut()[at] ^= 0x40;
            let found = checked(&dst);
            let at = at as u64;
            match found.first_difference {
                // In data: the region that holds it; in a hole: the byte itself.
                Some(f) if damage => assert_eq!(f, at / REGION * REGION, "{at}"),
                Some(f) => assert_eq!(f, at, "{at}"),
                None => panic!("a changed byte at {at} passed the check"),
            }
        }
    }

    #[test]
    fn chunks_never_cross_a_region() {
        for (s, e, c) in [
            (0, 3 * REGION + 5, 8 << 20),
            (REGION - 1, REGION + 1, 64 << 10),
        ] {
            let all: Vec<(u64, u64)> = chunks(s, e, c).collect();
            assert_eq!(all.first().map(|x| x.0), Some(s));
            assert_eq!(all.last().map(|x| x.1), Some(e));
            for w in all.windows(2) {
                assert_eq!(w[0].1, w[1].0);
            }
            for (a, b) in all {
                assert_eq!(a / REGION, (b - 1) / REGION, "{a}..{b}");
            }
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
        let src = Mem::new(vec![7u8; 1 << 20]);
        let dst = Mem::new(vec![0u8; 1 << 20]);
        assert_eq!(copy(&src, &dst, 0, &Stop), Ok(None));
    }
}
