//! The one state model the console draws: a whole, immutable picture of services, volumes,
//! snapshots and jobs, published on a `watch` channel. The embedded worker and a console
//! attached to a remote database build it the same way, by reading the database; the console
//! never sees a half-updated state and never touches the database or a driver itself.
//!
//! How state flows: writers (services, the CLI, consoles) change rows; a trigger stamps each
//! row, and on PostgreSQL also `NOTIFY`s `ember_changes` when the writer commits. The
//! publisher here `LISTEN`s (PostgreSQL) or polls (SQLite, and as a slow fallback), reads only
//! the rows stamped since its last read into the [`LiveModel`], and publishes a new picture;
//! the console draws it. Tables that did not change are published as the same `Arc`.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::warn;

use crate::config::Config;
use crate::db::services::liveness;
use crate::db::{Db, EventRow, now_ms};

use super::live::LiveModel;
use super::progress::ProgressBoard;

pub use super::view::{JobState, JobView, ServiceView, SnapshotView, Status, VolumeView};

/// A takeover, a lost claim or a service's maintenance, as the Overview lists it.
#[derive(Debug, Clone, PartialEq)]
pub struct EventView {
    pub id: i64,
    pub at: i64,
    /// Who did it (`alice (ssh from 10.0.0.7)`, or `ember` for the service itself).
    pub actor: String,
    pub host: Option<String>,
    /// `job_taken_over`, `job_lease_lost`, `service_disabled`...
    pub kind: crate::db::EventKind,
    /// The id it concerns, and what the operator calls it.
    pub target: Option<String>,
    pub target_name: Option<String>,
    pub message: String,
}

impl From<EventRow> for EventView {
    fn from(e: EventRow) -> Self {
        EventView {
            id: e.id,
            at: e.at,
            actor: e.actor,
            host: e.host,
            kind: e.kind,
            target: e.target,
            target_name: None,
            message: e.message,
        }
    }
}

/// A backup as the Backups view and the volume's detail pane show it.
#[derive(Debug, Clone, PartialEq)]
pub struct BackupView {
    pub id: String,
    pub name: String,
    pub volume_id: String,
    pub status: Status,
    pub size_bytes: i64,
    /// Bytes of the volume that hold data, what this backup read of it, and what it added
    /// to the store.
    pub data_bytes: i64,
    pub read_bytes: i64,
    pub stored_bytes: i64,
    /// Asked as incremental (to the volume's previous backup).
    pub incremental: bool,
    pub created_at: i64,
    pub status_reason: Option<String>,
}

impl From<crate::db::BackupRow> for BackupView {
    fn from(b: crate::db::BackupRow) -> Self {
        BackupView {
            id: b.id,
            name: b.name,
            volume_id: b.volume_id,
            status: b.status,
            size_bytes: b.size_bytes,
            data_bytes: b.data_bytes,
            read_bytes: b.read_bytes,
            stored_bytes: b.stored_bytes,
            incremental: b.parent_id.is_some(),
            created_at: b.created_at,
            status_reason: b.status_reason,
        }
    }
}

/// A backend as the console shows it: configured here, or seen in the services table.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct BackendView {
    pub name: String,
    pub driver: String,
    pub up: usize,
    /// Services still on their first setup check: neither up nor down yet.
    pub starting: usize,
    pub down: usize,
    pub total_bytes: Option<i64>,
    pub free_bytes: Option<i64>,
    pub provisioned_bytes: Option<i64>,
    pub max_over_subscription_ratio: Option<f64>,
    pub error: Option<String>,
    /// Draining (any of its services): being emptied by `backend evacuate`, or held empty.
    pub draining: bool,
}

impl BackendView {
    /// One word for the backend: up while any of its services is, starting while one is on
    /// its first setup check and none is up, else down.
    pub fn state(&self) -> &'static str {
        if self.up > 0 {
            "up"
        } else if self.starting > 0 {
            "starting"
        } else {
            "down"
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Snapshot {
    /// When it was read (Unix ms); ages are computed against the render time.
    pub generated_at: i64,
    pub service_down_time_ms: i64,
    pub services: Vec<ServiceView>,
    pub backends: Vec<BackendView>,
    pub volumes: Arc<Vec<Arc<VolumeView>>>,
    /// Live volumes in the database (known before the rows are loaded).
    pub volume_count: i64,
    /// False until the volume rows have been read once: the console shows its first frame
    /// before loading a large volume table.
    pub volumes_loaded: bool,
    pub snapshots: Arc<Vec<Arc<SnapshotView>>>,
    /// Newest first: every unfinished job and the newest finished ones.
    pub jobs: Arc<Vec<JobView>>,
    /// Unfinished jobs that wait for a host that is down (and no peer may take over): job id,
    /// and what it waits for with the fix.
    pub waiting: Vec<(String, String)>,
    /// Takeovers, lost claims and service maintenance across the cluster, newest first.
    pub cluster_events: Vec<EventView>,
    /// The audit log's newest events, newest first (a table that did not change is the same Arc).
    pub events: Arc<Vec<EventView>>,
    /// Live backups, newest first (read again only when a backup job changed).
    pub backups: Arc<Vec<BackupView>>,
    /// Live attachments, oldest first (read again when a volume changed: attaching and
    /// detaching always write the volume's row).
    pub attachments: Arc<Vec<crate::db::AttachmentRow>>,
    /// Why the last read failed, if it did (the previous data is kept).
    pub error: Option<String>,
    /// Since when reads have failed (the database's clock as last known), for "database
    /// unreachable since 17:02:11".
    pub error_since: Option<i64>,
    /// Rows of volumes, snapshots and jobs the read that made this picture fetched.
    pub rows_read: usize,
}

/// With PostgreSQL's push working, the database is still read this often, in case a
/// notification was lost.
pub const PUSH_FALLBACK: Duration = Duration::from_secs(15);

/// How long the database's clock may take to answer before the console reports it
/// unreachable (a refused connection is retried by the pool until its acquire timeout).
const PROBE_LIMIT: Duration = Duration::from_secs(1);
/// How long a refresh of what changed may take before the console reports the database
/// unreachable.
const READ_LIMIT: Duration = Duration::from_secs(3);
/// The same for a full read (100k volumes and 100k snapshots take about 1.5 s on SQLite).
const FULL_READ_LIMIT: Duration = Duration::from_secs(30);

/// After a notification, how long more changes are gathered before one read.
pub const PUSH_COALESCE: Duration = Duration::from_millis(100);

/// How many recent takeovers and maintenance events the Overview shows.
const CLUSTER_EVENTS: i64 = 5;

/// Builds pictures from the database, keeping the live model between reads.
#[derive(Debug, Default)]
pub struct Reader {
    model: LiveModel,
    /// Reads everything every time (the baseline `bench console-live` compares against).
    pub full_every_time: bool,
}

impl Reader {
    /// Forgets what was read: the next read is a full one (after a lost notification link).
    pub fn invalidate(&mut self) {
        self.model.invalidate();
    }

    /// How long the next read may take before the database counts as unreachable: a full
    /// read of a large installation is given time, a refresh of what changed is not.
    fn limit(&self, with_volumes: bool) -> Duration {
        if with_volumes && self.model.reads_all_next() {
            FULL_READ_LIMIT
        } else {
            READ_LIMIT
        }
    }

    /// A new picture from `prev` and what changed since. `with_volumes` false reads all but
    /// the volume, snapshot and job rows (the console's first frame, drawn at once).
    pub async fn read(
        &mut self,
        db: &Db,
        cfg: &Config,
        prev: &Snapshot,
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
                .iter()
                .map(|r| ServiceView::from_row(r, liveness(r, now, down)))
                .collect();
            if !with_volumes {
                snap.volume_count = db.volumes_version().await?.1;
                return Ok(());
            }
            if self.full_every_time {
                self.model.invalidate();
            }
            snap.rows_read = self.model.refresh(db).await?.rows_read;
            snap.volumes = self.model.volumes.rows().clone();
            snap.snapshots = self.model.snapshots.rows().clone();
            snap.jobs = self.model.jobs.clone();
            snap.events = self.model.events.clone();
            snap.backups = self.model.backups.clone();
            snap.attachments = self.model.attachments.clone();
            snap.volume_count = snap.volumes.len() as i64;
            snap.volumes_loaded = true;
            snap.waiting = self
                .model
                .jobs
                .iter()
                .filter_map(|j| {
                    crate::service::takeover::waiting_for(j, &rows, now, down)
                        .map(|w| (j.id.clone(), w))
                })
                .collect();
            snap.cluster_events = db
                .cluster_events(CLUSTER_EVENTS)
                .await?
                .into_iter()
                .map(EventView::from)
                .collect();
            Ok(())
        }
        .await;
        snap.error = result.err().map(|e| e.to_string());
        snap.error_since = match &snap.error {
            Some(_) => prev.error_since.or(Some(now)),
            None => None,
        };
        snap.backends = backends(cfg, &snap.services);
        snap
    }
}

/// The backends with every one of their services aggregated: one function for the console
/// and `backend list`, so the two never disagree about a clustered backend (issue 23).
pub fn backends(cfg: &Config, services: &[ServiceView]) -> Vec<BackendView> {
    let mut names: Vec<String> = cfg.backends.iter().map(|b| b.name.clone()).collect();
    names.extend(cfg.broken.iter().map(|b| b.name.clone()));
    for s in services {
        if !names.contains(&s.backend) {
            names.push(s.backend.clone());
        }
    }
    names
        .into_iter()
        .map(|name| {
            let of: Vec<&ServiceView> = services.iter().filter(|s| s.backend == name).collect();
            let newest = of
                .iter()
                .filter(|s| s.capacity_at.is_some())
                .max_by_key(|s| s.capacity_at);
            let cfgb = cfg.backend(&name);
            BackendView {
                driver: cfgb
                    .map(|b| b.driver_name().to_string())
                    .or_else(|| of.first().map(|s| s.driver.clone()))
                    .unwrap_or_else(|| "?".into()),
                up: of.iter().filter(|s| s.up).count(),
                starting: of.iter().filter(|s| s.starting).count(),
                down: of.iter().filter(|s| !s.up && !s.starting).count(),
                total_bytes: newest.and_then(|s| s.capacity_total),
                free_bytes: newest.and_then(|s| s.capacity_free),
                provisioned_bytes: newest.and_then(|s| s.capacity_provisioned),
                max_over_subscription_ratio: cfgb.map(|b| b.max_over_subscription_ratio),
                draining: of.iter().any(|s| s.draining),
                error: cfg
                    .broken
                    .iter()
                    .find(|b| b.name == name)
                    .map(|b| b.reason.clone())
                    .or_else(|| of.iter().find_map(|s| s.error.clone())),
                name,
            }
        })
        .collect()
}

/// Waits for the next notification; None when the link was lost (and is being re-made:
/// whatever was sent meanwhile is lost, so the caller reads everything again).
pub(crate) async fn notified(l: &mut Option<sqlx::postgres::PgListener>) -> Option<String> {
    match l {
        Some(l) => match l.try_recv().await {
            Ok(Some(n)) => Some(n.payload().to_string()),
            Ok(None) => None,
            Err(e) => {
                warn!("change notifications: {e}");
                tokio::time::sleep(Duration::from_secs(1)).await;
                None
            }
        },
        None => std::future::pending().await,
    }
}

/// Publishes a snapshot whenever the database says something changed (PostgreSQL), else every
/// `every` (SQLite), until cancelled; `poke` asks for one at once (after a command, so the
/// operator sees its effect without waiting).
pub fn spawn_publisher(
    db: Db,
    cfg: Arc<Config>,
    every: Duration,
    cancel: CancellationToken,
) -> (watch::Receiver<Arc<Snapshot>>, Arc<tokio::sync::Notify>) {
    spawn_publisher_with(db, cfg, every, cancel, Reader::default(), None)
}

/// The jobs of `snap` with the progress this process's runners posted (rates in the console
/// come from `updated_at`, so it moves with the bytes).
fn patched_jobs(snap: &Snapshot, board: &ProgressBoard) -> Option<Arc<Vec<JobView>>> {
    let live = board.read();
    if live.is_empty() {
        return None;
    }
    let mut jobs = snap.jobs.as_ref().clone();
    let mut moved = false;
    // A job posting here runs here, even if the last read still saw it queued.
    for j in jobs.iter_mut().filter(|j| j.state.is_active()) {
        if let Some(l) = live.get(&j.id) {
            if j.state == JobState::Queued {
                j.state = JobState::Running;
                moved = true;
            }
            let (done, total) = (
                crate::db::services::clamp(l.done),
                crate::db::services::clamp(l.total),
            );
            if (done, total) != (j.bytes_done, j.bytes_total) && l.at_ms > j.updated_at {
                j.bytes_done = done;
                j.bytes_total = total;
                j.updated_at = l.at_ms;
                moved = true;
            }
        }
    }
    moved.then(|| Arc::new(jobs))
}

/// [`spawn_publisher`] with a given reader (`bench console-live` runs a full-reload one).
pub fn spawn_publisher_with(
    db: Db,
    cfg: Arc<Config>,
    every: Duration,
    cancel: CancellationToken,
    reader: Reader,
    board: Option<Arc<ProgressBoard>>,
) -> (watch::Receiver<Arc<Snapshot>>, Arc<tokio::sync::Notify>) {
    let (tx, rx) = watch::channel(Arc::new(Snapshot::default()));
    let poke = Arc::new(tokio::sync::Notify::new());
    let poked = poke.clone();
    tokio::spawn(async move {
        let mut reader = reader;
        let mut seen: Option<i64> = None;
        // The next poll, as a deadline: other wake-ups (posts, pokes) do not push it back.
        let mut next_poll = tokio::time::Instant::now();
        let mut first = true;
        let mut push = db.listen_changes().await;
        // Since the listener lost its connection and until it brings a notification again,
        // changes may go unannounced: poll every `every` meanwhile.
        let mut push_lost = false;
        let no_board = ProgressBoard::default();
        let posts = board.as_deref().unwrap_or(&no_board);
        loop {
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = posts.changed.notified() => {
                    // This process's own jobs moved: patch the picture, no database read.
                    let prev = tx.borrow().clone();
                    if let Some(jobs) = patched_jobs(&prev, posts) {
                        let next = Snapshot { jobs, ..prev.as_ref().clone() };
                        if tx.send(Arc::new(next)).is_err() {
                            return;
                        }
                    }
                    continue;
                }
                _ = tokio::time::sleep_until(next_poll) => {}
                _ = poked.notified() => {}
                n = notified(&mut push) => {
                    push_lost = n.is_none();
                    if n.is_none() {
                        reader.invalidate();
                    }
                    // A burst of writes (a new volume, its job claimed and run at once, a
                    // heartbeat beside it) in one read: at most 100 ms later.
                    tokio::time::sleep(PUSH_COALESCE).await;
                }
            }
            let prev = tx.borrow().clone();
            // The first read skips the volume rows so the console opens at once; the next
            // read, right after, loads them.
            // The database's clock first (it also keeps this process's ages right): one that
            // does not answer within PROBE_LIMIT is away, and the console says so now instead of
            // after the pool's connect timeout. A read cut off by its own limit leaves the model
            // half-patched: the next read is a full one.
            let away = |why: String| Snapshot {
                error: Some(format!("database {}: {why}", db.display_url)),
                error_since: prev.error_since.or(Some(now_ms())),
                ..prev.as_ref().clone()
            };
            let mut next = match tokio::time::timeout(PROBE_LIMIT, db.clock_ms()).await {
                Err(_) => away(format!("no answer within {} s", PROBE_LIMIT.as_secs())),
                Ok(Err(e)) => away(e.to_string()),
                Ok(Ok(_)) => {
                    let limit = reader.limit(!first);
                    match tokio::time::timeout(limit, reader.read(&db, &cfg, &prev, !first)).await {
                        Ok(next) => next,
                        Err(_) => {
                            reader.invalidate();
                            away(format!("no answer within {} s", limit.as_secs()))
                        }
                    }
                }
            };
            // The database has this process's progress up to a second late: keep the posts.
            if let Some(jobs) = patched_jobs(&next, posts) {
                next.jobs = jobs;
            }
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
                        match e.kind {
                            crate::db::EventKind::JobLeaseLost => warn!(host, "{}", e.message),
                            _ => tracing::info!(host, "{}", e.message),
                        }
                    }
                }
                seen = Some(seen.unwrap_or(0).max(newest));
            }
            // Polling: every `every` (SQLite); with push, only as a fallback.
            next_poll = tokio::time::Instant::now()
                + if first {
                    Duration::ZERO
                } else if push.is_some() && !push_lost {
                    PUSH_FALLBACK
                } else {
                    every
                };
            first = false;
            if tx.send(Arc::new(next)).is_err() {
                return;
            }
        }
    });
    (rx, poke)
}
