//! `backend evacuate SRC --to DST`: every volume of a backend moved by `volume migrate` jobs,
//! a few at a time. Nothing of the evacuation itself is stored: what is left is what the
//! database says is still on the source, and the migrations under way are the migrate jobs of
//! its volumes. So a stop (Ctrl-C), a restart of any host or a crash of the command loses
//! nothing: the jobs run on as jobs, and running the command again carries on. The source is
//! marked draining first, so no new volume is placed there meanwhile.

use std::collections::HashSet;

use crate::db::{Db, DbError, JobKind, JobRow, VolumeRow};

use super::jobs::Params;

/// What is still on `backend`, in the order an evacuation moves it: clones before the volumes
/// they read from (deepest first: a volume whose snapshot has clones cannot move until they
/// have), then the largest first (the long moves start early), skipping `moving`.
pub async fn remaining(
    db: &Db,
    backend: &str,
    moving: &HashSet<String>,
) -> Result<Vec<VolumeRow>, DbError> {
    let mut left: Vec<VolumeRow> = db
        .list_volumes(Some(backend), None)
        .await?
        .into_iter()
        .filter(|v| !moving.contains(&v.id))
        .collect();
    left.sort_by(|a, b| {
        b.clone_depth
            .cmp(&a.clone_depth)
            .then(b.size_bytes.cmp(&a.size_bytes))
            .then(a.name.cmp(&b.name))
    });
    Ok(left)
}

/// Migrate jobs under way from `backend` to `to` (an earlier run's, or this one's).
pub async fn moving(db: &Db, backend: &str, to: &str) -> Result<Vec<JobRow>, DbError> {
    Ok(db
        .active_jobs()
        .await?
        .into_iter()
        .filter(|j| {
            j.kind == JobKind::Migrate
                && j.backend == backend
                && serde_json::from_str::<Params>(&j.params)
                    .ok()
                    .and_then(|p| p.to_backend)
                    .as_deref()
                    == Some(to)
        })
        .collect())
}
