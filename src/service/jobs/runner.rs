//! The job runner of one backend: take a slot, claim the oldest runnable job, run it.
//!
//! The slot (the backend's semaphore, `backend_native_threads_pool_size`) is taken *before*
//! claiming, so a job is only claimed when it can start: queued jobs stay visible as `queued`,
//! and another ember sharing the database can take them. Progress is written at most once a
//! second; the same write reads back `cancel_requested`, so a cancel from any process lands
//! within a second.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::sync::OwnedSemaphorePermit;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{info, warn};

use crate::db::events::NewEvent;
use crate::db::{Db, JobRow};
use crate::service::BackendService;

use super::exec::{Ctx, JobProgress, Outcome, execute};

/// How often an idle runner looks for new jobs (jobs may be queued by another process).
pub const POLL: Duration = Duration::from_millis(500);
/// How often a running job's progress is written and its cancel flag read.
pub const PROGRESS_EVERY: Duration = Duration::from_secs(1);

/// Claims and starts jobs until `stop` is cancelled. Running jobs are tracked by `jobs`.
pub async fn job_loop(
    svc: Arc<BackendService>,
    db: Db,
    stop: CancellationToken,
    jobs: TaskTracker,
) {
    loop {
        let permit = tokio::select! {
            _ = stop.cancelled() => return,
            p = svc.slots.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => return },
        };
        if !svc.healthy.load(Ordering::SeqCst) {
            drop(permit);
            if sleep_or_stop(&stop, POLL * 2).await {
                return;
            }
            continue;
        }
        match db.claim_job(&svc.name, &svc.host).await {
            Ok(Some(job)) => {
                jobs.spawn(run_job(svc.clone(), db.clone(), job, permit, stop.clone()));
            }
            Ok(None) => {
                drop(permit);
                if sleep_or_stop(&stop, POLL).await {
                    return;
                }
            }
            Err(e) => {
                drop(permit);
                warn!(backend = %svc.name, "cannot claim jobs: {e}");
                if sleep_or_stop(&stop, POLL * 4).await {
                    return;
                }
            }
        }
    }
}

/// True when stopped.
async fn sleep_or_stop(stop: &CancellationToken, d: Duration) -> bool {
    tokio::select! {
        _ = stop.cancelled() => true,
        _ = tokio::time::sleep(d) => false,
    }
}

async fn run_job(
    svc: Arc<BackendService>,
    db: Db,
    job: JobRow,
    _permit: OwnedSemaphorePermit,
    stop: CancellationToken,
) {
    let params = serde_json::from_str(&job.params).unwrap_or_default();
    let progress = Arc::new(JobProgress {
        stop: stop.clone(),
        ..JobProgress::default()
    });
    svc.running
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .insert(job.id.clone(), progress.clone());
    info!(backend = %svc.name, job = %job.id, kind = %job.kind, target = %job.target_id, "job started");
    event(
        &db,
        &svc.host,
        "job_started",
        &job,
        &format!("{} job {} by {}", job.kind, job.id, svc.host),
    )
    .await;
    let ctx = Ctx {
        db: db.clone(),
        svc: svc.clone(),
        job: job.clone(),
        params,
        progress: progress.clone(),
    };

    let body = execute(&ctx);
    tokio::pin!(body);
    let mut tick = tokio::time::interval(PROGRESS_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let outcome = loop {
        tokio::select! {
            out = &mut body => break out,
            _ = tick.tick() => {
                let now = (progress.done.load(Ordering::Relaxed), progress.total.load(Ordering::Relaxed));
                // Throttled: one write a second, which also reads the cancel flag.
                match db.job_progress(&job.id, now.0, now.1).await {
                    Ok(true) => progress.cancel.cancel(),
                    Ok(false) => {}
                    Err(e) => warn!(job = %job.id, "progress not written: {e}"),
                }
            }
        }
    };
    svc.running
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .remove(&job.id);
    let (done, total) = (
        progress.done.load(Ordering::Relaxed),
        progress.total.load(Ordering::Relaxed),
    );
    let finished = match &outcome {
        Outcome::Succeeded => {
            let _ = db
                .job_progress(&job.id, total.max(done), total.max(done))
                .await;
            db.finish_job(&job.id, "succeeded", None).await
        }
        Outcome::Failed(e) => {
            let _ = db.job_progress(&job.id, done, total).await;
            db.finish_job(&job.id, "failed", Some(e)).await
        }
        Outcome::Cancelled => {
            let _ = db.job_progress(&job.id, done, total).await;
            db.finish_job(&job.id, "cancelled", Some("cancelled by an operator"))
                .await
        }
        Outcome::HandedBack => db.requeue_job(&job.id).await,
    };
    if let Err(e) = finished {
        warn!(job = %job.id, "job end not recorded: {e}");
    }
    let (kind, text) = match &outcome {
        Outcome::Succeeded => (
            "job_succeeded",
            format!("{} job {} succeeded", job.kind, job.id),
        ),
        Outcome::Failed(e) => (
            "job_failed",
            format!("{} job {} failed: {e}", job.kind, job.id),
        ),
        Outcome::Cancelled => (
            "job_cancelled",
            format!("{} job {} cancelled", job.kind, job.id),
        ),
        Outcome::HandedBack => (
            "job_requeued",
            format!("{} job {} handed back: service stopping", job.kind, job.id),
        ),
    };
    match &outcome {
        Outcome::Failed(_) => warn!(backend = %svc.name, job = %job.id, "{text}"),
        _ => info!(backend = %svc.name, job = %job.id, "{text}"),
    }
    event(&db, &svc.host, kind, &job, &text).await;
}

async fn event(db: &Db, host: &str, kind: &str, job: &JobRow, message: &str) {
    let _ = db
        .add_event(&NewEvent {
            actor: "ember",
            host: Some(host),
            kind,
            target: Some(&job.target_id),
            message,
        })
        .await;
}
