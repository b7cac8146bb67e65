//! The job runner of one backend: take a slot, claim the oldest runnable job, run it.
//!
//! The slot (the backend's semaphore, `backend_native_threads_pool_size`) is taken *before*
//! claiming, so a job is only claimed when it can start: queued jobs stay visible as `queued`,
//! and another member of the cluster can take them. A service claims only its owner's jobs
//! (`host@backend`, or its `cluster@backend`), and none while an operator has disabled it.
//!
//! Progress is written at most once a second, under the claim's token; that write also tells
//! whether the claim still holds. Four times a second a running job posts its progress for
//! this process's console (no database write) and reads its `cancel_requested` flag, so a
//! cancel from any process reaches the driver within 250 ms. Once a peer has taken the job over, the driver call is
//! stopped at its next step and nothing more is written for the job.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::sync::OwnedSemaphorePermit;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{info, warn};

use crate::db::events::NewEvent;
use crate::db::jobs::Lease;
use crate::db::{Db, EventKind, JobRow, JobState};
use crate::service::BackendService;

use super::exec::{ClientRecorder, Ctx, JobProgress, Outcome, execute};

/// How often an idle runner looks for new jobs (jobs may be queued by another process).
pub const POLL: Duration = Duration::from_millis(500);
/// How often a running job's progress is written and its cancel flag read.
pub const PROGRESS_EVERY: Duration = Duration::from_secs(1);

/// How a runner stops: first it stops claiming (a drain lets running jobs finish), then its
/// running jobs are handed back to the queue.
#[derive(Clone)]
pub struct Stops {
    pub claiming: CancellationToken,
    pub hand_back: CancellationToken,
}

/// Claims and starts jobs until `stops.claiming` is cancelled. Running jobs are tracked by
/// `jobs` and handed back when `stops.hand_back` is cancelled.
pub async fn job_loop(
    svc: Arc<BackendService>,
    db: Db,
    stops: Stops,
    jobs: TaskTracker,
    peers: Arc<Vec<Arc<BackendService>>>,
) {
    let stop = stops.claiming.clone();
    let owners = [svc.host.as_str(), svc.owner.as_str()];
    loop {
        let permit = tokio::select! {
            _ = stop.cancelled() => return,
            p = svc.slots.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => return },
        };
        if !svc.healthy.load(Ordering::SeqCst) || svc.disabled.load(Ordering::SeqCst) {
            drop(permit);
            if sleep_or_stop(&stop, POLL * 2).await {
                return;
            }
            continue;
        }
        match db.claim_job(&owners, &svc.host).await {
            Ok(Some(job)) => {
                jobs.spawn(run_job(
                    svc.clone(),
                    db.clone(),
                    job,
                    permit,
                    stops.hand_back.clone(),
                    peers.clone(),
                ));
            }
            Ok(None) => {
                drop(permit);
                // Until the next poll, or at once when the database says jobs changed.
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep(POLL) => {}
                    _ = svc.wake.notified() => {}
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
    peers: Arc<Vec<Arc<BackendService>>>,
) {
    let params = match serde_json::from_str(&job.params) {
        Ok(p) => p,
        Err(e) => {
            // A corrupt row must fail loudly, never run with default (zero) parameters.
            let why = format!("job parameters unreadable ({e}): {}", job.params);
            warn!(backend = %svc.name, job = %job.id, "{why}");
            let _ = db
                .finish_job(&job.id, job.claim_token, JobState::Failed, Some(&why))
                .await;
            return;
        }
    };
    let progress = Arc::new(JobProgress {
        stop: stop.clone(),
        record_client: Some(client_recorder(&db, &job)),
        moved: Some(crate::service::metrics::get().job_copied(job.kind.as_str())),
        ..JobProgress::default()
    });
    svc.running
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .insert(job.id.clone(), progress.clone());
    let target = announce(&svc, &db, &job).await;
    let ctx = Ctx {
        // Every volume and snapshot write of the job carries its claim, and rides out a short
        // database outage.
        db: db
            .fenced(&job.id, job.claim_token)
            .retrying(svc.retry_window),
        svc: svc.clone(),
        job: job.clone(),
        params,
        progress: progress.clone(),
        peers,
    };
    let began = std::time::Instant::now();
    let outcome = drive(&ctx, &db).await;
    svc.running
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .remove(&job.id);
    svc.board.remove(&job.id);
    if outcome == Outcome::LeaseLost {
        // A peer took the job over while this worker was frozen or cut off: it owns the job
        // and its volume now. Write nothing for it, not even its end.
        let text = format!(
            "{} job {} stopped here: {} lost its claim (a peer took the job over)",
            job.kind, job.id, svc.host
        );
        warn!(backend = %svc.name, job = %job.id, "{text}");
        event(&db, &svc.host, EventKind::JobLeaseLost, &job, &text).await;
        // The peer may have fenced this host's storage client: work on with a new one.
        svc.renew_client(&db).await;
        return;
    }
    let done = (
        progress.done.load(Ordering::Relaxed),
        progress.total.load(Ordering::Relaxed),
    );
    let how = match &outcome {
        Outcome::Succeeded => JobState::Succeeded.as_str(),
        Outcome::Failed(_) => JobState::Failed.as_str(),
        Outcome::Cancelled => JobState::Cancelled.as_str(),
        // Handed back to run again (here or on a peer).
        _ => "requeued",
    };
    crate::service::metrics::get().job_ended(job.kind.as_str(), how, began.elapsed());
    end(&svc, &db, &job, &target, &outcome, done).await;
}

/// How the storage thread records a client of the job's own (a throttled rbd flatten's) in the
/// job's row, under its claim, before the driver writes with it: a peer that takes the job
/// over then fences that client too. Blocks that thread (never the runtime's) up to 30 s.
fn client_recorder(db: &Db, job: &JobRow) -> ClientRecorder {
    let (db, id, token) = (db.clone(), job.id.clone(), job.claim_token);
    let runtime = tokio::runtime::Handle::current();
    ClientRecorder(Box::new(move |address| {
        // The timer is made inside the runtime: this runs on a storage thread.
        let write = async {
            tokio::time::timeout(
                Duration::from_secs(30),
                db.set_job_client(&id, token, address),
            )
            .await
        };
        match runtime.block_on(write) {
            Ok(Ok(true)) => true,
            Ok(Ok(false)) => false, // the claim moved: the job is not ours any more
            Ok(Err(e)) => {
                warn!(job = %id, "storage client {address} not recorded: {e}");
                false
            }
            Err(_) => {
                warn!(job = %id, "storage client {address} not recorded within 30 s");
                false
            }
        }
    }))
}

/// Logs and records the start; returns the target's name (the log names the job by its short
/// id and the target by name, each once; the events keep full ids).
async fn announce(svc: &BackendService, db: &Db, job: &JobRow) -> String {
    let short = crate::service::units::short_id(&job.id);
    let target = db
        .target_names(std::slice::from_ref(&job.target_id))
        .await
        .ok()
        .and_then(|mut m| m.remove(&job.target_id))
        .unwrap_or_else(|| job.target_id.clone());
    info!(backend = %svc.name, job = %short, "{} of {target} started", job.kind);
    event(
        db,
        &svc.host,
        EventKind::JobStarted,
        job,
        &format!("{} job {} by {}", job.kind, job.id, svc.host),
    )
    .await;
    target
}

/// Runs the job's body while posting its progress, writing it (throttled) under the claim,
/// and passing on a cancel or a lost claim to the driver call.
async fn drive(ctx: &Ctx, db: &Db) -> Outcome {
    let (job, progress, svc) = (&ctx.job, &ctx.progress, &ctx.svc);
    let body = execute(ctx);
    tokio::pin!(body);
    let mut tick = tokio::time::interval(PROGRESS_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut post = tokio::time::interval(crate::service::progress::POST_EVERY);
    post.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tokio::select! {
            out = &mut body => return out,
            _ = post.tick() => {
                // This process's console, without a database round trip; and a cancel asked
                // from another process reaches the driver within this period.
                svc.board.post(
                    &job.id,
                    progress.done.load(Ordering::Relaxed),
                    progress.total.load(Ordering::Relaxed),
                );
                if let Ok(true) = db.cancel_requested(&job.id).await {
                    progress.cancel.cancel();
                }
            }
            _ = tick.tick() => {
                let now = (progress.done.load(Ordering::Relaxed), progress.total.load(Ordering::Relaxed));
                // Throttled: one write a second, which also reads the cancel flag.
                match db.job_progress(&job.id, job.claim_token, now.0, now.1).await {
                    Ok(Lease::Held { cancel: true }) => progress.cancel.cancel(),
                    Ok(Lease::Held { cancel: false }) => {}
                    Ok(Lease::Lost) => progress.lost.cancel(),
                    Err(e) => warn!(job = %job.id, "progress not written: {e}"),
                }
            }
        }
    }
}

/// Records how the job ended (or hands it back to run again), logs it and writes its event.
async fn end(
    svc: &BackendService,
    db: &Db,
    job: &JobRow,
    target: &str,
    outcome: &Outcome,
    (done, total): (u64, u64),
) {
    let (state, error, kind, text) = match outcome {
        Outcome::Succeeded => (
            JobState::Succeeded,
            None,
            EventKind::JobSucceeded,
            format!("{} job {} succeeded", job.kind, job.id),
        ),
        Outcome::Failed(e) => (
            JobState::Failed,
            Some(e.clone()),
            EventKind::JobFailed,
            format!("{} job {} failed: {e}", job.kind, job.id),
        ),
        Outcome::Cancelled => (
            JobState::Cancelled,
            Some("cancelled by an operator".to_string()),
            EventKind::JobCancelled,
            format!("{} job {} cancelled", job.kind, job.id),
        ),
        Outcome::Retry(why) => (
            JobState::Queued,
            None,
            EventKind::JobRequeued,
            format!(
                "{} job {} handed back to run again: {why}",
                job.kind, job.id
            ),
        ),
        Outcome::HandedBack | Outcome::LeaseLost => (
            JobState::Queued,
            None,
            EventKind::JobRequeued,
            format!(
                "{} job {} handed back with {done} of {total} bytes done: {} is stopping",
                job.kind, job.id, svc.host
            ),
        ),
    };
    match record_end(
        db.retrying(svc.retry_window),
        job,
        state,
        error,
        (done, total),
    )
    .await
    {
        Ok(true) => {}
        Ok(false) => {
            warn!(job = %job.id, "job end not recorded: its claim was taken over meanwhile")
        }
        Err(e) => warn!(job = %job.id, "job end not recorded: {e}"),
    }
    // "flatten job 7f3c... failed: why" in the events; "flatten of db-01 failed: why" here.
    let line = text.replacen(
        &format!("{} job {}", job.kind, job.id),
        &format!("{} of {target}", job.kind),
        1,
    );
    let short = crate::service::units::short_id(&job.id);
    match outcome {
        Outcome::Failed(_) => warn!(backend = %svc.name, job = %short, "{line}"),
        _ => info!(backend = %svc.name, job = %short, "{line}"),
    }
    event(db, &svc.host, kind, job, &text).await;
}

/// The job's end under its claim: `Queued` hands it back (the claim is released, the job is
/// not finished); a success shows all its bytes done.
async fn record_end(
    db: Db,
    job: &JobRow,
    state: JobState,
    error: Option<String>,
    (done, total): (u64, u64),
) -> Result<bool, crate::db::DbError> {
    let token = job.claim_token;
    if state == JobState::Queued {
        return db.requeue_job(&job.id, token).await;
    }
    let bytes = if state == JobState::Succeeded {
        (total.max(done), total.max(done))
    } else {
        (done, total)
    };
    let _ = db.job_progress(&job.id, token, bytes.0, bytes.1).await;
    db.finish_job(&job.id, token, state, error.as_deref()).await
}

async fn event(db: &Db, host: &str, kind: crate::db::EventKind, job: &JobRow, message: &str) {
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
