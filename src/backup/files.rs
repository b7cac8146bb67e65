//! The store's file operations: durable writes (temporary file, sync, rename, sync of the
//! directory) and the lock that keeps a delete's collection away from a running backup.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use super::StoreError;

fn io(path: &Path, e: impl std::fmt::Display) -> StoreError {
    StoreError::Io {
        path: path.to_path_buf(),
        message: e.to_string(),
    }
}

pub fn make_dir(dir: &Path) -> Result<(), StoreError> {
    std::fs::create_dir_all(dir).map_err(|e| io(dir, e))
}

/// `syncfs(2)` of the filesystem holding `path`.
fn syncfs(path: &Path) -> Result<(), StoreError> {
    let f = File::open(path).map_err(|e| io(path, e))?;
    nix::unistd::syncfs(&f).map_err(|e| io(path, e))
}

fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| io(dir, e))
}

/// Writes `data` to `path` durably, replacing what was there.
pub fn replace(path: &Path, data: &[u8]) -> Result<(), StoreError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    make_dir(dir)?;
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("file");
    let tmp = dir.join(format!(".tmp-{name}-{}", std::process::id()));
    let write = || -> std::io::Result<()> {
        let mut f = File::create(&tmp)?;
        f.write_all(data)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    };
    if let Err(e) = write() {
        let _ = std::fs::remove_file(&tmp);
        return Err(io(path, e));
    }
    sync_dir(dir)
}

/// Chunks written but not yet durable under their names: each goes to a temporary file
/// first; [`Batch::commit`] syncs them all, then renames them and syncs their directories.
/// One sync per batch instead of two per chunk (a full backup spent most of its time in
/// them), and a crash before the commit leaves only temporary files, never a chunk whose
/// name promises content that is not on disk. A commit runs on a thread of its own while the
/// next batch is read, hashed and written; [`Batch::finish`] waits for the last one.
#[derive(Default)]
pub struct Batch {
    pending: Vec<(PathBuf, PathBuf)>,
    /// Every chunk this batch wrote (pending, committing or committed): a chunk whose commit
    /// is under way has no name on disk yet and must not be written again.
    names: std::collections::HashSet<PathBuf>,
    committing: Option<std::thread::JoinHandle<Result<(), StoreError>>>,
}

impl Batch {
    /// Writes a chunk unless a chunk of that name (and so that content) is there or pending:
    /// true if written.
    pub fn put(&mut self, path: &Path, data: &[u8]) -> Result<bool, StoreError> {
        if self.names.contains(path) || path.exists() {
            return Ok(false);
        }
        let dir = path.parent().unwrap_or(Path::new("."));
        make_dir(dir)?;
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("chunk");
        let tmp = dir.join(format!(".tmp-{name}-{}", std::process::id()));
        let write = || -> std::io::Result<()> {
            crate::driver::write_all_at(&File::create(&tmp)?, data, 0)
        };
        if let Err(e) = write() {
            let _ = std::fs::remove_file(&tmp);
            return Err(io(path, e));
        }
        self.pending.push((tmp, path.to_path_buf()));
        self.names.insert(path.to_path_buf());
        Ok(true)
    }

    pub fn len(&self) -> usize {
        self.pending.len()
    }

    /// Makes every pending chunk durable under its name, on a thread of its own (after the
    /// previous commit ended): one `syncfs` of the store's filesystem for the batch (a `fsync`
    /// per small file is a journal commit each: a full backup spent three quarters of its time
    /// in them), then the renames, then one more.
    pub fn commit(&mut self) -> Result<(), StoreError> {
        self.wait()?;
        if self.pending.is_empty() {
            return Ok(());
        }
        let pending = std::mem::take(&mut self.pending);
        self.committing = Some(std::thread::spawn(move || commit(pending)));
        Ok(())
    }

    /// Commits what is pending and waits until every chunk written is durable.
    pub fn finish(&mut self) -> Result<(), StoreError> {
        self.commit()?;
        self.wait()
    }

    fn wait(&mut self) -> Result<(), StoreError> {
        match self.committing.take().map(|h| h.join()) {
            None => Ok(()),
            Some(Ok(r)) => r,
            Some(Err(_)) => Err(StoreError::Volume("committing chunks panicked".into())),
        }
    }
}

fn commit(pending: Vec<(PathBuf, PathBuf)>) -> Result<(), StoreError> {
    let Some((first, _)) = pending.first() else {
        return Ok(());
    };
    syncfs(first)?;
    let mut dirs = std::collections::BTreeSet::new();
    for (tmp, path) in pending {
        std::fs::rename(&tmp, &path).map_err(|e| io(&path, e))?;
        if let Some(d) = path.parent() {
            dirs.insert(d.to_path_buf());
        }
    }
    if let Some(d) = dirs.first() {
        syncfs(d)?;
    }
    Ok(())
}

impl Drop for Batch {
    /// A backup stopped (cancelled, failed): the commit under way ends (its chunks are whole),
    /// the uncommitted chunks go.
    fn drop(&mut self) {
        let _ = self.wait();
        for (tmp, _) in self.pending.drain(..) {
            let _ = std::fs::remove_file(tmp);
        }
    }
}

pub fn remove(path: &Path) -> Result<(), StoreError> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(io(path, e)),
        _ => Ok(()),
    }
}

/// The entries of `dir` (none if it does not exist), temporary files left out.
pub fn list(dir: &Path) -> Result<Vec<PathBuf>, StoreError> {
    let rd = match std::fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(vec![]),
        Err(e) => return Err(io(dir, e)),
    };
    let mut out = vec![];
    for e in rd {
        let p = e.map_err(|e| io(dir, e))?.path();
        if !p
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with(".tmp-"))
        {
            out.push(p);
        }
    }
    out.sort();
    Ok(out)
}

/// `flock` on `ROOT/.lock`: shared while a backup runs, exclusive while a delete collects.
pub struct Lock(#[allow(dead_code)] nix::fcntl::Flock<File>);

impl Lock {
    fn file(root: &Path) -> Result<File, StoreError> {
        let p = root.join(".lock");
        File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&p)
            .map_err(|e| io(&p, e))
    }

    /// Waits for a collection to finish, then holds the store open for a backup.
    pub fn shared(root: &Path) -> Result<Lock, StoreError> {
        nix::fcntl::Flock::lock(Self::file(root)?, nix::fcntl::FlockArg::LockShared)
            .map(Lock)
            .map_err(|(_, e)| io(&root.join(".lock"), e))
    }

    /// The store to itself for a collection; None while a backup runs.
    pub fn exclusive(root: &Path) -> Result<Option<Lock>, StoreError> {
        match nix::fcntl::Flock::lock(
            Self::file(root)?,
            nix::fcntl::FlockArg::LockExclusiveNonblock,
        ) {
            Ok(l) => Ok(Some(Lock(l))),
            Err((_, nix::errno::Errno::EWOULDBLOCK)) => Ok(None),
            Err((_, e)) => Err(io(&root.join(".lock"), e)),
        }
    }
}
