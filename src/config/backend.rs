//! One backend's section: its driver and the options every driver shares, read over the
//! chain section → `[backend_defaults]` → `[DEFAULT]`. A fault here disables only this backend.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::error::ConfigError;
use super::options::{BACKEND_KEYS, Lookup, closest, section_label};
use super::raw::{Format, RawDoc, RawSection};
use super::{BackendConfig, DriverConfig, FakeConfig, RbdConfig, defaults, expand_home};

pub(super) fn backend(
    path: &Path,
    doc: &RawDoc,
    section: &RawSection,
    name: &str,
    data_dir: &Path,
    notes: &mut Vec<String>,
) -> Result<BackendConfig, ConfigError> {
    let label = section_label(doc.format, &section.name);
    for e in &section.entries {
        if BACKEND_KEYS.contains(&e.key.as_str()) {
            continue;
        }
        if let Some(why) = super::cinder::not_used(&e.key) {
            notes.push(format!(
                "{}:{}: {} in {label}: a Cinder option ember does not use ({why})",
                path.display(),
                e.line,
                e.key
            ));
            continue;
        }
        {
            let err = ConfigError::UnknownKey {
                file: path.to_path_buf(),
                line: e.line,
                section: label.clone(),
                key: e.key.clone(),
                suggestion: closest(&e.key, BACKEND_KEYS.iter().copied()),
            };
            match doc.format {
                Format::Toml => return Err(err),
                Format::CinderConf => notes.push(format!("ignored: {err}")),
            }
        }
    }
    let mut chain = vec![section];
    if let Some(bd) = doc.section("backend_defaults") {
        chain.push(bd);
    }
    if !std::ptr::eq(section, &doc.default) {
        chain.push(&doc.default);
    }
    let l = Lookup {
        file: path,
        format: doc.format,
        chain,
    };
    let Some(driver_name) = l.string("volume_driver")? else {
        return Err(ConfigError::Missing {
            file: path.to_path_buf(),
            line: Some(section.line),
            section: label,
            key: "volume_driver".into(),
            why: "say which driver serves this backend (\"file\", \"rbd\" or \"fake\")".into(),
        });
    };
    let driver = match driver_name.as_str() {
        "file" => {
            let dir = match l.string("file_dir")? {
                Some(d) if !d.is_empty() => expand_home(&d),
                _ => data_dir.join("volumes").join(name),
            };
            DriverConfig::File { dir }
        }
        "rbd" | "cinder.volume.drivers.rbd.RBDDriver" => {
            DriverConfig::Rbd(rbd(path, &l, &label, name, notes)?)
        }
        "fake" => DriverConfig::Fake(FakeConfig {
            latency_ms: l.int("fake_latency_ms", 0, 0, 3_600_000)? as u64,
            blocking: l.bool("fake_blocking", false)?,
            fail_op: l.string("fake_fail_op")?.filter(|s| !s.is_empty()),
            fail_busy: l.bool("fake_fail_busy", false)?,
            fail_call: l.int("fake_fail_call", 0, 0, i64::MAX)? as u64,
            fail_at_percent: match l.int("fake_fail_at_percent", -1, -1, 100)? {
                -1 => None,
                p => Some(p as u8),
            },
            copy_mib: l.int("fake_copy_mib", 0, 0, 1 << 20)? as u64,
        }),
        other => {
            return Err(ConfigError::UnknownDriver {
                file: path.to_path_buf(),
                line: l.line("volume_driver").unwrap_or(section.line),
                section: label,
                driver: other.to_string(),
            });
        }
    };
    let pool_size = l.int(
        "backend_native_threads_pool_size",
        defaults::native_threads_pool_size(),
        1,
        1024,
    )? as usize;
    Ok(BackendConfig {
        name: name.to_string(),
        volume_backend_name: l
            .string("volume_backend_name")?
            .unwrap_or_else(|| name.to_string()),
        driver,
        pool_size,
        max_over_subscription_ratio: over_subscription(&l)?,
        reserved_percentage: l.int("reserved_percentage", 0, 0, 100)? as u8,
        enable_deferred_deletion: l.bool("enable_deferred_deletion", false)?,
        deferred_deletion_purge_interval: Duration::from_secs(l.int(
            "deferred_deletion_purge_interval",
            60,
            1,
            86_400 * 30,
        )? as u64),
        concurrent_flattens: l.int(
            "rbd_concurrent_flatten_operations",
            defaults::RBD_CONCURRENT_FLATTENS,
            0,
            1024,
        )? as u32,
        max_clone_depth: l.int("rbd_max_clone_depth", defaults::RBD_MAX_CLONE_DEPTH, 0, 128)?
            as u32,
        flatten_volume_from_snapshot: l.bool("rbd_flatten_volume_from_snapshot", false)?,
        volume_copy_bps_limit: l.int("volume_copy_bps_limit", 0, 0, i64::MAX)? as u64,
        backend_host: l.string("backend_host")?.filter(|s| !s.is_empty()),
        shared_storage: l.bool("file_shared_storage", false)?,
    })
}

/// `max_over_subscription_ratio` is a number >= 1, or Cinder's `auto` (ember: the default).
fn over_subscription(l: &Lookup<'_>) -> Result<f64, ConfigError> {
    if l.string("max_over_subscription_ratio")
        .ok()
        .flatten()
        .as_deref()
        == Some("auto")
    {
        return Ok(defaults::MAX_OVER_SUBSCRIPTION_RATIO);
    }
    l.float(
        "max_over_subscription_ratio",
        defaults::MAX_OVER_SUBSCRIPTION_RATIO,
        1.0,
    )
}

fn rbd(
    path: &Path,
    l: &Lookup<'_>,
    label: &str,
    name: &str,
    notes: &mut Vec<String>,
) -> Result<RbdConfig, ConfigError> {
    let pool = l
        .string("rbd_pool")?
        .unwrap_or_else(|| defaults::RBD_POOL.to_string());
    if pool.is_empty() {
        return Err(ConfigError::Missing {
            file: path.to_path_buf(),
            line: l.line("rbd_pool"),
            section: label.to_string(),
            key: "rbd_pool".into(),
            why: "the rbd driver needs the pool its volumes live in".into(),
        });
    }
    let timeout = l.int("rados_connect_timeout", -1, -1, 3600)?;
    let connect_timeout = if timeout <= 0 {
        notes.push(format!(
            "backend {name}: rados_connect_timeout = {timeout} means no timeout in Cinder; ember uses {}s so that no call waits forever",
            defaults::RADOS_CONNECT_TIMEOUT_S
        ));
        Duration::from_secs(defaults::RADOS_CONNECT_TIMEOUT_S as u64)
    } else {
        Duration::from_secs(timeout as u64)
    };
    let path_opt = |key: &str| -> Result<Option<PathBuf>, ConfigError> {
        Ok(l.string(key)?
            .filter(|s| !s.is_empty())
            .map(|s| expand_home(&s)))
    };
    let secret_uuid = l.string("rbd_secret_uuid")?.filter(|s| !s.is_empty());
    if let Some(u) = &secret_uuid
        && uuid::Uuid::parse_str(u).is_err()
    {
        return Err(ConfigError::Value {
            file: path.to_path_buf(),
            line: l.line("rbd_secret_uuid").unwrap_or(0),
            section: label.to_string(),
            key: "rbd_secret_uuid".into(),
            expected: "the UUID of the libvirt secret (virsh secret-list)".into(),
            found: u.clone(),
        });
    }
    Ok(RbdConfig {
        secret_uuid,
        pool,
        user: l.string("rbd_user")?.filter(|s| !s.is_empty()),
        ceph_conf: path_opt("rbd_ceph_conf")?,
        keyring_conf: path_opt("rbd_keyring_conf")?,
        cluster_name: l
            .string("rbd_cluster_name")?
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| defaults::RBD_CLUSTER_NAME.into()),
        connect_timeout,
        chunk_mib: chunk_mib(path, l, label)?,
        connection_retries: l.int("rados_connection_retries", 3, 0, 100)? as u32,
        connection_interval: Duration::from_secs(
            l.int("rados_connection_interval", 5, 0, 3600)? as u64
        ),
        dynamic_total_capacity: l.bool("report_dynamic_total_capacity", true)?,
        exclusive_pool: l.bool("rbd_exclusive_cinder_pool", true)?,
        deferred_deletion_delay: Duration::from_secs(l.int(
            "deferred_deletion_delay",
            0,
            0,
            i64::from(u32::MAX),
        )? as u64),
    })
}

/// `rbd_store_chunk_size`: MiB, a power of two librbd accepts as an object size (1..32 MiB).
fn chunk_mib(path: &Path, l: &Lookup<'_>, label: &str) -> Result<u32, ConfigError> {
    let mib = l.int("rbd_store_chunk_size", defaults::RBD_STORE_CHUNK_MIB, 1, 32)?;
    if (mib as u64).is_power_of_two() {
        return Ok(mib as u32);
    }
    Err(ConfigError::Value {
        file: path.to_path_buf(),
        line: l.line("rbd_store_chunk_size").unwrap_or(0),
        section: label.to_string(),
        key: "rbd_store_chunk_size".into(),
        expected: "an object size in MiB that is a power of two (1, 2, 4, 8, 16 or 32)".into(),
        found: mib.to_string(),
    })
}
