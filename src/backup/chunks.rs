//! The passes every backup target shares: which chunks a backup reads, the manifest a diff
//! starts from, and restore and verify over chunks read from wherever the target keeps them,
//! each checked against its hash in the manifest before it is trusted.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};

use xxhash_rust::xxh64::xxh64;

use super::{CHUNK, ChunkHash, Manifest, Restored, StoreError, Verified, damaged, pass};
use crate::driver::pace::Pacer;
use crate::driver::transfer::{Writable, zeros_outside};
use crate::driver::verify::Readable;
use crate::driver::{BackupRead, Progress};

/// Reads one chunk (`index`, named `hash` in the manifest) into the buffer, unchecked; may
/// hand back the file it read it from (the directory store: see `Store::restore`).
pub type ReadChunk<'a> =
    dyn Fn(u64, &str, &mut Vec<u8>) -> Result<Option<std::fs::File>, StoreError> + 'a;

/// Reads one chunk as `ReadChunk` does, without its file (verify).
pub type CheckChunk<'a> = dyn Fn(u64, &str, &mut Vec<u8>) -> Result<(), StoreError> + 'a;

/// Each chunk that `src`'s extents touch, once, in order.
pub fn touched_chunks(src: &dyn Readable) -> Result<Vec<u64>, StoreError> {
    Ok(chunks_of(
        &src.extents().map_err(StoreError::Volume)?,
        src.size(),
    ))
}

/// Each chunk that sorted `extents` touch below `size`, once, in order.
pub fn chunks_of(extents: &[(u64, u64)], size: u64) -> Vec<u64> {
    let mut todo: Vec<u64> = vec![];
    for &(s, e) in extents {
        let first = (s / CHUNK).max(todo.last().map_or(0, |l| l + 1));
        todo.extend(first..e.min(size).div_ceil(CHUNK));
    }
    todo
}

/// The chunks a backup starts from: none for a whole read; for a diff, those of backup
/// `base` (whose manifest `manifest` reads), which must hold the volume's `size`. A diff
/// continues its base's naming: one manifest names its chunks one way.
pub fn base_of(
    read: BackupRead,
    base: Option<&str>,
    size: u64,
    manifest: impl Fn(&str) -> Result<Manifest, StoreError>,
) -> Result<(BTreeMap<u64, String>, ChunkHash), StoreError> {
    match (read, base) {
        (BackupRead::Whole, _) => Ok((BTreeMap::new(), ChunkHash::NEW)),
        (BackupRead::ChangedSince, Some(base)) => {
            let m = manifest(base)?;
            if m.size_bytes != size {
                return Err(StoreError::Volume(format!(
                    "backup {base} holds {} bytes, the volume {size}: it cannot be the base of a diff",
                    m.size_bytes
                )));
            }
            Ok((m.chunks.into_iter().collect(), m.hash))
        }
        (BackupRead::ChangedSince, None) => Err(StoreError::Volume(
            "a diff was read with no backup to apply it to".into(),
        )),
    }
}

/// Writes backup `m` into `dst` (an empty image of its size), every chunk checked against
/// its name as it is read (before it is written), then checks what `dst` holds: each chunk
/// must equal what was written (by XXH64: the bytes were checked against their BLAKE3 name
/// once, as read), asked of the storage where it can answer (`Writable::stored_xxh64`: an rbd
/// object's OSD hashes it), else read back; and every other byte that holds data must be
/// zero. None: cancelled. A chunk that comes with its file goes in by
/// `Writable::write_from_file` where `dst` can (the check then covers that second read of the
/// file too).
pub fn restore_chunks(
    m: &Manifest,
    read: &ReadChunk<'_>,
    dst: &dyn Writable,
    bps: u64,
    progress: &dyn Progress,
) -> Result<Option<Restored>, StoreError> {
    let total = m.size_bytes.saturating_mul(2);
    let mut pacer = Pacer::new(bps, 0, total, progress);
    let mut written = 0;
    // What each chunk written holds: (offset, length, XXH64).
    let mut wrote_hashes: Vec<(u64, usize, u64)> = Vec::with_capacity(m.chunks.len());
    // The chunk files read and not yet written, oldest first (the pass reads one ahead).
    let open = RefCell::new(std::collections::VecDeque::new());
    let wrote = pass::hashed(
        &m.chunks,
        m.hash,
        false,
        |(index, hash), buf| {
            let f = read(*index, hash, buf)?;
            open.borrow_mut().push_back(f);
            Ok(())
        },
        |(index, hash), data, got| {
            let file = open.borrow_mut().pop_front().flatten();
            if got.as_deref() != Some(hash.as_str()) {
                return Err(damaged(m, *index, hash, false));
            }
            let at = index * CHUNK;
            let len = data.len() as u64;
            match file.and_then(|f| dst.write_from_file(&f, len, at)) {
                Some(r) => r.map_err(StoreError::Volume)?,
                None => dst.write_at(data, at).map_err(StoreError::Volume)?,
            }
            wrote_hashes.push((at, data.len(), xxh64(data, 0)));
            written += len;
            Ok(pacer.moved(len))
        },
    )?;
    if !wrote {
        return Ok(None);
    }
    dst.flush().map_err(StoreError::Volume)?;
    pacer.done = m.size_bytes;
    let mut back = vec![0u8; CHUNK as usize];
    let mut out = Restored {
        written_bytes: written,
        ..Default::default()
    };
    for &(at, n, want) in &wrote_hashes {
        let got = match dst.stored_xxh64(at, n as u64) {
            Some(h) if h == want => {
                out.hashed_where_stored += 1;
                h
            }
            // Not known there, or different: read back (a storage's own hash that disagrees
            // is never taken alone, either way).
            _ => {
                out.read_back += 1;
                dst.read_at(&mut back[..n], at)
                    .map_err(StoreError::Volume)?;
                xxh64(&back[..n], 0)
            }
        };
        if got != want {
            return Err(StoreError::Volume(format!(
                "the restored volume reads back differently from the backup at bytes {at}..{}",
                at + n as u64
            )));
        }
        if !pacer.moved(n as u64) {
            return Ok(None);
        }
    }
    let held: Vec<(u64, u64)> = wrote_hashes
        .iter()
        .map(|&(at, n, _)| (at, at + n as u64))
        .collect();
    let mut read_back = 0;
    let stray = zeros_outside(dst, &held, m.size_bytes, &mut back, &mut read_back)
        .map_err(StoreError::Volume)?;
    if let Some(at) = stray {
        return Err(StoreError::Volume(format!(
            "the restored volume holds data at byte {at} where the backup holds zeros"
        )));
    }
    Ok(Some(out))
}

/// Every chunk of backup `m` read (`read`: a missing chunk is `StoreError::Damaged` with
/// `missing`, one more finding) and checked against its name.
pub fn verify_chunks(
    m: &Manifest,
    read: &CheckChunk<'_>,
    progress: &dyn Progress,
) -> Result<Verified, StoreError> {
    let mut out = Verified::default();
    let total = m.chunks.len() as u64 * CHUNK;
    // Chunks that are missing (read one chunk ahead of their turn).
    let missing = RefCell::new(BTreeSet::new());
    pass::hashed(
        &m.chunks,
        m.hash,
        false,
        |(index, hash), buf| match read(*index, hash, buf) {
            // Reported in its turn, below.
            Err(StoreError::Damaged { .. }) => {
                buf.clear();
                missing.borrow_mut().insert(*index);
                Ok(())
            }
            r => r,
        },
        |(index, hash), data, got| {
            out.chunks += 1;
            if missing.borrow_mut().remove(index) {
                out.damaged.push((hash.clone(), index * CHUNK, true));
            } else if got.as_deref() == Some(hash.as_str()) {
                out.checked_bytes += data.len() as u64;
            } else {
                out.damaged.push((hash.clone(), index * CHUNK, false));
            }
            Ok(progress.update(out.chunks * CHUNK, total))
        },
    )?;
    Ok(out)
}
