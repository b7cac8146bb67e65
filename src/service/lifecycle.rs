//! The lifecycle of volumes and snapshots under jobs, in one table: for each job kind, the
//! statuses its target may start from, the status it holds while the job is on its way, and
//! where it ends on success, failure, a refusal because the image is busy, and a cancel before
//! any worker took the job. `request` (what may be asked), `retry`, `exec` (how a job ends),
//! `recovery` (what a crash left behind) and the cancel path all read it; nothing else decides
//! a status. `tests/lifecycle.rs` drives every (kind, status) pair through the binary and
//! compares what the rows show with this table.

use crate::db::{Db, DbError, JobKind, Status};

/// Which table a job's target lives in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    Volume,
    Snapshot,
    Backup,
}

impl Target {
    pub fn noun(self) -> &'static str {
        match self {
            Target::Volume => "volume",
            Target::Snapshot => "snapshot",
            Target::Backup => "backup",
        }
    }
}

/// What becomes of the target's row at one end of a job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum After {
    /// Its status is left as it was (flatten and verify never change it).
    Unchanged,
    Set(Status),
    /// The row is marked deleted: the job removed the image, or made nothing in storage.
    Removed,
}

impl std::fmt::Display for After {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            After::Unchanged => f.pad("-"),
            After::Set(s) => f.pad(s.as_str()),
            After::Removed => f.pad("(removed)"),
        }
    }
}

/// How a job ended, as far as its target's status is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    Succeeded,
    /// Failed, or cancelled while running (part of the work may be done).
    Failed,
    /// The storage refused because the image is open or has dependents: nothing changed.
    RefusedBusy,
    /// Cancelled before any worker took it: nothing was done.
    CancelledQueued,
}

/// One job kind's part of the lifecycle.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rule {
    pub kind: JobKind,
    pub target: Target,
    /// The statuses its target may have when an operator asks for it. Empty: the request
    /// makes the target, as a new row in `during`.
    pub asks_from: &'static [Status],
    /// The statuses from which `job retry` runs a failed or cancelled job of this kind again.
    pub retries_from: &'static [Status],
    /// The target's status from the request until the job ends (`None`: unchanged).
    pub during: Option<Status>,
    pub succeeded: After,
    pub failed: After,
    pub refused_busy: After,
    pub cancelled_queued: After,
}

impl Rule {
    pub fn after(&self, end: End) -> After {
        match end {
            End::Succeeded => self.succeeded,
            End::Failed => self.failed,
            End::RefusedBusy => self.refused_busy,
            End::CancelledQueued => self.cancelled_queued,
        }
    }

    /// Whether an operator may ask for this job with the target in `status`.
    pub fn may_ask(&self, status: Status) -> bool {
        self.asks_from.contains(&status)
    }
}

use Status::{
    Available, Creating, Deleting, Error, ErrorDeleting, ErrorExtending, Extending, InUse,
    Maintenance,
};

const USABLE: &[Status] = &[Available, InUse];
const VOLUME_DELETABLE: &[Status] = &[Available, Error, ErrorDeleting, ErrorExtending];
const SNAPSHOT_DELETABLE: &[Status] = &[Available, Error, ErrorDeleting];
const BACKUP_DELETABLE: &[Status] = &[Available, Error, ErrorDeleting];

const fn makes(kind: JobKind, target: Target) -> Rule {
    Rule {
        kind,
        target,
        asks_from: &[],
        retries_from: &[Error],
        during: Some(Creating),
        succeeded: After::Set(Available),
        failed: After::Set(Error),
        refused_busy: After::Set(Error),
        cancelled_queued: After::Removed,
    }
}

const fn reads(kind: JobKind) -> Rule {
    Rule {
        kind,
        target: Target::Volume,
        asks_from: USABLE,
        retries_from: USABLE,
        during: None,
        succeeded: After::Unchanged,
        failed: After::Unchanged,
        refused_busy: After::Unchanged,
        cancelled_queued: After::Unchanged,
    }
}

const fn deletes(kind: JobKind, target: Target, from: &'static [Status]) -> Rule {
    Rule {
        kind,
        target,
        asks_from: from,
        retries_from: from,
        during: Some(Deleting),
        succeeded: After::Removed,
        failed: After::Set(ErrorDeleting),
        // Cinder: "volume is busy" puts it back to available; anything else is an error.
        refused_busy: After::Set(Available),
        cancelled_queued: After::Set(Available),
    }
}

/// Every job kind's rule.
pub const RULES: [Rule; 12] = [
    makes(JobKind::Create, Target::Volume),
    makes(JobKind::Clone, Target::Volume),
    reads(JobKind::Flatten),
    Rule {
        kind: JobKind::Extend,
        target: Target::Volume,
        asks_from: &[Available],
        retries_from: &[Available, ErrorExtending],
        during: Some(Extending),
        succeeded: After::Set(Available),
        failed: After::Set(ErrorExtending),
        // Refused because it is open: nothing changed, it stays usable.
        refused_busy: After::Set(Available),
        cancelled_queued: After::Set(Available),
    },
    deletes(JobKind::Delete, Target::Volume, VOLUME_DELETABLE),
    makes(JobKind::SnapshotCreate, Target::Snapshot),
    deletes(
        JobKind::SnapshotDelete,
        Target::Snapshot,
        SNAPSHOT_DELETABLE,
    ),
    reads(JobKind::Verify),
    // Cinder's `maintenance` while it moves. A failed or cancelled migration leaves the volume
    // whole on its source (the partial copy is removed), so it is usable again at once.
    Rule {
        kind: JobKind::Migrate,
        target: Target::Volume,
        asks_from: &[Available],
        retries_from: &[Available],
        during: Some(Maintenance),
        succeeded: After::Set(Available),
        failed: After::Set(Available),
        refused_busy: After::Set(Available),
        cancelled_queued: After::Set(Available),
    },
    makes(JobKind::BackupCreate, Target::Backup),
    makes(JobKind::BackupRestore, Target::Volume),
    deletes(JobKind::BackupDelete, Target::Backup, BACKUP_DELETABLE),
];

/// The rule of a kind (`None` for a kind this build does not know).
pub fn rule(kind: JobKind) -> Option<&'static Rule> {
    RULES.iter().find(|r| r.kind == kind)
}

/// Where a row left in a job's `during` status goes when no job is left to finish it (a crash
/// between the request and the end): the failure status of the kind that set it.
pub fn interrupted(target: Target, status: Status) -> Option<Status> {
    RULES
        .iter()
        .filter(|r| r.target == target && r.during == Some(status))
        .find_map(|r| match r.failed {
            After::Set(s) => Some(s),
            _ => None,
        })
}

/// The statuses an operator may set by hand (Cinder's `reset-state` for the cases on call).
pub const RESET_STATES: &[Status] = &[Available, Error];

/// A volume ember adopts from an image on the storage (`volume manage`) starts usable.
pub const ADOPTED: Status = Available;

/// What `volume unmanage` may forget: a volume nothing is on its way with.
pub const UNMANAGE_FROM: &[Status] = &[Available, Error];

/// A row whose image is gone from the storage (`volume reconcile --fix`).
pub const IMAGE_MISSING: Status = Error;

/// Applies the end of a `kind` job to its target `id`: guarded on the rule's `during` status,
/// so a row that someone else changed meanwhile is left alone. True if the row changed.
pub async fn settle(
    db: &Db,
    kind: JobKind,
    end: End,
    id: &str,
    reason: Option<&str>,
) -> Result<bool, DbError> {
    let Some(rule) = rule(kind) else {
        return Ok(false);
    };
    let from: &[Status] = match &rule.during {
        Some(s) => std::slice::from_ref(s),
        None => &[],
    };
    match (rule.after(end), rule.target) {
        (After::Unchanged, _) => Ok(false),
        (After::Set(to), Target::Volume) => db.set_volume_status(id, from, to, reason).await,
        (After::Set(to), Target::Snapshot) => db.set_snapshot_status(id, from, to, reason).await,
        (After::Set(to), Target::Backup) => db.set_backup_status(id, from, to, reason).await,
        (After::Removed, Target::Volume) => db.mark_volume_deleted(id).await.map(|()| true),
        (After::Removed, Target::Snapshot) => db.mark_snapshot_deleted(id).await.map(|()| true),
        (After::Removed, Target::Backup) => db.mark_backup_deleted(id).await.map(|()| true),
    }
}

/// The table as the README shows it (`ember` prints nothing of it; a test keeps the README
/// true to it).
pub fn markdown() -> String {
    let list = |s: &[Status]| {
        if s.is_empty() {
            "(new row)".to_string()
        } else {
            s.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", ")
        }
    };
    let mut out = String::from(
        "| job | target | asked from | retried from | during | succeeded | failed | busy | cancelled queued |\n\
         |---|---|---|---|---|---|---|---|---|\n",
    );
    for r in &RULES {
        out += &format!(
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} |\n",
            r.kind,
            r.target.noun(),
            list(r.asks_from),
            list(r.retries_from),
            r.during.map_or("-", Status::as_str),
            r.succeeded,
            r.failed,
            r.refused_busy,
            r.cancelled_queued
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_has_one_rule() {
        for k in JobKind::ALL {
            assert_eq!(RULES.iter().filter(|r| r.kind == *k).count(), 1, "{k}");
        }
    }

    #[test]
    fn a_row_left_transitional_goes_to_its_kinds_failure() {
        assert_eq!(interrupted(Target::Volume, Creating), Some(Error));
        assert_eq!(interrupted(Target::Volume, Extending), Some(ErrorExtending));
        assert_eq!(interrupted(Target::Volume, Deleting), Some(ErrorDeleting));
        assert_eq!(interrupted(Target::Snapshot, Creating), Some(Error));
        assert_eq!(interrupted(Target::Snapshot, Deleting), Some(ErrorDeleting));
        assert_eq!(interrupted(Target::Snapshot, Extending), None);
        assert_eq!(interrupted(Target::Volume, Maintenance), Some(Available));
        // Every status a job holds its target in has a way out after a crash.
        for r in &RULES {
            if let Some(d) = r.during {
                assert!(interrupted(r.target, d).is_some(), "{} {d}", r.kind);
            }
        }
    }

    #[test]
    fn the_readme_shows_this_table() {
        let readme = include_str!("../../README.md");
        assert!(
            readme.contains(&markdown()),
            "README.md's lifecycle table differs from src/service/lifecycle.rs; it should read:\n{}",
            markdown()
        );
    }
}
