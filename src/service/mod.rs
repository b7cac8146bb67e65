//! The volume service: one per enabled backend, all in this process.
//!
//! Owner: `service/`. May import `config`, `db`, `driver`; it is the only layer that
//! orchestrates. Start-up follows Cinder's `cinder-volume`: each backend registers its row,
//! checks its driver, then heartbeats and runs periodic tasks; a backend that cannot start is
//! recorded with its reason and the others go on; only when none starts is it an error.
//! Shutdown (SIGTERM/SIGINT) cancels one root token, waits for every task, and marks each
//! service row stopped.

pub mod actor;
pub mod attach;
pub mod backend;
pub mod bench;
pub mod connection;
pub mod evacuate;
pub mod handle;
pub mod inspect;
pub mod jobs;
pub mod lateness;
pub mod lifecycle;
pub mod live;
pub mod locks;
pub mod manage;
pub mod metrics;
pub mod pool;
pub mod progress;
pub mod reconcile;
pub mod snapshot;
pub mod systemd;
pub mod takeover;
pub mod units;
pub mod view;

use std::sync::Arc;
use std::time::Duration;

use thiserror::Error;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{error, info, warn};

use crate::config::Config;
use crate::db::events::NewEvent;
use crate::db::services::Registration;
use crate::db::{Db, DbError};

pub use backend::BackendService;

#[derive(Debug, Error)]
pub enum ServiceError {
    #[error(transparent)]
    Db(#[from] DbError),
    #[error("no backend could start:\n  {}", reasons.join("\n  "))]
    NoBackendStarted { reasons: Vec<String> },
}

/// Why this process may not run a service: another live process holds it.
pub async fn held_elsewhere(db: &Db, host: &str) -> String {
    let row = db
        .list_services()
        .await
        .ok()
        .and_then(|rows| rows.into_iter().find(|r| r.host == host));
    let now = db.clock_ms().await.unwrap_or_else(|_| crate::db::now_ms());
    match row {
        Some(r) => format!(
            "{host} is already served by another ember (pid {} on {}, last heartbeat {}); \
             this one leaves it alone. Stop that process first, or give this one another host",
            r.pid.map_or("?".into(), |p| p.to_string()),
            host.split('@').next().unwrap_or(host),
            r.updated_at.map_or("never".into(), |t| format!(
                "{:.1} s ago",
                (now - t) as f64 / 1000.0
            )),
        ),
        None => format!(
            "{host} is already served by another ember process; stop it first, or give this one another host"
        ),
    }
}

/// How long shutdown waits for tasks before giving up on them.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);
/// The same with the database unreachable: tasks are then waiting on it, not working.
const UNREACHABLE_GRACE: Duration = Duration::from_secs(2);
/// How long the stop asks whether the database is there.
const STOP_DB_PROBE: Duration = Duration::from_secs(1);
/// How long recording one service's stop may take.
const STOP_WRITE: Duration = Duration::from_secs(3);

/// The running services of this process.
pub struct Services {
    pub db: Db,
    pub backends: Vec<Arc<BackendService>>,
    /// Progress of the jobs running here, for this process's console.
    pub board: Arc<progress::ProgressBoard>,
    cancel: CancellationToken,
    /// Cancelled first at shutdown: the job runners stop claiming while heartbeats go on, so
    /// no peer takes over a job that is still finishing here.
    claiming: CancellationToken,
    tracker: TaskTracker,
}

impl Services {
    /// Registers and starts a service per configured backend. `cancel` stops them all.
    pub async fn start(
        config: Arc<Config>,
        db: Db,
        cancel: CancellationToken,
    ) -> Result<Services, ServiceError> {
        let mut reasons = vec![];
        let tracker = TaskTracker::new();
        let claiming = cancel.child_token();
        let board = Arc::new(progress::ProgressBoard::default());
        let mut backends = vec![];
        // Faulty sections: listed in `services` with their reason, never started.
        for b in &config.broken {
            let host = config.service_host(&b.name);
            error!(backend = %b.name, "backend disabled: {}", b.reason);
            reasons.push(format!("{}: {}", b.name, b.reason));
            // A row another live process serves is not ours to overwrite.
            if db.try_service_lock(&host).await?.is_none() {
                continue;
            }
            db.register_service(&Registration {
                host: &host,
                backend: &b.name,
                cluster: config.service_cluster(&b.name).as_deref(),
                driver: "unknown",
                error: Some(&b.reason),
            })
            .await?;
            event(
                &db,
                &host,
                crate::db::EventKind::BackendFailed,
                &b.name,
                &b.reason,
            )
            .await;
        }

        for b in &config.backends {
            let host = config.service_host(&b.name);
            // One process per service: decided before the row is touched, so a second ember
            // for the same host@backend leaves the running one undisturbed.
            let Some(lock) = db.try_service_lock(&host).await? else {
                let reason = held_elsewhere(&db, &host).await;
                error!(backend = %b.name, "{reason}");
                reasons.push(format!("{}: {reason}", b.name));
                continue;
            };
            let cluster = config.service_cluster(&b.name);
            let registration = Registration {
                host: &host,
                backend: &b.name,
                cluster: cluster.as_deref(),
                driver: b.driver_name(),
                error: None,
            };
            let driver = match crate::driver::open(b) {
                Ok(d) => d,
                Err(e) => {
                    let reason = e.to_string();
                    error!(backend = %b.name, "backend cannot start: {reason}");
                    db.register_service(&Registration {
                        error: Some(&reason),
                        ..registration
                    })
                    .await?;
                    event(
                        &db,
                        &host,
                        crate::db::EventKind::BackendFailed,
                        &b.name,
                        &reason,
                    )
                    .await;
                    reasons.push(format!("{}: {reason}", b.name));
                    continue;
                }
            };
            let row_id = db.register_service(&registration).await?;
            let disabled = db.service_disabled(row_id).await?;
            let svc = backend::new_backend(
                b,
                backend::Identity {
                    host: host.clone(),
                    owner: config.service_owner(&b.name),
                    cluster,
                    row_id,
                    retry_window: config.service_down_time,
                    backup: config.backup.clone(),
                },
                driver,
                lock,
                board.clone(),
            );
            svc.disabled
                .store(disabled, std::sync::atomic::Ordering::SeqCst);
            // The previous process's storage client (this row's last address): any watch it
            // left is stale, and this service's own to fence (it holds the service lock).
            if let Some(prev) = db
                .list_services()
                .await?
                .into_iter()
                .find(|r| r.id == row_id)
                .and_then(|r| r.client_address)
            {
                svc.remember_dead_client(prev);
            }
            if let Err(e) = jobs::recovery::recover(&svc, &db).await {
                warn!(backend = %b.name, "crash cleanup failed: {e}");
            }
            // The setup check runs in the backend's periodic task, so that one backend whose
            // cluster does not answer (up to rados_connect_timeout) delays no other.
            tracker.spawn(svc.clone().heartbeat_loop(
                db.clone(),
                config.report_interval,
                cancel.child_token(),
            ));
            tracker.spawn(svc.clone().periodic_loop(
                db.clone(),
                config.clone(),
                cancel.child_token(),
            ));
            if svc.cluster.is_some() {
                tracker.spawn(takeover::takeover_loop(
                    svc.clone(),
                    db.clone(),
                    config.clone(),
                    claiming.child_token(),
                ));
            }
            backends.push(svc);
        }
        // Prometheus scrapes, when asked for: a port that cannot be had stops the metrics, not
        // the services.
        if let Some(addr) = config.metrics_listen
            && !backends.is_empty()
        {
            let (db2, down, stop) = (db.clone(), config.service_down_time, cancel.child_token());
            tracker.spawn(async move {
                if let Err(e) = metrics::serve(addr, db2, down, stop).await {
                    error!("metrics_listen = {addr}: cannot serve the metrics there: {e}");
                }
            });
            // The doctor every 5 periodic intervals (5 minutes at Cinder's default).
            tracker.spawn(metrics::doctor_loop(
                config.clone(),
                db.clone(),
                config.periodic_interval.max(Duration::from_secs(1)) * 5,
                cancel.child_token(),
            ));
        }
        // Job runners start once every service exists: a migration's job opens its target
        // backend's service, which may come later in the config.
        let peers = Arc::new(backends.clone());
        for svc in &backends {
            tracker.spawn(jobs::runner::job_loop(
                svc.clone(),
                db.clone(),
                jobs::runner::Stops {
                    claiming: claiming.child_token(),
                    hand_back: cancel.child_token(),
                },
                tracker.clone(),
                peers.clone(),
            ));
        }
        // Jobs queued on PostgreSQL are claimed at once, not at the next poll.
        if !backends.is_empty() {
            tracker.spawn(wake_on_new_jobs(
                db.clone(),
                backends.clone(),
                cancel.child_token(),
            ));
        }
        // Only a backend that cannot even be built stops ember; one whose storage is down now
        // stays, heartbeats with its reason, and is retried every periodic_interval.
        if backends.is_empty() {
            cancel.cancel();
            tracker.close();
            tracker.wait().await;
            return Err(ServiceError::NoBackendStarted { reasons });
        }
        Ok(Services {
            db,
            backends,
            board,
            cancel,
            claiming,
            tracker,
        })
    }

    /// Stops: no more claims; running jobs get `drain` to finish (heartbeats go on meanwhile);
    /// what is left is handed back to the queue with its progress; then every task stops and
    /// the services are marked stopped. Safe to call once the root token is already cancelled.
    pub async fn shutdown(self, drain: Duration) {
        self.claiming.cancel();
        // With the database away, running jobs cannot finish (nor hand back), and tasks wait
        // on it: nothing is drained or waited for long, so a stop during an outage takes
        // seconds. The next start settles what could not be recorded.
        let reachable = matches!(
            tokio::time::timeout(STOP_DB_PROBE, self.db.clock_ms()).await,
            Ok(Ok(_))
        );
        let drain = if reachable { drain } else { Duration::ZERO };
        let running = |s: &Self| -> usize {
            s.backends
                .iter()
                .map(|b| b.running.lock().unwrap_or_else(|p| p.into_inner()).len())
                .sum()
        };
        if !drain.is_zero() && running(&self) > 0 {
            info!(
                "draining: {} running job(s) get up to {}s to finish",
                running(&self),
                drain.as_secs()
            );
            let deadline = tokio::time::Instant::now() + drain;
            while running(&self) > 0 && tokio::time::Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            let left = running(&self);
            if left > 0 {
                info!("drain period over: handing {left} running job(s) back to the queue");
            }
        }
        self.cancel.cancel();
        self.tracker.close();
        let grace = if reachable {
            SHUTDOWN_GRACE
        } else {
            UNREACHABLE_GRACE
        };
        if tokio::time::timeout(grace, self.tracker.wait())
            .await
            .is_err()
        {
            warn!("some tasks did not stop within {}s", grace.as_secs());
        }
        if !reachable {
            let names: Vec<&str> = self.backends.iter().map(|b| b.host.as_str()).collect();
            warn!(
                "database unreachable at stop: the stop of {} and its event are not recorded; \
                 the services read as down once service_down_time passes, and the next start \
                 settles their rows and requeues what they held",
                names.join(", ")
            );
            return;
        }
        for b in &self.backends {
            let recorded = tokio::time::timeout(STOP_WRITE, async {
                self.db.stop_service(b.row_id).await?;
                self.db
                    .add_event(&NewEvent {
                        actor: "ember",
                        host: Some(&b.host),
                        kind: crate::db::EventKind::ServiceStopped,
                        target: Some(&b.name),
                        message: "clean stop",
                    })
                    .await
            })
            .await;
            match recorded {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => warn!(backend = %b.name, "stop not recorded: {e}"),
                Err(_) => {
                    warn!(backend = %b.name, "stop not recorded: the database did not answer within {}s", STOP_WRITE.as_secs())
                }
            }
        }
        info!("services stopped");
    }
}

/// Wakes the job runners when the database says the jobs table changed (PostgreSQL's push);
/// on SQLite there is nothing to listen to and the runners poll.
async fn wake_on_new_jobs(db: Db, backends: Vec<Arc<BackendService>>, stop: CancellationToken) {
    let mut push = db.listen_changes().await;
    if push.is_none() {
        return;
    }
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            n = snapshot::notified(&mut push) => {
                if n.as_deref().is_none_or(|t| t == "jobs") {
                    for b in &backends {
                        b.wake.notify_one();
                    }
                }
            }
        }
    }
}

pub(crate) async fn event(
    db: &Db,
    host: &str,
    kind: crate::db::EventKind,
    target: &str,
    message: &str,
) {
    let r = db
        .add_event(&NewEvent {
            actor: "ember",
            host: Some(host),
            kind,
            target: Some(target),
            message,
        })
        .await;
    if let Err(e) = r {
        warn!("event not recorded: {e}");
    }
}

/// Resolves when SIGTERM or SIGINT arrives (or at once if they cannot be watched).
pub async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        warn!("cannot install signal handlers; stopping");
        return;
    };
    tokio::select! {
        _ = term.recv() => info!("SIGTERM: stopping"),
        _ = int.recv() => info!("SIGINT: stopping"),
    }
}
