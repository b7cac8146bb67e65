//! The supported ways out of a stuck state: `job retry` (the same job again, as a new job that
//! names the old one), `reset-state` (Cinder's: the record changed by hand, with an audit
//! event), and the "why is it in error, and what fixes it" an operator reads first.

use crate::config::Config;
use crate::db::events::NewEvent;
use crate::db::{Db, EventKind, JobRow, JobState, SnapshotRow, Status, VolumeRow};
use crate::service::lifecycle::{self, RESET_STATES, Target};

use super::guards::{not_busy, short, status_is};
use super::request::{Plan, found, snapshot, volume, write};
use super::{Enqueued, JobError, JobKind, Params};

/// Re-queues a failed or cancelled job with the same parameters. Its target must still be
/// where the failure left it (or where a cancel put it back); the new job's params name the
/// old one (`retry_of`).
pub async fn retry(db: &Db, cfg: &Config, key: &str, actor: &str) -> Result<Enqueued, JobError> {
    db.ensure_writable("retry a job")?;
    let old = found("job", key, db.find_job(key).await?)?;
    if !matches!(old.state, JobState::Failed | JobState::Cancelled) {
        return Err(JobError::Refused(format!(
            "job {} is {}: only a failed or cancelled job can be retried",
            short(&old.id),
            old.state
        )));
    }
    let kind = old.kind;
    let Some(rule) = lifecycle::rule(kind) else {
        return Err(JobError::Refused(format!(
            "job {} is of a kind this ember does not know",
            short(&old.id)
        )));
    };
    let mut params: Params = serde_json::from_str(&old.params).unwrap_or_default();
    params.retry_of = Some(old.id.clone());
    let gone = |what: &str| {
        JobError::Refused(format!(
            "job {}: its {what} no longer exists (a cancelled create removes its rows): make it again",
            short(&old.id)
        ))
    };
    let works_on = old
        .volume_id
        .clone()
        .unwrap_or_else(|| old.target_id.clone());
    not_busy(db, &works_on, "its volume").await?;
    // The target must be where the failure left it (the lifecycle's `retries_from`); a
    // create's rows must still be there (a cancelled create removes them).
    match (rule.target, rule.asks_from.is_empty()) {
        (Target::Volume, true) => {
            let v = db.get_volume(&old.target_id).await?;
            if v.as_ref().is_none_or(|v| v.deleted_at.is_some()) {
                return Err(gone("volume"));
            }
        }
        (Target::Snapshot, true) => {
            let s = db.get_snapshot(&old.target_id).await?;
            if s.as_ref().is_none_or(|s| s.deleted_at.is_some()) {
                return Err(gone("snapshot"));
            }
        }
        (Target::Volume, false) => {
            let v = volume(db, &old.target_id).await?;
            if rule.during.is_none() {
                status_is(&v, rule.retries_from, kind.as_str())?;
            }
            if kind == JobKind::Extend && params.size.unwrap_or(0) <= v.size_bytes as u64 {
                return Err(JobError::Refused(format!(
                    "volume {} is already {} bytes: nothing to extend",
                    v.name, v.size_bytes
                )));
            }
        }
        (Target::Backup, true) => {
            let b = db.get_backup(&old.target_id).await?;
            if b.as_ref().is_none_or(|b| b.deleted_at.is_some()) {
                return Err(gone("backup"));
            }
        }
        (Target::Snapshot, false) | (Target::Backup, false) => {}
    }
    // A migration moves the clones that read from its volume: the same ones as when it was
    // asked, or it would leave a new one behind (or carry one that went).
    if kind == JobKind::Migrate {
        let now: Vec<String> = db
            .descendants(&old.target_id)
            .await?
            .into_iter()
            .map(|c| c.id)
            .collect();
        if now != params.family {
            return Err(JobError::Refused(format!(
                "job {}: the clones reading from its volume changed since it was asked ({} then, {} now): ask again (ember volume migrate ... --with-clones)",
                short(&old.id),
                params.family.len(),
                now.len()
            )));
        }
    }
    let mut plan = Plan::new(
        cfg,
        kind,
        &old.target_id,
        &old.backend,
        old.owner.as_deref(),
        format!("retry of {} job {}", old.kind, short(&old.id)),
    );
    plan.params = params;
    plan.works_on = works_on;
    plan.guard(old.target_id.clone(), rule.retries_from);
    write(db, actor, plan).await
}

/// What a reset did: the old and the new state.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Reset {
    pub id: String,
    pub name: String,
    pub from: Status,
    pub to: Status,
}

/// Sets a volume's (or, with `snapshot`, a snapshot's) state by hand: refused while a job is
/// queued or running on it; the change is guarded on the state read, and audited.
pub async fn reset_state(
    db: &Db,
    key: &str,
    snapshot_of: bool,
    to: Status,
    reason: Option<&str>,
    actor: &str,
) -> Result<Reset, JobError> {
    db.ensure_writable("reset a state")?;
    if !RESET_STATES.contains(&to) {
        let list: Vec<&str> = RESET_STATES.iter().map(|s| s.as_str()).collect();
        return Err(JobError::Refused(format!(
            "--state {to}: reset-state sets one of: {}",
            list.join(", ")
        )));
    }
    let (table, id, name, from) = if snapshot_of {
        let s: SnapshotRow = snapshot(db, key).await?;
        ("snapshots", s.id, s.name, s.status)
    } else {
        let v: VolumeRow = volume(db, key).await?;
        ("volumes", v.id, v.name, v.status)
    };
    let what = format!("{} {name} ({id})", &table[..table.len() - 1]);
    if let Some(j) = db.active_job_on(&id).await? {
        return Err(JobError::Refused(format!(
            "{what}: {} job {} is {} on it: its state is the job's to settle; cancel the job first (ember job cancel {})",
            j.kind,
            short(&j.id),
            j.state,
            short(&j.id)
        )));
    }
    let reason = reason
        .map(str::to_string)
        .unwrap_or_else(|| format!("reset by {actor}"));
    let changed = if snapshot_of {
        db.set_snapshot_status(&id, &[from], to, Some(&reason))
            .await?
    } else {
        db.set_volume_status(&id, &[from], to, Some(&reason))
            .await?
    };
    if !changed {
        return Err(JobError::Refused(format!(
            "{what}: its state changed meanwhile (was {from}); look again"
        )));
    }
    let _ = db
        .add_event(&NewEvent {
            actor,
            host: None,
            kind: EventKind::StateReset,
            target: Some(&id),
            message: &format!("{what}: state {from} -> {to} by hand ({reason})"),
        })
        .await;
    Ok(Reset { id, name, from, to })
}

/// For a volume in an error state: why (the failing job's error, or the recorded reason) and
/// the command that fixes it.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct InError {
    pub reason: String,
    pub fix: String,
    pub job: Option<String>,
}

pub async fn why_in_error(db: &Db, v: &VolumeRow) -> Option<InError> {
    if !v.status.is_error() {
        return None;
    }
    let jobs = db.list_jobs(Some(&v.id), 20).await.unwrap_or_default();
    let failed: Option<&JobRow> = jobs.iter().find(|j| j.state == JobState::Failed);
    explain_error(
        &ErrorFacts {
            name: &v.name,
            status: v.status,
            status_reason: v.status_reason.as_deref(),
            size_bytes: v.size_bytes,
            backend: &v.backend,
        },
        failed.map(|j| (j.id.as_str(), j.error.as_deref())),
    )
}

/// What [`explain_error`] reads of a volume (the console has its own row type).
pub struct ErrorFacts<'a> {
    pub name: &'a str,
    pub status: Status,
    pub status_reason: Option<&'a str>,
    pub size_bytes: i64,
    pub backend: &'a str,
}

/// The reason and the fix for a volume in an error state, from its row and its last failed
/// job (id, error), if any. One text for `volume show` and the console's detail pane.
pub fn explain_error(v: &ErrorFacts<'_>, failed: Option<(&str, Option<&str>)>) -> Option<InError> {
    if !v.status.is_error() {
        return None;
    }
    let reason = v
        .status_reason
        .or_else(|| failed.and_then(|(_, e)| e))
        .unwrap_or("no reason recorded")
        .to_string();
    let retry = failed
        .map(|(id, _)| format!("ember job retry {}", short(id)))
        .unwrap_or_default();
    let or_retry = |s: String| {
        if retry.is_empty() {
            s
        } else {
            format!("{retry}, or {s}")
        }
    };
    let fix = match v.status {
        Status::ErrorDeleting => or_retry(format!(
            "ember volume delete {} (the delete runs again)",
            v.name
        )),
        Status::ErrorExtending => or_retry(format!(
            "ember volume reset-state {} --state available once the storage shows its size (it was {} bytes)",
            v.name, v.size_bytes
        )),
        _ => or_retry(format!(
            "ember volume delete {} if it holds nothing, or ember volume reset-state {} --state available once the storage is checked (ember volume reconcile {})",
            v.name, v.name, v.backend
        )),
    };
    Some(InError {
        reason,
        fix,
        job: failed.map(|(id, _)| id.to_string()),
    })
}
