//! The `file` driver, ember's embedded default storage.
//!
//! Layout under the backend's `file_dir`, named like Cinder's images so an operator finds a
//! volume's data by its id with `ls`:
//! - `volume-<uuid>`: the volume, a sparse file of the volume's size.
//! - `snapshot-<uuid>`: a read-only point-in-time copy of a volume's own data (a reflink where
//!   the filesystem can, else a sparse copy of the allocated extents only).
//! - `<image>.parent`: for a layered image, the name of the snapshot it reads through to.
//! - `snapshot-<uuid>.deleted`: marks a snapshot deleted while clones still read from it.
//!
//! Clone from a snapshot is **layering**, as RBD does: a new empty sparse file plus a `.parent`
//! link, so it costs nothing whatever the size. A layered volume's holes read from its parent
//! chain; flatten copies into those holes, nearest parent first, only the parents' allocated
//! extents, chunk by chunk (in-kernel `copy_file_range`), then drops the link. Layering was
//! chosen over a copy at clone time so that clone depth, flatten and "delete refused while
//! clones depend on it" mean the same on the file and rbd backends.

use std::fs::File;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use super::file_image::{FileImage, FileReader};
use super::layers::Layers;
use super::pace::{self, Pacer};
use super::sparse::{copy_range, data_extents};
use super::verify::{Against, VerifyReport};
use super::{
    Capacity, Deleted, DriverError, ImageInfo, Progress, VolumeDriver, snapshot_image, volume_image,
};

/// Parent chains longer than this are treated as corrupt (a loop), not followed.
const MAX_CHAIN: usize = 128;

#[derive(Debug)]
pub struct FileDriver {
    pub(super) backend: String,
    pub(super) dir: PathBuf,
    /// Cinder's `volume_copy_bps_limit`: copies (flatten, snapshot) stay under this many
    /// bytes per second, so a flatten does not starve the disk for everyone else. 0: no limit.
    pub(super) bps_limit: u64,
}

impl FileDriver {
    pub fn new(backend: &str, dir: PathBuf, bps_limit: u64) -> Self {
        Self {
            backend: backend.to_string(),
            dir,
            bps_limit,
        }
    }

    pub(super) fn err(&self, op: &'static str, e: impl std::fmt::Display) -> DriverError {
        DriverError::Io {
            backend: self.backend.clone(),
            op,
            message: e.to_string(),
        }
    }

    /// A failed write; a full filesystem is said in the operator's terms: where, how much
    /// more the operation needs, how much is free.
    pub(super) fn write_failed(
        &self,
        op: &'static str,
        e: std::io::Error,
        still_needed: u64,
    ) -> DriverError {
        if e.raw_os_error() != Some(libc::ENOSPC) {
            return self.err(op, e);
        }
        let free = nix::sys::statvfs::statvfs(&self.dir)
            .map(|s| s.blocks_available() * s.fragment_size())
            .ok();
        DriverError::NoSpace {
            backend: self.backend.clone(),
            op,
            message: format!(
                "no space left on {}: it needs about {} more ({} free); free space there (or grow the filesystem) and run it again: it goes on where it stopped",
                self.dir.display(),
                super::human_size(still_needed),
                free.map_or("unknown".into(), super::human_size)
            ),
        }
    }

    pub(super) fn path(&self, image: &str) -> PathBuf {
        self.dir.join(image)
    }

    fn side(&self, image: &str, suffix: &str) -> PathBuf {
        self.dir.join(format!("{image}.{suffix}"))
    }

    pub(super) fn side_exists(&self, image: &str, suffix: &str) -> bool {
        self.side(image, suffix).exists()
    }

    fn not_found(&self, image: &str) -> DriverError {
        DriverError::NotFound {
            backend: self.backend.clone(),
            image: image.to_string(),
        }
    }

    pub(super) fn open(
        &self,
        op: &'static str,
        image: &str,
        write: bool,
    ) -> Result<File, DriverError> {
        File::options()
            .read(true)
            .write(write)
            .open(self.path(image))
            .map_err(|e| {
                if e.kind() == io::ErrorKind::NotFound {
                    self.not_found(image)
                } else {
                    self.err(op, format!("{image}: {e}"))
                }
            })
    }

    fn parent_of(&self, image: &str) -> Result<Option<String>, DriverError> {
        match std::fs::read_to_string(self.side(image, "parent")) {
            Ok(s) => Ok(Some(s.trim().to_string()).filter(|s| !s.is_empty())),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(self.err("read parent link", format!("{image}: {e}"))),
        }
    }

    /// Writes (or with None removes) a parent link atomically: write a temp file, rename it.
    pub(super) fn set_parent(&self, image: &str, parent: Option<&str>) -> Result<(), DriverError> {
        let link = self.side(image, "parent");
        match parent {
            Some(p) => {
                let tmp = self.dir.join(format!(".tmp-{image}.parent"));
                std::fs::write(&tmp, p)
                    .and_then(|()| std::fs::rename(&tmp, &link))
                    .map_err(|e| self.err("write parent link", format!("{image}: {e}")))
            }
            None => remove_if_exists(&link)
                .map_err(|e| self.err("remove parent link", format!("{image}: {e}"))),
        }
    }

    /// The parents a layered image reads through, nearest first.
    pub(super) fn chain(&self, image: &str) -> Result<Vec<String>, DriverError> {
        let mut out = vec![];
        let mut cur = image.to_string();
        while let Some(p) = self.parent_of(&cur)? {
            if out.len() >= MAX_CHAIN || out.contains(&p) {
                return Err(self.err(
                    "parent chain",
                    format!("{image}: chain loops or exceeds {MAX_CHAIN}"),
                ));
            }
            out.push(p.clone());
            cur = p;
        }
        Ok(out)
    }

    /// Images whose parent link names `image`.
    fn children(&self, image: &str) -> Result<Vec<String>, DriverError> {
        let mut out = vec![];
        for name in self.image_names()? {
            if self.parent_of(&name)?.as_deref() == Some(image) {
                out.push(name);
            }
        }
        Ok(out)
    }

    fn image_names(&self) -> Result<Vec<String>, DriverError> {
        let rd = std::fs::read_dir(&self.dir)
            .map_err(|e| self.err("list", format!("{}: {e}", self.dir.display())))?;
        let mut names = vec![];
        for entry in rd {
            let name = entry
                .map_err(|e| self.err("list", e))?
                .file_name()
                .to_string_lossy()
                .into_owned();
            if (name.starts_with("volume-") || name.starts_with("snapshot-")) && !name.contains('.')
            {
                names.push(name);
            }
        }
        names.sort();
        Ok(names)
    }

    fn remove_image(&self, image: &str) -> Result<(), DriverError> {
        for p in [
            self.path(image),
            self.side(image, "parent"),
            self.side(image, "deleted"),
        ] {
            remove_if_exists(&p)
                .map_err(|e| self.err("remove", format!("{}: {e}", p.display())))?;
        }
        Ok(())
    }

    /// An image read through its parent chain (`volume verify`, the flatten's plan).
    pub(super) fn layers(&self, op: &'static str, image: &str) -> Result<Layers, DriverError> {
        let mut names = vec![image.to_string()];
        names.extend(self.chain(image)?);
        Layers::open(&names, |n| File::open(self.path(n))).map_err(|e| {
            if e.kind() == io::ErrorKind::NotFound {
                self.not_found(image)
            } else {
                self.err(op, format!("{image}: {e}"))
            }
        })
    }

    fn new_sparse(&self, op: &'static str, path: &Path, size: u64) -> Result<File, DriverError> {
        use std::os::unix::fs::OpenOptionsExt;
        // Volume data is the tenants': private to the service's user.
        let f = File::options()
            .mode(0o600)
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(path)
            .map_err(|e| self.err(op, format!("{}: {e}", path.display())))?;
        f.set_len(size)
            .map_err(|e| self.err(op, format!("{}: {e}", path.display())))?;
        Ok(f)
    }
}

pub(super) fn remove_if_exists(p: &Path) -> io::Result<()> {
    match std::fs::remove_file(p) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

impl VolumeDriver for FileDriver {
    fn backend(&self) -> &str {
        &self.backend
    }

    fn holders(&self, image: &str) -> Result<Vec<super::Holder>, DriverError> {
        Ok(super::proc_open::holders(&self.path(image)))
    }

    fn holders_command(&self, image: &str) -> String {
        format!("fuser -v {}", self.path(image).display())
    }

    fn inspect_image(&self, image: &str) -> Result<ImageInfo, DriverError> {
        let md = match std::fs::metadata(self.path(image)) {
            Ok(m) if m.is_file() => m,
            Ok(_) => return Err(self.err("info", format!("{image} is not a file"))),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(self.not_found(image)),
            Err(e) => return Err(self.err("info", format!("{image}: {e}"))),
        };
        Ok(ImageInfo {
            name: image.to_string(),
            size_bytes: md.len(),
            used_bytes: md.blocks() * 512,
            parent: self.parent_of(image)?,
            deferred_delete: self.side(image, "deleted").exists(),
            volume: None,
        })
    }

    /// The file and its parent link move together; a name with a path separator is refused.
    fn rename_image(&self, from: &str, to: &str) -> Result<(), DriverError> {
        for n in [from, to] {
            if n.is_empty() || n.contains('/') || n.starts_with('.') {
                return Err(self.err(
                    "rename",
                    format!("{n:?} is not an image name in {}", self.dir.display()),
                ));
            }
        }
        let side = self.side(from, "parent");
        if side.exists() {
            std::fs::rename(&side, self.side(to, "parent"))
                .map_err(|e| self.err("rename", format!("{}: {e}", side.display())))?;
        }
        std::fs::rename(self.path(from), self.path(to))
            .map_err(|e| self.err("rename", format!("{from} -> {to}: {e}")))
    }

    fn check_setup(&self) -> Result<(), DriverError> {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&self.dir)
            .map_err(|e| self.err("create file_dir", format!("{}: {e}", self.dir.display())))?;
        // Writable? A read-only mount must fail here, not at the first volume create.
        let probe = self.dir.join(".ember-write-probe");
        std::fs::write(&probe, b"")
            .and_then(|()| std::fs::remove_file(&probe))
            .map_err(|e| self.err("write to file_dir", format!("{}: {e}", self.dir.display())))
    }

    fn capacity(&self) -> Result<Capacity, DriverError> {
        let st = nix::sys::statvfs::statvfs(&self.dir)
            .map_err(|e| self.err("statvfs", format!("{}: {e}", self.dir.display())))?;
        let frag = st.fragment_size();
        let provisioned = self
            .list()?
            .iter()
            .filter(|i| i.name.starts_with("volume-"))
            .map(|i| i.size_bytes)
            .sum();
        Ok(Capacity {
            total_bytes: st.blocks() * frag,
            free_bytes: st.blocks_available() * frag,
            provisioned_bytes: Some(provisioned),
        })
    }

    fn list(&self) -> Result<Vec<ImageInfo>, DriverError> {
        let mut out = vec![];
        for name in self.image_names()? {
            let md = match std::fs::metadata(self.path(&name)) {
                Ok(m) => m,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue, // removed meanwhile
                Err(e) => return Err(self.err("stat", format!("{name}: {e}"))),
            };
            out.push(ImageInfo {
                parent: self.parent_of(&name)?,
                deferred_delete: self.side(&name, "deleted").exists(),
                name,
                size_bytes: md.len(),
                used_bytes: md.blocks() * 512,
                volume: None,
            });
        }
        Ok(out)
    }

    fn create_volume(&self, id: &str, size: u64) -> Result<(), DriverError> {
        let image = volume_image(id);
        let path = self.path(&image);
        if let Ok(md) = std::fs::metadata(&path) {
            // Idempotent: a re-run after a crash finds its own work done.
            if md.len() == size && self.parent_of(&image)?.is_none() {
                return Ok(());
            }
            return Err(self.err(
                "create",
                format!("{image} already exists with another size or a parent"),
            ));
        }
        let tmp = self.dir.join(format!(".tmp-{image}"));
        let f = self.new_sparse("create", &tmp, size)?;
        f.sync_all().map_err(|e| self.err("create", e))?;
        std::fs::rename(&tmp, &path).map_err(|e| self.err("create", format!("{image}: {e}")))
    }

    fn delete_volume(&self, id: &str, progress: &dyn Progress) -> Result<(), DriverError> {
        let image = volume_image(id);
        let children = self.children(&image)?;
        if !children.is_empty() {
            return Err(DriverError::Busy {
                backend: self.backend.clone(),
                image,
                dependents: children,
            });
        }
        let size = std::fs::metadata(self.path(&image))
            .map(|m| m.len())
            .unwrap_or(0);
        self.remove_image(&image)?;
        progress.update(size, size);
        Ok(())
    }

    fn extend_volume(&self, id: &str, size: u64) -> Result<(), DriverError> {
        let image = volume_image(id);
        let f = self.open("extend", &image, true)?;
        let cur = f.metadata().map_err(|e| self.err("extend", e))?.len();
        if size < cur {
            return Err(DriverError::Invalid {
                backend: self.backend.clone(),
                op: "extend",
                message: format!("{image} is {cur} bytes; shrinking to {size} is not allowed"),
            });
        }
        f.set_len(size)
            .map_err(|e| self.err("extend", format!("{image}: {e}")))
    }

    fn create_snapshot(
        &self,
        snap_id: &str,
        volume_id: &str,
        progress: &dyn Progress,
    ) -> Result<(), DriverError> {
        let src_name = volume_image(volume_id);
        let snap = snapshot_image(snap_id);
        let src = self.open("snapshot", &src_name, false)?;
        let size = src.metadata().map_err(|e| self.err("snapshot", e))?.len();
        let tmp = self.dir.join(format!(".tmp-{snap}"));
        remove_if_exists(&tmp).map_err(|e| self.err("snapshot", e))?;
        // A reflink shares the blocks at once where the filesystem can (xfs, btrfs).
        if reflink_copy::reflink(self.path(&src_name), &tmp).is_err() {
            // A copy that stops (cancel, crash, full disk) leaves only the temporary file,
            // removed by the next run, which starts over: nothing half-copied is ever named
            // as a snapshot.
            let dst = self.new_sparse("snapshot", &tmp, size)?;
            let extents = data_extents(&src, 0, size).map_err(|e| self.err("snapshot", e))?;
            let total: u64 = extents.iter().map(|(a, b)| b - a).sum();
            let mut pacer = Pacer::new(self.bps_limit, 0, total, progress);
            let chunk = pace::chunk_for(self.bps_limit);
            for (a, b) in extents {
                let mut pos = a;
                while pos < b {
                    let end = pace::chunk_end(pos, b, chunk);
                    copy_range(&src, &dst, pos, end - pos)
                        .map_err(|e| self.write_failed("snapshot", e, total - pacer.done))?;
                    if !pacer.moved(end - pos) {
                        drop(dst);
                        let _ = std::fs::remove_file(&tmp);
                        return Err(DriverError::Cancelled {
                            backend: self.backend.clone(),
                            op: "snapshot",
                        });
                    }
                    pos = end;
                }
            }
            dst.sync_all().map_err(|e| self.err("snapshot", e))?;
        }
        // The snapshot reads through to whatever the volume reads through to.
        self.set_parent(&snap, self.parent_of(&src_name)?.as_deref())?;
        std::fs::rename(&tmp, self.path(&snap))
            .map_err(|e| self.err("snapshot", format!("{snap}: {e}")))
    }

    fn delete_snapshot(
        &self,
        snap_id: &str,
        _volume_id: &str,
        deferred: bool,
    ) -> Result<Deleted, DriverError> {
        let snap = snapshot_image(snap_id);
        let children = self.children(&snap)?;
        if children.is_empty() {
            self.remove_image(&snap)?;
            return Ok(Deleted::Now);
        }
        if !deferred {
            return Err(DriverError::Busy {
                backend: self.backend.clone(),
                image: snap,
                dependents: children,
            });
        }
        std::fs::write(self.side(&snap, "deleted"), b"")
            .map_err(|e| self.err("defer delete", e))?;
        Ok(Deleted::Deferred)
    }

    fn clone_snapshot(
        &self,
        snap_id: &str,
        _source_volume_id: &str,
        volume_id: &str,
        size: u64,
    ) -> Result<(), DriverError> {
        let snap = snapshot_image(snap_id);
        let image = volume_image(volume_id);
        let snap_size = self
            .open("clone", &snap, false)?
            .metadata()
            .map_err(|e| self.err("clone", e))?
            .len();
        if size < snap_size {
            return Err(DriverError::Invalid {
                backend: self.backend.clone(),
                op: "clone",
                message: format!("a clone cannot be smaller than its snapshot ({snap_size} bytes)"),
            });
        }
        if self.path(&image).exists() && self.parent_of(&image)?.as_deref() == Some(snap.as_str()) {
            return Ok(());
        }
        // Link first, then the data file: a crash in between leaves a stray link, not a
        // volume that silently reads as zeros.
        self.set_parent(&image, Some(&snap))?;
        let tmp = self.dir.join(format!(".tmp-{image}"));
        self.new_sparse("clone", &tmp, size)?;
        std::fs::rename(&tmp, self.path(&image))
            .map_err(|e| self.err("clone", format!("{image}: {e}")))
    }

    fn flatten(&self, volume_id: &str, progress: &dyn Progress) -> Result<(), DriverError> {
        super::file_flatten::flatten(self, volume_id, progress)
    }

    fn verify(
        &self,
        volume_id: &str,
        against: &Against,
        bps_limit: u64,
        progress: &dyn Progress,
    ) -> Result<VerifyReport, DriverError> {
        let image = volume_image(volume_id);
        let a = self.layers("verify", &image)?;
        let b = self.layers("verify", &snapshot_image(&against.snapshot_id))?;
        let a = FileReader(&a);
        let b = FileReader(&b);
        super::verify::compare_for(&self.backend, &a, &b, bps_limit, progress, |e| {
            self.err("verify", format!("{image}: {e}"))
        })
    }

    fn with_volume(
        &self,
        volume_id: &str,
        write: bool,
        f: &mut dyn FnMut(&dyn super::transfer::Writable) -> Result<(), DriverError>,
    ) -> Result<(), DriverError> {
        let image = volume_image(volume_id);
        let layers = self.layers("migrate", &image)?;
        let write = if write {
            Some(self.open("migrate", &image, true)?)
        } else {
            None
        };
        f(&FileImage { layers, write })
    }

    fn with_snapshot(
        &self,
        snap_id: &str,
        _volume_id: &str,
        f: &mut dyn FnMut(&dyn super::verify::Readable) -> Result<(), DriverError>,
    ) -> Result<(), DriverError> {
        let layers = self.layers("migrate", &snapshot_image(snap_id))?;
        f(&FileReader(&layers))
    }

    fn purge_deferred(&self) -> Result<Vec<String>, DriverError> {
        let mut purged = vec![];
        // Removing one may free its own parent: repeat until nothing changes.
        loop {
            let mut changed = false;
            for name in self.image_names()? {
                if self.side(&name, "deleted").exists() && self.children(&name)?.is_empty() {
                    self.remove_image(&name)?;
                    purged.push(name);
                    changed = true;
                }
            }
            if !changed {
                return Ok(purged);
            }
        }
    }
}
