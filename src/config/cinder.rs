//! Cinder's own option table for a volume backend: every option of its RBD driver
//! (`cinder.volume.drivers.rbd.RBD_OPTS`), of every volume driver
//! (`cinder.volume.driver.volume_opts`), and every other option Cinder registers for each
//! backend section (its `[backend_defaults]` group: image cache, iSER, NVMe-oF...), generated from the Cinder release on PyPI by
//! `scripts/cinder-options.sh` into `cinder_options.json`. A real cinder.conf sets many of
//! them; each is either honoured by ember (in `options::BACKEND_KEYS`) or listed here with
//! the reason ember does not use it, so `config check` says "a Cinder option ember does not
//! use" instead of "unknown key, did you mean ...?". A test holds the two in step.

use std::path::Path;
use std::sync::OnceLock;

use super::error::ConfigError;
use super::options::{BACKEND_KEYS, SERVICE_KEYS};
use super::raw::{RawDoc, RawEntry, RawValue};

/// One option as Cinder defines it.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct CinderOption {
    pub name: String,
    /// `rbd` (the RBD driver's), `volume` (every volume driver's) or `backend_defaults` (the
    /// rest of what Cinder registers for each backend section).
    pub group: String,
    /// oslo.config's type (`StrOpt`, `IntOpt`...).
    #[serde(rename = "type")]
    pub kind: String,
    pub default: serde_json::Value,
}

#[derive(Debug, serde::Deserialize)]
struct Table {
    cinder_version: String,
    options: Vec<CinderOption>,
}

fn table() -> &'static Table {
    static T: OnceLock<Table> = OnceLock::new();
    T.get_or_init(|| {
        serde_json::from_str(include_str!("cinder_options.json")).unwrap_or(Table {
            cinder_version: "unknown".into(),
            options: vec![],
        })
    })
}

/// The Cinder release the table was taken from.
pub fn cinder_version() -> &'static str {
    &table().cinder_version
}

pub fn options() -> &'static [CinderOption] {
    &table().options
}

pub fn is_cinder_option(key: &str) -> bool {
    options().iter().any(|o| o.name == key)
}

const ATTACH: &str = "iSCSI/iSER targets and CHAP: ember hands out rbd connection info (volume attach) and serves file volumes over NBD (volume export), no SCSI targets";
const WIPE: &str = "wiping LVM volumes on delete: rbd and file images are removed, never reused";
const DD: &str = "dd copies between attached devices: ember copies through librbd or sparse file copies (volume_copy_bps_limit paces them)";
const TLS: &str = "drivers with a REST management API: librados authenticates with cephx";
const NOVA: &str = "reported to Nova and the scheduler: ember has no scheduler, and its rbd connection info always offers discard";
const IMAGE: &str = "Glance images (uploads, the image-volume cache, image transfers through an attached device): ember makes volumes from volumes and snapshots, not from images";

/// Cinder options ember reads nowhere, with the reason.
pub const NOT_USED: &[(&str, &str)] = &[
    (
        "replication_connect_timeout",
        "replication to a secondary cluster (failover) is not supported by ember",
    ),
    (
        "replication_device",
        "replication to a secondary cluster (failover) is not supported by ember",
    ),
    (
        "num_shell_tries",
        "ember runs no shell commands against the storage (librados and librbd calls)",
    ),
    ("target_prefix", ATTACH),
    ("target_ip_address", ATTACH),
    ("target_secondary_ip_addresses", ATTACH),
    ("target_port", ATTACH),
    ("target_helper", ATTACH),
    ("target_protocol", ATTACH),
    ("iscsi_write_cache", ATTACH),
    ("iscsi_target_flags", ATTACH),
    ("chiscsi_conf", ATTACH),
    ("volumes_dir", ATTACH),
    ("use_chap_auth", ATTACH),
    ("chap_username", ATTACH),
    ("chap_password", ATTACH),
    ("num_volume_device_scan_tries", ATTACH),
    ("volume_clear", WIPE),
    ("volume_clear_size", WIPE),
    ("volume_clear_ionice", WIPE),
    ("volume_dd_blocksize", DD),
    ("volume_copy_blkio_cgroup_name", DD),
    ("driver_client_cert_key", TLS),
    ("driver_client_cert", TLS),
    ("driver_use_ssl", TLS),
    ("driver_ssl_cert_verify", TLS),
    ("driver_ssl_cert_path", TLS),
    (
        "driver_data_namespace",
        "Cinder's driver-private database namespace: ember keeps its own tables",
    ),
    (
        "filter_function",
        "the scheduler's placement functions: ember places a new volume by free capacity among its backends' services",
    ),
    (
        "goodness_function",
        "the scheduler's placement functions: ember places a new volume by free capacity among its backends' services",
    ),
    (
        "trace_flags",
        "Cinder's method tracing: use EMBER_LOG=debug (or per target in the console's log view)",
    ),
    ("report_discard_supported", NOVA),
    ("unique_fqdn_network", NOVA),
    ("iser_helper", ATTACH),
    ("iser_ip_address", ATTACH),
    ("iser_port", ATTACH),
    ("iser_target_prefix", ATTACH),
    ("num_iser_scan_tries", ATTACH),
    ("nvmeof_conn_info_version", ATTACH),
    ("nvmet_ns_id", ATTACH),
    ("nvmet_port_id", ATTACH),
    ("scst_target_driver", ATTACH),
    ("scst_target_iqn_name", ATTACH),
    ("suppress_requests_ssl_warnings", TLS),
    ("image_volume_cache_enabled", IMAGE),
    ("image_volume_cache_max_count", IMAGE),
    ("image_volume_cache_max_size_gb", IMAGE),
    ("image_upload_use_cinder_backend", IMAGE),
    ("image_upload_use_internal_tenant", IMAGE),
    ("use_multipath_for_image_xfer", IMAGE),
    ("enforce_multipath_for_image_xfer", IMAGE),
    (
        "extra_capabilities",
        "capabilities reported to Cinder's scheduler: ember places volumes among its own services",
    ),
    ("storage_protocol", NOVA),
    ("disk_geometry", NOVA),
    (
        "enable_unsupported_driver",
        "ember's drivers are built in: there is no unsupported one to enable",
    ),
    (
        "backend_availability_zone",
        "availability zones are the API's and scheduler's concern",
    ),
];

/// A cinder.conf in the single-backend layout Cinder dropped in Ocata (driver options in
/// `[DEFAULT]`, no `enabled_backends`): the error names the lines found there and the two lines
/// that turn it into a backend section (`name`: its `volume_backend_name`, if set).
pub fn legacy_layout(
    path: &Path,
    doc: &RawDoc,
    driver: &RawEntry,
    name: Option<String>,
) -> ConfigError {
    let found: Vec<String> = doc
        .default
        .entries
        .iter()
        .filter(|e| BACKEND_KEYS.contains(&e.key.as_str()) || is_cinder_option(&e.key))
        .filter(|e| !SERVICE_KEYS.contains(&e.key.as_str()))
        .map(|e| format!("{} (line {})", e.key, e.line))
        .collect();
    let rbd = matches!(&driver.value, RawValue::Text(v) | RawValue::Str(v) if v.contains("rbd"));
    let name = name.unwrap_or_else(|| if rbd { "rbd-1" } else { "backend-1" }.into());
    ConfigError::LegacyLayout {
        file: path.to_path_buf(),
        line: driver.line,
        found: found.join(", "),
        name,
    }
}

/// Honoured options whose default ember resolves differently from Cinder, and why.
pub const DIFFERENT_DEFAULTS: &[(&str, &str)] = &[
    (
        "rados_connect_timeout",
        "-1 (no timeout) becomes 10 s: a connect that can wait forever is the hang ember exists to avoid",
    ),
    (
        "volume_backend_name",
        "unset, it is the backend section's name (Cinder falls back to the driver's name)",
    ),
    (
        "backend_native_threads_pool_size",
        "the number of CPUs, not 20: the threads copy data at the lowest priority, and more of them than cores only queue (ember bench heartbeat measures it)",
    ),
    (
        "volume_driver",
        "no default (Cinder's is LVM, which ember does not have): a backend names its driver, file or rbd",
    ),
];

/// Why ember does not use a Cinder option, if it is one it does not use.
pub fn not_used(key: &str) -> Option<&'static str> {
    NOT_USED
        .iter()
        .find(|(k, _)| *k == key)
        .map(|(_, why)| *why)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_is_cinders_own() {
        assert_eq!(cinder_version(), "29.0.0");
        assert!(options().len() >= 79, "{}", options().len());
        // From the [backend_defaults] group, beyond RBD_OPTS and volume_opts (issue 23).
        assert!(
            options()
                .iter()
                .any(|o| o.name == "image_volume_cache_enabled")
        );
        assert!(
            options()
                .iter()
                .any(|o| o.name == "rbd_concurrent_flatten_operations")
        );
    }

    #[test]
    fn every_cinder_option_is_honoured_or_explained() {
        let mut missing = vec![];
        for o in options() {
            let honoured =
                BACKEND_KEYS.contains(&o.name.as_str()) || SERVICE_KEYS.contains(&o.name.as_str());
            match (honoured, not_used(&o.name)) {
                (true, Some(_)) => {
                    missing.push(format!("{}: honoured and listed as not used", o.name))
                }
                (false, None) => {
                    missing.push(format!("{}: neither honoured nor explained", o.name))
                }
                _ => {}
            }
        }
        assert!(missing.is_empty(), "{missing:#?}");
        for (k, _) in NOT_USED.iter().chain(DIFFERENT_DEFAULTS) {
            assert!(
                is_cinder_option(k),
                "{k} is listed but Cinder has no such option"
            );
        }
    }

    /// What ember resolved for an option from a section that sets nothing but the driver.
    fn resolved(b: &crate::config::BackendConfig, key: &str) -> Option<serde_json::Value> {
        use serde_json::json;
        let crate::config::DriverConfig::Rbd(r) = &b.driver else {
            return None;
        };
        Some(match key {
            "rbd_cluster_name" => json!(r.cluster_name),
            "rbd_pool" => json!(r.pool),
            "rbd_user" => json!(r.user),
            "rbd_secret_uuid" => json!(r.secret_uuid),
            "rbd_ceph_conf" => json!(
                r.ceph_conf
                    .as_ref()
                    .map(|p| p.display().to_string())
                    .unwrap_or_default()
            ),
            "rbd_flatten_volume_from_snapshot" => json!(b.flatten_volume_from_snapshot),
            "rbd_max_clone_depth" => json!(b.max_clone_depth),
            "rbd_store_chunk_size" => json!(r.chunk_mib),
            "rados_connect_timeout" => json!(r.connect_timeout.as_secs()),
            "rados_connection_retries" => json!(r.connection_retries),
            "rados_connection_interval" => json!(r.connection_interval.as_secs()),
            "report_dynamic_total_capacity" => json!(r.dynamic_total_capacity),
            "rbd_exclusive_cinder_pool" => json!(r.exclusive_pool),
            "enable_deferred_deletion" => json!(b.enable_deferred_deletion),
            "deferred_deletion_delay" => json!(r.deferred_deletion_delay.as_secs()),
            "deferred_deletion_purge_interval" => {
                json!(b.deferred_deletion_purge_interval.as_secs())
            }
            "rbd_concurrent_flatten_operations" => json!(b.concurrent_flattens),
            "reserved_percentage" => json!(b.reserved_percentage),
            "volume_backend_name" => json!(b.volume_backend_name),
            "volume_copy_bps_limit" => json!(b.volume_copy_bps_limit),
            "max_over_subscription_ratio" => json!(format!("{:.1}", b.max_over_subscription_ratio)),
            "backend_native_threads_pool_size" => json!(b.pool_size),
            "volume_driver" => json!(b.driver_name()),
            _ => return None,
        })
    }

    #[test]
    fn honoured_options_default_as_cinder_does() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let p = dir.path().join("cinder.conf");
        std::fs::write(
            &p,
            "[DEFAULT]\nenabled_backends = r\n[r]\nvolume_driver = rbd\n",
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let cfg = crate::config::load(&p).unwrap_or_else(|e| panic!("{e}"));
        let b = &cfg.backends[0];
        let mut wrong = vec![];
        for o in options()
            .iter()
            .filter(|o| BACKEND_KEYS.contains(&o.name.as_str()))
        {
            let Some(ours) = resolved(b, &o.name) else {
                wrong.push(format!(
                    "{}: honoured, but this test does not read it: add it",
                    o.name
                ));
                continue;
            };
            let differs = DIFFERENT_DEFAULTS.iter().any(|(k, _)| *k == o.name);
            if (ours == o.default) == differs {
                wrong.push(format!(
                    "{}: Cinder {} / ember {ours} (listed as different: {differs})",
                    o.name, o.default
                ));
            }
        }
        assert!(wrong.is_empty(), "{wrong:#?}");
    }
}
