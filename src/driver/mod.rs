//! Storage drivers: the `VolumeDriver` trait and its implementations.
//!
//! Owner: `driver/`. May import `config` (its own section types) only: a driver knows nothing of
//! the database, the service or the console. Every method is **blocking by contract**: the
//! service calls drivers only from its bounded blocking pool, never on the reactor, so a call
//! that takes hours (an RBD flatten) cannot stop heartbeats or the screen.
//!
//! Every mutating call is idempotent (create of an existing image of the right size, delete of
//! a missing one, a flatten that already copied half): after a crash the service simply runs
//! the job again.

mod copylog;
pub mod fake;
pub mod file;
mod file_flatten;
mod file_image;
pub mod health;
mod layers;
#[cfg(test)]
pub(crate) mod mem;
pub(crate) mod pace;
mod proc_open;
pub mod rbd;
mod sparse;
pub use sparse::write_all_at;
pub mod transfer;
pub mod transfer_over;
pub mod verify;

pub use verify::{Against, VerifyReport};

use std::sync::Arc;

use thiserror::Error;

use crate::config::{BackendConfig, DriverConfig};

/// Space on a backend, for the capacity gauges and over-subscription checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
pub struct Capacity {
    pub total_bytes: u64,
    pub free_bytes: u64,
    /// Sum of the sizes of the images on the backend (thin: may exceed total); None when the
    /// storage was not asked (`rbd_exclusive_cinder_pool`: the database's sum stands in).
    pub provisioned_bytes: Option<u64>,
}

/// One image (volume or snapshot) as the storage sees it, to reconcile with the database.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ImageInfo {
    /// `volume-<uuid>` or `snapshot-<uuid>`.
    pub name: String,
    pub size_bytes: u64,
    /// Bytes really allocated (sparse files, thin images).
    pub used_bytes: u64,
    /// The image this one reads through to (a clone's snapshot), if any.
    pub parent: Option<String>,
    /// Marked for deferred deletion, removed once nothing depends on it.
    pub deferred_delete: bool,
    /// For a snapshot kept inside its volume's image (rbd): that image. None for volumes and
    /// for drivers whose snapshots are images of their own (file).
    pub volume: Option<String>,
}

/// Someone who has a volume's image open or locked: a client the storage knows (rbd: a
/// watcher or a locker) or a process on this host (file). Deleting or resizing under them is
/// what breaks guests, and librbd's EBUSY says nothing of who; this does.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Holder {
    /// `client.4242` (rbd) or `pid 1234` (file).
    pub client: String,
    /// The client's storage address (`127.0.0.1:0/3125`), or the process's command line.
    pub address: String,
    /// `watcher`, `exclusive lock`, `lock` (advisory, with its cookie), or `open file`.
    pub how: String,
    /// An advisory or exclusive lock's cookie, to break it by.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cookie: Option<String>,
    /// The host whose services use this address (from the services table), when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// An ember service's own client (its running job): not someone else's use.
    pub ember: bool,
}

impl Holder {
    /// One line: `client.4242 at 127.0.0.1:0/3125 (watcher, host a)`.
    pub fn describe(&self) -> String {
        let mut about = vec![self.how.clone()];
        if let Some(c) = &self.cookie {
            about[0] = format!("{} {c:?}", self.how);
        }
        if let Some(h) = &self.host {
            about.push(format!("host {h}"));
        }
        if self.ember {
            about.push("ember's own".into());
        }
        format!("{} at {} ({})", self.client, self.address, about.join(", "))
    }
}

/// How long a fenced client stays blocklisted when an operator breaks its lock or forces a
/// delete under it: Ceph's default (`mon_osd_blocklist_default_expire`, one hour).
pub const BLOCKLIST_SECS: u32 = 3600;

/// The storage refused because the image is in use (librbd's EBUSY, dependents, holders):
/// worth asking again once the holder is fenced.
pub fn is_busy(e: &DriverError) -> bool {
    matches!(
        e,
        DriverError::Busy { .. } | DriverError::InUse { .. } | DriverError::ImageBusy { .. }
    )
}

/// A storage address reduced to what identifies one client (`127.0.0.1:0/3125`): Ceph
/// writes the same client as `v2:127.0.0.1:0/3125`, `[v2:...,v1:...]` or without a prefix.
pub fn address_key(addr: &str) -> String {
    let first = addr
        .trim()
        .trim_start_matches('[')
        .trim_end_matches(']')
        .split(',')
        .next()
        .unwrap_or_default();
    first
        .strip_prefix("v2:")
        .or_else(|| first.strip_prefix("v1:"))
        .or_else(|| first.strip_prefix("any:"))
        .unwrap_or(first)
        .to_string()
}

/// The IP part of a storage address (`127.0.0.1`), to tell which host a client runs on.
pub fn address_ip(addr: &str) -> String {
    let key = address_key(addr);
    match key.rsplit_once(':') {
        Some((ip, _)) => ip.trim_start_matches('[').trim_end_matches(']').to_string(),
        None => key,
    }
}

/// Bytes in binary units, as `rbd` and `df -h` print them (`20.0 MiB`): for the drivers' own
/// messages, and the console's and CLI's through `service::units::human_bytes`.
pub fn human_size(b: u64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut v = b as f64;
    let mut i = 0;
    while v >= 1024.0 && i < UNITS.len() - 1 {
        v /= 1024.0;
        i += 1;
    }
    if i == 0 {
        format!("{b} B")
    } else {
        format!("{v:.1} {}", UNITS[i])
    }
}

/// Image names as Cinder makes them, so an operator finds a volume's data by its id.
pub fn volume_image(id: &str) -> String {
    format!("volume-{id}")
}

pub fn snapshot_image(id: &str) -> String {
    format!("snapshot-{id}")
}

/// The snapshot a backup reads from, kept on the volume's image so that the next backup reads
/// only what changed since (Cinder's Ceph backup driver's `backup.<id>.snap.<time>`).
pub fn backup_snapshot(backup_id: &str, unix_secs: u64) -> String {
    format!("backup.{backup_id}.snap.{unix_secs}")
}

/// The name of backup `backup_id`'s snapshot taken now.
pub fn backup_snapshot_now(backup_id: &str) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    backup_snapshot(backup_id, now)
}

/// The backup whose snapshot `snap` is, if it is one.
pub fn backup_of_snapshot(snap: &str) -> Option<&str> {
    let (id, time) = snap.strip_prefix("backup.")?.split_once(".snap.")?;
    (!id.is_empty() && !time.is_empty()).then_some(id)
}

/// How a backup's reader lists its extents.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackupRead {
    /// Where the volume holds data: the backup reads all of it.
    Whole,
    /// What changed since the earlier backup's snapshot (holes included): the backup reads
    /// only these and takes every other chunk from that backup's manifest.
    ChangedSince,
}

#[derive(Debug, Error, Clone, PartialEq)]
pub enum DriverError {
    #[error("backend {backend}: {op}: {message}")]
    Io {
        backend: String,
        op: &'static str,
        message: String,
    },
    #[error("backend {backend}: {op}: injected failure")]
    Injected { backend: String, op: &'static str },
    #[error("backend {backend}: {op}: cancelled")]
    Cancelled { backend: String, op: &'static str },
    #[error("backend {backend}: image {image} not found")]
    NotFound { backend: String, image: String },
    #[error("backend {backend}: {image} has dependent clones: {}", dependents.join(", "))]
    Busy {
        backend: String,
        image: String,
        dependents: Vec<String>,
    },
    /// Someone has the image open (or locked): refused unless forced.
    #[error(
        "backend {backend}: {image} is open by {holders}; check with `{check}`; --force overrides"
    )]
    InUse {
        backend: String,
        image: String,
        holders: String,
        check: String,
    },
    #[error("backend {backend}: {op}: {message}")]
    Invalid {
        backend: String,
        op: &'static str,
        message: String,
    },
    /// The storage refused this client: credentials or caps (EACCES, EPERM).
    #[error("backend {backend}: {op}: {message}")]
    Permission {
        backend: String,
        op: &'static str,
        message: String,
    },
    /// No room: the pool, a quota or the disk is full (ENOSPC, EDQUOT).
    #[error("backend {backend}: {op}: {message}")]
    NoSpace {
        backend: String,
        op: &'static str,
        message: String,
    },
    /// The storage did not answer in time: a monitor, an OSD, or a call past its limit.
    #[error("backend {backend}: {op}: {message}")]
    Timeout {
        backend: String,
        op: &'static str,
        message: String,
    },
    /// The image is open or in use elsewhere, and the storage said no more (librbd's EBUSY).
    #[error("backend {backend}: {op}: {message}")]
    ImageBusy {
        backend: String,
        op: &'static str,
        message: String,
    },
    /// The pool the backend names does not exist.
    #[error(
        "backend {backend}: connect: pool {pool:?} does not exist: create it (ceph osd pool create {pool}; rbd pool init {pool}) or fix rbd_pool"
    )]
    NoPool { backend: String, pool: String },
    /// The backend cannot be used as configured, and ember knows the fix (a keyring that
    /// does not hold the configured user, a missing ceph conf...).
    #[error("backend {backend}: {op}: {cause}; fix: {fix}")]
    Setup {
        backend: String,
        op: &'static str,
        cause: String,
        fix: String,
    },
}

impl DriverError {
    /// What went wrong without the backend's name in front (the doctor prints it under the
    /// backend already).
    pub fn detail(&self) -> String {
        match self {
            DriverError::Io { message, .. }
            | DriverError::Invalid { message, .. }
            | DriverError::Permission { message, .. }
            | DriverError::NoSpace { message, .. }
            | DriverError::Timeout { message, .. }
            | DriverError::ImageBusy { message, .. } => message.clone(),
            DriverError::Setup { cause, fix, .. } => format!("{cause}; fix: {fix}"),
            e => e.to_string(),
        }
    }
}

/// Progress of a long call, and the caller's way to stop it.
pub trait Progress: Send + Sync {
    /// Bytes done of total so far. Returns false when the call must stop (cancelled).
    fn update(&self, done: u64, total: u64) -> bool;

    /// A call that works through a storage client of its own (a throttled rbd flatten) names
    /// it before it writes anything: a job records it, so that a peer taking the job over
    /// fences that client too. False: it could not be recorded, and the call must not start.
    fn storage_client(&self, _address: &str) -> bool {
        true
    }

    /// When `update` said stop: whether what was started should be undone (an operator's
    /// cancel), rather than left for the next run to carry on (the service stopping, the job
    /// taken over by a peer). A live migration aborts only on the former.
    fn undo_on_stop(&self) -> bool {
        true
    }
}

/// Where a live migration could move an image: a backend's storage cluster and pool (rbd:
/// the cluster's fsid). Two backends with the same cluster can move images without a copy
/// through this host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LiveTarget {
    pub cluster: String,
    pub pool: String,
}

/// For calls nobody watches.
pub struct NoProgress;

impl Progress for NoProgress {
    fn update(&self, _done: u64, _total: u64) -> bool {
        true
    }
}

/// What a deferred-capable delete did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Deleted {
    Now,
    /// Clones still read from it: hidden now, removed by `purge_deferred` after the last goes.
    Deferred,
}

/// What every backend can do. Blocking: call only off the reactor.
pub trait VolumeDriver: Send + Sync + std::fmt::Debug {
    fn backend(&self) -> &str;
    /// Cinder's `do_setup` + `check_for_setup_error`: is the backend usable at all?
    fn check_setup(&self) -> Result<(), DriverError>;
    fn capacity(&self) -> Result<Capacity, DriverError>;
    /// Every image the backend holds, to compare with the database.
    fn list(&self) -> Result<Vec<ImageInfo>, DriverError>;
    /// A new empty (thin) volume.
    fn create_volume(&self, id: &str, size: u64) -> Result<(), DriverError>;
    fn delete_volume(&self, id: &str, progress: &dyn Progress) -> Result<(), DriverError>;
    /// Grows a volume; shrinking is refused.
    fn extend_volume(&self, id: &str, size: u64) -> Result<(), DriverError>;
    /// A point-in-time, read-only image of the volume.
    fn create_snapshot(
        &self,
        snap_id: &str,
        volume_id: &str,
        progress: &dyn Progress,
    ) -> Result<(), DriverError>;
    /// Refused with `Busy` while clones depend on it, unless `deferred`. `volume_id` is the
    /// volume it was taken of (rbd keeps snapshots inside the volume's image).
    fn delete_snapshot(
        &self,
        snap_id: &str,
        volume_id: &str,
        deferred: bool,
    ) -> Result<Deleted, DriverError>;
    /// A new volume that reads through to the snapshot (layering): fast whatever the size.
    /// `source_volume_id` is the volume the snapshot was taken of.
    fn clone_snapshot(
        &self,
        snap_id: &str,
        source_volume_id: &str,
        volume_id: &str,
        size: u64,
    ) -> Result<(), DriverError>;
    /// Copies into the volume what it still reads from its parents, then drops the link.
    fn flatten(&self, volume_id: &str, progress: &dyn Progress) -> Result<(), DriverError>;
    /// Compares the volume's data, as a reader sees it (through its parents), with the
    /// snapshot's, byte for byte over the volume's size, at most `bps_limit` bytes a second.
    /// Storage that cannot read its images back refuses.
    fn verify(
        &self,
        _volume_id: &str,
        _against: &Against,
        _bps_limit: u64,
        _progress: &dyn Progress,
    ) -> Result<VerifyReport, DriverError> {
        Err(DriverError::Invalid {
            backend: self.backend().to_string(),
            op: "verify",
            message: "this backend cannot read its images back to compare them".into(),
        })
    }
    /// Opens a volume's image for a copy to or from another backend (a migration): read as
    /// clients see it (through its parents), and written when `write`. Storage that cannot
    /// read or write its images directly refuses.
    fn with_volume(
        &self,
        _volume_id: &str,
        _write: bool,
        _f: &mut dyn FnMut(&dyn transfer::Writable) -> Result<(), DriverError>,
    ) -> Result<(), DriverError> {
        Err(DriverError::Invalid {
            backend: self.backend().to_string(),
            op: "migrate",
            message: "this backend cannot read or write its images directly".into(),
        })
    }
    /// Opens snapshot `snap_id` of volume `volume_id` to read, at its point in time (through
    /// its parents): a migration by copy carries a volume's snapshots this way. Storage that
    /// cannot read its snapshots refuses.
    fn with_snapshot(
        &self,
        _snap_id: &str,
        _volume_id: &str,
        _f: &mut dyn FnMut(&dyn verify::Readable) -> Result<(), DriverError>,
    ) -> Result<(), DriverError> {
        Err(DriverError::Invalid {
            backend: self.backend().to_string(),
            op: "migrate",
            message: "this backend cannot read its snapshots directly".into(),
        })
    }
    /// Reads the volume for backup `backup_id`. Storage with snapshots (rbd) reads a snapshot
    /// it takes for the backup (the same one again when an earlier run of the backup took it),
    /// so a guest may go on writing, and lists only what changed since backup `since`'s
    /// snapshot when that is still there at the same size. Others read the volume itself,
    /// whole, which is safe only while nobody writes to it.
    fn backup_read(
        &self,
        volume_id: &str,
        _backup_id: &str,
        _since: Option<&str>,
        f: &mut dyn FnMut(&dyn verify::Readable, BackupRead) -> Result<(), DriverError>,
    ) -> Result<(), DriverError> {
        self.with_volume(volume_id, false, &mut |r| f(r, BackupRead::Whole))
    }
    /// Whether `backup_read` reads a point-in-time snapshot (a volume in use may be backed up).
    fn backup_reads_snapshot(&self) -> bool {
        false
    }
    /// Removes the volume's backup snapshots whose backups are not in `keep` (leftovers of
    /// failed backups, and those beyond `backup_ceph_max_snapshots`); returns their names. A
    /// volume that is gone has none.
    fn prune_backup_snapshots(
        &self,
        _volume_id: &str,
        _keep: &[String],
    ) -> Result<Vec<String>, DriverError> {
        Ok(vec![])
    }
    /// This backend's cluster and pool, when its storage can move images into it live (rbd);
    /// None when it cannot, or its cluster does not answer now.
    fn live_target(&self) -> Option<LiveTarget> {
        None
    }
    /// Whether a live migration of the volume's image is under way (an earlier run's).
    fn live_migration(&self, _volume_id: &str) -> Result<bool, DriverError> {
        Ok(false)
    }
    /// Moves the volume's image into `to` within the same cluster, resuming whatever an
    /// earlier run began; the image keeps its snapshots and parent.
    fn live_migrate(
        &self,
        _volume_id: &str,
        _to: &LiveTarget,
        _progress: &dyn Progress,
    ) -> Result<(), DriverError> {
        Err(DriverError::Invalid {
            backend: self.backend().to_string(),
            op: "migrate",
            message: "this backend cannot move images live".into(),
        })
    }
    /// Removes deferred-deleted images that nothing depends on any more; returns their names.
    fn purge_deferred(&self) -> Result<Vec<String>, DriverError>;
    /// This backend's storage client address, if its storage can tell clients apart (rbd:
    /// the librados address). Recorded in the service row so that a peer can fence it.
    fn client_address(&self) -> Option<String> {
        None
    }
    /// Fences another client before its jobs are taken over (rbd: adds it to the OSD
    /// blocklist for `expire_secs`), so a frozen host that wakes up cannot write to the
    /// images. Storage without such a mechanism has nothing to do.
    fn fence_client(&self, _address: &str, _expire_secs: u32) -> Result<(), DriverError> {
        Ok(())
    }
    /// Drops the storage client so that the next call makes a new one: after this host was
    /// fenced (its old client is refused by the storage), it works again with a new identity.
    fn reset_client(&self) {}
    /// Who has an image open or locked (`volume-<id>`, or any image `manage` would adopt),
    /// this backend's own client marked `ember`. Storage that cannot tell has nobody to report.
    fn holders(&self, _image: &str) -> Result<Vec<Holder>, DriverError> {
        Ok(vec![])
    }
    /// One image by name, whatever its name (`manage` adopts images ember did not make).
    fn inspect_image(&self, image: &str) -> Result<ImageInfo, DriverError> {
        self.list()?
            .into_iter()
            .find(|i| i.name == image)
            .ok_or_else(|| DriverError::NotFound {
                backend: self.backend().to_string(),
                image: image.to_string(),
            })
    }
    /// Renames an image (`manage` names an adopted image `volume-<id>`, as Cinder does).
    fn rename_image(&self, _from: &str, _to: &str) -> Result<(), DriverError> {
        Err(DriverError::Invalid {
            backend: self.backend().to_string(),
            op: "rename",
            message: "this backend cannot rename images".into(),
        })
    }
    /// Bytes the volume's image really uses (allocated, not provisioned): from the listing
    /// by default; rbd asks for the one image (`rbd du`, whole objects, fast with fast-diff).
    fn used_bytes(&self, volume_id: &str) -> Result<u64, DriverError> {
        let name = volume_image(volume_id);
        self.list()?
            .into_iter()
            .find(|i| i.name == name)
            .map(|i| i.used_bytes)
            .ok_or_else(|| DriverError::NotFound {
                backend: self.backend().to_string(),
                image: name,
            })
    }
    /// The command an operator runs to see the same (`rbd status pool/image`).
    fn holders_command(&self, volume_id: &str) -> String {
        format!(
            "(backend {} cannot tell who has {volume_id} open)",
            self.backend()
        )
    }
    /// Breaks one lock on the volume's image (rbd: `rbd lock rm`), after fencing its client
    /// for `expire_secs` so a live holder cannot write on; refused by storage without locks.
    fn break_lock(
        &self,
        _volume_id: &str,
        _holder: &Holder,
        _expire_secs: u32,
    ) -> Result<(), DriverError> {
        Err(DriverError::Invalid {
            backend: self.backend().to_string(),
            op: "break-lock",
            message: "this backend has no locks to break".into(),
        })
    }
    /// The storage's standing health conditions, explained for this backend (rbd: Ceph's
    /// health checks). Storage that reports none has none to tell.
    fn storage_health(&self) -> Result<Vec<health::HealthFinding>, DriverError> {
        Ok(vec![])
    }
}

/// For an operator's command (`volume show`, `locks`, `manage`, `reconcile`, the doctor):
/// the backend's driver with one connect attempt, so that an unreachable cluster is named at
/// once rather than after the services' retries.
pub fn open_once(cfg: &BackendConfig) -> Result<Arc<dyn VolumeDriver>, DriverError> {
    let mut once = cfg.clone();
    if let DriverConfig::Rbd(r) = &mut once.driver {
        r.connection_retries = 0;
    }
    open(&once)
}

/// Builds the driver a backend's section names. Builds only; `check_setup` tells if it works.
pub fn open(cfg: &BackendConfig) -> Result<Arc<dyn VolumeDriver>, DriverError> {
    match &cfg.driver {
        DriverConfig::File { dir } => Ok(Arc::new(file::FileDriver::new(
            &cfg.name,
            dir.clone(),
            cfg.volume_copy_bps_limit,
        ))),
        DriverConfig::Fake(f) => Ok(Arc::new(fake::FakeDriver::new(&cfg.name, f.clone()))),
        DriverConfig::Rbd(r) => Ok(Arc::new(rbd::RbdDriver::new(
            &cfg.name,
            r.clone(),
            cfg.volume_copy_bps_limit,
        ))),
    }
}

/// A random source for tests and benches: seeded from `EMBER_SEED` when set, else at
/// random; the seed is printed (standard error) so that a round can be replayed.
pub fn seeded_rng() -> (u64, rand::rngs::StdRng) {
    let seed: u64 = std::env::var("EMBER_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(rand::random);
    eprintln!("seed {seed} (EMBER_SEED={seed} replays it)");
    (
        seed,
        <rand::rngs::StdRng as rand::SeedableRng>::seed_from_u64(seed),
    )
}
