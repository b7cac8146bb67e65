//! The volume service: one per enabled backend, all in this process.
//!
//! Owner: `service/`. May import `config`, `db`, `driver`; it is the only layer that
//! orchestrates. Start-up follows Cinder's `cinder-volume`: each backend registers its row,
//! checks its driver, then heartbeats and runs periodic tasks; a backend that cannot start is
//! recorded with its reason and the others go on; only when none starts is it an error.
//! Shutdown (SIGTERM/SIGINT) cancels one root token, waits for every task, and marks each
//! service row stopped.

pub mod actor;
pub mod backend;
pub mod bench;
pub mod handle;
pub mod jobs;
pub mod lateness;
pub mod pool;
pub mod reconcile;
pub mod snapshot;
pub mod units;

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

/// How long shutdown waits for tasks before giving up on them.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// The running services of this process.
pub struct Services {
    pub db: Db,
    pub backends: Vec<Arc<BackendService>>,
    cancel: CancellationToken,
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
        // Faulty sections: listed in `services` with their reason, never started.
        for b in &config.broken {
            let host = config.service_host(&b.name);
            error!(backend = %b.name, "backend disabled: {}", b.reason);
            db.register_service(&Registration {
                host: &host,
                backend: &b.name,
                cluster: config.service_cluster(&b.name).as_deref(),
                driver: "unknown",
                error: Some(&b.reason),
            })
            .await?;
            event(&db, &host, "backend_failed", &b.name, &b.reason).await;
            reasons.push(format!("{}: {}", b.name, b.reason));
        }

        let tracker = TaskTracker::new();
        let mut backends = vec![];
        for b in &config.backends {
            let host = config.service_host(&b.name);
            let driver = match crate::driver::open(b) {
                Ok(d) => d,
                Err(e) => {
                    let reason = e.to_string();
                    error!(backend = %b.name, "backend cannot start: {reason}");
                    db.register_service(&Registration {
                        host: &host,
                        backend: &b.name,
                        cluster: config.service_cluster(&b.name).as_deref(),
                        driver: b.driver_name(),
                        error: Some(&reason),
                    })
                    .await?;
                    event(&db, &host, "backend_failed", &b.name, &reason).await;
                    reasons.push(format!("{}: {reason}", b.name));
                    continue;
                }
            };
            let row_id = db
                .register_service(&Registration {
                    host: &host,
                    backend: &b.name,
                    cluster: config.service_cluster(&b.name).as_deref(),
                    driver: b.driver_name(),
                    error: None,
                })
                .await?;
            let svc = backend::new_backend(b, host.clone(), row_id, driver);
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
            tracker.spawn(jobs::runner::job_loop(
                svc.clone(),
                db.clone(),
                cancel.child_token(),
                tracker.clone(),
            ));
            backends.push(svc);
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
            cancel,
            tracker,
        })
    }

    /// Stops every task and marks the services stopped. Safe to call once the token is
    /// already cancelled (by a signal).
    pub async fn shutdown(self) {
        self.cancel.cancel();
        self.tracker.close();
        if tokio::time::timeout(SHUTDOWN_GRACE, self.tracker.wait())
            .await
            .is_err()
        {
            warn!(
                "some tasks did not stop within {}s",
                SHUTDOWN_GRACE.as_secs()
            );
        }
        for b in &self.backends {
            if let Err(e) = self.db.stop_service(b.row_id).await {
                warn!(backend = %b.name, "stop not recorded: {e}");
            }
            event(&self.db, &b.host, "service_stopped", &b.name, "clean stop").await;
        }
        info!("services stopped");
    }
}

pub(crate) async fn event(db: &Db, host: &str, kind: &str, target: &str, message: &str) {
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
