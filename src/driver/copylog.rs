//! The file driver's flatten journal: why an interrupted or cancelled flatten can always be
//! resumed safely.
//!
//! A flatten copies into a clone the ranges it still reads from its parents. Before this
//! journal, a re-run recomputed those ranges from the clone's holes, trusting "this block is
//! allocated" to mean "this block was copied"; a run killed after a chunk that ended inside a
//! block left that block allocated and half written, and the re-run skipped it (issue 22).
//!
//! Now the first run writes, before it copies a byte, the **plan**: every range to copy and the
//! parent it comes from, computed while those ranges are still holes in the clone. Every range
//! in the plan is one that only the flatten writes, so copying it again is always correct. The
//! journal also holds a **watermark**: every plan byte below it is copied *and synced*; it is
//! written (atomically: a temporary file, fsync, rename, fsync of the directory) only after
//! `fdatasync` of the clone. A re-run, after a kill -9, a power loss, a cancel or a full disk,
//! reads the plan and copies again everything from the watermark on: it never looks at what
//! the clone has allocated. The journal goes after the parent link: a journal without a parent
//! link is a finished flatten's, and is removed.

use std::fs::File;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// One range to copy: `[start, end)` of the parent `parent` (an index into `parents`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Range {
    pub parent: usize,
    pub start: u64,
    pub end: u64,
}

/// What a flatten copies, and how far it durably got.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Journal {
    /// The format, so a later ember can refuse what it cannot read instead of guessing.
    pub version: u32,
    /// The clone's size when planned: a resize in between makes the plan stale.
    pub size: u64,
    /// The parent images, nearest first, as the chain stood when planned.
    pub parents: Vec<String>,
    /// Ranges in offset order, not overlapping.
    pub ranges: Vec<Range>,
    /// Every plan byte below this offset is copied and synced.
    pub watermark: u64,
}

pub const VERSION: u32 = 1;

impl Journal {
    /// Plan bytes in total.
    pub fn total(&self) -> u64 {
        self.ranges.iter().map(|r| r.end - r.start).sum()
    }

    /// Plan bytes below `offset`.
    pub fn bytes_below(&self, offset: u64) -> u64 {
        self.ranges
            .iter()
            .map(|r| r.end.min(offset).saturating_sub(r.start))
            .sum()
    }

    /// The plan's ranges from `offset` on, cut there.
    pub fn from(&self, offset: u64) -> Vec<Range> {
        self.ranges
            .iter()
            .filter(|r| r.end > offset)
            .map(|r| Range {
                start: r.start.max(offset),
                ..*r
            })
            .collect()
    }
}

/// Where an image's journal lives: `volume-<id>.flatten` beside it.
pub fn path(dir: &Path, image: &str) -> PathBuf {
    dir.join(format!("{image}.flatten"))
}

/// Reads a journal; None when there is none.
pub fn read(path: &Path) -> io::Result<Option<Journal>> {
    let text = match std::fs::read(path) {
        Ok(t) => t,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let j: Journal = serde_json::from_slice(&text).map_err(|e| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "{}: not a flatten journal ember can read: {e}",
                path.display()
            ),
        )
    })?;
    if j.version != VERSION {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "{}: flatten journal version {} (this ember reads {VERSION})",
                path.display(),
                j.version
            ),
        ));
    }
    Ok(Some(j))
}

/// Writes the journal durably: a temporary file, fsync, rename over the old one, fsync of the
/// directory. A crash leaves either the old journal or the new one, never a torn one.
pub fn write(path: &Path, j: &Journal) -> io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("journal");
    // A name of its own per writer: a worker woken after a takeover may write at the same
    // moment as the one that took over, and must not write into the other's temporary file.
    static SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let seq = SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let tmp = dir.join(format!(".tmp-{name}.{}.{seq}", std::process::id()));
    {
        let mut f = File::create(&tmp)?;
        f.write_all(&serde_json::to_vec(j).map_err(io::Error::other)?)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path)?;
    File::open(dir)?.sync_all()
}

/// Removes a journal (the flatten is done), durably.
pub fn remove(path: &Path) -> io::Result<()> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    File::open(path.parent().unwrap_or(Path::new(".")))?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn watermark_cuts_the_plan() {
        let j = Journal {
            version: VERSION,
            size: 100,
            parents: vec!["snapshot-a".into()],
            ranges: vec![
                Range {
                    parent: 0,
                    start: 0,
                    end: 10,
                },
                Range {
                    parent: 0,
                    start: 20,
                    end: 40,
                },
            ],
            watermark: 25,
        };
        assert_eq!(j.total(), 30);
        assert_eq!(j.bytes_below(25), 15);
        assert_eq!(
            j.from(25),
            vec![Range {
                parent: 0,
                start: 25,
                end: 40
            }]
        );
        let dir = tempfile::tempdir().expect("tempdir");
        let p = path(dir.path(), "volume-x");
        assert_eq!(read(&p).expect("none"), None);
        write(&p, &j).expect("write");
        assert_eq!(read(&p).expect("read"), Some(j));
        std::fs::write(&p, b"{half").expect("torn");
        assert!(
            read(&p).is_err(),
            "a damaged journal is an error, not a fresh start"
        );
        remove(&p).expect("remove");
        assert_eq!(read(&p).expect("gone"), None);
    }
}
