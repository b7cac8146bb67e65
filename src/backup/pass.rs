//! One pass over chunks with the hashing beside the I/O: while this thread reads chunk k+1
//! (from the volume, or from the store), chunk k is hashed on others. Every pass of the store
//! (backup, restore, its read-back, verify) hashes every byte it moves; done one after the
//! other, hashing was most of a backup's time.

use serde::{Deserialize, Serialize};

use super::StoreError;

/// How a manifest's chunks are named. New backups use BLAKE3: as collision resistant as
/// SHA-256 (256 bits, a cryptographic hash: a guest must not be able to craft two chunks with
/// one name), several times faster, and hashed on every core for a 4 MiB chunk. Manifests
/// written before it name chunks by SHA-256 and are read as they are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum ChunkHash {
    #[default]
    Sha256,
    Blake3,
}

impl ChunkHash {
    /// What new backups use.
    pub const NEW: ChunkHash = ChunkHash::Blake3;

    pub fn hex(self, data: &[u8]) -> String {
        match self {
            ChunkHash::Sha256 => {
                use sha2::Digest;
                super::hex(&sha2::Sha256::digest(data))
            }
            ChunkHash::Blake3 => {
                let mut h = blake3::Hasher::new();
                h.update_rayon(data);
                h.finalize().to_hex().to_string()
            }
        }
    }
}

/// For each item in order: `read(item, buf)` fills a buffer on this thread, then the buffer
/// is hashed (None when it is all zeros, if `skip_zeros`) on another thread while the next
/// item is read, then `done(item, data, hash)` runs here. `done` returning false stops the pass
/// (cancelled): Ok(false).
pub fn hashed<I: Copy>(
    items: impl IntoIterator<Item = I>,
    kind: ChunkHash,
    skip_zeros: bool,
    mut read: impl FnMut(I, &mut Vec<u8>) -> Result<(), StoreError>,
    mut done: impl FnMut(I, &[u8], Option<String>) -> Result<bool, StoreError>,
) -> Result<bool, StoreError> {
    let mut items = items.into_iter();
    let Some(mut at) = items.next() else {
        return Ok(true);
    };
    let (mut cur, mut next) = (Vec::new(), Vec::new());
    read(at, &mut cur)?;
    loop {
        let following = items.next();
        let (hash, r) = std::thread::scope(|s| {
            let data = &cur;
            let h = s.spawn(move || {
                (!skip_zeros || data.iter().any(|b| *b != 0)).then(|| kind.hex(data))
            });
            let r = match following {
                Some(f) => read(f, &mut next),
                None => Ok(()),
            };
            (h.join(), r)
        });
        let hash = hash.map_err(|_| StoreError::Volume("hashing a chunk panicked".into()))?;
        if !done(at, &cur, hash)? {
            return Ok(false);
        }
        r?;
        match following {
            Some(f) => {
                std::mem::swap(&mut cur, &mut next);
                at = f;
            }
            None => return Ok(true),
        }
    }
}
