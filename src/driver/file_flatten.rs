//! The file driver's flatten: the plan and watermark of `copylog.rs`, aligned throttled
//! chunks, and a check of what a resumed run wrote.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::time::{Duration, Instant};

use super::copylog::{self, Journal, Range};
use super::file::FileDriver;
use super::layers::{Layers, read_full};
use super::pace::{self, Pacer};
use super::sparse::copy_range;
use super::{DriverError, Progress, volume_image};

/// A checkpoint (fdatasync, then the watermark) at least this often while copying: what a
/// crash can make a re-run copy again.
const CHECKPOINT_BYTES: u64 = 64 << 20;
const CHECKPOINT_EVERY: Duration = Duration::from_secs(1);

pub(super) fn flatten(
    d: &FileDriver,
    volume_id: &str,
    progress: &dyn Progress,
) -> Result<(), DriverError> {
    let image = volume_image(volume_id);
    let jpath = copylog::path(&d.dir, &image);
    let fail = |e: std::io::Error| d.err("flatten", format!("{image}: {e}"));
    let chain = d.chain(&image)?;
    if chain.is_empty() {
        // Flat already: the link goes before the journal, so a journal left here is a
        // finished flatten's (killed between the two).
        d.open("flatten", &image, false)?;
        copylog::remove(&jpath).map_err(fail)?;
        progress.update(0, 0);
        return Ok(());
    }
    let dst = d.open("flatten", &image, true)?;
    let layers = d.layers("flatten", &image)?;
    let size = layers.size();
    let (journal, resumed) = match copylog::read(&jpath).map_err(fail)? {
        Some(j) => {
            // A clone extended since (after a cancelled flatten) keeps its plan: its parents
            // show nothing past their own sizes, so the new tail has nothing to copy.
            if j.parents != chain || j.size > size {
                return Err(d.err(
                    "flatten",
                    format!(
                        "{image}: its flatten journal {} was written for parents [{}] and {} bytes, but the clone now has [{}] and {size} bytes; ember cannot tell what was copied. Keep the journal for a look, compare with `ember volume verify`, and remove the journal only once the clone's data is known good",
                        jpath.display(),
                        j.parents.join(", "),
                        j.size,
                        chain.join(", ")
                    ),
                ));
            }
            (j, true)
        }
        None => (plan(&layers, &chain, size).map_err(fail)?, false),
    };
    if !resumed {
        copylog::write(&jpath, &journal).map_err(fail)?;
    }
    let from = journal.watermark;
    if resumed {
        tracing::info!(
            backend = %d.backend,
            image = %image,
            watermark = from,
            "flatten: resuming from the journal's watermark; every plan byte from there is copied again"
        );
    }
    let total = journal.total();
    let mut pacer = Pacer::new(d.bps_limit, journal.bytes_below(from), total, progress);
    let cancelled = || DriverError::Cancelled {
        backend: d.backend.clone(),
        op: "flatten",
    };
    if !pacer.report() {
        return Err(cancelled());
    }
    let mut cp = Checkpoint {
        d,
        image: &image,
        dst: &dst,
        path: &jpath,
        journal: journal.clone(),
        at: Instant::now(),
        unsynced: 0,
    };
    let chunk = pace::chunk_for(d.bps_limit);
    for r in journal.from(from) {
        let src = layers.file(r.parent + 1);
        let mut pos = r.start;
        while pos < r.end {
            let end = pace::chunk_end(pos, r.end, chunk);
            if let Err(e) = copy_range(src, &dst, pos, end - pos) {
                // What is below the last watermark stays; the re-run copies from there.
                let _ = cp.save(pos);
                return Err(d.write_failed("flatten", e, total - pacer.done));
            }
            let n = end - pos;
            pos = end;
            cp.unsynced += n;
            cp.maybe_save(pos).map_err(fail)?;
            if !pacer.moved(n) {
                cp.save(pos).map_err(fail)?;
                return Err(cancelled());
            }
        }
    }
    dst.sync_all().map_err(fail)?;
    if resumed {
        check_resumed(
            d,
            &layers,
            &dst,
            &journal,
            from.saturating_sub(chunk),
            progress,
        )?;
    }
    // The link goes (durably) before the journal: see the chain-empty case above.
    d.set_parent(&image, None)?;
    File::open(&d.dir)
        .and_then(|f| f.sync_all())
        .map_err(fail)?;
    copylog::remove(&jpath).map_err(fail)?;
    progress.update(total, total);
    Ok(())
}

/// The plan: what the parents show where the clone holds nothing, computed before a byte is
/// copied (so every range in it is one only the flatten writes).
fn plan(layers: &Layers, chain: &[String], size: u64) -> std::io::Result<Journal> {
    let ranges = layers
        .resolve(0, size, 1)?
        .into_iter()
        .map(|p| Range {
            parent: p.layer - 1,
            start: p.start,
            end: p.end,
        })
        .collect();
    Ok(Journal {
        version: copylog::VERSION,
        size,
        parents: chain.to_vec(),
        ranges,
        watermark: 0,
    })
}

/// The watermark, moved only after the clone's data is synced.
struct Checkpoint<'a> {
    d: &'a FileDriver,
    image: &'a str,
    dst: &'a File,
    path: &'a std::path::Path,
    journal: Journal,
    at: Instant,
    unsynced: u64,
}

impl Checkpoint<'_> {
    fn save(&mut self, watermark: u64) -> std::io::Result<()> {
        self.dst.sync_data()?;
        // Flat already: a peer that took the job over finished it while this worker was
        // frozen. Writing a journal now would leave a stale one behind; stop instead.
        if !self.d.side_exists(self.image, "parent") {
            return Err(std::io::Error::other(
                "flattened meanwhile by another worker (this one was frozen past a takeover); it stops here",
            ));
        }
        self.journal.watermark = watermark;
        copylog::write(self.path, &self.journal)?;
        self.at = Instant::now();
        self.unsynced = 0;
        Ok(())
    }

    fn maybe_save(&mut self, watermark: u64) -> std::io::Result<()> {
        if self.unsynced >= CHECKPOINT_BYTES || self.at.elapsed() >= CHECKPOINT_EVERY {
            self.save(watermark)?;
        }
        Ok(())
    }
}

/// A resumed flatten reads back what it wrote (from one chunk before its watermark on) and
/// compares it with the parents; a chunk that differs is copied again (every plan range is
/// the flatten's alone to write) and checked once more. A difference that stays fails the
/// flatten, which keeps its parent link and its journal.
fn check_resumed(
    d: &FileDriver,
    layers: &Layers,
    dst: &File,
    journal: &Journal,
    from: u64,
    progress: &dyn Progress,
) -> Result<(), DriverError> {
    let image = layers.name(0).to_string();
    let fail = |e: std::io::Error| d.err("flatten check", format!("{image}: {e}"));
    let total = journal.total();
    let step = pace::MAX_CHUNK;
    let (mut want, mut got) = (vec![0u8; step as usize], vec![0u8; step as usize]);
    let mut checked = 0u64;
    for r in journal.from(from) {
        let src = layers.file(r.parent + 1);
        let mut pos = r.start;
        while pos < r.end {
            let end = pace::chunk_end(pos, r.end, step);
            let n = (end - pos) as usize;
            for attempt in 0..2 {
                read_full(src, &mut want[..n], pos).map_err(fail)?;
                read_full(dst, &mut got[..n], pos).map_err(fail)?;
                if want[..n] == got[..n] {
                    break;
                }
                let at = pos
                    + want[..n]
                        .iter()
                        .zip(&got[..n])
                        .take_while(|(a, b)| a == b)
                        .count() as u64;
                if attempt == 1 {
                    return Err(d.err(
                        "flatten check",
                        format!(
                            "{image}: byte {at} still differs from {} after copying it again; the clone keeps its parent link; look at the disk (dmesg) and run `ember volume verify`",
                            layers.name(r.parent + 1)
                        ),
                    ));
                }
                tracing::warn!(
                    backend = %d.backend,
                    image = %image,
                    offset = at,
                    "flatten check: a resumed range differed from its parent; copying it again"
                );
                dst.write_all_at(&want[..n], pos).map_err(fail)?;
                dst.sync_data().map_err(fail)?;
            }
            checked += end - pos;
            pos = end;
            if !progress.update(total, total) {
                return Err(DriverError::Cancelled {
                    backend: d.backend.clone(),
                    op: "flatten",
                });
            }
        }
    }
    tracing::info!(
        backend = %d.backend,
        image = %image,
        checked,
        "flatten check: what the resumed run wrote equals its parents"
    );
    Ok(())
}
