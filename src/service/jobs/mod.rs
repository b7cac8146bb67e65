//! Jobs: long storage work (create, clone, flatten, extend, delete, snapshots) asked for by an
//! operator, queued in the database, and run by a service of the target's backend.
//!
//! - `request.rs`: checks a request at once (unknown volume, dependent clones, shrinking...)
//!   and writes the volume/snapshot rows and the job in one transaction; `guards.rs` holds the
//!   checks several kinds share (status, busy, a snapshot whose volume is moving, rules).
//! - `migrate.rs`, `migrate_copy.rs`: a volume (and the clones moving with it) to another
//!   backend, by live migration or a checked copy.
//! - `runner.rs`: each backend claims queued jobs when it has a free slot and runs them, the
//!   driver call on the blocking pool, with throttled progress writes and cancellation.
//! - `exec.rs`: what each kind does, and the status transitions Cinder operators expect.
//! - `recovery.rs`: at start, what a crash left running or half-done is resumed or settled.

mod backup;
mod cancel;
mod create;
pub mod exec;
pub mod guards;
mod holders;
mod migrate;
mod migrate_copy;
pub mod placement;
pub mod recovery;
pub mod request;
pub mod retry;
pub mod runner;

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::db::DbError;

pub use request::{
    Checked, Enqueued, Request, cancel, check, enqueue, enqueue_checked, found, volume,
};

pub use crate::db::words::JobKind;

/// A job's parameters, stored as JSON in `jobs.params`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Params {
    /// New size (create, clone, extend).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
    /// The snapshot a clone reads from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot_id: Option<String>,
    /// `--source`: snapshot this volume first (into `snapshot_id`), then clone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_volume_id: Option<String>,
    /// Flatten the clone at once (clone depth reached, or `rbd_flatten_volume_from_snapshot`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub flatten: bool,
    /// Delete the volume's snapshots too.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub cascade: bool,
    /// Delete or extend even though someone has the volume open (`--force`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub force: bool,
    /// The job this one retries (`ember job retry`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_of: Option<String>,
    /// The volume a snapshot job snapshots.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volume_id: Option<String>,
    /// `volume verify --bps-limit`: the read rate for this verify (else the backend's
    /// `volume_copy_bps_limit`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bps_limit: Option<u64>,
    /// `volume migrate --to`: the backend the volume moves to, and its owner there
    /// (`host@backend` or `cluster@backend`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to_backend: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to_owner: Option<String>,
    /// `volume migrate --with-clones`: the clones that move with the volume (and keep
    /// reading from its snapshots there), parents before their clones. Their rows are guarded
    /// as the volume's is, and switch with it in one transaction.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub family: Vec<String>,
    /// The backup a restore reads.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backup_id: Option<String>,
}

#[derive(Debug, Error)]
pub enum JobError {
    #[error(transparent)]
    Db(#[from] DbError),
    #[error("no {what} with id or name {key:?}")]
    NotFound { what: &'static str, key: String },
    #[error("{count} {what}s are named {key:?}; use an id: {}", ids.join(", "))]
    Ambiguous {
        what: &'static str,
        key: String,
        count: usize,
        ids: Vec<String>,
    },
    /// The request cannot be done now; the text says why and what to do.
    #[error("{0}")]
    Refused(String),
    #[error(transparent)]
    Input(#[from] super::units::InputError),
}
