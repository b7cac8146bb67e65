//! `volume verify`: a volume's data compared with what it should hold, on any driver that can
//! read its images back. Only where either side holds data is anything read; ranges that are
//! holes on both sides are equal zeros by definition.

use super::Progress;
use super::pace::{self, Pacer};

/// What to compare a volume with: a snapshot (its parent while layered, the snapshot it was
/// flattened from, or one the operator names), kept in `volume_id`'s image on rbd.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Against {
    pub snapshot_id: String,
    pub volume_id: String,
}

/// How many differing ranges a report lists (the count covers them all).
const LISTED: usize = 16;

/// What a comparison found.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct VerifyReport {
    /// The volume's size: every byte of it was compared.
    pub compared_bytes: u64,
    /// Bytes that had to be read on each side (the rest were holes on both).
    pub read_bytes: u64,
    pub differing_bytes: u64,
    pub first_difference: Option<u64>,
    /// The first differing ranges, `[start, end)`.
    pub differing_ranges: Vec<(u64, u64)>,
    /// The other side's size, when it differs from the volume's (past it, it reads zeros).
    pub against_bytes: u64,
}

impl VerifyReport {
    pub fn identical(&self) -> bool {
        self.differing_bytes == 0
    }

    /// One line for an operator: identical, or where and how much differs.
    pub fn summary(&self, what: &str, against: &str) -> String {
        let size = super::human_size(self.compared_bytes);
        match self.first_difference {
            None => format!(
                "{what} equals {against}: {size} compared, {} read",
                super::human_size(self.read_bytes)
            ),
            Some(at) => format!(
                "{what} differs from {against}: first at byte {at} (0x{at:x}), {} bytes differ in {}{} range(s) of {size}",
                self.differing_bytes,
                self.differing_ranges.len(),
                if self.differing_ranges.len() >= LISTED {
                    "+"
                } else {
                    ""
                }
            ),
        }
    }
}

/// An image as a comparison reads it.
pub trait Readable {
    fn size(&self) -> u64;
    /// Where the image holds data, `[start, end)` in offset order (the rest reads as zeros).
    fn extents(&self) -> Result<Vec<(u64, u64)>, String>;
    /// Reads as the image shows it; zeros past its end.
    fn read_at(&self, buf: &mut [u8], off: u64) -> Result<(), String>;
}

/// A reader whose extents were listed beforehand: what changed since a snapshot, say, rather
/// than where the image holds data.
pub struct Listed<'a> {
    pub reader: &'a dyn Readable,
    pub extents: Vec<(u64, u64)>,
}

impl Readable for Listed<'_> {
    fn size(&self) -> u64 {
        self.reader.size()
    }

    fn extents(&self) -> Result<Vec<(u64, u64)>, String> {
        Ok(self.extents.clone())
    }

    fn read_at(&self, buf: &mut [u8], off: u64) -> Result<(), String> {
        self.reader.read_at(buf, off)
    }
}

/// Where `a` or `b` holds data within `[0, len)`, merged: what a comparison reads (and a
/// copy over an earlier state of its source, which must also clear what only the target holds).
pub(super) fn either_holds(
    a: &dyn Readable,
    b: &dyn Readable,
    len: u64,
) -> Result<Vec<(u64, u64)>, String> {
    Ok(union_within(&a.extents()?, &b.extents()?, len))
}

/// The union of two extent lists, cut at `len`, sorted and merged.
fn union_within(a: &[(u64, u64)], b: &[(u64, u64)], len: u64) -> Vec<(u64, u64)> {
    let clip = |l: &[(u64, u64)]| -> Vec<(u64, u64)> {
        l.iter().map(|&(s, e)| (s.min(len), e.min(len))).collect()
    };
    union(&clip(a), &clip(b))
}

/// The union of two sorted extent lists, merged.
fn union(a: &[(u64, u64)], b: &[(u64, u64)]) -> Vec<(u64, u64)> {
    let mut all: Vec<(u64, u64)> = a.iter().chain(b).copied().filter(|(s, e)| s < e).collect();
    all.sort_unstable();
    let mut out: Vec<(u64, u64)> = Vec::with_capacity(all.len());
    for (s, e) in all {
        match out.last_mut() {
            Some(last) if s <= last.1 => last.1 = last.1.max(e),
            _ => out.push((s, e)),
        }
    }
    out
}

/// Compares `volume` with `against` over the volume's size, reading only where either holds
/// data, at most `bps_limit` bytes a second (0: no limit). None: cancelled.
pub fn compare(
    volume: &dyn Readable,
    against: &dyn Readable,
    bps_limit: u64,
    progress: &dyn Progress,
) -> Result<Option<VerifyReport>, String> {
    let len = volume.size();
    let extents = either_holds(volume, against, len)?;
    let mut report = VerifyReport {
        compared_bytes: len,
        against_bytes: against.size(),
        ..Default::default()
    };
    let mut pacer = Pacer::new(bps_limit, 0, len, progress);
    let chunk = pace::chunk_for(bps_limit);
    let (mut a, mut b) = (vec![0u8; chunk as usize], vec![0u8; chunk as usize]);
    let mut pos = 0;
    for (s, e) in extents {
        if !pacer.skip(s - pos) {
            return Ok(None);
        }
        let mut at = s;
        while at < e {
            let end = pace::chunk_end(at, e, chunk);
            let n = (end - at) as usize;
            volume.read_at(&mut a[..n], at)?;
            against.read_at(&mut b[..n], at)?;
            if a[..n] != b[..n] {
                note_differences(&mut report, &a[..n], &b[..n], at);
            }
            report.read_bytes += n as u64;
            if !pacer.moved(n as u64) {
                return Ok(None);
            }
            at = end;
        }
        pos = e;
    }
    if !pacer.skip(len - pos) {
        return Ok(None);
    }
    Ok(Some(report))
}

/// [`compare`] for a driver: a failure named by `fail`, a cancel as the driver's `Cancelled`.
pub fn compare_for(
    backend: &str,
    volume: &dyn Readable,
    against: &dyn Readable,
    bps_limit: u64,
    progress: &dyn Progress,
    fail: impl FnOnce(String) -> super::DriverError,
) -> Result<VerifyReport, super::DriverError> {
    compare(volume, against, bps_limit, progress)
        .map_err(fail)?
        .ok_or_else(|| super::DriverError::Cancelled {
            backend: backend.to_string(),
            op: "verify",
        })
}

fn note_differences(report: &mut VerifyReport, a: &[u8], b: &[u8], base: u64) {
    let mut i = 0;
    while i < a.len() {
        if a[i] == b[i] {
            i += 1;
            continue;
        }
        let start = i;
        while i < a.len() && a[i] != b[i] {
            i += 1;
        }
        let (s, e) = (base + start as u64, base + i as u64);
        report.differing_bytes += e - s;
        report.first_difference.get_or_insert(s);
        let listed = report.differing_ranges.len();
        match report.differing_ranges.last_mut() {
            // Ranges a few equal bytes apart are one damaged region to an operator.
            Some(last) if s <= last.1 + 512 => last.1 = e,
            _ if listed < LISTED => report.differing_ranges.push((s, e)),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::driver::NoProgress;

    struct Mem(Vec<u8>);

    impl Readable for Mem {
        fn size(&self) -> u64 {
            self.0.len() as u64
        }
        fn extents(&self) -> Result<Vec<(u64, u64)>, String> {
            // Whole 64 KiB blocks that hold a non-zero byte, as a sparse file would.
            let blk = 64 << 10;
            Ok((0..self.0.len())
                .step_by(blk)
                .filter(|&o| {
                    self.0[o..(o + blk).min(self.0.len())]
                        .iter()
                        .any(|b| *b != 0)
                })
                .map(|o| (o as u64, (o + blk).min(self.0.len()) as u64))
                .collect())
        }
        fn read_at(&self, buf: &mut [u8], off: u64) -> Result<(), String> {
            buf.fill(0);
            let off = off as usize;
            if off < self.0.len() {
                let n = buf.len().min(self.0.len() - off);
                buf[..n].copy_from_slice(&self.0[off..off + n]);
            }
            Ok(())
        }
    }

    #[test]
    fn finds_a_zeroed_block_and_a_longer_volume_reads_zeros_past_the_other() {
        let mut src = vec![0u8; 3 << 20];
        for (i, b) in src.iter_mut().enumerate().skip(100_000) {
            *b = (i % 251) as u8 | 1;
        }
        let mut vol = src.clone();
        vol.extend(vec![0u8; 1 << 20]);
        let same = compare(&Mem(vol.clone()), &Mem(src.clone()), 0, &NoProgress)
            .expect("compare")
            .expect("not cancelled");
        assert!(same.identical(), "{same:?}");
        assert_eq!(same.compared_bytes, 4 << 20);
        vol[2_500_000..2_504_096].fill(0);
        let r = compare(&Mem(vol), &Mem(src), 0, &NoProgress)
            .expect("compare")
            .expect("not cancelled");
        assert_eq!(r.first_difference, Some(2_500_000));
        assert_eq!(r.differing_bytes, 4096);
        assert!(
            r.summary("v", "s").contains("first at byte 2500000"),
            "{}",
            r.summary("v", "s")
        );
    }

    #[test]
    fn union_merges_and_cuts() {
        assert_eq!(
            union_within(&[(0, 10), (20, 30)], &[(5, 12), (29, 50), (60, 70)], 40),
            vec![(0, 12), (20, 40)]
        );
    }
}
