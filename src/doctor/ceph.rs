//! An rbd backend's view of its Ceph cluster: Ceph's own health checks as findings for the
//! backend (or, for other pools, once under the cluster), and whether the client may fence a
//! peer. Every storage call runs off the reactor under a limit.

use std::time::{Duration, Instant};

use crate::config::RbdConfig;
use crate::driver::DriverError;
use crate::driver::health::{Impact, Reach};
use crate::driver::rbd::{ClusterHealth, RbdDriver};

use super::{Finding, Run, Sink};

/// A blocking driver call off the reactor, given up after `limit` (the call itself finishes
/// on its thread; nobody waits for it).
pub async fn blocking<T: Send + 'static>(
    backend: &str,
    limit: Duration,
    f: impl FnOnce() -> Result<T, DriverError> + Send + 'static,
) -> Result<T, DriverError> {
    match crate::service::pool::operator_call(limit, f).await {
        Ok(r) => r,
        Err(e) => Err(e.into_driver(backend.to_string(), "probe")),
    }
}

/// The cluster's health: one summary line, then each of Ceph's checks that bears on this
/// backend as its own finding (FAIL when it stops writes here, WARN when it slows or endangers
/// them), and those about other pools once under the cluster, as information.
pub fn health_findings(t: &Run, h: &ClusterHealth, r: &RbdConfig, started: Instant, sink: &Sink) {
    let cluster_scope = format!("ceph-{}", h.fsid.get(..8).unwrap_or(&h.fsid));
    let mut f = match &h.checks {
        Err(e) => Finding::warn(format!("cannot read the cluster's health checks: {e}"))
            .fix("the doctor needs the monitor read cap that `profile rbd` gives"),
        Ok(_) if h.status == "HEALTH_OK" => Finding::ok("HEALTH_OK"),
        Ok(checks) => {
            let here = checks
                .iter()
                .filter(|c| c.reach != Reach::OtherPool)
                .count();
            let elsewhere = checks.len() - here;
            let mut line = format!(
                "{}: {here} check(s) bear on pool {} (below)",
                h.status, r.pool
            );
            if elsewhere > 0 {
                line.push_str(&format!(
                    ", {elsewhere} on other pools only (under {cluster_scope})"
                ));
            }
            Finding::info(line)
        }
    };
    if !h.pool_figures {
        if f.status <= super::Status::Info {
            f = Finding::warn(format!(
                "{}, but `ceph df` has no figures for pool {}: capacity unknown",
                f.summary, r.pool
            ));
        }
        f = f.fix("start a ceph-mgr (pool usage comes from the manager)");
    }
    sink.report(4, "health", started, f);
    let Ok(checks) = &h.checks else {
        return;
    };
    let cluster_sink = Sink {
        tx: sink.tx.clone(),
        scope: cluster_scope,
        group: CLUSTER_GROUP,
    };
    for c in checks {
        let mut f = Finding::new(
            match (c.reach, c.impact, c.muted) {
                (Reach::OtherPool, _, _) | (_, _, true) | (_, Impact::Info, _) => {
                    super::Status::Info
                }
                (_, Impact::Blocks, _) => super::Status::Fail,
                (_, Impact::Slows, _) => super::Status::Warn,
            },
            if c.muted {
                format!("{} (muted in Ceph)", c.summary)
            } else {
                c.summary.clone()
            },
        )
        .fix(c.fix.clone());
        f.evidence = c.evidence.clone();
        if c.reach == Reach::OtherPool {
            let first = t
                .cluster_seen
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert((h.fsid.clone(), c.code.clone()));
            if first {
                cluster_sink.report(0, c.code.clone(), started, f);
            }
        } else {
            sink.report(5, c.code.clone(), started, f);
        }
    }
}

/// Sorts a cluster's own scope after every backend.
const CLUSTER_GROUP: usize = 10_000;

/// Whether this client may use the OSD blocklist (`osd blocklist add`): a cluster's takeover
/// fences a dead member with it (FAIL without), and `volume break-lock` and a forced delete
/// under a live client fence that client (WARN without). The monitor checks caps before it
/// looks at the address, so the only way to know is to try: the probe blocklists, for one
/// second, an address no client has (127.0.0.1:0/1).
pub async fn fencing(
    driver: std::sync::Arc<RbdDriver>,
    user: &str,
    r: &RbdConfig,
    clustered: bool,
    limit: Duration,
    sink: &Sink,
) {
    use crate::driver::VolumeDriver;
    let started = Instant::now();
    let backend = driver.backend().to_string();
    let probe = blocking(&backend, limit, move || {
        driver.fence_client("127.0.0.1:0/1", 1)
    })
    .await;
    let needs = if clustered {
        "takeover of a dead member, `volume break-lock` and forced deletes need"
    } else {
        "`volume break-lock` and forced deletes under a live client need"
    };
    let f = match probe {
        Ok(()) => Finding::ok(format!(
            "client.{user} may blocklist clients (`osd blocklist add`), as {needs}"
        )),
        // The probe itself did not get through: no verdict on the capability.
        Err(e @ (DriverError::Timeout { .. } | DriverError::Io { op: "probe", .. })) => {
            Finding::fail(e.detail())
        }
        Err(e) => {
            let e = e.detail();
            let text = format!("client.{user} cannot blocklist clients, which {needs}: {e}");
            let f = if clustered {
                Finding::fail(text)
            } else {
                Finding::warn(text)
            };
            f.fix(format!(
                "grant the `osd blocklist` monitor capability, which `profile rbd` includes: \
             ceph auth caps client.{user} mon 'profile rbd' osd 'profile rbd pool={}'",
                r.pool
            ))
        }
    };
    sink.report(7, "fencing", started, f);
}
