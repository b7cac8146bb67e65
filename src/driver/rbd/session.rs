//! The backend's librados session: made on first use with the backend's timeouts, dropped
//! when a call says the cluster went away, and every failure put in the operator's terms (with
//! the fix, where ember knows it). Also the health probe `ember doctor` uses.

use std::sync::Arc;

use tracing::warn;

use super::RbdDriver;
use super::cephconf;
use super::conn::{Cluster, ConnectOptions, Errno, Pool};
use super::health::{self, PoolFacts};
use super::image;
use crate::driver::DriverError;
use crate::driver::health::HealthFinding;

/// An OSD operation (one object of a flatten) may take this long before the call fails: long
/// enough for a busy cluster, short enough that a stopped OSD is reported, not waited on.
const MIN_OP_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

impl RbdDriver {
    pub(super) fn user(&self) -> &str {
        self.cfg.user.as_deref().unwrap_or("admin")
    }

    pub(super) fn io(&self, op: &'static str, message: String) -> DriverError {
        DriverError::Io {
            backend: self.backend.clone(),
            op,
            message,
        }
    }

    /// A failure as the variant its errno calls for, so that the code that decides (retry,
    /// status, the doctor's fix) matches on the kind, never on the text.
    pub(super) fn by_errno(&self, op: &'static str, code: i32, message: String) -> DriverError {
        let backend = self.backend.clone();
        match code {
            libc::EACCES | libc::EPERM => DriverError::Permission {
                backend,
                op,
                message,
            },
            libc::ENOSPC | libc::EDQUOT => DriverError::NoSpace {
                backend,
                op,
                message,
            },
            libc::ETIMEDOUT => DriverError::Timeout {
                backend,
                op,
                message,
            },
            libc::EBUSY => DriverError::ImageBusy {
                backend,
                op,
                message,
            },
            _ => DriverError::Io {
                backend,
                op,
                message,
            },
        }
    }

    /// The pool context, connecting first if there is none: a storage operation (a job's),
    /// which tries a connect that times out again (Cinder's `rados_connection_retries`,
    /// `rados_connection_interval`), so a monitor election does not fail a job.
    pub(super) fn pool(&self) -> Result<Arc<Pool>, DriverError> {
        self.connect(self.cfg.connection_retries)
    }

    /// The same for the checks (setup, capacity, health): one attempt, so that an unreachable
    /// cluster is reported at once with its reason; the periodic task tries again anyway.
    pub(super) fn pool_once(&self) -> Result<Arc<Pool>, DriverError> {
        self.connect(0)
    }

    /// A librados client of its own, not shared with any other call and shut down when the
    /// last handle on it drops (a throttled flatten's: see `flatten.rs`).
    pub(super) fn own_pool(&self) -> Result<Arc<Pool>, DriverError> {
        self.dial(self.cfg.connection_retries)
    }

    fn connect(&self, retries: u32) -> Result<Arc<Pool>, DriverError> {
        let mut slot = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(p) = slot.as_ref() {
            return Ok(p.clone());
        }
        let pool = self.dial(retries)?;
        *slot = Some(pool.clone());
        Ok(pool)
    }

    /// A new connection and pool context, `retries` times more for what may pass.
    fn dial(&self, retries: u32) -> Result<Arc<Pool>, DriverError> {
        let opts = ConnectOptions {
            cluster_name: self.cfg.cluster_name.clone(),
            user: self.user().to_string(),
            conf: self.cfg.ceph_conf.clone(),
            keyring: self.cfg.keyring_conf.clone(),
            timeout: self.cfg.connect_timeout,
            op_timeout: self.cfg.connect_timeout.max(MIN_OP_TIMEOUT),
        };
        let started = std::time::Instant::now();
        let connect = || -> Result<Arc<Pool>, Errno> {
            let cluster = Arc::new(Cluster::connect(&opts)?);
            Ok(Arc::new(cluster.open_pool(&self.cfg.pool)?))
        };
        // Cinder's rados_connection_retries / rados_connection_interval, for what may pass
        // (a monitor that does not answer yet); a wrong keyring or a missing pool fails at
        // once, with its diagnosis.
        use backon::{BlockingRetryable, ConstantBuilder};
        let policy = ConstantBuilder::default()
            .with_delay(self.cfg.connection_interval)
            .with_max_times(retries as usize);
        let pool = connect
            .retry(policy)
            .sleep(std::thread::sleep)
            .when(|e| {
                matches!(
                    e.code,
                    libc::ETIMEDOUT | libc::ECONNREFUSED | libc::EAGAIN | libc::EHOSTUNREACH | libc::ENETUNREACH
                )
            })
            .notify(|e, after| {
                warn!(backend = %self.backend, "ceph connect failed ({}); trying again in {after:?} (rados_connection_retries)", e.describe());
            })
            .call()
            .map_err(|e| self.connect_error(e))?;
        tracing::debug!(backend = %self.backend, "connected to ceph as client.{} in {} ms", self.user(), started.elapsed().as_millis());
        Ok(pool)
    }

    /// Forgets the connection so the next call makes a new one.
    pub(super) fn reset(&self) {
        let mut slot = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        if slot.take().is_some() {
            warn!(backend = %self.backend, "ceph connection dropped; the next call reconnects");
        }
    }

    /// Says why a connect failed in the operator's terms, with the fix where ember knows it.
    fn connect_error(&self, e: Errno) -> DriverError {
        let entity = format!("client.{}", self.user());
        let conf_path =
            cephconf::resolve_conf(&self.cfg.cluster_name, self.cfg.ceph_conf.as_deref());
        let conf = conf_path
            .as_ref()
            .ok()
            .and_then(|p| cephconf::CephConf::load(p).ok());
        let message = match (e.call, e.code) {
            ("rados_conf_read_file", _) => match &conf_path {
                Ok(p) => format!(
                    "cannot read ceph conf {} ({}): check rbd_ceph_conf",
                    p.display(),
                    e.describe()
                ),
                Err(tried) => format!(
                    "no ceph conf found (looked in {}): set rbd_ceph_conf",
                    tried
                        .iter()
                        .map(|p| p.display().to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            },
            ("rados_connect", libc::ENOENT) => {
                let search = cephconf::find_keyring(
                    &self.cfg.cluster_name,
                    self.user(),
                    conf.as_ref(),
                    self.cfg.keyring_conf.as_deref(),
                );
                match search.problem() {
                    Some((cause, fix)) => {
                        return DriverError::Setup {
                            backend: self.backend.clone(),
                            op: "connect",
                            cause: format!("cannot connect as {entity}: {cause}"),
                            fix,
                        };
                    }
                    None => format!(
                        "cannot connect as {entity}: {} (keyring {})",
                        e.describe(),
                        search
                            .found
                            .map(|p| p.display().to_string())
                            .unwrap_or_default()
                    ),
                }
            }
            ("rados_connect", libc::EACCES | libc::EPERM) => format!(
                "the cluster refused {entity} (cephx): its key in the keyring is not the one the \
                 cluster has, or the client does not exist; compare with `ceph auth get {entity}`"
            ),
            ("rados_connect", libc::ETIMEDOUT) => format!(
                "no monitor answered within {} s (mon host: {}): is the cluster up and reachable?",
                self.cfg.connect_timeout.as_secs(),
                conf.map(|c| c
                    .monitors()
                    .iter()
                    .map(|m| m.to_string())
                    .collect::<Vec<_>>()
                    .join(", "))
                    .filter(|s| !s.is_empty())
                    .unwrap_or_else(|| "unknown".into())
            ),
            ("rados_ioctx_create", libc::ENOENT) => {
                return DriverError::NoPool {
                    backend: self.backend.clone(),
                    pool: self.cfg.pool.clone(),
                };
            }
            _ => format!("cannot connect as {entity}: {}", e.describe()),
        };
        match e.call {
            // A conf that cannot be read is no permission or timeout, whatever its errno.
            "rados_conf_read_file" => self.io("connect", message),
            _ => self.by_errno("connect", e.code, message),
        }
    }

    /// A failed librbd call as a driver error; drops the connection if it looks gone.
    pub(super) fn fail(&self, op: &'static str, image: &str, e: Errno) -> DriverError {
        match e.code {
            libc::ENOENT => {
                return DriverError::NotFound {
                    backend: self.backend.clone(),
                    image: image.to_string(),
                };
            }
            libc::ETIMEDOUT | libc::ESHUTDOWN | libc::ENOTCONN | libc::ECONNREFUSED => self.reset(),
            _ => {}
        }
        let hint = match e.code {
            libc::EPERM | libc::EACCES => format!(
                " (client.{} lacks caps on pool {}: it needs `profile rbd pool={1}`)",
                self.user(),
                self.cfg.pool
            ),
            libc::ETIMEDOUT => " (the cluster did not answer in time)".to_string(),
            libc::EBUSY => " (the image is open elsewhere, or in use)".to_string(),
            _ => String::new(),
        };
        self.by_errno(op, e.code, format!("{image}: {}{hint}", e.describe()))
    }

    /// A monitor command's JSON answer; a monitor that does not answer drops the connection.
    pub(super) fn mon(
        &self,
        pool: &Pool,
        cmd: serde_json::Value,
    ) -> Result<serde_json::Value, DriverError> {
        let prefix = cmd["prefix"].as_str().unwrap_or("").to_string();
        let out = pool
            .cluster()
            .mon_command(&cmd)
            .map_err(|(e, status)| match e.code {
                libc::ETIMEDOUT => self.mon_error(&prefix, e),
                _ => self.by_errno(
                    "monitor",
                    e.code,
                    format!("`{prefix}`: {} {status}", e.describe()),
                ),
            })?;
        serde_json::from_slice(&out)
            .map_err(|e| self.io("monitor", format!("`{prefix}`: bad JSON: {e}")))
    }

    /// A monitor command that failed without a status text; one that timed out drops the
    /// connection.
    fn mon_error(&self, prefix: &str, e: Errno) -> DriverError {
        if e.code == libc::ETIMEDOUT {
            self.reset();
            return self.by_errno(
                "monitor",
                e.code,
                format!(
                    "`{prefix}`: no monitor answered within {} s: is the cluster up?",
                    self.cfg.connect_timeout.as_secs()
                ),
            );
        }
        self.by_errno("monitor", e.code, format!("`{prefix}`: {}", e.describe()))
    }
}

/// The cluster as `ceph health detail` and `ceph df` show it, for `ember doctor`.
#[derive(Debug, Clone)]
pub struct ClusterHealth {
    /// `HEALTH_OK`, `HEALTH_WARN` or `HEALTH_ERR`; `unknown` when it could not be read.
    pub status: String,
    /// The cluster's id, so that checks about the cluster are reported once per cluster.
    pub fsid: String,
    /// Each active health check, explained for this backend, worst first.
    pub checks: Result<Vec<HealthFinding>, String>,
    /// Whether `ceph df` has figures for the backend's pool (false without an active mgr).
    pub pool_figures: bool,
}

impl RbdDriver {
    /// The setup check: connect, list the pool, and `ceph df`. Listing needs the client's caps
    /// on the pool (an OSD round trip), so a wrong cap shows here, not mid-job. The `df` is a
    /// monitor round trip: an established connection keeps working with the OSDs for a while
    /// after the monitors went away. Returns the pool, its image count and the `df` answer.
    pub(super) fn probe(&self) -> Result<(Arc<Pool>, usize, serde_json::Value), DriverError> {
        let pool = self.pool_once()?;
        let images = image::list(&pool).map_err(|e| {
            self.reset();
            self.fail("list images", &self.cfg.pool, e)
        })?;
        let df = self.mon(&pool, serde_json::json!({"prefix": "df", "format": "json"}))?;
        Ok((pool, images.len(), df))
    }

    /// Connects (as the service would) and reads the cluster's health checks (`ceph health
    /// detail`, explained for this backend) and `ceph df`. Monitor round trips only, so it
    /// answers while the OSDs do not, which is when an operator needs it most.
    pub fn health(&self) -> Result<ClusterHealth, DriverError> {
        let pool = self.pool_once()?;
        let df = self.mon(&pool, serde_json::json!({"prefix": "df", "format": "json"}))?;
        let pool_figures = df["pools"]
            .as_array()
            .is_some_and(|ps| ps.iter().any(|p| p["name"] == self.cfg.pool.as_str()));
        let fsid = self
            .mon(
                &pool,
                serde_json::json!({"prefix": "fsid", "format": "json"}),
            )
            .ok()
            .and_then(|v| v["fsid"].as_str().map(String::from))
            .unwrap_or_default();
        let (status, checks) = match self.read_checks(&pool) {
            Ok((status, checks)) => (status, Ok(checks)),
            Err(e) => ("unknown".to_string(), Err(e.to_string())),
        };
        Ok(ClusterHealth {
            status,
            fsid,
            checks,
            pool_figures,
        })
    }

    /// The number of images in the pool: an OSD round trip with the client's pool caps.
    pub fn count_images(&self) -> Result<usize, DriverError> {
        let pool = self.pool_once()?;
        image::list(&pool).map(|l| l.len()).map_err(|e| {
            self.reset();
            self.fail("list images", &self.cfg.pool, e)
        })
    }

    /// `health detail`, each check explained for this backend's pool.
    fn read_checks(&self, pool: &Pool) -> Result<(String, Vec<HealthFinding>), DriverError> {
        let h = self
            .mon(
                pool,
                serde_json::json!({"prefix": "health", "detail": "detail", "format": "json"}),
            )
            .map_err(|e| match e {
                DriverError::Permission { message, .. } => self.by_errno(
                    "health",
                    libc::EACCES,
                    format!(
                        "client.{} may not read the cluster's health ({message}); it needs the monitor read cap that `profile rbd` gives: ceph auth caps client.{0} mon 'profile rbd' osd 'profile rbd pool={}'",
                        self.user(),
                        self.cfg.pool
                    ),
                ),
                e => e,
            })?;
        let facts = self.pool_facts(pool);
        let status = h["status"].as_str().unwrap_or("unknown").to_string();
        Ok((status, health::assess_all(&h, &facts)))
    }

    /// The pool's id and quota (`osd pool get-quota`, which needs the mgr's stats; without
    /// them the id alone, from `osd pool get`).
    fn pool_facts(&self, pool: &Pool) -> PoolFacts {
        let name = self.cfg.pool.clone();
        let quota = self.mon(
            pool,
            serde_json::json!({"prefix": "osd pool get-quota", "pool": name, "format": "json"}),
        );
        if let Ok(q) = quota {
            return PoolFacts {
                id: q["pool_id"].as_i64(),
                quota_bytes: q["quota_max_bytes"].as_u64(),
                name,
            };
        }
        let id = self
            .mon(
                pool,
                serde_json::json!({"prefix": "osd pool get", "pool": name, "var": "size", "format": "json"}),
            )
            .ok()
            .and_then(|v| v["pool_id"].as_i64());
        PoolFacts {
            id,
            quota_bytes: None,
            name,
        }
    }

    /// The standing health checks, for a service that wants to name them (a failed job).
    pub(super) fn health_findings(&self) -> Result<Vec<HealthFinding>, DriverError> {
        let pool = self.pool_once()?;
        self.read_checks(&pool).map(|(_, checks)| checks)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn driver() -> RbdDriver {
        let text = "[backends.rbd0]\nvolume_driver = \"rbd\"\nrbd_pool = \"volumes\"\nrbd_user = \"cinder\"\n";
        let cfg = crate::config::from_str(std::path::Path::new("ember.toml"), text)
            .unwrap_or_else(|e| panic!("config: {e}"));
        let b = cfg.backend("rbd0").unwrap_or_else(|| panic!("no rbd0"));
        let crate::config::DriverConfig::Rbd(r) = &b.driver else {
            panic!("not rbd")
        };
        RbdDriver::new("rbd0", r.clone(), 0)
    }

    /// The errno of a failed librbd call picks the variant the deciding code matches on
    /// (issue 23: no matching on message text).
    #[test]
    fn a_failed_call_keeps_its_kind() {
        let d = driver();
        let fail = |code| {
            d.fail(
                "remove",
                "volume-x",
                Errno {
                    call: "rbd_remove",
                    code,
                },
            )
        };
        assert!(matches!(fail(libc::ENOENT), DriverError::NotFound { .. }));
        assert!(matches!(fail(libc::EBUSY), DriverError::ImageBusy { .. }));
        assert!(crate::driver::is_busy(&fail(libc::EBUSY)));
        assert!(matches!(fail(libc::EACCES), DriverError::Permission { .. }));
        assert!(matches!(fail(libc::EPERM), DriverError::Permission { .. }));
        assert!(matches!(fail(libc::ENOSPC), DriverError::NoSpace { .. }));
        assert!(matches!(fail(libc::EDQUOT), DriverError::NoSpace { .. }));
        assert!(matches!(fail(libc::EIO), DriverError::Io { .. }));
        let missing_pool = d.connect_error(Errno {
            call: "rados_ioctx_create",
            code: libc::ENOENT,
        });
        assert!(
            matches!(&missing_pool, DriverError::NoPool { pool, .. } if pool == "volumes"),
            "{missing_pool:?}"
        );
        assert!(
            missing_pool
                .to_string()
                .contains("ceph osd pool create volumes"),
            "{missing_pool}"
        );
        let refused = d.connect_error(Errno {
            call: "rados_connect",
            code: libc::EACCES,
        });
        assert!(
            matches!(refused, DriverError::Permission { .. }),
            "{refused:?}"
        );
        let timeout = d.mon_error(
            "health",
            Errno {
                call: "rados_mon_command",
                code: libc::ETIMEDOUT,
            },
        );
        assert!(
            matches!(timeout, DriverError::Timeout { .. }),
            "{timeout:?}"
        );
    }
}
