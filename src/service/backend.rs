//! One volume service per enabled backend (Cinder's `_launch_service`): its row in `services`,
//! its driver, its heartbeat and its periodic tasks.
//!
//! The heartbeat and periodic timers are tokio tasks that never wait for storage: every driver
//! call goes through [`BackendService::call_driver`], which runs it on the blocking pool under
//! the backend's semaphore and a timeout.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::Rng;
use tokio::sync::Semaphore;
use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use std::collections::HashMap;

use crate::config::{BackendConfig, Config};
use crate::db::Db;
use crate::db::events::NewEvent;
use crate::db::lock::ServiceLock;
use crate::driver::{DriverError, VolumeDriver};

use super::jobs::exec::JobProgress;
use super::lateness::Lateness;
use super::pool::StoragePool;

/// How long a setup check or capacity refresh may take before it counts as failed. The call
/// itself cannot be killed; it finishes on its blocking thread, but nobody waits for it.
pub const DRIVER_CHECK_TIMEOUT: Duration = Duration::from_secs(30);

/// [`DRIVER_CHECK_TIMEOUT`], or longer for an rbd backend whose connect is tried again
/// (`rados_connection_retries`): the check must outlast the retries, so the failure it
/// reports is the storage's reason, not its own timeout.
pub fn check_timeout(cfg: &crate::config::BackendConfig) -> Duration {
    match &cfg.driver {
        crate::config::DriverConfig::Rbd(r) => {
            let tries = r.connection_retries + 1;
            let budget = r.connect_timeout * tries
                + r.connection_interval * r.connection_retries
                + Duration::from_secs(10);
            budget.max(DRIVER_CHECK_TIMEOUT)
        }
        _ => DRIVER_CHECK_TIMEOUT,
    }
}

/// How long a failed job waits to learn which storage condition (if any) stands behind it.
const HEALTH_READ_TIMEOUT: Duration = Duration::from_secs(15);
/// Reading the storage client's address (no storage round trip: librados knows it).
const ADDRESS_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// Who a service is: its name, what it owns, and its row.
#[derive(Debug, Clone)]
pub struct Identity {
    /// `host@backend`: the service, and the `claimed_by` of the jobs it runs.
    pub host: String,
    /// `cluster@backend` when clustered, else `host@backend`: what new volumes belong to.
    pub owner: String,
    /// `cluster@backend`, when clustered.
    pub cluster: Option<String>,
    pub row_id: i64,
    /// `service_down_time`: how long a worker's writes ride out a database outage before the
    /// job is handed back (peers take it over after that long anyway).
    pub retry_window: Duration,
    /// The backup store this process's jobs read and write, and how many backup snapshots
    /// they keep.
    pub backup: crate::config::BackupConfig,
}

#[derive(Debug)]
pub struct BackendService {
    pub name: String,
    /// `host@backend`.
    pub host: String,
    /// `cluster@backend` when clustered, else `host@backend`.
    pub owner: String,
    pub cluster: Option<String>,
    pub row_id: i64,
    /// See [`Identity::retry_window`].
    pub retry_window: Duration,
    /// See [`Identity::backup`].
    pub backup: crate::config::BackupConfig,
    /// The operator's `service disable`, read back by every heartbeat: claim nothing.
    pub disabled: AtomicBool,
    /// This process's hold on the service (see `db::lock`); checked every periodic run.
    pub lock: tokio::sync::Mutex<Option<ServiceLock>>,
    /// The storage client address last recorded in the service row (rbd: librados').
    address: Mutex<Option<String>>,
    /// Storage clients this service had before (a process killed -9, a client renewed after a
    /// takeover): a watch they left on an image is this service's own and stale, so a job
    /// fences it instead of calling the image busy (the service lock proves they are dead).
    dead_clients: Mutex<Vec<String>>,
    pub driver: Arc<dyn VolumeDriver>,
    /// False while the driver's setup check or last capacity refresh failed: the service row
    /// then carries the error, so it shows down with its reason, and the periodic task
    /// retries. Heartbeats go on meanwhile: they prove the process (and its reactor) is alive,
    /// which tells an operator "storage is down" apart from "ember is dead or starved".
    pub healthy: AtomicBool,
    /// The last failure's reason, so that a retry failing the same way is not logged again.
    last_error: Mutex<Option<String>>,
    pub lateness: Mutex<Lateness>,
    /// Bounds the storage calls running at once on this backend; a job is claimed only
    /// with a slot in hand, so queued jobs stay visible (and takeable by another ember).
    pub slots: Arc<Semaphore>,
    /// The low-priority threads that run this backend's driver calls.
    pub pool: StoragePool,
    /// Cinder's `rbd_concurrent_flatten_operations`: flattens running at once (None: no
    /// limit). A flatten job past the limit waits for a permit, its bar at 0.
    pub flattens: Option<Arc<Semaphore>>,
    /// When deferred deletions were last purged (`deferred_deletion_purge_interval`).
    last_purge: Mutex<Option<std::time::Instant>>,
    pub cfg: BackendConfig,
    /// Jobs running here, by id: a cancel from this process reaches them at once.
    pub running: Mutex<HashMap<String, Arc<JobProgress>>>,
    /// Where running jobs post their progress for this process's console.
    pub board: Arc<super::progress::ProgressBoard>,
    /// Woken when new jobs may be waiting (a notification), so the runner claims at once.
    pub wake: tokio::sync::Notify,
    /// Cancelled when the first setup check has finished, whatever it found (systemd's READY
    /// waits for every backend's).
    pub setup_done: tokio_util::sync::CancellationToken,
}

impl BackendService {
    /// Runs a blocking driver call off the reactor, under the backend's semaphore, with a timeout.
    pub async fn call_driver<T, F>(
        &self,
        op: &'static str,
        timeout: Duration,
        f: F,
    ) -> Result<T, DriverError>
    where
        T: Send + 'static,
        F: FnOnce(&dyn VolumeDriver) -> Result<T, DriverError> + Send + 'static,
    {
        let driver = self.driver.clone();
        let size = self.cfg.pool_size.max(1);
        let (backend, began) = (self.name.clone(), Instant::now());
        super::pool::bounded(&self.slots, size, &self.pool, timeout, move || {
            let r = f(driver.as_ref());
            super::metrics::get().storage_call(&backend, op, began.elapsed());
            r
        })
        .await
        .map_err(|e| e.into_driver(self.name.clone(), op))?
    }

    /// The storage conditions that stop this backend's writes now (Ceph: a full pool, paused
    /// OSDs, PGs inactive...), one line each with its fix, for a failed job's error. Read on
    /// the operator pool, not the backend's, whose threads may all be held by the jobs that
    /// are failing, and given up after `HEALTH_READ_TIMEOUT`.
    pub async fn standing_blockers(&self) -> Vec<String> {
        let driver = self.driver.clone();
        let read = super::pool::operator_call(HEALTH_READ_TIMEOUT, move || driver.storage_health());
        match read.await {
            Ok(Ok(findings)) => crate::driver::health::blockers(&findings),
            Ok(Err(e)) => {
                tracing::debug!(backend = %self.name, "storage health not read: {e}");
                vec![]
            }
            _ => vec![],
        }
    }

    /// A storage error as the reason to record or show: the condition the storage reports as
    /// standing (a full pool, OSDs down), when there is one, before the symptom it caused.
    pub async fn explain(&self, e: &DriverError) -> String {
        let standing = self.standing_blockers().await;
        if standing.is_empty() {
            e.to_string()
        } else {
            format!("{}: {e}", standing.join("; "))
        }
    }

    /// Setup check; marks the service healthy or records why not.
    pub async fn check(&self, db: &Db) -> bool {
        match self
            .call_driver("setup check", check_timeout(&self.cfg), |d| d.check_setup())
            .await
        {
            Ok(()) => {
                *self.last_error.lock().unwrap_or_else(|p| p.into_inner()) = None;
                if !self.healthy.swap(true, Ordering::SeqCst)
                    && let Err(e) = db.set_service_error(self.row_id, None).await
                {
                    warn!(backend = %self.name, "cannot clear service error: {e}");
                }
                self.sync_address(db).await;
                true
            }
            Err(e) => {
                self.fail(db, &self.explain(&e).await).await;
                false
            }
        }
    }

    async fn fail(&self, db: &Db, reason: &str) {
        let was = self.healthy.swap(false, Ordering::SeqCst);
        // Logged when it starts or its reason changes; a retry failing the same way is quiet.
        let changed = {
            let mut last = self.last_error.lock().unwrap_or_else(|p| p.into_inner());
            let changed = last.as_deref() != Some(reason);
            *last = Some(reason.to_string());
            changed
        };
        if was || changed {
            warn!(backend = %self.name, "backend failing: {reason}");
        } else {
            tracing::debug!(backend = %self.name, "backend still failing: {reason}");
        }
        if let Err(e) = db.set_service_error(self.row_id, Some(reason)).await {
            warn!(backend = %self.name, "cannot record service error: {e}");
        }
        if was {
            let _ = db
                .add_event(&NewEvent {
                    actor: "ember",
                    host: Some(&self.host),
                    kind: crate::db::EventKind::BackendFailed,
                    target: Some(&self.name),
                    message: reason,
                })
                .await;
        }
    }

    /// Heartbeats every `report_interval` until cancelled, recording how late each fired.
    pub async fn heartbeat_loop(
        self: Arc<Self>,
        db: Db,
        interval: Duration,
        cancel: CancellationToken,
    ) {
        // The first beat at once, then every `interval`: the process is alive from the start,
        // whatever its storage does. Until the first setup check has finished the service
        // reads as `starting` (its row's ready_at), never up and never down.
        let mut ticker = tokio::time::interval(interval);
        ticker.set_missed_tick_behavior(MissedTickBehavior::Skip);
        let mut inflight: Option<tokio::task::JoinHandle<()>> = None;
        loop {
            let scheduled = tokio::select! {
                _ = cancel.cancelled() => return,
                t = ticker.tick() => t,
            };
            let late = Instant::now().saturating_duration_since(scheduled);
            super::systemd::feed_watchdog();
            let labels = super::metrics::ServiceLabels {
                backend: self.name.clone(),
                service: self.host.clone(),
            };
            super::metrics::get()
                .heartbeat_lateness
                .get_or_create(&labels)
                .observe(late.as_secs_f64());
            let encoded = {
                let mut l = self.lateness.lock().unwrap_or_else(|p| p.into_inner());
                l.record(late);
                l.encode()
            };
            // The write runs as its own task so the timer keeps its schedule; at most one is in
            // flight. It is never dropped half-way (a dropped sqlx future can strand its
            // pooled connection); the pool's acquire timeout and SQLite's busy timeout bound it.
            if inflight.as_ref().is_some_and(|h| !h.is_finished()) {
                warn!(backend = %self.name, "heartbeat skipped: the previous one is still being written (database slow)");
                continue;
            }
            let (db, me) = (db.clone(), self.clone());
            inflight = Some(tokio::spawn(async move {
                // Cinder logs DB errors in report_state and keeps going; so does ember.
                let sent = Instant::now();
                let written = db.heartbeat(me.row_id, &encoded).await;
                super::metrics::get()
                    .database_round_trip
                    .get_or_create(&super::metrics::KindLabels {
                        kind: "heartbeat".into(),
                    })
                    .observe(sent.elapsed().as_secs_f64());
                match written {
                    Ok(disabled) => {
                        if me.disabled.swap(disabled, Ordering::SeqCst) != disabled {
                            info!(backend = %me.name, "service {}: it claims {} jobs",
                                if disabled { "disabled by an operator" } else { "enabled" },
                                if disabled { "no new" } else { "new" });
                        }
                    }
                    Err(e) => warn!(backend = %me.name, "heartbeat not written: {e}"),
                }
            }));
        }
    }

    /// Periodic tasks: capacity refresh (or a retry of a failed setup), first after a random
    /// delay up to `periodic_fuzzy_delay`, then every `periodic_interval`.
    pub async fn periodic_loop(
        self: Arc<Self>,
        db: Db,
        config: Arc<Config>,
        cancel: CancellationToken,
    ) {
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = self.first_check(&db) => {}
        }
        let fuzzy = config.periodic_fuzzy_delay.as_millis() as u64;
        let first = Duration::from_millis(if fuzzy == 0 {
            0
        } else {
            rand::rng().random_range(0..=fuzzy)
        });
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(first) => {}
        }
        let period = config.periodic_interval.max(Duration::from_secs(1));
        let mut ticker = tokio::time::interval(period);
        ticker.set_missed_tick_behavior(MissedTickBehavior::Skip);
        loop {
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = ticker.tick() => {}
            }
            self.keep_lock(&db).await;
            if !self.healthy.load(Ordering::SeqCst) {
                if self.check(&db).await {
                    info!(backend = %self.name, "backend recovered");
                    let _ = db
                        .add_event(&NewEvent {
                            actor: "ember",
                            host: Some(&self.host),
                            kind: crate::db::EventKind::BackendRecovered,
                            target: Some(&self.name),
                            message: "setup check passed",
                        })
                        .await;
                } else {
                    continue;
                }
            }
            self.refresh_capacity(&db).await;
            self.sync_address(&db).await;
            self.purge_deferred(&db).await;
        }
    }

    /// Records the storage client's address when it changed (a reconnect makes a new client):
    /// it is what a peer fences before taking this service's jobs over.
    pub async fn sync_address(&self, db: &Db) {
        let d = self.driver.clone();
        // On the operator pool: the backend's slots may all be held by long jobs.
        let Ok(addr) =
            super::pool::operator_call(ADDRESS_READ_TIMEOUT, move || d.client_address()).await
        else {
            return;
        };
        let changed = {
            let mut last = self.address.lock().unwrap_or_else(|p| p.into_inner());
            let changed = *last != addr;
            if changed && let Some(old) = last.take() {
                self.remember_dead_client(old);
            }
            last.clone_from(&addr);
            changed
        };
        if changed {
            if let Some(a) = &addr {
                info!(backend = %self.name, "storage client address {a}");
            }
            if let Err(e) = db.set_client_address(self.row_id, addr.as_deref()).await {
                warn!(backend = %self.name, "cannot record client address: {e}");
            }
        }
    }

    /// A storage client this service no longer uses (the previous process's, read from the
    /// service row at start; or one replaced by a reconnect).
    pub fn remember_dead_client(&self, addr: String) {
        let mut dead = self.dead_clients.lock().unwrap_or_else(|p| p.into_inner());
        if !dead.contains(&addr) {
            dead.push(addr);
            if dead.len() > 16 {
                dead.remove(0);
            }
        }
    }

    /// See `dead_clients`.
    pub fn dead_clients(&self) -> Vec<String> {
        self.dead_clients
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// After a peer took a job over (and may have fenced this host's storage client): a new
    /// client at once, so that this service works again under a new identity.
    pub async fn renew_client(&self, db: &Db) {
        let r = self
            .call_driver("reconnect", check_timeout(&self.cfg), |d| {
                d.reset_client();
                d.check_setup()
            })
            .await;
        match r {
            Ok(()) => self.sync_address(db).await,
            Err(e) => self.fail(db, &self.explain(&e).await).await,
        }
    }

    /// A PostgreSQL restart drops the connection that held this service's lock, and the lock
    /// with it: take it again on a new connection. If another process took it meanwhile,
    /// this one stops claiming (it is marked failing) rather than run the service twice.
    async fn keep_lock(&self, db: &Db) {
        let mut held = self.lock.lock().await;
        if let Some(l) = held.as_mut()
            && l.alive().await
        {
            return;
        }
        match db.try_service_lock(&self.host).await {
            Ok(Some(l)) => {
                if held.is_some() {
                    info!(backend = %self.name, "service lock taken again after the database connection was lost");
                }
                *held = Some(l);
            }
            Ok(None) => {
                *held = None;
                let why = super::held_elsewhere(db, &self.host).await;
                self.fail(db, &why).await;
            }
            Err(e) => {
                *held = None;
                warn!(backend = %self.name, "service lock not taken again yet: {e}");
            }
        }
    }

    /// The setup check at start (Cinder's `init_host`): started, or failing with its reason.
    async fn first_check(&self, db: &Db) {
        if self.check(db).await {
            info!(backend = %self.name, host = %self.host, driver = self.cfg.driver_name(), "service started");
            super::event(
                db,
                &self.host,
                crate::db::EventKind::ServiceStarted,
                &self.name,
                &format!("driver {}", self.cfg.driver_name()),
            )
            .await;
            self.refresh_capacity(db).await;
        }
        if let Err(e) = db.set_service_ready(self.row_id).await {
            warn!(backend = %self.name, "first setup check not recorded: {e}");
        }
        self.setup_done.cancel();
    }

    /// Deferred deletion: removes hidden images that nothing reads from any more.
    async fn purge_deferred(&self, db: &Db) {
        if !self.cfg.enable_deferred_deletion {
            return;
        }
        // deferred_deletion_purge_interval: not at every periodic run.
        {
            let mut last = self.last_purge.lock().unwrap_or_else(|p| p.into_inner());
            if last.is_some_and(|t| t.elapsed() < self.cfg.deferred_deletion_purge_interval) {
                return;
            }
            *last = Some(std::time::Instant::now());
        }
        match self
            .call_driver("purge deferred", check_timeout(&self.cfg), |d| {
                d.purge_deferred()
            })
            .await
        {
            Ok(gone) => {
                for image in gone {
                    info!(backend = %self.name, "deferred delete of {image} done: nothing depends on it any more");
                    let _ = db
                        .add_event(&NewEvent {
                            actor: "ember",
                            host: Some(&self.host),
                            kind: crate::db::EventKind::ImagePurged,
                            target: Some(&image),
                            message: "deferred deletion: its last clone is gone",
                        })
                        .await;
                }
            }
            Err(e) => warn!(backend = %self.name, "deferred deletions not purged: {e}"),
        }
    }

    pub async fn refresh_capacity(&self, db: &Db) {
        match self
            .call_driver("capacity", check_timeout(&self.cfg), |d| d.capacity())
            .await
        {
            Ok(c) => {
                let provisioned = match c.provisioned_bytes {
                    Some(p) => Ok(p),
                    None => db.provisioned_bytes(&self.name).await,
                };
                let written = match provisioned {
                    Ok(p) => {
                        db.set_capacity(self.row_id, c.total_bytes, c.free_bytes, p)
                            .await
                    }
                    Err(e) => Err(e),
                };
                if let Err(e) = written {
                    warn!(backend = %self.name, "capacity not written: {e}");
                }
            }
            Err(e) => self.fail(db, &self.explain(&e).await).await,
        }
    }
}

pub fn new_backend(
    cfg: &BackendConfig,
    id: Identity,
    driver: Arc<dyn VolumeDriver>,
    lock: ServiceLock,
    board: Arc<super::progress::ProgressBoard>,
) -> Arc<BackendService> {
    Arc::new(BackendService {
        name: cfg.name.clone(),
        host: id.host,
        owner: id.owner,
        cluster: id.cluster,
        row_id: id.row_id,
        retry_window: id.retry_window,
        backup: id.backup,
        disabled: AtomicBool::new(false),
        lock: tokio::sync::Mutex::new(Some(lock)),
        address: Mutex::new(None),
        dead_clients: Mutex::new(vec![]),
        driver,
        healthy: AtomicBool::new(false),
        last_error: Mutex::new(None),
        lateness: Mutex::new(Lateness::default()),
        slots: Arc::new(Semaphore::new(cfg.pool_size.max(1))),
        pool: StoragePool::new(&cfg.name, cfg.pool_size.max(1)),
        last_purge: Mutex::new(None),
        flattens: (cfg.concurrent_flattens > 0)
            .then(|| Arc::new(Semaphore::new(cfg.concurrent_flattens as usize))),
        cfg: cfg.clone(),
        running: Mutex::default(),
        board,
        wake: tokio::sync::Notify::new(),
        setup_done: tokio_util::sync::CancellationToken::new(),
    })
}
