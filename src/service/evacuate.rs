//! `backend evacuate SRC --to DST`: every volume of a backend moved by `volume migrate` jobs,
//! a few at a time. Nothing of the evacuation itself is stored: what is left is what the
//! database says is still on the source, and the migrations under way are the migrate jobs of
//! its volumes. So a stop (Ctrl-C), a restart of any host or a crash of the command loses
//! nothing: the jobs run on as jobs, and running the command again carries on. The source is
//! marked draining first, so no new volume is placed there meanwhile. A volume moves with
//! the clones that read from it, in one job, so they keep their layering on the target.

use std::collections::{HashMap, HashSet};

use crate::db::{Db, DbError, JobKind, JobRow, VolumeRow};

use super::jobs::Params;

/// A volume still to move and the clones that move with it (`volume migrate --with-clones`,
/// so they keep their layering on the target).
pub struct Family {
    pub root: VolumeRow,
    pub clones: Vec<VolumeRow>,
}

impl Family {
    pub fn ids(&self) -> impl Iterator<Item = &str> {
        std::iter::once(self.root.id.as_str()).chain(self.clones.iter().map(|c| c.id.as_str()))
    }

    pub fn bytes(&self) -> u64 {
        std::iter::once(&self.root)
            .chain(&self.clones)
            .map(|v| v.size_bytes.max(0) as u64)
            .sum()
    }
}

/// What is still on `backend`, in the order an evacuation moves it: families (a volume whose
/// parent is not on `backend`, with every clone on `backend` that reads from it), the largest
/// first (the long moves start early), skipping those whose volume is in `moving` (under way
/// or given up). A clone never moves before its parent, so none arrives flat but one whose
/// parent stays elsewhere. Two queries, whatever the number of volumes: the command asks
/// every second.
pub async fn remaining(
    db: &Db,
    backend: &str,
    moving: &HashSet<String>,
) -> Result<Vec<Family>, DbError> {
    let left = db.list_volumes(Some(backend), None).await?;
    // The volume each snapshot was taken of.
    let taken_of: HashMap<String, String> = db
        .list_snapshots(None, true)
        .await?
        .into_iter()
        .map(|s| (s.id, s.volume_id))
        .collect();
    let on_backend: HashSet<&str> = left.iter().map(|v| v.id.as_str()).collect();
    let parent_of = |v: &VolumeRow| {
        v.source_snapshot_id
            .as_ref()
            .and_then(|s| taken_of.get(s))
            .filter(|p| on_backend.contains(p.as_str()))
            .cloned()
    };
    let mut clones_of: HashMap<String, Vec<&VolumeRow>> = HashMap::new();
    for v in &left {
        if let Some(p) = parent_of(v) {
            clones_of.entry(p).or_default().push(v);
        }
    }
    let mut families = vec![];
    for v in left.iter().filter(|v| parent_of(v).is_none()) {
        if moving.contains(&v.id) {
            continue;
        }
        // Parents before their clones, as the migration makes them.
        let mut clones: Vec<VolumeRow> = vec![];
        let mut next = std::collections::VecDeque::from([v.id.as_str()]);
        while let Some(id) = next.pop_front() {
            for c in clones_of.get(id).into_iter().flatten() {
                next.push_back(&c.id);
                clones.push((*c).clone());
            }
        }
        families.push(Family {
            root: v.clone(),
            clones,
        });
    }
    families.sort_by(|a, b| {
        b.bytes()
            .cmp(&a.bytes())
            .then(a.root.name.cmp(&b.root.name))
    });
    Ok(families)
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
