//! Where backups go (`backup_driver` and its options, Cinder's names): the directory store
//! (`posix`, ember's default: a new user has one with no Ceph) or an rbd pool (`ceph`),
//! possibly on another cluster than the volumes'.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::error::ConfigError;
use super::options::Lookup;
use super::{RbdConfig, defaults, expand_home};

/// Where backups go, and what they keep on the volumes' storage.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct BackupConfig {
    /// Cinder's `backup_posix_path`: the backup store, a directory of content-addressed
    /// chunks and manifests (default `DATA_DIR/backup`, as Cinder's `$state_path/backup`).
    pub path: PathBuf,
    /// Cinder's `backup_ceph_max_snapshots`: how many backup snapshots stay on an rbd
    /// volume's image for the next incremental backup to diff from (0: every one, Cinder's
    /// default).
    pub max_snapshots: u32,
    /// `backup_driver = "ceph"`: backups go to this rbd pool (`backup_ceph_pool`, reached
    /// as `backup_ceph_user` through `backup_ceph_conf`) instead of `path`.
    pub ceph: Option<RbdConfig>,
}

/// The names `backup_driver` accepts: ember's short ones and Cinder's class paths.
const DRIVERS: &[&str] = &[
    "posix",
    "ceph",
    "cinder.backup.drivers.posix.PosixBackupDriver",
    "cinder.backup.drivers.ceph.CephBackupDriver",
];

pub(super) fn parse(service: &Lookup<'_>, data_dir: &Path) -> Result<BackupConfig, ConfigError> {
    let ceph = match service.choice("backup_driver", DRIVERS)? {
        Some("ceph" | "cinder.backup.drivers.ceph.CephBackupDriver") => Some(ceph(service)?),
        _ => None,
    };
    Ok(BackupConfig {
        path: match service.string("backup_posix_path")? {
            Some(d) if !d.is_empty() => expand_home(&d),
            _ => data_dir.join("backup"),
        },
        max_snapshots: service.int("backup_ceph_max_snapshots", 0, 0, 1000)? as u32,
        ceph,
    })
}

/// Cinder's Ceph backup driver's options, with its defaults (`cinder/backup/drivers/ceph.py`).
fn ceph(service: &Lookup<'_>) -> Result<RbdConfig, ConfigError> {
    let text = |key: &str, default: &str| -> Result<String, ConfigError> {
        Ok(service
            .string(key)?
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| default.to_string()))
    };
    Ok(RbdConfig {
        pool: text("backup_ceph_pool", "backups")?,
        // Objects of one backup chunk: a chunk of zeros removes its object.
        chunk_mib: 4,
        connection_retries: 3,
        connection_interval: Duration::from_secs(5),
        dynamic_total_capacity: true,
        exclusive_pool: false,
        deferred_deletion_delay: Duration::ZERO,
        user: Some(text("backup_ceph_user", "cinder")?),
        ceph_conf: Some(expand_home(&text(
            "backup_ceph_conf",
            "/etc/ceph/ceph.conf",
        )?)),
        keyring_conf: None,
        cluster_name: defaults::RBD_CLUSTER_NAME.into(),
        connect_timeout: Duration::from_secs(defaults::RADOS_CONNECT_TIMEOUT_S as u64),
        secret_uuid: None,
    })
}
