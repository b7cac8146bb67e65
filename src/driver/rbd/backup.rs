//! Backups of rbd volumes through snapshots, as Cinder's Ceph backup driver takes them: each
//! backup reads a snapshot `backup.<id>.snap.<time>` of the volume's image (a point in time,
//! while a guest goes on writing), and the snapshot stays on the image so that the next
//! incremental backup reads only what changed since (`rbd_diff_iterate2` from it, `rbd diff
//! --from-snap`). `backup_ceph_max_snapshots` bounds how many stay.

use super::RbdDriver;
use super::image::{Image, Open};
use super::verify::RbdReader;
use crate::driver::verify::{Listed, Readable};
use crate::driver::{
    BackupRead, DriverError, backup_of_snapshot, backup_snapshot_now, volume_image,
};

impl RbdDriver {
    pub(super) fn backup_read_image(
        &self,
        volume_id: &str,
        backup_id: &str,
        since: Option<&str>,
        f: &mut dyn FnMut(&dyn Readable, BackupRead) -> Result<(), DriverError>,
    ) -> Result<(), DriverError> {
        let pool = self.pool()?;
        let name = volume_image(volume_id);
        let (snap, base) = {
            let img = self.open(&pool, "backup", Open::Name(&name), &name)?;
            let snaps = img.snapshots().map_err(|e| self.fail("backup", &name, e))?;
            let of = |id: &str| {
                snaps
                    .iter()
                    .find(|s| backup_of_snapshot(&s.name) == Some(id))
            };
            let base = since.and_then(of).cloned();
            // An earlier run of this backup (a retry, or a restart) took it already: the
            // same point in time again.
            let snap = match of(backup_id) {
                Some(s) => s.name.clone(),
                None => {
                    let s = backup_snapshot_now(backup_id);
                    img.snap_create(&s)
                        .map_err(|e| self.fail("backup snapshot", &format!("{name}@{s}"), e))?;
                    s
                }
            };
            (snap, base)
        };
        let spec = format!("{name}@{snap}");
        let img = self.open(&pool, "backup", Open::AtSnap(&name, &snap), &spec)?;
        let size = img.size().map_err(|e| self.fail("backup", &spec, e))?;
        let reader = RbdReader::new(img, size);
        match base.filter(|b| b.size == size) {
            // The earlier backup's manifest covers the same size: only the difference is read.
            Some(b) => {
                let extents = reader
                    .img
                    .changed_since(&b.name)
                    .map_err(|e| self.fail("backup diff", &format!("{spec} from {}", b.name), e))?;
                f(
                    &Listed {
                        reader: &reader,
                        extents,
                    },
                    BackupRead::ChangedSince,
                )
            }
            None => f(&reader, BackupRead::Whole),
        }
    }

    pub(super) fn prune_backup_snapshot_list(
        &self,
        volume_id: &str,
        keep: &[String],
    ) -> Result<Vec<String>, DriverError> {
        let pool = self.pool()?;
        let name = volume_image(volume_id);
        let img = match Image::open(&pool, Open::Name(&name)) {
            Ok(i) => i,
            Err(e) if e.code == libc::ENOENT => return Ok(vec![]),
            Err(e) => return Err(self.fail("backup prune", &name, e)),
        };
        let mut gone = vec![];
        for s in img
            .snapshots()
            .map_err(|e| self.fail("backup prune", &name, e))?
        {
            if backup_of_snapshot(&s.name).is_some_and(|id| !keep.iter().any(|k| k == id)) {
                self.remove_snapshot(&img, &name, &s.name)?;
                gone.push(format!("{name}@{}", s.name));
            }
        }
        Ok(gone)
    }
}
