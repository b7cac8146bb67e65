//! The typed live model the console draws: volumes, snapshots, jobs and services as views
//! with enums for states and kinds, built here from the database's rows. No row type and no
//! state string reaches `src/tui/`: it matches on [`Status`] and [`JobState`].
//!
//! The views are compact on purpose (100,000 volumes and 100,000 snapshots must fit the
//! console in well under 120 MB): a status is one byte, the backend and owner strings that
//! every row repeats are shared (`Arc<str>` from an [`Interner`]), and texts are `Box<str>`.

use std::collections::HashMap;
use std::sync::Arc;

use crate::db::services::{Liveness, ServiceRow, parse_lateness};
use crate::db::{JobRow, SnapshotRow, VolumeRow};

use super::jobs::JobKind;

pub use crate::db::words::{EventKind, JobState, Purpose, Status};

/// Shares the strings that many rows repeat (backend names, owners).
#[derive(Debug, Default, Clone)]
pub struct Interner(HashMap<Box<str>, Arc<str>>);

impl Interner {
    pub fn get(&mut self, s: &str) -> Arc<str> {
        if let Some(a) = self.0.get(s) {
            return a.clone();
        }
        let a: Arc<str> = Arc::from(s);
        self.0.insert(s.into(), a.clone());
        a
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct VolumeView {
    pub id: Box<str>,
    pub name: Box<str>,
    pub size_bytes: i64,
    pub status: Status,
    pub status_reason: Option<Box<str>>,
    pub backend: Arc<str>,
    /// The owner: `host@backend` or `cluster@backend`.
    pub host: Option<Arc<str>>,
    /// The snapshot it is a clone of, while it is not flattened.
    pub source_snapshot_id: Option<Box<str>>,
    /// That snapshot as the operator calls it (`volume@snapshot`), set by the live model.
    pub parent_name: Option<Arc<str>>,
    pub clone_depth: i64,
    pub created_at: i64,
    pub updated_at: i64,
    /// Live attachments, counted by the live model from the attachments table.
    pub attached: u16,
}

impl VolumeView {
    pub fn from_row(r: VolumeRow, i: &mut Interner) -> Self {
        VolumeView {
            id: r.id.into(),
            name: r.name.into(),
            size_bytes: r.size_bytes,
            status: r.status,
            status_reason: r.status_reason.map(Into::into),
            backend: i.get(&r.backend),
            host: r.host.as_deref().map(|h| i.get(h)),
            source_snapshot_id: r.source_snapshot_id.map(Into::into),
            parent_name: None,
            clone_depth: r.clone_depth,
            created_at: r.created_at,
            updated_at: r.updated_at,
            attached: 0,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct SnapshotView {
    pub id: Box<str>,
    pub name: Box<str>,
    pub volume_id: Box<str>,
    pub size_bytes: i64,
    pub status: Status,
    pub backend: Arc<str>,
    pub purpose: Purpose,
    pub created_at: i64,
}

impl SnapshotView {
    pub fn from_row(r: SnapshotRow, i: &mut Interner) -> Self {
        SnapshotView {
            id: r.id.into(),
            name: r.name.into(),
            volume_id: r.volume_id.into(),
            size_bytes: r.size_bytes,
            status: r.status,
            backend: i.get(&r.backend),
            purpose: r.purpose,
            created_at: r.created_at,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct JobView {
    pub id: String,
    /// `Unknown`: a kind this build does not know (written by a newer ember).
    pub kind: JobKind,
    pub target_id: String,
    /// What the operator calls the target (`db-01`, `db-01@nightly`), when known.
    pub target_name: Option<String>,
    pub backend: String,
    pub state: JobState,
    pub bytes_done: i64,
    pub bytes_total: i64,
    pub error: Option<String>,
    /// What it found (`volume verify`).
    pub result: Option<String>,
    /// Why it does not move yet (a flatten waiting for a flatten slot).
    pub wait_reason: Option<String>,
    pub requested_by: String,
    /// The service running it.
    pub claimed_by: Option<String>,
    /// Who may run it.
    pub owner: Option<String>,
    pub created_at: i64,
    pub started_at: Option<i64>,
    /// The last progress (moves only when bytes move).
    pub updated_at: i64,
    pub finished_at: Option<i64>,
}

impl JobView {
    /// The kind's name, as the console shows it.
    pub fn kind_name(&self) -> &'static str {
        self.kind.as_str()
    }
}

impl From<&JobRow> for JobView {
    fn from(j: &JobRow) -> Self {
        JobView {
            id: j.id.clone(),
            kind: j.kind,
            target_id: j.target_id.clone(),
            target_name: None,
            backend: j.backend.clone(),
            state: j.state,
            bytes_done: j.bytes_done,
            bytes_total: j.bytes_total,
            error: j.error.clone(),
            result: j.result.clone(),
            wait_reason: j.wait_reason.clone(),
            requested_by: j.requested_by.clone(),
            claimed_by: j.claimed_by.clone(),
            owner: j.owner.clone(),
            created_at: j.created_at,
            started_at: j.started_at,
            updated_at: j.updated_at,
            finished_at: j.finished_at,
        }
    }
}

/// A heartbeat later than this (ms) is late: the reactor is being starved, a warning before
/// the service is down.
pub const LATE_WARN_MS: f64 = 100.0;

/// A service as the console shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct ServiceView {
    /// `host@backend`.
    pub host: String,
    pub backend: String,
    /// `cluster@backend`, when clustered.
    pub cluster: Option<String>,
    pub driver: String,
    pub binary: String,
    pub disabled: bool,
    pub disabled_reason: Option<String>,
    /// No new volume is placed on it (`backend drain`, `backend evacuate`).
    pub draining: bool,
    /// Why the backend is failing, if it is.
    pub error: Option<String>,
    pub pid: Option<i64>,
    /// The last heartbeat (the database's clock).
    pub updated_at: Option<i64>,
    pub stopped: bool,
    pub capacity_total: Option<i64>,
    pub capacity_free: Option<i64>,
    pub capacity_provisioned: Option<i64>,
    pub capacity_at: Option<i64>,
    pub up: bool,
    /// Started and still on its first setup check (see `db::services::Liveness`).
    pub starting: bool,
    /// Recent heartbeat lateness, oldest first (ms).
    pub lateness_ms: Vec<f64>,
}

impl ServiceView {
    /// Up, but its last heartbeat came later than [`LATE_WARN_MS`].
    pub fn is_late(&self) -> bool {
        self.up && self.lateness_ms.last().is_some_and(|l| *l > LATE_WARN_MS)
    }

    pub fn from_row(r: &ServiceRow, state: Liveness) -> Self {
        ServiceView {
            host: r.host.clone(),
            backend: r.backend.clone(),
            cluster: r.cluster.clone(),
            driver: r.driver.clone(),
            binary: r.binary_name.clone(),
            disabled: r.disabled != 0,
            disabled_reason: r.disabled_reason.clone(),
            draining: r.draining != 0,
            error: r.error.clone(),
            pid: r.pid,
            updated_at: r.updated_at,
            stopped: r.stopped_at.is_some(),
            capacity_total: r.capacity_total,
            capacity_free: r.capacity_free,
            capacity_provisioned: r.capacity_provisioned,
            capacity_at: r.capacity_at,
            up: state == Liveness::Up,
            starting: state == Liveness::Starting,
            lateness_ms: parse_lateness(&r.lateness_ms),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeated_strings_are_shared() {
        let mut i = Interner::default();
        assert!(Arc::ptr_eq(&i.get("file0"), &i.get("file0")));
    }
}
