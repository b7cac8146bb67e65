//! The backend's librados session: made on first use with the backend's timeouts, dropped
//! when a call says the cluster went away, and every failure put in the operator's terms (with
//! the fix, where ember knows it). Also the health probe `ember doctor` uses.

use std::sync::Arc;

use tracing::warn;

use super::RbdDriver;
use super::cephconf;
use super::conn::{Cluster, ConnectOptions, Errno, Pool};
use super::image;
use crate::driver::DriverError;

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

    /// The pool context, connecting first if there is none.
    pub(super) fn pool(&self) -> Result<Arc<Pool>, DriverError> {
        let mut slot = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(p) = slot.as_ref() {
            return Ok(p.clone());
        }
        let opts = ConnectOptions {
            cluster_name: self.cfg.cluster_name.clone(),
            user: self.user().to_string(),
            conf: self.cfg.ceph_conf.clone(),
            keyring: self.cfg.keyring_conf.clone(),
            timeout: self.cfg.connect_timeout,
            op_timeout: self.cfg.connect_timeout.max(MIN_OP_TIMEOUT),
        };
        let started = std::time::Instant::now();
        let cluster = Arc::new(Cluster::connect(&opts).map_err(|e| self.connect_error(e))?);
        let pool = Arc::new(
            cluster
                .open_pool(&self.cfg.pool)
                .map_err(|e| self.connect_error(e))?,
        );
        tracing::debug!(backend = %self.backend, "connected to ceph as client.{} in {} ms", self.user(), started.elapsed().as_millis());
        *slot = Some(pool.clone());
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
                        format!("cannot connect as {entity}: {cause}; fix: {fix}")
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
            ("rados_ioctx_create", libc::ENOENT) => format!(
                "pool {:?} does not exist: create it (ceph osd pool create {0}; rbd pool init {0}) or fix rbd_pool",
                self.cfg.pool
            ),
            _ => format!("cannot connect as {entity}: {}", e.describe()),
        };
        self.io("connect", message)
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
        self.io(op, format!("{image}: {}{hint}", e.describe()))
    }

    /// A monitor command's JSON answer; a monitor that does not answer drops the connection.
    pub(super) fn mon(
        &self,
        pool: &Pool,
        cmd: serde_json::Value,
    ) -> Result<serde_json::Value, DriverError> {
        let prefix = cmd["prefix"].as_str().unwrap_or("").to_string();
        let out = pool.cluster().mon_command(&cmd).map_err(|(e, status)| {
            if e.code == libc::ETIMEDOUT {
                self.reset();
                return self.io(
                    "monitor",
                    format!(
                        "`{prefix}`: no monitor answered within {} s: is the cluster up?",
                        self.cfg.connect_timeout.as_secs()
                    ),
                );
            }
            self.io("monitor", format!("`{prefix}`: {} {status}", e.describe()))
        })?;
        serde_json::from_slice(&out)
            .map_err(|e| self.io("monitor", format!("`{prefix}`: bad JSON: {e}")))
    }
}

/// The cluster as `ceph health` and `ceph df` show it, for `ember doctor`.
#[derive(Debug, Clone)]
pub struct ClusterHealth {
    /// `HEALTH_OK`, `HEALTH_WARN` or `HEALTH_ERR`.
    pub status: String,
    /// Each active health check: `CODE: summary`.
    pub checks: Vec<String>,
    /// Whether `ceph df` has figures for the backend's pool (false without an active mgr).
    pub pool_figures: bool,
    pub images: usize,
}

impl RbdDriver {
    /// The setup check: connect, list the pool, and `ceph df`. Listing needs the client's caps
    /// on the pool (an OSD round trip), so a wrong cap shows here, not mid-job. The `df` is a
    /// monitor round trip: an established connection keeps working with the OSDs for a while
    /// after the monitors went away. Returns the pool, its image count and the `df` answer.
    pub(super) fn probe(&self) -> Result<(Arc<Pool>, usize, serde_json::Value), DriverError> {
        let pool = self.pool()?;
        let images = image::list(&pool).map_err(|e| {
            self.reset();
            self.fail("list images", &self.cfg.pool, e)
        })?;
        let df = self.mon(&pool, serde_json::json!({"prefix": "df", "format": "json"}))?;
        Ok((pool, images.len(), df))
    }

    /// Connects (as the service would), lists the pool, and reads the cluster's health: the
    /// setup check plus one `ceph health`.
    pub fn health(&self) -> Result<ClusterHealth, DriverError> {
        let (pool, images, df) = self.probe()?;
        let h = self.mon(
            &pool,
            serde_json::json!({"prefix": "health", "format": "json"}),
        )?;
        let checks = h["checks"]
            .as_object()
            .map(|m| {
                m.iter()
                    .map(|(code, c)| {
                        format!("{code}: {}", c["summary"]["message"].as_str().unwrap_or(""))
                    })
                    .collect()
            })
            .unwrap_or_default();
        let pool_figures = df["pools"]
            .as_array()
            .is_some_and(|ps| ps.iter().any(|p| p["name"] == self.cfg.pool.as_str()));
        Ok(ClusterHealth {
            status: h["status"].as_str().unwrap_or("unknown").to_string(),
            checks,
            pool_figures,
            images,
        })
    }
}
