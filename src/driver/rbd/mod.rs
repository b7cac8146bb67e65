//! The `rbd` driver: volumes as Ceph RBD images, as Cinder's RBDDriver keeps them.
//!
//! Layout in the backend's pool, as Cinder names things so `rbd ls` reads the same:
//! - `volume-<uuid>`: a volume, an image.
//! - `volume-<uuid>@snapshot-<uuid>`: a snapshot, protected at creation so it can be cloned.
//! - a clone is a layered child of such a snapshot (`rbd_clone2`, the parent's features);
//!   flatten copies the parent's data in and drops the link (`rbd_flatten_with_progress`).
//! - deferred deletion (`enable_deferred_deletion`): a snapshot that clones still read from is
//!   renamed `snapshot-<uuid>.deleted`; a volume whose only snapshots are such is moved to the
//!   RBD trash. `purge_deferred` removes both once their last clone is gone.
//!
//! Connection: one librados connection and pool context per backend, made on first use with
//! the backend's timeouts, shared by its storage threads, and dropped (to be made anew) when a
//! call says the cluster went away, so the service reconnects once the cluster is back.

mod backup;
mod backup_store;
mod conn;
mod ffi;
mod flatten;
mod health;
pub mod health_codes;
mod holders;
mod image;
mod image_io;
mod migrate;
mod session;
mod snapshots;
mod verify;

pub mod cephconf;

pub use backup_store::RbdBackupStore;
pub use session::ClusterHealth;

use std::sync::{Arc, Mutex};

use tracing::{info, warn};

use self::conn::Pool;
use self::image::{Image, Open, Ran};
use super::{Capacity, Deleted, DriverError, ImageInfo, Progress, VolumeDriver, volume_image};
use crate::config::RbdConfig;

/// Suffix of a snapshot kept for its clones after it was deleted (deferred deletion).
const DELETED: &str = ".deleted";

#[derive(Debug)]
pub struct RbdDriver {
    backend: String,
    cfg: RbdConfig,
    /// Cinder's `volume_copy_bps_limit`: a flatten is held to it (0: no limit).
    bps_limit: u64,
    conn: Mutex<Option<Arc<Pool>>>,
    /// Pace a throttled flatten on the shared client, as ember did before issue 23: only
    /// `bench rbd-flatten` sets it, to show beside the fix what it cost other calls.
    pace_on_shared: std::sync::atomic::AtomicBool,
}

impl RbdDriver {
    pub fn new(backend: &str, cfg: RbdConfig, bps_limit: u64) -> Self {
        Self {
            backend: backend.to_string(),
            cfg,
            bps_limit,
            conn: Mutex::new(None),
            pace_on_shared: Default::default(),
        }
    }

    /// For the bench's comparison only: pace throttled flattens on the shared client.
    pub fn pace_on_shared_client(&self, on: bool) {
        self.pace_on_shared
            .store(on, std::sync::atomic::Ordering::SeqCst);
    }

    fn open<'p>(
        &self,
        pool: &'p Pool,
        op: &'static str,
        how: Open<'_>,
        image: &str,
    ) -> Result<Image<'p>, DriverError> {
        Image::open(pool, how).map_err(|e| self.fail(op, image, e))
    }

    fn cancelled(&self, op: &'static str) -> DriverError {
        DriverError::Cancelled {
            backend: self.backend.clone(),
            op,
        }
    }
}

impl VolumeDriver for RbdDriver {
    fn backend(&self) -> &str {
        &self.backend
    }

    fn check_setup(&self) -> Result<(), DriverError> {
        self.probe().map(drop)
    }

    fn client_address(&self) -> Option<String> {
        let slot = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        slot.as_ref().and_then(|p| p.cluster().address().ok())
    }

    fn fence_client(&self, address: &str, expire_secs: u32) -> Result<(), DriverError> {
        let pool = self.pool()?;
        if pool.cluster().address().ok().as_deref() == Some(address) {
            return Err(self.io("fence", format!("{address} is this service's own client")));
        }
        pool.cluster()
            .blocklist_add(address, expire_secs)
            .map_err(|e| {
                let hint = if matches!(e.code, libc::EPERM | libc::EACCES) {
                    format!(
                        ": client.{} lacks the `osd blocklist` capability; grant it with \
                         `ceph auth caps client.{0} mon 'profile rbd' osd 'profile rbd pool={}'`",
                        self.user(),
                        self.cfg.pool
                    )
                } else {
                    String::new()
                };
                self.io(
                    "fence",
                    format!("ceph osd blocklist add {address}: {}{hint}", e.describe()),
                )
            })
    }

    fn reset_client(&self) {
        self.reset();
    }

    fn holders(&self, image: &str) -> Result<Vec<crate::driver::Holder>, DriverError> {
        self.image_holders(image)
    }

    fn holders_command(&self, image: &str) -> String {
        self.status_command(image)
    }

    fn inspect_image(&self, image: &str) -> Result<ImageInfo, DriverError> {
        self.inspect(image)
    }

    fn rename_image(&self, from: &str, to: &str) -> Result<(), DriverError> {
        self.rename(from, to)
    }

    fn used_bytes(&self, volume_id: &str) -> Result<u64, DriverError> {
        self.image_used_bytes(volume_id)
    }

    fn break_lock(
        &self,
        volume_id: &str,
        holder: &crate::driver::Holder,
        expire_secs: u32,
    ) -> Result<(), DriverError> {
        self.break_image_lock(volume_id, holder, expire_secs)
    }

    fn storage_health(&self) -> Result<Vec<crate::driver::health::HealthFinding>, DriverError> {
        self.health_findings()
    }

    fn capacity(&self) -> Result<Capacity, DriverError> {
        let pool = self.pool_once()?;
        let mon = |cmd| self.mon(&pool, cmd);
        let df = mon(serde_json::json!({"prefix": "df", "format": "json"}))?;
        // Pool figures come from the manager; without one `ceph df` lists no pools. The
        // backend still works: its capacity reads as 0 (unknown) and `ember doctor` says why.
        let none = serde_json::Value::Null;
        let stats = df["pools"]
            .as_array()
            .and_then(|ps| ps.iter().find(|p| p["name"] == self.cfg.pool.as_str()))
            .map_or(&none, |p| &p["stats"]);
        if stats.is_null() {
            warn!(backend = %self.backend, "`ceph df` has no figures for pool {} (no active mgr?): capacity unknown", self.cfg.pool);
        }
        let stored = stats["stored"]
            .as_u64()
            .or_else(|| stats["bytes_used"].as_u64())
            .unwrap_or(0);
        let avail = stats["max_avail"].as_u64().unwrap_or(0);
        let quota = mon(serde_json::json!({"prefix": "osd pool get-quota", "pool": self.cfg.pool, "format": "json"}))
            .ok()
            .and_then(|q| q["quota_max_bytes"].as_u64())
            .filter(|q| *q > 0);
        // As Cinder's _get_pool_stats: with a quota, total is the quota and free what is left
        // of it (at most what the OSDs can take); without, the cluster's size and the pool's
        // max_avail. report_dynamic_total_capacity (the default) makes total = stored + free.
        let (mut total, free) = match quota {
            Some(q) => (q, q.saturating_sub(stored).min(avail)),
            None => (df["stats"]["total_bytes"].as_u64().unwrap_or(0), avail),
        };
        if self.cfg.dynamic_total_capacity {
            total = stored + free;
        }
        // The pool's directory is read every time (one OSD op): the periodic proof that the
        // data path answers, so a service whose OSDs do not shows down with the reason.
        let names = image::list(&pool).map_err(|e| self.fail("capacity", &self.cfg.pool, e))?;
        // rbd_exclusive_cinder_pool (the default): the pool holds only this backend's volumes,
        // so the database's sum is the provisioned figure and no image is opened. A shared
        // pool counts every image, as Cinder's _get_usage_info.
        let provisioned = if self.cfg.exclusive_pool {
            None
        } else {
            let mut sum = 0;
            for name in names {
                match Image::open(&pool, Open::ReadOnly(&name)).and_then(|i| i.size()) {
                    Ok(s) => sum += s,
                    Err(e) if e.code == libc::ENOENT => {} // removed meanwhile
                    Err(e) => return Err(self.fail("capacity", &name, e)),
                }
            }
            Some(sum)
        };
        Ok(Capacity {
            total_bytes: total,
            free_bytes: free,
            provisioned_bytes: provisioned,
        })
    }

    fn list(&self) -> Result<Vec<ImageInfo>, DriverError> {
        let pool = self.pool()?;
        let mut out = vec![];
        let mut add = |img: &Image<'_>, name: &str, in_trash: bool| -> Result<(), DriverError> {
            out.push(ImageInfo {
                name: name.to_string(),
                size_bytes: img.size().map_err(|e| self.fail("list", name, e))?,
                used_bytes: img.used_bytes().map_err(|e| self.fail("list", name, e))?,
                parent: img.parent_snap().map_err(|e| self.fail("list", name, e))?,
                deferred_delete: in_trash,
                volume: None,
            });
            for s in img.snapshots().map_err(|e| self.fail("list", name, e))? {
                let deferred = in_trash || s.name.ends_with(DELETED);
                out.push(ImageInfo {
                    name: s.name.trim_end_matches(DELETED).to_string(),
                    size_bytes: s.size,
                    used_bytes: 0,
                    parent: None,
                    deferred_delete: deferred,
                    volume: Some(name.to_string()),
                });
            }
            Ok(())
        };
        for name in image::list(&pool).map_err(|e| self.fail("list", &self.cfg.pool, e))? {
            match Image::open(&pool, Open::ReadOnly(&name)) {
                Ok(img) => add(&img, &name, false)?,
                Err(e) if e.code == libc::ENOENT => {}
                Err(e) => return Err(self.fail("list", &name, e)),
            }
        }
        for t in image::trash_list(&pool).map_err(|e| self.fail("list trash", &self.cfg.pool, e))? {
            if t.name.starts_with("volume-")
                && let Ok(img) = Image::open(&pool, Open::Id(&t.id))
            {
                add(&img, &t.name, true)?;
            }
        }
        Ok(out)
    }

    fn create_volume(&self, id: &str, size: u64) -> Result<(), DriverError> {
        let pool = self.pool()?;
        let name = volume_image(id);
        // rbd_store_chunk_size MiB objects: order = log2(bytes).
        let order = 20 + self.cfg.chunk_mib.trailing_zeros();
        match image::create(&pool, &name, size, order) {
            Ok(()) => Ok(()),
            Err(e) if e.code == libc::EEXIST => {
                // Idempotent: a re-run after a crash finds its own work done.
                let img = self.open(&pool, "create", Open::Name(&name), &name)?;
                let same = img.size().ok() == Some(size) && matches!(img.parent_snap(), Ok(None));
                if same {
                    Ok(())
                } else {
                    Err(self.io(
                        "create",
                        format!("{name} already exists with another size or a parent"),
                    ))
                }
            }
            Err(e) => Err(self.fail("create", &name, e)),
        }
    }

    fn delete_volume(&self, id: &str, progress: &dyn Progress) -> Result<(), DriverError> {
        let pool = self.pool()?;
        let name = volume_image(id);
        let size = {
            let img = self.open(&pool, "delete", Open::Name(&name), &name)?;
            // Snapshots nothing reads from are leftovers (a crash between the two steps of a
            // delete): removed. Any read by clones block the delete, unless deferred.
            let mut deferred = 0;
            let mut busy = vec![];
            for s in img.snapshots().map_err(|e| self.fail("delete", &name, e))? {
                let kids = self.children(&pool, &name, &s.name)?;
                if kids.is_empty() {
                    self.remove_snapshot(&img, &name, &s.name)?;
                } else if s.name.ends_with(DELETED) {
                    deferred += 1;
                } else {
                    busy.extend(kids);
                }
            }
            if !busy.is_empty() {
                return Err(DriverError::Busy {
                    backend: self.backend.clone(),
                    image: name,
                    dependents: busy,
                });
            }
            if deferred > 0 {
                drop(img);
                image::trash_move(&pool, &name, self.cfg.deferred_deletion_delay.as_secs())
                    .map_err(|e| self.fail("delete", &name, e))?;
                info!(backend = %self.backend, "{name} moved to the trash: clones still read from its snapshots");
                return Ok(());
            }
            img.size().map_err(|e| self.fail("delete", &name, e))?
        };
        match image::remove(&pool, &name, size, progress)
            .map_err(|e| self.fail("delete", &name, e))?
        {
            Ran::Done => Ok(()),
            Ran::Cancelled => Err(self.cancelled("delete")),
            Ran::Panicked(p) => Err(self.io(
                "delete",
                format!("progress callback panicked: {p}; the call was stopped"),
            )),
        }
    }

    fn extend_volume(&self, id: &str, size: u64) -> Result<(), DriverError> {
        let pool = self.pool()?;
        let name = volume_image(id);
        let img = self.open(&pool, "extend", Open::Name(&name), &name)?;
        let now = img.size().map_err(|e| self.fail("extend", &name, e))?;
        if size < now {
            return Err(DriverError::Invalid {
                backend: self.backend.clone(),
                op: "extend",
                message: format!("{name} is {now} bytes; shrinking to {size} is refused"),
            });
        }
        if size == now {
            return Ok(());
        }
        img.resize(size).map_err(|e| self.fail("extend", &name, e))
    }

    fn create_snapshot(
        &self,
        snap_id: &str,
        volume_id: &str,
        progress: &dyn Progress,
    ) -> Result<(), DriverError> {
        self.snapshot_create(snap_id, volume_id, progress)
    }

    fn delete_snapshot(
        &self,
        snap_id: &str,
        volume_id: &str,
        deferred: bool,
    ) -> Result<Deleted, DriverError> {
        self.snapshot_delete(snap_id, volume_id, deferred)
    }

    fn clone_snapshot(
        &self,
        snap_id: &str,
        source_volume_id: &str,
        volume_id: &str,
        size: u64,
    ) -> Result<(), DriverError> {
        self.snapshot_clone(snap_id, source_volume_id, volume_id, size)
    }

    fn flatten(&self, volume_id: &str, progress: &dyn Progress) -> Result<(), DriverError> {
        self.flatten_image(volume_id, progress)
    }

    fn verify(
        &self,
        volume_id: &str,
        against: &crate::driver::Against,
        bps_limit: u64,
        progress: &dyn Progress,
    ) -> Result<crate::driver::VerifyReport, DriverError> {
        self.verify_image(volume_id, against, bps_limit, progress)
    }

    fn live_target(&self) -> Option<crate::driver::LiveTarget> {
        self.live_target_of()
    }

    fn live_migration(&self, volume_id: &str) -> Result<bool, DriverError> {
        self.live_migration_of(volume_id)
    }

    fn live_migrate(
        &self,
        volume_id: &str,
        to: &crate::driver::LiveTarget,
        progress: &dyn Progress,
    ) -> Result<(), DriverError> {
        self.live_migrate_image(volume_id, to, progress)
    }

    fn with_volume(
        &self,
        volume_id: &str,
        write: bool,
        f: &mut dyn FnMut(&dyn crate::driver::transfer::Writable) -> Result<(), DriverError>,
    ) -> Result<(), DriverError> {
        self.with_volume_image(volume_id, write, f)
    }

    fn with_snapshot(
        &self,
        snap_id: &str,
        volume_id: &str,
        f: &mut dyn FnMut(&dyn crate::driver::verify::Readable) -> Result<(), DriverError>,
    ) -> Result<(), DriverError> {
        self.with_snapshot_image(snap_id, volume_id, f)
    }

    fn backup_read(
        &self,
        volume_id: &str,
        backup_id: &str,
        since: Option<&str>,
        f: &mut dyn FnMut(
            &dyn crate::driver::verify::Readable,
            crate::driver::BackupRead,
        ) -> Result<(), DriverError>,
    ) -> Result<(), DriverError> {
        self.backup_read_image(volume_id, backup_id, since, f)
    }

    fn backup_reads_snapshot(&self) -> bool {
        true
    }

    fn prune_backup_snapshots(
        &self,
        volume_id: &str,
        keep: &[String],
    ) -> Result<Vec<String>, DriverError> {
        self.prune_backup_snapshot_list(volume_id, keep)
    }

    fn purge_deferred(&self) -> Result<Vec<String>, DriverError> {
        self.purge_deferred_images()
    }
}
