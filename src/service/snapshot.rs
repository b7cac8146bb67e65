//! The one state model the console draws: a whole, immutable picture of services, volumes,
//! snapshots and jobs, published on a `watch` channel. The embedded worker and a console
//! attached to a remote database build it the same way, by reading the database; the console
//! never sees a half-updated state and never touches the database or a driver itself.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::warn;

use crate::config::Config;
use crate::db::services::{ServiceRow, is_up, parse_lateness};
use crate::db::{Db, EventRow, JobRow, SnapshotRow, VolumeRow, now_ms};

/// A service as the console shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct ServiceView {
    pub row: ServiceRow,
    pub up: bool,
    /// Recent heartbeat lateness, oldest first (ms).
    pub lateness_ms: Vec<f64>,
}

/// A backend as the console shows it: configured here, or seen in the services table.
#[derive(Debug, Clone, PartialEq)]
pub struct BackendView {
    pub name: String,
    pub driver: String,
    pub up: usize,
    pub down: usize,
    pub total_bytes: Option<i64>,
    pub free_bytes: Option<i64>,
    pub provisioned_bytes: Option<i64>,
    pub max_over_subscription_ratio: Option<f64>,
    pub error: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Snapshot {
    /// When it was read (Unix ms); ages are computed against the render time.
    pub generated_at: i64,
    pub service_down_time_ms: i64,
    pub services: Vec<ServiceView>,
    pub backends: Vec<BackendView>,
    pub volumes: Arc<Vec<VolumeRow>>,
    /// Live volumes in the database (known before the rows are loaded).
    pub volume_count: i64,
    /// False until the volume rows have been read once: the console shows its first frame
    /// before loading a large volume table.
    pub volumes_loaded: bool,
    pub snapshots: Vec<SnapshotRow>,
    /// Newest first.
    pub jobs: Vec<JobRow>,
    /// Unfinished jobs that wait for a host that is down (and no peer may take over): job id,
    /// and what it waits for with the fix.
    pub waiting: Vec<(String, String)>,
    /// Takeovers, lost claims and service maintenance across the cluster, newest first.
    pub cluster_events: Vec<EventRow>,
    /// Why the last read failed, if it did (the previous data is kept).
    pub error: Option<String>,
}

/// When no job is queued or running, the database is read this many times less often.
const IDLE_FACTOR: u32 = 3;

/// How many recent jobs the console keeps.
const JOBS_SHOWN: i64 = 500;

/// How many recent takeovers and maintenance events the Overview shows.
const CLUSTER_EVENTS: i64 = 5;

/// Reads a fresh snapshot. Volumes are re-read only when they changed (`volumes_key`), so a
/// large table is not reloaded every second.
pub async fn read(
    db: &Db,
    cfg: &Config,
    prev: &Snapshot,
    volumes_key: &mut Option<(i64, i64)>,
    with_volumes: bool,
) -> Snapshot {
    let now = now_ms();
    let down = cfg.service_down_time.as_millis() as i64;
    let mut snap = Snapshot {
        generated_at: now,
        service_down_time_ms: down,
        ..prev.clone()
    };
    let result: Result<(), crate::db::DbError> = async {
        let mut rows = db.list_services().await?;
        // Grouped by cluster (members side by side), then backend and host.
        rows.sort_by(|a, b| {
            (&a.cluster, &a.backend, &a.host).cmp(&(&b.cluster, &b.backend, &b.host))
        });
        snap.services = rows
            .into_iter()
            .map(|r| ServiceView {
                up: is_up(&r, now, down),
                lateness_ms: parse_lateness(&r.lateness_ms),
                row: r,
            })
            .collect();
        let key = db.volumes_version().await?;
        snap.volume_count = key.1;
        if with_volumes && Some(key) != *volumes_key {
            snap.volumes = Arc::new(db.list_volumes(None, None).await?);
            *volumes_key = Some(key);
            snap.volumes_loaded = true;
        }
        snap.snapshots = db.list_snapshots(None, true).await?;
        snap.jobs = db.list_jobs(None, JOBS_SHOWN).await?;
        let rows: Vec<ServiceRow> = snap.services.iter().map(|s| s.row.clone()).collect();
        snap.waiting = snap
            .jobs
            .iter()
            .filter_map(|j| {
                crate::service::takeover::waiting_for(j, &rows, now, down)
                    .map(|w| (j.id.clone(), w))
            })
            .collect();
        snap.cluster_events = db.cluster_events(CLUSTER_EVENTS).await?;
        Ok(())
    }
    .await;
    snap.error = result.err().map(|e| e.to_string());
    snap.backends = backends(cfg, &snap.services);
    snap
}

fn backends(cfg: &Config, services: &[ServiceView]) -> Vec<BackendView> {
    let mut names: Vec<String> = cfg.backends.iter().map(|b| b.name.clone()).collect();
    names.extend(cfg.broken.iter().map(|b| b.name.clone()));
    for s in services {
        if !names.contains(&s.row.backend) {
            names.push(s.row.backend.clone());
        }
    }
    names
        .into_iter()
        .map(|name| {
            let of: Vec<&ServiceView> = services.iter().filter(|s| s.row.backend == name).collect();
            let newest = of
                .iter()
                .filter(|s| s.row.capacity_at.is_some())
                .max_by_key(|s| s.row.capacity_at);
            let cfgb = cfg.backend(&name);
            BackendView {
                driver: cfgb
                    .map(|b| b.driver_name().to_string())
                    .or_else(|| of.first().map(|s| s.row.driver.clone()))
                    .unwrap_or_else(|| "?".into()),
                up: of.iter().filter(|s| s.up).count(),
                down: of.iter().filter(|s| !s.up).count(),
                total_bytes: newest.and_then(|s| s.row.capacity_total),
                free_bytes: newest.and_then(|s| s.row.capacity_free),
                provisioned_bytes: newest.and_then(|s| s.row.capacity_provisioned),
                max_over_subscription_ratio: cfgb.map(|b| b.max_over_subscription_ratio),
                error: cfg
                    .broken
                    .iter()
                    .find(|b| b.name == name)
                    .map(|b| b.reason.clone())
                    .or_else(|| of.iter().find_map(|s| s.row.error.clone())),
                name,
            }
        })
        .collect()
}

/// Publishes a snapshot every `every` until cancelled; `poke` asks for one at once (after a
/// command, so the operator sees its effect without waiting).
pub fn spawn_publisher(
    db: Db,
    cfg: Arc<Config>,
    every: Duration,
    cancel: CancellationToken,
) -> (watch::Receiver<Arc<Snapshot>>, Arc<tokio::sync::Notify>) {
    let (tx, rx) = watch::channel(Arc::new(Snapshot::default()));
    let poke = Arc::new(tokio::sync::Notify::new());
    let poked = poke.clone();
    tokio::spawn(async move {
        let mut key = None;
        let mut seen: Option<i64> = None;
        let mut wait = Duration::ZERO;
        let mut first = true;
        loop {
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = tokio::time::sleep(wait) => {}
                _ = poked.notified() => {}
            }
            let prev = tx.borrow().clone();
            // The first read skips the volume rows so the console opens at once; the next
            // read, right after, loads them.
            let next = read(&db, &cfg, &prev, &mut key, !first).await;
            if let Some(e) = &next.error {
                warn!("console state not refreshed: {e}");
            }
            // Takeovers and lost claims anywhere in the cluster reach this console's log: those
            // newer than what the first read found (history is the Overview's, not the log's).
            if next.error.is_none() {
                let newest = next.cluster_events.first().map_or(0, |e| e.id);
                if let Some(mark) = seen {
                    for e in next.cluster_events.iter().rev().filter(|e| e.id > mark) {
                        let host = e.host.as_deref().unwrap_or("");
                        match e.kind.as_str() {
                            "job_lease_lost" => warn!(host, "{}", e.message),
                            _ => tracing::info!(host, "{}", e.message),
                        }
                    }
                }
                seen = Some(seen.unwrap_or(0).max(newest));
            }
            // Jobs moving: every `every`; idle: less often (commands from this console poke
            // a refresh at once, so only changes made elsewhere wait).
            let busy = next
                .jobs
                .iter()
                .any(|j| j.state == "queued" || j.state == "running");
            wait = if first {
                Duration::ZERO
            } else if busy {
                every
            } else {
                every * IDLE_FACTOR
            };
            first = false;
            if tx.send(Arc::new(next)).is_err() {
                return;
            }
        }
    });
    (rx, poke)
}
