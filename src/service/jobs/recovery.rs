//! Crash cleanup, as Cinder's cleanable resources: when a backend's service starts, what its
//! previous run left half-done is resumed or settled, so nothing stays stuck.
//!
//! - Jobs this host was running go back to the queue and run again from the top (every
//!   driver call is idempotent).
//! - Volumes and snapshots left `creating`/`deleting`/`extending` with no job left to finish
//!   them go to the matching error state, with the reason, for the operator to retry.

use tracing::{info, warn};

use crate::db::events::NewEvent;
use crate::db::{Db, DbError};
use crate::service::BackendService;

pub async fn recover(svc: &BackendService, db: &Db) -> Result<(), DbError> {
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
                kind: "job_requeued",
                target: Some(&job.target_id),
                message: &message,
            })
            .await;
    }
    for v in db.transitional_volumes(&svc.name).await? {
        if db.active_job_on(&v.id).await?.is_some() {
            continue;
        }
        let to = match v.status.as_str() {
            "creating" => "error",
            "extending" => "error_extending",
            _ => "error_deleting",
        };
        let reason = format!(
            "{} was interrupted and no job is left to finish it",
            v.status
        );
        warn!(backend = %svc.name, volume = %v.id, "{reason}: now {to}");
        db.set_volume_status(&v.id, &[v.status.as_str()], to, Some(&reason))
            .await?;
    }
    for s in db.transitional_snapshots(&svc.name).await? {
        // A clone snapshot's job targets the new volume and names the snapshot in its params.
        if db.active_job_referencing(&s.id).await?.is_some() {
            continue;
        }
        let to = if s.status == "creating" {
            "error"
        } else {
            "error_deleting"
        };
        let reason = format!(
            "{} was interrupted and no job is left to finish it",
            s.status
        );
        warn!(backend = %svc.name, snapshot = %s.id, "{reason}: now {to}");
        db.set_snapshot_status(&s.id, &[s.status.as_str()], to, Some(&reason))
            .await?;
    }
    Ok(())
}
