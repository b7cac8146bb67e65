//! The store on a temp dir with images in memory: backups of a changing image, each restored
//! and compared byte for byte; chunks stored once; a damaged chunk found, never restored.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::*;
use crate::driver::NoProgress;
use crate::driver::mem::Mem;

fn seed() -> u64 {
    let seed = std::env::var("EMBER_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(rand::random);
    eprintln!("seed {seed} (EMBER_SEED={seed} replays it)");
    seed
}

#[test]
fn every_backup_restores_to_the_image_as_it_was_and_chunks_are_stored_once() {
    let seed = seed();
    let mut rng = StdRng::seed_from_u64(seed);
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let store = Store::open(dir.path()).unwrap_or_else(|e| panic!("{e}"));
    let size = (24 << 20) + rng.random_range(0..(1 << 20));
    let vol = Mem::new(vec![0u8; size]);
    // Round 0 fills 16 MiB; later rounds change a few small ranges.
    vol.0.borrow_mut()[..16 << 20]
        .iter_mut()
        .for_each(|b| *b = rng.random());
    let mut kept = vec![];
    for round in 0..5 {
        if round > 0 {
            for _ in 0..rng.random_range(1..4) {
                let at = rng.random_range(0..size);
                let n = rng.random_range(1..(256 << 10)).min(size - at);
                let fill: u8 = rng.random();
                vol.0.borrow_mut()[at..at + n].fill(fill);
            }
        }
        let id = format!("b{round}");
        let Ok(Some((m, stored))) =
            store.backup(&id, "v", &vol, BackupRead::Whole, None, 0, &NoProgress)
        else {
            panic!("seed {seed} round {round}: the backup did not run");
        };
        eprintln!(
            "round {round}: {} chunks, {} data bytes, {} stored",
            m.chunks.len(),
            stored.data_bytes,
            stored.stored_bytes
        );
        if round > 0 {
            assert!(
                stored.stored_bytes <= 4 * CHUNK,
                "seed {seed} round {round}: an incremental stored {}",
                stored.stored_bytes
            );
        }
        kept.push((id, vol.0.borrow().clone()));
    }
    for (id, want) in &kept {
        let m = store.manifest(id).unwrap_or_else(|e| panic!("{e}"));
        let out = Mem::new(vec![0u8; want.len()]);
        match store.restore(&m, &out, 0, &NoProgress) {
            Ok(Some(_)) => {}
            other => panic!("seed {seed}: restore of {id}: {other:?}"),
        }
        assert!(
            *out.0.borrow() == *want,
            "seed {seed}: {id} restored differently"
        );
    }
    // Deleting the first backup frees only the chunks no later one holds.
    let before = store.stored_bytes();
    store.delete("b0").unwrap_or_else(|e| panic!("{e}"));
    assert!(store.stored_bytes() <= before);
    let (id, want) = &kept[4];
    let m = store.manifest(id).unwrap_or_else(|e| panic!("{e}"));
    let out = Mem::new(vec![0u8; want.len()]);
    assert!(matches!(
        store.restore(&m, &out, 0, &NoProgress),
        Ok(Some(_))
    ));
    assert!(
        *out.0.borrow() == *want,
        "seed {seed}: b4 after b0 was deleted"
    );
}

#[test]
fn a_damaged_chunk_is_reported_and_never_restored() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let store = Store::open(dir.path()).unwrap_or_else(|e| panic!("{e}"));
    // Every chunk different (identical chunks are one file in the store).
    let data: Vec<u8> = (0..(9u32 << 20))
        .map(|i| (i / 4096 % 251) as u8 + 1)
        .collect();
    let vol = Mem::new(data);
    let Ok(Some((m, _))) = store.backup("b", "v", &vol, BackupRead::Whole, None, 0, &NoProgress)
    else {
        panic!("no backup");
    };
    assert_eq!(m.chunks.len(), 3);
    let clean = store
        .verify("b", &NoProgress)
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(clean.damaged.is_empty());
    // One byte of the second chunk changes on disk.
    let path = store.chunk_path(&m.chunks[1].1);
    let mut data = std::fs::read(&path).unwrap_or_default();
    data[100] ^= 1;
    std::fs::write(&path, data).unwrap_or_else(|e| panic!("{e}"));
    let found = store
        .verify("b", &NoProgress)
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(found.damaged, vec![(m.chunks[1].1.clone(), CHUNK, false)]);
    let out = Mem::new(vec![0u8; 9 << 20]);
    match store.restore(&m, &out, 0, &NoProgress) {
        Err(StoreError::Damaged { offset, .. }) => assert_eq!(offset, CHUNK),
        other => panic!("a damaged chunk was restored: {other:?}"),
    }
}

/// A backup that reads only what changed (as rbd's diff lists it: writes, and ranges that
/// became zeros) and takes every other chunk from its base restores to the image as it is.
#[test]
fn a_diff_applied_to_its_base_restores_to_the_image_as_it_is() {
    use crate::driver::verify::Listed;
    let seed = seed();
    let mut rng = StdRng::seed_from_u64(seed);
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let store = Store::open(dir.path()).unwrap_or_else(|e| panic!("{e}"));
    let size = (20 << 20) + rng.random_range(0..(1 << 20));
    let vol = Mem::new((0..size).map(|_| rng.random()).collect());
    let whole = store.backup("b0", "v", &vol, BackupRead::Whole, None, 0, &NoProgress);
    assert!(matches!(whole, Ok(Some(_))), "seed {seed}: {whole:?}");
    for round in 1..4 {
        let mut changed = vec![];
        for _ in 0..rng.random_range(1..4) {
            let at = rng.random_range(0..size);
            let n = rng.random_range(1..(6 << 20)).min(size - at);
            let fill: u8 = if rng.random_bool(0.5) {
                0
            } else {
                rng.random()
            };
            vol.0.borrow_mut()[at..at + n].fill(fill);
            changed.push((at as u64, (at + n) as u64));
        }
        changed.sort_unstable();
        let diff = Listed {
            reader: &vol,
            extents: changed,
        };
        let (id, base) = (format!("b{round}"), format!("b{}", round - 1));
        let r = store.backup(
            &id,
            "v",
            &diff,
            BackupRead::ChangedSince,
            Some(&base),
            0,
            &NoProgress,
        );
        let Ok(Some((m, _))) = r else {
            panic!("seed {seed} round {round}: {r:?}");
        };
        let out = Mem::new(vec![0u8; size]);
        let restored = store.restore(&m, &out, 0, &NoProgress);
        assert!(matches!(restored, Ok(Some(_))), "seed {seed}: {restored:?}");
        assert!(
            *out.0.borrow() == *vol.0.borrow(),
            "seed {seed}: round {round} restored differently"
        );
    }
}

/// Manifests written before chunks were named by BLAKE3 name them by SHA-256: they restore and
/// verify as they are, and a diff on one goes on naming its chunks by SHA-256.
#[test]
fn a_sha256_manifest_of_an_earlier_version_restores_and_takes_a_diff() {
    use crate::driver::verify::Listed;
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let store = Store::open(dir.path()).unwrap_or_else(|e| panic!("{e}"));
    let mut image: Vec<u8> = (0..(10u32 << 20)).map(|i| (i / 512 % 253) as u8).collect();
    let mut chunks = vec![];
    for (i, c) in image.chunks(CHUNK as usize).enumerate() {
        let h = ChunkHash::Sha256.hex(c);
        let path = store.chunk_path(&h);
        std::fs::create_dir_all(path.parent().unwrap_or(dir.path())).unwrap_or_default();
        std::fs::write(&path, c).unwrap_or_else(|e| panic!("{e}"));
        chunks.push(serde_json::json!([i, h]));
    }
    let old = serde_json::json!({
        "version": 1, "backup_id": "old", "volume_id": "v", "size_bytes": image.len(),
        "chunk_bytes": CHUNK, "chunks": chunks,
    });
    std::fs::write(store.manifest_path("old"), old.to_string()).unwrap_or_default();
    let m = store.manifest("old").unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(m.hash, ChunkHash::Sha256);
    let v = store
        .verify("old", &NoProgress)
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(v.damaged.is_empty() && v.chunks == 3);
    let before = image.clone();
    image[(5 << 20)..(5 << 20) + 100].fill(0xee);
    let vol = Mem::new(image.clone());
    let diff = Listed {
        reader: &vol,
        extents: vec![(5 << 20, (5 << 20) + 100)],
    };
    let r = store.backup(
        "new",
        "v",
        &diff,
        BackupRead::ChangedSince,
        Some("old"),
        0,
        &NoProgress,
    );
    let Ok(Some((m2, stored))) = r else {
        panic!("{r:?}");
    };
    assert_eq!((m2.hash, stored.read_bytes), (ChunkHash::Sha256, CHUNK));
    for (m, want) in [(&m, &before), (&m2, &image)] {
        let out = Mem::new(vec![0u8; image.len()]);
        assert!(matches!(
            store.restore(m, &out, 0, &NoProgress),
            Ok(Some(_))
        ));
        assert!(
            *out.0.borrow() == *want,
            "{} restored differently",
            m.backup_id
        );
    }
    // Two chunk files missing one after the other: both named by verify.
    for (_, h) in &m2.chunks[..2] {
        std::fs::remove_file(store.chunk_path(h)).unwrap_or_default();
    }
    let v = store
        .verify("new", &NoProgress)
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(v.damaged.len(), 2, "{v:?}");
    assert!(v.damaged.iter().all(|(_, _, missing)| *missing));
}

/// A target that hashes what it holds itself (as an OSD does), and may drop one byte of a
/// write (`corrupt`: the chunk at that offset) or answer a wrong hash (`lies`).
struct Hashing {
    mem: Mem,
    corrupt: Option<u64>,
    lies: bool,
}

impl crate::driver::verify::Readable for Hashing {
    fn size(&self) -> u64 {
        self.mem.size()
    }
    fn extents(&self) -> Result<Vec<(u64, u64)>, String> {
        self.mem.extents()
    }
    fn read_at(&self, buf: &mut [u8], off: u64) -> Result<(), String> {
        self.mem.read_at(buf, off)
    }
}

impl Writable for Hashing {
    fn write_at(&self, buf: &[u8], off: u64) -> Result<(), String> {
        self.mem.write_at(buf, off)?;
        if self.corrupt == Some(off) {
            self.mem.0.borrow_mut()[off as usize + buf.len() / 2] ^= 0x40;
        }
        Ok(())
    }
    fn flush(&self) -> Result<(), String> {
        Ok(())
    }
    fn stored_xxh64(&self, off: u64, len: u64) -> Option<u64> {
        let d = self.mem.0.borrow();
        let h = xxhash_rust::xxh64::xxh64(&d[off as usize..(off + len) as usize], 0);
        Some(if self.lies { h ^ 1 } else { h })
    }
}

/// A restore is checked where the storage can hash what it holds (nothing read back), reads
/// back when the storage's hash disagrees (a wrong answer never fails a good restore alone),
/// and a write the storage got wrong fails the restore, whichever way it was found.
#[test]
fn a_restore_is_checked_where_stored_and_read_back_when_that_disagrees() {
    let seed = seed();
    let mut rng = StdRng::seed_from_u64(seed);
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let store = Store::open(dir.path()).unwrap_or_else(|e| panic!("{e}"));
    let size = (12 << 20) + rng.random_range(0..(4 << 20));
    let vol = Mem::new((0..size).map(|_| rng.random()).collect());
    let Ok(Some((m, _))) = store.backup("b", "v", &vol, BackupRead::Whole, None, 0, &NoProgress)
    else {
        panic!("seed {seed}: the backup did not run");
    };
    let n = m.chunks.len() as u64;
    let target = |corrupt, lies| Hashing {
        mem: Mem::new(vec![0u8; size]),
        corrupt,
        lies,
    };
    let honest = target(None, false);
    let r = store.restore(&m, &honest, 0, &NoProgress);
    assert!(
        matches!(&r, Ok(Some(r)) if r.hashed_where_stored == n && r.read_back == 0),
        "seed {seed}: {r:?}"
    );
    assert!(*honest.mem.0.borrow() == *vol.0.borrow(), "seed {seed}");
    let liar = target(None, true);
    let r = store.restore(&m, &liar, 0, &NoProgress);
    assert!(
        matches!(&r, Ok(Some(r)) if r.hashed_where_stored == 0 && r.read_back == n),
        "seed {seed}: {r:?}"
    );
    let bad_chunk = m.chunks[rng.random_range(0..m.chunks.len())].0 * CHUNK;
    for lies in [false, true] {
        let r = store.restore(&m, &target(Some(bad_chunk), lies), 0, &NoProgress);
        match r {
            Err(StoreError::Volume(e)) => assert!(
                e.contains(&format!("at bytes {bad_chunk}..")),
                "seed {seed}: {e}"
            ),
            other => panic!("seed {seed}: a bad write at {bad_chunk} passed: {other:?}"),
        }
    }
}
