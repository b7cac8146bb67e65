//! The checks a request passes before anything is written: the target's status by the
//! lifecycle table, no other unfinished job on the volume, no migration moving a snapshot's
//! volume, no dependent clones in the way, and the backend's rules (clone depth, deferred
//! deletion). Each refusal says what is in the way and what to run.

use crate::config::Config;
use crate::db::{Db, SnapshotRow, Status, VolumeRow};
use crate::service::lifecycle;

use super::{JobError, JobKind};

pub(crate) async fn not_busy(db: &Db, id: &str, what: &str) -> Result<(), JobError> {
    if let Some(j) = db.active_job_on(id).await? {
        return Err(JobError::Refused(format!(
            "{what} is busy: {} job {} is {}; wait for it or cancel it (ember job cancel {})",
            j.kind,
            short(&j.id),
            j.state,
            short(&j.id)
        )));
    }
    Ok(())
}

/// Refuses to `action` snapshot `s` while a migration moves its volume (`maintenance`): its
/// snapshots move with it, so a new clone of one, or its deletion, would be left behind or
/// pulled from under the copy.
pub(super) async fn snapshot_not_moving(
    db: &Db,
    s: &SnapshotRow,
    action: &str,
) -> Result<(), JobError> {
    let Some(v) = db.get_volume(&s.volume_id).await? else {
        return Ok(());
    };
    if v.status != Status::Maintenance {
        return Ok(());
    }
    let job = db.active_job_referencing(&v.id).await?;
    Err(JobError::Refused(format!(
        "snapshot {} of volume {}: cannot {action} it while a migration moves the volume{}; wait for it",
        s.name,
        v.name,
        job.map(|j| format!(" ({} job {})", j.kind, short(&j.id)))
            .unwrap_or_default()
    )))
}

/// What `volume verify` compares with when no snapshot is named: the parent of a layered
/// clone, else the snapshot it was flattened from, while that snapshot still exists.
pub(super) async fn verify_default(db: &Db, v: &VolumeRow) -> Result<SnapshotRow, JobError> {
    let (id, how) = match (&v.source_snapshot_id, &v.flattened_from) {
        (Some(id), _) => (id, "its parent"),
        (None, Some(id)) => (id, "the snapshot it was flattened from"),
        (None, None) => {
            return Err(JobError::Refused(format!(
                "volume {} ({}) has no parent and was not flattened from a snapshot: name one to compare with (--against SNAPSHOT)",
                v.name, v.id
            )));
        }
    };
    match db.get_snapshot(id).await? {
        Some(s) if s.deleted_at.is_none() => Ok(s),
        _ => Err(JobError::Refused(format!(
            "volume {}: {how}, snapshot {}, no longer exists: name another to compare with (--against SNAPSHOT)",
            v.name,
            short(id)
        ))),
    }
}

pub(super) fn short(id: &str) -> &str {
    crate::service::units::short_id(id)
}

pub(super) fn status_is(v: &VolumeRow, allowed: &[Status], action: &str) -> Result<(), JobError> {
    may_start("volume", &v.name, &v.id, v.status, allowed, action)
}

/// Refuses a job whose target is not in one of the statuses its rule starts from.
pub(crate) fn may_start(
    noun: &str,
    name: &str,
    id: &str,
    status: Status,
    allowed: &[Status],
    action: &str,
) -> Result<(), JobError> {
    if allowed.contains(&status) {
        return Ok(());
    }
    let list: Vec<&str> = allowed.iter().map(|s| s.as_str()).collect();
    Err(JobError::Refused(format!(
        "cannot {action} {noun} {name} ({id}): it is {status}; {action} needs one of: {}",
        list.join(", ")
    )))
}

/// The statuses an operator may ask for `kind` from (the lifecycle table's).
pub(super) fn asks_from(kind: JobKind) -> &'static [Status] {
    lifecycle::rule(kind).map_or(&[], |r| r.asks_from)
}

/// The clones reading from a snapshot, as a refusal naming them and the fix.
pub(super) async fn dependents(db: &Db, snap: &SnapshotRow) -> Result<Option<String>, JobError> {
    let clones = db.clones_of_snapshot(&snap.id).await?;
    if clones.is_empty() {
        return Ok(None);
    }
    let names: Vec<String> = clones
        .iter()
        .map(|c| format!("{} ({})", c.name, c.id))
        .collect();
    Ok(Some(format!(
        "snapshot {} ({}) has dependent clones: {}; flatten them first (ember volume flatten {}) or enable enable_deferred_deletion on backend {}",
        snap.name,
        snap.id,
        names.join(", "),
        clones[0].id,
        snap.backend
    )))
}

/// The backend options a request is checked against.
pub(super) struct Rules {
    pub(super) enable_deferred_deletion: bool,
    pub(super) max_clone_depth: u32,
    pub(super) flatten_volume_from_snapshot: bool,
}

/// From this host's section of the backend; a backend served only by other hosts (another
/// host's local storage, or a cluster this host is not in) is checked with Cinder's defaults.
/// The service that runs the job applies its own section either way.
pub(super) fn rules(cfg: &Config, name: &str) -> Rules {
    match cfg.backend(name) {
        Some(b) => Rules {
            enable_deferred_deletion: b.enable_deferred_deletion,
            max_clone_depth: b.max_clone_depth,
            flatten_volume_from_snapshot: b.flatten_volume_from_snapshot,
        },
        None => Rules {
            enable_deferred_deletion: false,
            max_clone_depth: crate::config::defaults::RBD_MAX_CLONE_DEPTH as u32,
            flatten_volume_from_snapshot: false,
        },
    }
}
