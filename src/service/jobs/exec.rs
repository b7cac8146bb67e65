//! What each job kind does, with Cinder's status transitions:
//! create/clone `creating → available | error`; extend `extending → available | error_extending`;
//! delete `deleting → deleted | error_deleting`, or back to `available` when the storage says
//! it is busy (clones depend on it); snapshots the same way. Driver calls run on the blocking
//! pool; the job already holds one of the backend's slots.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::db::{Db, DbError, JobRow, Purpose};
use crate::driver::{Deleted, DriverError, Progress, VolumeDriver, snapshot_image};
use crate::service::BackendService;
use crate::service::lifecycle::{End, settle};

use super::holders::{check_holders, fence_holders};
use super::{JobKind, Params};

/// Progress of the running driver call, read by the runner's throttled writer, and the three
/// ways to stop it: an operator's cancel, the service stopping (the job is handed back), or
/// the claim lost to a peer's takeover (nothing more is written).
#[derive(Debug, Default)]
pub struct JobProgress {
    pub done: AtomicU64,
    pub total: AtomicU64,
    pub cancel: CancellationToken,
    pub stop: CancellationToken,
    pub lost: CancellationToken,
    /// Records a storage client of the call's own under the job's claim (None: nothing to
    /// record it in, the call goes on).
    pub record_client: Option<ClientRecorder>,
    /// `ember_job_copied_bytes_total` of the job's kind: counts the bytes as they move, so a
    /// scrape sees a long job progress (and a stuck one not).
    pub moved: Option<prometheus_client::metrics::counter::Counter>,
}

/// Writes a job's own storage client to its row, from the storage thread, before the driver
/// writes with it.
pub struct ClientRecorder(pub Box<dyn Fn(&str) -> bool + Send + Sync>);

impl std::fmt::Debug for ClientRecorder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ClientRecorder")
    }
}

impl Progress for JobProgress {
    fn update(&self, done: u64, total: u64) -> bool {
        let before = self.done.swap(done, Ordering::Relaxed);
        if let Some(c) = &self.moved
            && done > before
        {
            c.inc_by(done - before);
        }
        self.total.store(total, Ordering::Relaxed);
        !(self.cancel.is_cancelled() || self.stop.is_cancelled() || self.lost.is_cancelled())
    }

    fn storage_client(&self, address: &str) -> bool {
        self.record_client.as_ref().is_none_or(|r| (r.0)(address))
    }

    fn undo_on_stop(&self) -> bool {
        self.cancel.is_cancelled() && !self.lost.is_cancelled()
    }
}

/// How a job ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Succeeded,
    Failed(String),
    Cancelled,
    /// The service is stopping: back to the queue, to be run again from the top.
    HandedBack,
    /// A peer took the job over: this worker writes nothing more for it.
    LeaseLost,
    /// The database was away longer than the writes' retry window: back to the queue, to run
    /// again from the top (every step is idempotent), rather than failed for a passing outage.
    Retry(String),
}

/// A failure inside a job body: the driver's, or the database's.
#[derive(Debug)]
pub(super) enum Step {
    Driver(DriverError),
    Db(DbError),
}

impl From<DriverError> for Step {
    fn from(e: DriverError) -> Self {
        Step::Driver(e)
    }
}

impl From<DbError> for Step {
    fn from(e: DbError) -> Self {
        Step::Db(e)
    }
}

pub struct Ctx {
    pub db: Db,
    pub svc: Arc<BackendService>,
    pub job: JobRow,
    pub params: Params,
    pub progress: Arc<JobProgress>,
    /// This process's services of every backend (a migration writes into another's storage).
    pub peers: Arc<Vec<Arc<BackendService>>>,
}

impl Ctx {
    /// One blocking driver call, on the backend's storage pool, off the reactor.
    pub(super) async fn call<T, F>(&self, f: F) -> Result<T, DriverError>
    where
        T: Send + 'static,
        F: FnOnce(&dyn VolumeDriver, &dyn Progress) -> Result<T, DriverError> + Send + 'static,
    {
        let driver = self.svc.driver.clone();
        let progress = self.progress.clone();
        let (backend, kind) = (self.svc.name.clone(), self.job.kind.as_str());
        self.svc
            .pool
            .run(move || {
                let began = std::time::Instant::now();
                let r = f(driver.as_ref(), progress.as_ref());
                crate::service::metrics::get().storage_call(&backend, kind, began.elapsed());
                r
            })
            .await
            .map_err(|e| DriverError::Io {
                backend: self.svc.name.clone(),
                op: "job",
                message: e.to_string(),
            })?
    }

    pub(super) fn id(&self) -> String {
        self.job.target_id.clone()
    }

    /// What the job found or did, for an operator: logged, kept as the job's `result`, and
    /// written to the audit log as `kind` on the job's target.
    pub(super) async fn found(
        &self,
        kind: crate::db::EventKind,
        summary: &str,
    ) -> Result<(), DbError> {
        info!(job = %self.job.id, "{summary}");
        self.db
            .set_job_result(&self.job.id, self.job.claim_token, summary)
            .await?;
        let _ = self
            .db
            .add_event(&crate::db::events::NewEvent {
                actor: &self.job.requested_by,
                host: Some(&self.svc.host),
                kind,
                target: Some(&self.id()),
                message: summary,
            })
            .await;
        Ok(())
    }

    /// The lifecycle's end of a `kind` job that succeeded, for its target `id`.
    async fn succeeded(&self, kind: JobKind, id: &str) -> Result<(), DbError> {
        settle(&self.db, kind, End::Succeeded, id, None)
            .await
            .map(|_| ())
    }
}

/// Runs the job's body and settles its target's status. Never panics; every path ends in
/// an [`Outcome`].
pub async fn execute(ctx: &Ctx) -> Outcome {
    let kind = ctx.job.kind;
    let result = match kind {
        JobKind::Create => create(ctx).await,
        JobKind::Clone => clone(ctx).await,
        JobKind::Flatten => flatten(ctx).await,
        JobKind::Extend => extend(ctx).await,
        JobKind::Delete => delete(ctx).await,
        JobKind::SnapshotCreate => snapshot_create(ctx).await,
        JobKind::SnapshotDelete => snapshot_delete(ctx).await,
        JobKind::Verify => verify(ctx).await,
        JobKind::Migrate => super::migrate::run(ctx).await,
        JobKind::BackupCreate => super::backup::create(ctx).await,
        JobKind::BackupRestore => super::backup::restore(ctx).await,
        JobKind::BackupDelete => super::backup::delete(ctx).await,
        JobKind::Unknown => {
            return Outcome::Failed("unknown job kind (written by a newer ember?)".into());
        }
    };
    let err = match result {
        Ok(()) => return Outcome::Succeeded,
        Err(e) => e,
    };
    if ctx.progress.lost.is_cancelled() || matches!(err, Step::Db(DbError::Fenced { .. })) {
        return Outcome::LeaseLost;
    }
    if let Step::Db(e) = &err
        && crate::db::is_transient(e)
    {
        return Outcome::Retry(format!("database away: {e}"));
    }
    let stopped = matches!(err, Step::Driver(DriverError::Cancelled { .. }));
    if stopped && ctx.progress.stop.is_cancelled() && !ctx.progress.cancel.is_cancelled() {
        return Outcome::HandedBack;
    }
    let (outcome, reason) = if stopped {
        (Outcome::Cancelled, "cancelled by an operator".to_string())
    } else {
        let text = match &err {
            // The storage's own standing reason, when it has one, comes first: "pool volumes
            // is full (quota 20 MiB)" says more than the timeout it caused.
            Step::Driver(e) => ctx.svc.explain(e).await,
            Step::Db(e) => e.to_string(),
        };
        (Outcome::Failed(text.clone()), text)
    };
    if let Err(e) = settle_failure(ctx, kind, &err, &reason).await {
        warn!(job = %ctx.job.id, "status after failure not recorded: {e}");
    }
    outcome
}

/// Status of the target after a failed or cancelled job, by the lifecycle table.
async fn settle_failure(ctx: &Ctx, kind: JobKind, err: &Step, reason: &str) -> Result<(), DbError> {
    let busy = matches!(err, Step::Driver(e) if crate::driver::is_busy(e));
    let end = if busy { End::RefusedBusy } else { End::Failed };
    settle(&ctx.db, kind, end, &ctx.id(), Some(reason)).await?;
    // The clones a migration moves with its volume end as it does.
    for id in &ctx.params.family {
        settle(&ctx.db, kind, end, id, Some(reason)).await?;
    }
    // The snapshot a `--source` clone made first fails with it.
    if matches!(kind, JobKind::Create | JobKind::Clone)
        && ctx.params.source_volume_id.is_some()
        && let Some(sid) = &ctx.params.snapshot_id
    {
        settle(&ctx.db, JobKind::SnapshotCreate, end, sid, Some(reason)).await?;
    }
    Ok(())
}

/// A queued job was cancelled before any worker took it: put its target back as it was.
pub async fn settle_cancelled_before_start(db: &Db, job: &JobRow) -> Result<(), DbError> {
    let params: Params = serde_json::from_str(&job.params).unwrap_or_default();
    settle(db, job.kind, End::CancelledQueued, &job.target_id, None).await?;
    for id in &params.family {
        settle(db, job.kind, End::CancelledQueued, id, None).await?;
    }
    if matches!(job.kind, JobKind::Create | JobKind::Clone)
        && let (Some(_), Some(sid)) = (&params.source_volume_id, &params.snapshot_id)
    {
        settle(db, JobKind::SnapshotCreate, End::CancelledQueued, sid, None).await?;
    }
    Ok(())
}

async fn create(ctx: &Ctx) -> Result<(), Step> {
    let (id, size) = (ctx.id(), ctx.params.size.unwrap_or(0));
    ctx.call(move |d, _| d.create_volume(&id, size)).await?;
    ctx.succeeded(JobKind::Create, &ctx.id()).await?;
    Ok(())
}

async fn clone(ctx: &Ctx) -> Result<(), Step> {
    let id = ctx.id();
    let Some(snap) = ctx.params.snapshot_id.clone() else {
        return Err(Step::Driver(DriverError::Invalid {
            backend: ctx.svc.name.clone(),
            op: "clone",
            message: "no snapshot in the job".into(),
        }));
    };
    let source = match ctx.params.source_volume_id.clone() {
        Some(src) => {
            let (s, v) = (snap.clone(), src.clone());
            ctx.call(move |d, p| d.create_snapshot(&s, &v, p)).await?;
            ctx.succeeded(JobKind::SnapshotCreate, &snap).await?;
            src
        }
        None => snapshot_volume(ctx, &snap).await?,
    };
    let size = ctx.params.size.unwrap_or(0);
    let (s, v) = (snap.clone(), id.clone());
    ctx.call(move |d, _| d.clone_snapshot(&s, &source, &v, size))
        .await?;
    if ctx.params.flatten {
        let _permit = flatten_permit(ctx).await?;
        let v = id.clone();
        ctx.call(move |d, p| d.flatten(&v, p)).await?;
        ctx.db.set_volume_flattened(&id).await?;
        collect_clone_snapshot(ctx, &snap).await?;
    }
    ctx.succeeded(JobKind::Clone, &id).await?;
    Ok(())
}

async fn flatten(ctx: &Ctx) -> Result<(), Step> {
    let id = ctx.id();
    let parent = ctx
        .db
        .get_volume(&id)
        .await?
        .and_then(|v| v.source_snapshot_id);
    let _permit = flatten_permit(ctx).await?;
    let v = id.clone();
    ctx.call(move |d, p| d.flatten(&v, p)).await?;
    ctx.db.set_volume_flattened(&id).await?;
    if let Some(snap) = parent {
        collect_clone_snapshot(ctx, &snap).await?;
    }
    Ok(())
}

/// Reads the volume back and compares it with the snapshot; a difference fails the job with
/// where and how much (the storage is left as it was either way).
async fn verify(ctx: &Ctx) -> Result<(), Step> {
    let (Some(snap), Some(snap_volume)) =
        (ctx.params.snapshot_id.clone(), ctx.params.volume_id.clone())
    else {
        return Err(Step::Driver(DriverError::Invalid {
            backend: ctx.svc.name.clone(),
            op: "verify",
            message: "no snapshot in the job".into(),
        }));
    };
    let bps = ctx
        .params
        .bps_limit
        .unwrap_or(ctx.svc.cfg.volume_copy_bps_limit);
    let against = crate::driver::Against {
        snapshot_id: snap.clone(),
        volume_id: snap_volume,
    };
    let v = ctx.id();
    let report = ctx.call(move |d, p| d.verify(&v, &against, bps, p)).await?;
    let names = ctx.db.target_names(&[ctx.id(), snap.clone()]).await?;
    let name = |id: &str| {
        names
            .get(id)
            .cloned()
            .unwrap_or_else(|| super::guards::short(id).to_string())
    };
    let summary = report.summary(
        &format!("volume {}", name(&ctx.id())),
        &format!("snapshot {}", name(&snap)),
    );
    if report.identical() {
        ctx.found(crate::db::EventKind::VolumeVerified, &summary)
            .await?;
        return Ok(());
    }
    let ranges: Vec<String> = report
        .differing_ranges
        .iter()
        .map(|(a, b)| format!("{a}..{b}"))
        .collect();
    Err(Step::Driver(DriverError::Invalid {
        backend: ctx.svc.name.clone(),
        op: "verify",
        message: format!("{summary}; differing ranges: {}", ranges.join(", ")),
    }))
}

/// One of the backend's flatten permits (`rbd_concurrent_flatten_operations`), waited for
/// while the job can still be cancelled or handed back.
async fn flatten_permit(ctx: &Ctx) -> Result<Option<tokio::sync::OwnedSemaphorePermit>, Step> {
    let Some(sem) = &ctx.svc.flattens else {
        return Ok(None);
    };
    if let Ok(permit) = sem.clone().try_acquire_owned() {
        return Ok(Some(permit));
    }
    // Every slot is taken: the job says so (job list, job show, the console) while it waits,
    // rather than showing running at 0 %.
    let limit = ctx.svc.cfg.concurrent_flattens;
    let reason = format!(
        "waiting for a flatten slot: {limit} of {limit} in use (rbd_concurrent_flatten_operations = {limit})"
    );
    let (id, token) = (&ctx.job.id, ctx.job.claim_token);
    ctx.db.set_job_wait(id, token, Some(&reason)).await?;
    let p = &ctx.progress;
    let got = tokio::select! {
        permit = sem.clone().acquire_owned() => Ok(permit.ok()),
        _ = p.cancel.cancelled() => Err(cancelled(ctx)),
        _ = p.stop.cancelled() => Err(cancelled(ctx)),
        _ = p.lost.cancelled() => Err(cancelled(ctx)),
    };
    if got.is_ok() {
        ctx.db.set_job_wait(id, token, None).await?;
    }
    got
}

fn cancelled(ctx: &Ctx) -> Step {
    Step::Driver(DriverError::Cancelled {
        backend: ctx.svc.name.clone(),
        op: "flatten",
    })
}

async fn extend(ctx: &Ctx) -> Result<(), Step> {
    check_holders(ctx, "extend").await?;
    let (id, size) = (ctx.id(), ctx.params.size.unwrap_or(0));
    ctx.call(move |d, _| d.extend_volume(&id, size)).await?;
    ctx.db.set_volume_size(&ctx.id(), size as i64).await?;
    ctx.succeeded(JobKind::Extend, &ctx.id()).await?;
    Ok(())
}

async fn delete(ctx: &Ctx) -> Result<(), Step> {
    let forced = check_holders(ctx, "delete").await?;
    fence_holders(ctx, &forced).await?;
    let id = ctx.id();
    let deferred = ctx.svc.cfg.enable_deferred_deletion;
    let parent = ctx
        .db
        .get_volume(&id)
        .await?
        .and_then(|v| v.source_snapshot_id);
    // Its snapshots first (user ones only with --cascade: the request checked that).
    for s in ctx.db.snapshots_of(&id).await? {
        let (sid, vid) = (s.id.clone(), s.volume_id.clone());
        match ctx
            .call(move |d, _| d.delete_snapshot(&sid, &vid, deferred))
            .await
        {
            Ok(Deleted::Now | Deleted::Deferred) | Err(DriverError::NotFound { .. }) => {
                ctx.db.mark_snapshot_deleted(&s.id).await?
            }
            Err(e) => return Err(e.into()),
        }
    }
    let remove = || {
        let v = id.clone();
        ctx.call(move |d, p| d.delete_volume(&v, p))
    };
    let removed = if forced.is_empty() {
        remove().await
    } else {
        use backon::{ConstantBuilder, Retryable};
        let policy = ConstantBuilder::default()
            .with_delay(std::time::Duration::from_secs(1))
            .with_max_times(30);
        remove.retry(policy).when(crate::driver::is_busy).await
    };
    match removed {
        Ok(()) | Err(DriverError::NotFound { .. }) => {}
        Err(e) => return Err(e.into()),
    }
    ctx.succeeded(JobKind::Delete, &id).await?;
    if let Some(snap) = parent {
        collect_clone_snapshot(ctx, &snap).await?;
    }
    Ok(())
}

async fn snapshot_create(ctx: &Ctx) -> Result<(), Step> {
    let snap = ctx.id();
    let Some(vol) = ctx.params.volume_id.clone() else {
        return Err(Step::Driver(DriverError::Invalid {
            backend: ctx.svc.name.clone(),
            op: "snapshot",
            message: "no volume in the job".into(),
        }));
    };
    let s = snap.clone();
    ctx.call(move |d, p| d.create_snapshot(&s, &vol, p)).await?;
    ctx.succeeded(JobKind::SnapshotCreate, &snap).await?;
    Ok(())
}

async fn snapshot_delete(ctx: &Ctx) -> Result<(), Step> {
    let snap = ctx.id();
    let deferred = ctx.svc.cfg.enable_deferred_deletion;
    let (s, vol) = (snap.clone(), snapshot_volume(ctx, &snap).await?);
    match ctx
        .call(move |d, _| d.delete_snapshot(&s, &vol, deferred))
        .await
    {
        Ok(_) | Err(DriverError::NotFound { .. }) => {}
        Err(e) => return Err(e.into()),
    }
    ctx.succeeded(JobKind::SnapshotDelete, &snap).await?;
    Ok(())
}

/// A snapshot made under `create --source` goes with its last clone, as Cinder's rbd driver
/// removes `<dest>.clone_snap`.
pub(super) async fn collect_clone_snapshot(ctx: &Ctx, snap_id: &str) -> Result<(), Step> {
    let Some(s) = ctx.db.get_snapshot(snap_id).await? else {
        return Ok(());
    };
    if s.purpose != Purpose::Clone
        || s.deleted_at.is_some()
        || !ctx.db.clones_of_snapshot(snap_id).await?.is_empty()
    {
        return Ok(());
    }
    let (sid, vid) = (snap_id.to_string(), s.volume_id.clone());
    match ctx
        .call(move |d, _| d.delete_snapshot(&sid, &vid, false))
        .await
    {
        Ok(_) | Err(DriverError::NotFound { .. }) => ctx.db.mark_snapshot_deleted(snap_id).await?,
        // Still read by something the database does not know: leave it for reconcile.
        Err(e) => warn!(snapshot = snap_id, "clone snapshot kept: {e}"),
    }
    Ok(())
}

/// The volume a snapshot was taken of, from its row.
async fn snapshot_volume(ctx: &Ctx, snap_id: &str) -> Result<String, Step> {
    match ctx.db.get_snapshot(snap_id).await? {
        Some(s) => Ok(s.volume_id),
        None => Err(Step::Driver(DriverError::NotFound {
            backend: ctx.svc.name.clone(),
            image: snapshot_image(snap_id),
        })),
    }
}
