//! Configuration: where the file is, what it says, and what ember understood of it.
//!
//! Owner: `config/`. Imports nothing internal. Two syntaxes (ember's TOML, Cinder's
//! `cinder.conf`) share one vocabulary; `raw.rs` reads either into sections with line numbers,
//! `options.rs` types each option, and this module assembles a [`Config`]. A fault in the
//! service-wide options is fatal; a fault in one backend's section only disables that backend
//! (listed in [`Config::broken`] with its reason), as Cinder skips a backend that fails to start.

// Config errors are built once, on a cold path, and carry the file, line, key and value the
// operator needs; boxing them would buy nothing.
#![allow(clippy::result_large_err)]

mod backend;
mod backup;
pub mod cinder;
mod console;
pub mod defaults;
mod enabled;
pub mod error;
pub mod options;
pub mod raw;

use std::path::{Path, PathBuf};
use std::time::Duration;

pub use backup::BackupConfig;
pub use error::ConfigError;
pub use raw::Format;

use enabled::{check_service_keys, enabled_backend_names};
use options::{Lookup, section_label};
use raw::RawDoc;

/// How the service and the console's log file write their lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// For people reading a terminal or a file.
    #[default]
    Text,
    /// One JSON object per line (timestamp, level, target, message and the event's fields:
    /// backend, job, volume...), for Loki and journald.
    Json,
}

/// Everything ember needs to run, resolved: no option is left to interpret later.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Config {
    /// The file it came from (None for a config built in code).
    pub file: Option<PathBuf>,
    pub format: Format,
    /// This machine's name in service hosts (`host@backend`); Cinder's `host`.
    pub host: String,
    /// Cinder's `backend_host`: replaces `host` in service hosts, for active-passive pairs.
    pub backend_host: Option<String>,
    pub cluster: Option<String>,
    #[serde(with = "secs")]
    pub report_interval: Duration,
    #[serde(with = "secs")]
    pub service_down_time: Duration,
    #[serde(with = "secs")]
    pub periodic_interval: Duration,
    #[serde(with = "secs")]
    pub periodic_fuzzy_delay: Duration,
    /// How long a stopping service lets its running jobs finish before handing them back.
    #[serde(with = "secs")]
    pub drain_timeout: Duration,
    pub data_dir: PathBuf,
    pub backup: BackupConfig,
    /// Where `serve` (and a console that runs services) answers Prometheus scrapes
    /// (`/metrics`); off when unset.
    pub metrics_listen: Option<std::net::SocketAddr>,
    /// `log_format = "text" | "json"`: `serve`'s standard error and the console's log file.
    pub log_format: LogFormat,
    pub database_url: String,
    /// Refuse every mutating action (for on-call viewers).
    pub read_only: bool,
    /// A keymap file whose rows override the console's default keys (same format as
    /// `config/keymap.toml`).
    pub keymap: Option<PathBuf>,
    /// The console theme: a shipped name or a theme file.
    pub theme: Option<String>,
    /// Console mouse support (wheel scrolls, click selects); off by default so that selecting
    /// text in an SSH terminal keeps working.
    pub mouse: bool,
    /// The console's columns per table (`[columns] volumes = ["name", "size"]`); the names
    /// are checked by the console against its tables.
    pub columns: std::collections::BTreeMap<String, Vec<String>>,
    /// Backends that will be started.
    pub backends: Vec<BackendConfig>,
    /// Enabled backends whose section is faulty: not started, shown with the reason.
    pub broken: Vec<BrokenBackend>,
    /// Things worth saying that are not errors: ignored keys, substituted values.
    pub notes: Vec<String>,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct BrokenBackend {
    pub name: String,
    pub reason: String,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct BackendConfig {
    pub name: String,
    /// Cinder's `volume_backend_name`, the name volume types match on; defaults to `name`.
    pub volume_backend_name: String,
    pub driver: DriverConfig,
    /// How many storage calls may run at once on this backend.
    pub pool_size: usize,
    pub max_over_subscription_ratio: f64,
    pub reserved_percentage: u8,
    pub enable_deferred_deletion: bool,
    /// Cinder's `deferred_deletion_purge_interval`: how often deferred deletions are purged.
    #[serde(with = "secs")]
    pub deferred_deletion_purge_interval: Duration,
    /// Cinder's `rbd_concurrent_flatten_operations`: flattens that may run at once on this
    /// backend's service (0: no limit).
    pub concurrent_flattens: u32,
    /// Cinder's `rbd_max_clone_depth`, applied to every layering backend: a clone whose chain
    /// would be deeper is flattened at once. 0: every clone is a full copy.
    pub max_clone_depth: u32,
    /// Cinder's `rbd_flatten_volume_from_snapshot`: volumes made from snapshots are flattened.
    pub flatten_volume_from_snapshot: bool,
    /// Cinder's `volume_copy_bps_limit`: bytes per second for data copies; 0 is no limit.
    pub volume_copy_bps_limit: u64,
    /// Cinder's `backend_host` set for this backend (its section, `[backend_defaults]` or
    /// `[DEFAULT]`): the host part of its service name, shared by the nodes serving it.
    pub backend_host: Option<String>,
    /// `file_shared_storage`: this file backend's `file_dir` is storage every cluster member
    /// mounts at the same path (NFS, a cluster file system), so it may be clustered.
    pub shared_storage: bool,
}

impl BackendConfig {
    pub fn driver_name(&self) -> &'static str {
        match self.driver {
            DriverConfig::File { .. } => "file",
            DriverConfig::Rbd(_) => "rbd",
            DriverConfig::Fake(_) => "fake",
        }
    }
}

#[derive(Debug, Clone, serde::Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum DriverConfig {
    File { dir: PathBuf },
    Rbd(RbdConfig),
    Fake(FakeConfig),
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct RbdConfig {
    pub pool: String,
    /// Cinder's `rbd_store_chunk_size` (MiB): new images get objects of this size.
    pub chunk_mib: u32,
    /// Cinder's `rados_connection_retries` / `rados_connection_interval`: a failed connect is
    /// tried again this many times, this long apart.
    pub connection_retries: u32,
    #[serde(with = "secs")]
    pub connection_interval: Duration,
    /// Cinder's `report_dynamic_total_capacity`: total = used + free (else the quota, or the
    /// cluster's size).
    pub dynamic_total_capacity: bool,
    /// Cinder's `rbd_exclusive_cinder_pool`: the pool holds only this backend's volumes, so
    /// provisioned bytes come from the database instead of opening every image.
    pub exclusive_pool: bool,
    /// Cinder's `deferred_deletion_delay`: an image moved to the trash by a deferred delete
    /// may be purged this long after.
    #[serde(with = "secs")]
    pub deferred_deletion_delay: Duration,
    /// The client name without `client.`; None lets librados use its default (admin).
    pub user: Option<String>,
    pub ceph_conf: Option<PathBuf>,
    pub keyring_conf: Option<PathBuf>,
    pub cluster_name: String,
    #[serde(with = "secs")]
    pub connect_timeout: Duration,
    /// Cinder's `rbd_secret_uuid`: the libvirt secret holding the user's key on the
    /// hypervisors, handed out in the connection info of `volume attach`.
    pub secret_uuid: Option<String>,
}

/// The test driver's knobs (fault injection).
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct FakeConfig {
    pub latency_ms: u64,
    /// Latency really blocks the calling thread (proves blocking calls cannot starve the reactor).
    pub blocking: bool,
    /// The ops to fail, comma-separated (`create`, `delete`, `flatten`, `snapshot`, `clone`,
    /// `capacity`...).
    pub fail_op: Option<String>,
    /// The injected failure is the storage refusing because the image is busy (librbd's
    /// EBUSY), not an I/O error.
    pub fail_busy: bool,
    /// Fail the Nth call of `fail_op` (1-based); 0 fails every call.
    pub fail_call: u64,
    /// Fail `fail_op` once its progress reaches this percentage.
    pub fail_at_percent: Option<u8>,
    /// Long calls copy this many MiB of memory, like a real data path (0: no copying).
    pub copy_mib: u64,
}

mod secs {
    pub fn serialize<S: serde::Serializer>(
        d: &std::time::Duration,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        s.serialize_f64(d.as_secs_f64())
    }
}

/// Where `ember` looks when no `--config` is given, in order (after `$EMBER_CONFIG`).
pub fn search_paths() -> Vec<PathBuf> {
    let mut paths = vec![PathBuf::from("config/ember.toml")];
    if let Some(home) = std::env::var_os("HOME") {
        paths.push(PathBuf::from(home).join(".config/ember/ember.toml"));
    }
    paths.push(PathBuf::from("/etc/ember/ember.toml"));
    paths
}

/// Finds the config file: the explicit path, else `$EMBER_CONFIG`, else the search paths.
pub fn locate(explicit: Option<&Path>) -> Result<PathBuf, ConfigError> {
    if let Some(p) = explicit {
        return Ok(p.to_path_buf());
    }
    if let Some(p) = std::env::var_os("EMBER_CONFIG").filter(|p| !p.is_empty()) {
        return Ok(PathBuf::from(p));
    }
    let tried = search_paths();
    tried
        .iter()
        .find(|p| p.is_file())
        .cloned()
        .ok_or(ConfigError::NotFound { tried })
}

/// Reads and resolves a config file.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Io {
        file: path.to_path_buf(),
        message: e.to_string(),
    })?;
    from_str(path, &text)
}

/// Resolves config text; `path` is used for messages and relative defaults only.
pub fn from_str(path: &Path, text: &str) -> Result<Config, ConfigError> {
    let doc = raw::parse(path, text)?;
    build(path, &doc)
}

fn default_data_dir() -> PathBuf {
    if let Some(x) = std::env::var_os("XDG_DATA_HOME").filter(|x| !x.is_empty()) {
        return PathBuf::from(x).join("ember");
    }
    match std::env::var_os("HOME") {
        Some(h) => PathBuf::from(h).join(".local/share/ember"),
        None => PathBuf::from("/var/lib/ember"),
    }
}

fn secs_opt(l: &Lookup<'_>, key: &str, default: i64) -> Result<Duration, ConfigError> {
    Ok(Duration::from_secs(l.int(key, default, 0, i64::MAX)? as u64))
}

fn build(path: &Path, doc: &RawDoc) -> Result<Config, ConfigError> {
    let file = path.to_path_buf();
    let mut notes = vec![];
    let service = Lookup {
        file: path,
        format: doc.format,
        chain: vec![&doc.default],
    };

    check_service_keys(path, doc, &mut notes)?;

    let report_interval = secs_opt(&service, "report_interval", defaults::REPORT_INTERVAL_S)?;
    if report_interval.is_zero() {
        return Err(ConfigError::Value {
            file,
            line: service.line("report_interval").unwrap_or(0),
            section: section_label(doc.format, "DEFAULT"),
            key: "report_interval".into(),
            expected: "a whole number of seconds >= 1".into(),
            found: "0".into(),
        });
    }
    let mut service_down_time =
        secs_opt(&service, "service_down_time", defaults::SERVICE_DOWN_TIME_S)?;
    if service_down_time <= report_interval {
        // Cinder's rule: a service cannot be declared down before it was due to report.
        let raised = report_interval.mul_f64(2.5);
        notes.push(format!(
            "service_down_time ({}s) <= report_interval ({}s): raised to {}s as Cinder does",
            service_down_time.as_secs(),
            report_interval.as_secs(),
            raised.as_secs_f64()
        ));
        service_down_time = raised;
    }
    let periodic_interval = secs_opt(&service, "periodic_interval", defaults::PERIODIC_INTERVAL_S)?;
    let periodic_fuzzy_delay = secs_opt(
        &service,
        "periodic_fuzzy_delay",
        defaults::PERIODIC_FUZZY_DELAY_S,
    )?;
    let drain_timeout = secs_opt(&service, "drain_timeout", defaults::DRAIN_TIMEOUT_S)?;
    let host = match service.string("host")? {
        Some(h) if !h.is_empty() => h,
        _ => hostname::get()
            .map(|h| h.to_string_lossy().into_owned())
            .unwrap_or_else(|_| "localhost".into()),
    };
    let backend_host = service.string("backend_host")?.filter(|s| !s.is_empty());
    let cluster = service.string("cluster")?.filter(|s| !s.is_empty());
    let data_dir = match service.string("data_dir")? {
        Some(d) if !d.is_empty() => expand_home(&d),
        _ => default_data_dir(),
    };
    let backup = backup::parse(&service, &data_dir)?;
    let database_url = match service.string("database_url")? {
        Some(u) if !u.is_empty() => u,
        _ => format!("sqlite://{}", data_dir.join("ember.db").display()),
    };
    let metrics_listen = service.socket_addr("metrics_listen")?;
    let log_format = match service.choice("log_format", &["text", "json"])? {
        Some("json") => LogFormat::Json,
        _ => LogFormat::Text,
    };
    let read_only = service.bool("read_only", false)?;
    let keymap = service
        .string("keymap")?
        .filter(|s| !s.is_empty())
        .map(|s| expand_home(&s));
    let theme = service.string("theme")?.filter(|s| !s.is_empty());
    let mouse = service.bool("mouse", false)?;
    let columns = console::columns(path, doc)?;

    if doc.format == Format::CinderConf
        && let Some(conn) = doc.section("database").and_then(|s| s.get("connection"))
    {
        notes.push(format!(
            "{}:{}: [database] connection is Cinder's own database; ember keeps its own ({})",
            path.display(),
            conn.line,
            redact_url(&database_url)
        ));
    }

    // Which backends, and from which sections.
    let names = enabled_backend_names(path, doc, &service, &mut notes)?;
    let mut backends = vec![];
    let mut broken = vec![];
    for name in names {
        let Some(section) = doc.section(&name) else {
            let label = section_label(doc.format, &name);
            broken.push(BrokenBackend {
                name: name.clone(),
                reason: ConfigError::MissingSection {
                    file: file.clone(),
                    name,
                    section: label,
                }
                .to_string(),
            });
            continue;
        };
        match backend::backend(path, doc, section, &name, &data_dir, &mut notes) {
            Ok(b) if cluster.is_some() && b.driver_name() == "file" && !b.shared_storage => {
                broken.push(BrokenBackend {
                    name: name.clone(),
                    reason: format!(
                        "{}:{}: {} is a file backend, whose storage is local to this host, so it cannot be \
                         clustered (cluster = {:?}): a peer could not reach its volumes. Take it out of the \
                         cluster, or set file_shared_storage = true if its file_dir is shared storage \
                         mounted at the same path on every member",
                        path.display(),
                        section.line,
                        section_label(doc.format, &section.name),
                        cluster.as_deref().unwrap_or("")
                    ),
                })
            }
            Ok(b) => backends.push(b),
            Err(e) => broken.push(BrokenBackend {
                name,
                reason: e.to_string(),
            }),
        }
    }
    if backends.is_empty() && broken.is_empty() {
        return Err(ConfigError::NoBackends { file });
    }
    Ok(Config {
        file: Some(file),
        format: doc.format,
        host,
        backend_host,
        cluster,
        report_interval,
        service_down_time,
        periodic_interval,
        periodic_fuzzy_delay,
        drain_timeout,
        data_dir,
        backup,
        metrics_listen,
        log_format,
        database_url,
        read_only,
        keymap,
        theme,
        mouse,
        columns,
        backends,
        broken,
        notes,
    })
}

pub(crate) fn expand_home(p: &str) -> PathBuf {
    match (p.strip_prefix("~/"), std::env::var_os("HOME")) {
        (Some(rest), Some(home)) => PathBuf::from(home).join(rest),
        _ => PathBuf::from(p),
    }
}

/// A database URL with any password replaced, for messages and `config check`.
pub fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => {
            let creds = &url[s + 3..at];
            match creds.find(':') {
                Some(c) => format!("{}{}:***{}", &url[..s + 3], &creds[..c], &url[at..]),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
}

impl Config {
    /// The service host as Cinder writes it: `<backend_host or host>@<backend>`, where the
    /// backend's own `backend_host` wins over the one in `[DEFAULT]`.
    pub fn service_host(&self, backend: &str) -> String {
        let host = self
            .backend(backend)
            .and_then(|b| b.backend_host.as_deref())
            .or(self.backend_host.as_deref())
            .unwrap_or(&self.host);
        format!("{host}@{backend}")
    }

    /// Who owns the volumes this host's `backend` creates: the cluster (`cluster@backend`)
    /// when clustered, else the service (`host@backend`), as Cinder records them.
    pub fn service_owner(&self, backend: &str) -> String {
        self.service_cluster(backend)
            .unwrap_or_else(|| self.service_host(backend))
    }

    /// The cluster as Cinder writes it: `<cluster>@<backend>`.
    pub fn service_cluster(&self, backend: &str) -> Option<String> {
        self.cluster.as_ref().map(|c| format!("{c}@{backend}"))
    }

    pub fn backend(&self, name: &str) -> Option<&BackendConfig> {
        self.backends.iter().find(|b| b.name == name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load_str(text: &str) -> Result<Config, ConfigError> {
        from_str(Path::new("t.toml"), text)
    }

    #[test]
    fn minimal_toml() {
        let c = load_str("data_dir = \"/var/lib/ember\"\nreport_interval = 10\n[backends.file0]\nvolume_driver = \"file\"\n")
            .expect("loads");
        assert_eq!(c.backends.len(), 1);
        assert_eq!(c.database_url, "sqlite:///var/lib/ember/ember.db");
        match &c.backends[0].driver {
            DriverConfig::File { dir } => {
                assert_eq!(dir, Path::new("/var/lib/ember/volumes/file0"))
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn typo_in_backend_breaks_only_that_backend() {
        let c = load_str("[backends.a]\nvolume_driver = \"file\"\n[backends.b]\nvolume_driver = \"rbd\"\nrbd_pol = \"x\"\n")
            .expect("loads");
        assert_eq!(c.backends.len(), 1);
        assert_eq!(c.broken[0].name, "b");
        assert!(
            c.broken[0].reason.contains("did you mean \"rbd_pool\""),
            "{}",
            c.broken[0].reason
        );
        assert!(
            c.broken[0].reason.starts_with("t.toml:5:"),
            "{}",
            c.broken[0].reason
        );
    }

    #[test]
    fn redacts_password() {
        assert_eq!(
            redact_url("postgres://u:secret@h/db"),
            "postgres://u:***@h/db"
        );
        assert_eq!(redact_url("sqlite:///x/y.db"), "sqlite:///x/y.db");
    }
}
