//! Crash cleanup, as Cinder's cleanable resources: when a backend's service starts, what its
//! previous run left half-done is resumed or settled, so nothing stays stuck.
//!
//! - Jobs this host was running go back to the queue and run again from the top (every
//!   driver call is idempotent).
//! - Volumes and snapshots left `creating`/`deleting`/`extending` with no job left to finish
//!   them go to the matching error state, with the reason, for the operator to retry.

use tracing::{info, warn};

use crate::db::events::NewEvent;
use crate::db::{Db, DbError, EventKind};
use crate::service::BackendService;
use crate::service::lifecycle::{self, Target};

pub async fn recover(svc: &BackendService, db: &Db) -> Result<(), DbError> {
    // Rows written before ownership existed: in the one-host setup that wrote them, ours.
    let adopted = db.adopt_unowned(&svc.name, &svc.owner).await?;
    if adopted > 0 {
        info!(backend = %svc.name, "{adopted} volume, snapshot or job rows without an owner now belong to {}", svc.owner);
    }
    // This process holds the service's lock, so whatever ran under our name before is dead.
    for job in db.requeue_claimed_by(&svc.host).await? {
        let message = format!(
            "{} job {} was running when {} stopped uncleanly: queued again",
            job.kind, job.id, svc.host
        );
        info!(backend = %svc.name, "{message}");
        let _ = db
            .add_event(&NewEvent {
                actor: "ember",
                host: Some(&svc.host),
                kind: EventKind::JobRequeued,
                target: Some(&job.target_id),
                message: &message,
            })
            .await;
    }
    settle_transitional(db, &svc.owner, &svc.name, "no job is left to finish it").await
}

/// Volumes and snapshots of `owner` left `creating`/`deleting`/`extending` with no unfinished
/// job go to the matching error state, with `why` in their reason.
pub async fn settle_transitional(
    db: &Db,
    owner: &str,
    backend: &str,
    why: &str,
) -> Result<(), DbError> {
    for v in db.transitional_volumes(owner).await? {
        // A clone moving with its parent is named in the migration's parameters.
        if db.active_job_on(&v.id).await?.is_some()
            || db.active_job_referencing(&v.id).await?.is_some()
        {
            continue;
        }
        let Some(to) = lifecycle::interrupted(Target::Volume, v.status) else {
            continue;
        };
        let reason = format!("{} was interrupted and {why}", v.status);
        warn!(backend = %backend, volume = %v.id, "{reason}: now {to}");
        db.set_volume_status(&v.id, &[v.status], to, Some(&reason))
            .await?;
    }
    for s in db.transitional_snapshots(owner).await? {
        // A clone snapshot's job targets the new volume and names the snapshot in its params.
        if db.active_job_referencing(&s.id).await?.is_some() {
            continue;
        }
        let Some(to) = lifecycle::interrupted(Target::Snapshot, s.status) else {
            continue;
        };
        let reason = format!("{} was interrupted and {why}", s.status);
        warn!(backend = %backend, snapshot = %s.id, "{reason}: now {to}");
        db.set_snapshot_status(&s.id, &[s.status], to, Some(&reason))
            .await?;
    }
    for b in db.transitional_backups(owner).await? {
        if db.active_job_referencing(&b.id).await?.is_some() {
            continue;
        }
        let Some(to) = lifecycle::interrupted(Target::Backup, b.status) else {
            continue;
        };
        let reason = format!("{} was interrupted and {why}", b.status);
        warn!(backend = %backend, backup = %b.id, "{reason}: now {to}");
        db.set_backup_status(&b.id, &[b.status], to, Some(&reason))
            .await?;
    }
    Ok(())
}
