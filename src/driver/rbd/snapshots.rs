//! Snapshots of rbd volumes and clones of them, as Cinder's RBDDriver makes them: a snapshot
//! is protected at once so it can be cloned; one that clones still read from is, with deferred
//! deletion, renamed `snapshot-<uuid>.deleted` and removed by the purge once its last clone is
//! gone (a volume whose only snapshots are such goes to the trash meanwhile).

use super::conn::Pool;
use super::image::{self, Image, Open};
use super::{DELETED, RbdDriver, ffi};
use crate::driver::{Deleted, DriverError, Progress, snapshot_image, volume_image};

impl RbdDriver {
    /// Children of `vol@snap` by name.
    pub(super) fn children(
        &self,
        pool: &Pool,
        vol: &str,
        snap: &str,
    ) -> Result<Vec<String>, DriverError> {
        let img = self.open(
            pool,
            "children",
            Open::AtSnap(vol, snap),
            &format!("{vol}@{snap}"),
        )?;
        Ok(img
            .children()
            .map_err(|e| self.fail("children", vol, e))?
            .into_iter()
            .map(|c| {
                if c.in_trash {
                    format!("{} (in trash)", c.name)
                } else {
                    c.name
                }
            })
            .collect())
    }

    /// Unprotects (if protected) and removes a snapshot nothing reads from.
    pub(super) fn remove_snapshot(
        &self,
        img: &Image<'_>,
        vol: &str,
        snap: &str,
    ) -> Result<(), DriverError> {
        let what = format!("{vol}@{snap}");
        if img
            .snap_is_protected(snap)
            .map_err(|e| self.fail("unprotect", &what, e))?
        {
            img.snap_unprotect(snap)
                .map_err(|e| self.fail("unprotect", &what, e))?;
        }
        img.snap_remove(snap)
            .map_err(|e| self.fail("snapshot delete", &what, e))
    }

    /// Removes the deferred snapshots of one image that nothing reads from any more; returns
    /// how many remain.
    fn purge_snapshots(
        &self,
        pool: &Pool,
        img: &Image<'_>,
        name: &str,
        trash_id: Option<&str>,
        gone: &mut Vec<String>,
    ) -> Result<usize, DriverError> {
        let mut left = 0;
        for s in img.snapshots().map_err(|e| self.fail("purge", name, e))? {
            if trash_id.is_none() && !s.name.ends_with(DELETED) {
                left += 1;
                continue;
            }
            let at = match trash_id {
                Some(id) => Open::IdAtSnap(id, &s.name),
                None => Open::AtSnap(name, &s.name),
            };
            let kids = self
                .open(pool, "purge", at, name)?
                .children()
                .map_err(|e| self.fail("purge", name, e))?;
            if kids.is_empty() {
                self.remove_snapshot(img, name, &s.name)?;
                gone.push(format!("{name}@{}", s.name));
            } else {
                left += 1;
            }
        }
        Ok(left)
    }

    pub(super) fn snapshot_create(
        &self,
        snap_id: &str,
        volume_id: &str,
        progress: &dyn Progress,
    ) -> Result<(), DriverError> {
        let pool = self.pool()?;
        let (vol, snap) = (volume_image(volume_id), snapshot_image(snap_id));
        let img = self.open(&pool, "snapshot", Open::Name(&vol), &vol)?;
        let what = format!("{vol}@{snap}");
        if !img
            .snap_exists(&snap)
            .map_err(|e| self.fail("snapshot", &what, e))?
        {
            img.snap_create(&snap)
                .map_err(|e| self.fail("snapshot", &what, e))?;
        }
        // Protected at once, as Cinder does, so that it can be cloned.
        if !img
            .snap_is_protected(&snap)
            .map_err(|e| self.fail("snapshot", &what, e))?
        {
            img.snap_protect(&snap)
                .map_err(|e| self.fail("protect", &what, e))?;
        }
        progress.update(1, 1);
        Ok(())
    }

    pub(super) fn snapshot_delete(
        &self,
        snap_id: &str,
        volume_id: &str,
        deferred: bool,
    ) -> Result<Deleted, DriverError> {
        let pool = self.pool()?;
        let (vol, snap) = (volume_image(volume_id), snapshot_image(snap_id));
        let what = format!("{vol}@{snap}");
        let img = match self.open(&pool, "snapshot delete", Open::Name(&vol), &what) {
            Ok(i) => i,
            // The volume went to the trash with it: only the purge removes it now.
            Err(DriverError::NotFound { .. }) => {
                let in_trash = image::trash_list(&pool)
                    .map_err(|e| self.fail("snapshot delete", &what, e))?
                    .iter()
                    .any(|t| t.name == vol);
                return if in_trash {
                    Ok(Deleted::Deferred)
                } else {
                    Err(DriverError::NotFound {
                        backend: self.backend.clone(),
                        image: what,
                    })
                };
            }
            Err(e) => return Err(e),
        };
        if !img
            .snap_exists(&snap)
            .map_err(|e| self.fail("snapshot delete", &what, e))?
        {
            let hidden = format!("{snap}{DELETED}");
            return if img
                .snap_exists(&hidden)
                .map_err(|e| self.fail("snapshot delete", &what, e))?
            {
                Ok(Deleted::Deferred)
            } else {
                Err(DriverError::NotFound {
                    backend: self.backend.clone(),
                    image: what,
                })
            };
        }
        let kids = self.children(&pool, &vol, &snap)?;
        if kids.is_empty() {
            self.remove_snapshot(&img, &vol, &snap)?;
            return Ok(Deleted::Now);
        }
        if !deferred {
            return Err(DriverError::Busy {
                backend: self.backend.clone(),
                image: what,
                dependents: kids,
            });
        }
        img.snap_rename(&snap, &format!("{snap}{DELETED}"))
            .map_err(|e| self.fail("snapshot delete", &what, e))?;
        Ok(Deleted::Deferred)
    }

    pub(super) fn snapshot_clone(
        &self,
        snap_id: &str,
        source_volume_id: &str,
        volume_id: &str,
        size: u64,
    ) -> Result<(), DriverError> {
        let pool = self.pool()?;
        let (src, snap, name) = (
            volume_image(source_volume_id),
            snapshot_image(snap_id),
            volume_image(volume_id),
        );
        let features = self
            .open(&pool, "clone", Open::Name(&src), &src)?
            .features()
            .map_err(|e| self.fail("clone", &src, e))?;
        if features & ffi::FEATURE_LAYERING == 0 {
            return Err(DriverError::Invalid {
                backend: self.backend.clone(),
                op: "clone",
                message: format!(
                    "{src} has no layering feature: it cannot be cloned (rbd feature enable is not possible for layering; copy it instead)"
                ),
            });
        }
        match image::clone(&pool, &src, &snap, &name, features) {
            Ok(()) => {}
            Err(e) if e.code == libc::EEXIST => {
                // A re-run (the job's new volume id names the image). librbd's clone is
                // several steps; one killed between them leaves the name with no header that
                // opens, or a header with no parent yet (the copy rounds found both: the re-run
                // then failed). An image without a parent may also be this job's own earlier
                // run, flattened before the crash. Either way it is this job's new volume,
                // which nothing else can have written to (it is `creating`): remove it and
                // clone again. A clone of another snapshot is an error, never removed.
                let parent = match Image::open(&pool, Open::Name(&name)) {
                    Ok(img) => img
                        .parent_snap()
                        .map_err(|e| self.fail("clone", &name, e))?,
                    Err(o) if o.code == libc::ENOENT => None,
                    Err(o) => return Err(self.fail("clone", &name, o)),
                };
                match parent {
                    Some(p) if p == snap => {}
                    Some(p) => {
                        return Err(self.io(
                            "clone",
                            format!("{name} already exists as a clone of {p}, not of {src}@{snap}"),
                        ));
                    }
                    None => {
                        tracing::warn!(backend = %self.backend, image = %name, "{name} exists without its parent (a clone or flatten interrupted before it was recorded); removing it and cloning again");
                        image::remove(&pool, &name, 0, &crate::driver::NoProgress)
                            .map_err(|e| self.fail("clone", &name, e))?;
                        image::clone(&pool, &src, &snap, &name, features)
                            .map_err(|e| self.fail("clone", &format!("{src}@{snap}"), e))?;
                    }
                }
            }
            Err(e) => return Err(self.fail("clone", &format!("{src}@{snap}"), e)),
        }
        let img = self.open(&pool, "clone", Open::Name(&name), &name)?;
        if size > img.size().map_err(|e| self.fail("clone", &name, e))? {
            img.resize(size).map_err(|e| self.fail("clone", &name, e))?;
        }
        Ok(())
    }

    pub(super) fn purge_deferred_images(&self) -> Result<Vec<String>, DriverError> {
        let pool = self.pool()?;
        let mut gone = vec![];
        for t in image::trash_list(&pool).map_err(|e| self.fail("purge", &self.cfg.pool, e))? {
            if !t.name.starts_with("volume-") {
                continue; // not ember's: someone else's trash
            }
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs() as i64);
            if t.deferment_end > now {
                continue; // deferred_deletion_delay: kept a while yet
            }
            let left = {
                let img = self.open(&pool, "purge", Open::Id(&t.id), &t.name)?;
                self.purge_snapshots(&pool, &img, &t.name, Some(&t.id), &mut gone)?
            };
            if left == 0 {
                image::trash_remove(&pool, &t.id).map_err(|e| self.fail("purge", &t.name, e))?;
                gone.push(t.name.clone());
            }
        }
        for name in image::list(&pool).map_err(|e| self.fail("purge", &self.cfg.pool, e))? {
            let img = match Image::open(&pool, Open::Name(&name)) {
                Ok(i) => i,
                Err(e) if e.code == libc::ENOENT => continue,
                Err(e) => return Err(self.fail("purge", &name, e)),
            };
            self.purge_snapshots(&pool, &img, &name, None, &mut gone)?;
        }
        Ok(gone)
    }
}
