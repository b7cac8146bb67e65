//! Cancelling a job: one not yet started ends at once and its target is put back; a running
//! one is asked to stop, which its worker does at its next progress step.

use crate::db::events::NewEvent;
use crate::db::{Db, EventKind, JobRow, JobState};

use super::JobError;
use super::guards::short;
use super::request::found;

/// What a cancel did, with the job (its row; the console gets its view).
#[derive(Debug, Clone, PartialEq)]
pub enum Cancelled<J = JobRow> {
    /// It had not started: ended at once, and its target put back.
    Now(J),
    /// It is running: its worker stops it at the next progress step.
    Requested(J),
}

impl<J> Cancelled<J> {
    pub fn map<K>(self, f: impl FnOnce(J) -> K) -> Cancelled<K> {
        match self {
            Cancelled::Now(j) => Cancelled::Now(f(j)),
            Cancelled::Requested(j) => Cancelled::Requested(f(j)),
        }
    }
}

/// Cancels a job by id or unique id prefix.
pub async fn cancel(db: &Db, key: &str, actor: &str) -> Result<Cancelled, JobError> {
    db.ensure_writable("cancel a job")?;
    let job = found("job", key, db.find_job(key).await?)?;
    let outcome = match db.request_cancel(&job.id).await? {
        Some(JobState::Cancelled) => {
            super::exec::settle_cancelled_before_start(db, &job).await?;
            Cancelled::Now(job.clone())
        }
        Some(_) => Cancelled::Requested(job.clone()),
        None => {
            return Err(JobError::Refused(format!(
                "job {} is already {}",
                short(&job.id),
                job.state
            )));
        }
    };
    let _ = db
        .add_event(&NewEvent {
            actor,
            host: None,
            kind: EventKind::JobCancel,
            target: Some(&job.target_id),
            message: &format!("cancel of {} job {}", job.kind, job.id),
        })
        .await;
    Ok(outcome)
}
