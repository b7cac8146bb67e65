//! The live model of volumes, snapshots and jobs that the console draws: read whole once, then
//! patched with only the rows changed since the last read (change stamps), so an idle console
//! on 100,000 volumes and 100,000 snapshots reads nothing but a cursor.
//!
//! Rows are kept behind `Arc`s: publishing a new picture after a change copies pointers, not
//! rows, and a table that did not change is published as the very same `Arc`, so the console
//! knows it need not filter or sort it again.

use std::collections::HashMap;
use std::sync::Arc;

use crate::db::{Db, DbError, JobRow, SnapshotRow, VolumeRow};

/// How many finished jobs the model keeps (unfinished ones are always kept).
pub const JOBS_KEPT: usize = 500;

/// One table of the model: rows by position, and the position of each id.
#[derive(Debug, Clone)]
pub struct Table<T> {
    rows: Arc<Vec<Arc<T>>>,
    index: HashMap<String, usize>,
}

impl<T> Default for Table<T> {
    fn default() -> Self {
        Table {
            rows: Arc::new(vec![]),
            index: HashMap::new(),
        }
    }
}

impl<T: Clone> Table<T> {
    fn load(rows: Vec<T>, id: impl Fn(&T) -> &str) -> Table<T> {
        let index = rows
            .iter()
            .enumerate()
            .map(|(i, r)| (id(r).to_string(), i))
            .collect();
        Table {
            rows: Arc::new(rows.into_iter().map(Arc::new).collect()),
            index,
        }
    }

    /// Upserts live rows and removes gone ones; true if anything changed.
    fn patch(
        &mut self,
        changed: Vec<T>,
        id: impl Fn(&T) -> &str,
        gone: impl Fn(&T) -> bool,
    ) -> bool {
        if changed.is_empty() {
            return false;
        }
        // A new picture (pointers copied, not rows): the published one stays as it was, and
        // a reader comparing pointers sees the change.
        let mut next: Vec<Arc<T>> = self.rows.as_ref().clone();
        let rows = &mut next;
        for r in changed {
            let key = id(&r).to_string();
            match (self.index.get(&key).copied(), gone(&r)) {
                (Some(i), false) => rows[i] = Arc::new(r),
                (None, false) => {
                    self.index.insert(key, rows.len());
                    rows.push(Arc::new(r));
                }
                (Some(i), true) => {
                    self.index.remove(&key);
                    rows.swap_remove(i);
                    if let Some(moved) = rows.get(i) {
                        self.index.insert(id(moved).to_string(), i);
                    }
                }
                (None, true) => {}
            }
        }
        self.rows = Arc::new(next);
        true
    }

    pub fn rows(&self) -> &Arc<Vec<Arc<T>>> {
        &self.rows
    }
}

/// What one refresh found.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Refresh {
    pub full: bool,
    pub volumes: bool,
    pub snapshots: bool,
    pub jobs: bool,
    /// Rows read from the three tables (the figure `bench console-live` prints).
    pub rows_read: usize,
}

/// Volumes, snapshots and jobs as the console shows them.
#[derive(Debug, Clone, Default)]
pub struct LiveModel {
    /// None until the first full read, and after a read failed (the next one is full).
    cursor: Option<i64>,
    pub volumes: Table<VolumeRow>,
    pub snapshots: Table<SnapshotRow>,
    /// Newest first: every unfinished job and the newest finished ones.
    pub jobs: Arc<Vec<JobRow>>,
}

fn active(j: &JobRow) -> bool {
    matches!(j.state.as_str(), "queued" | "running")
}

impl LiveModel {
    /// Forgets the cursor: the next refresh reads everything (after a reconnect, when pushes
    /// may have been missed).
    pub fn invalidate(&mut self) {
        self.cursor = None;
    }

    /// Reads what changed since the last refresh (everything the first time) and applies it.
    /// On an error the model is kept as it was and the next refresh is a full one.
    pub async fn refresh(&mut self, db: &Db) -> Result<Refresh, DbError> {
        let r = self.read(db).await;
        if r.is_err() {
            self.cursor = None;
        }
        r
    }

    async fn read(&mut self, db: &Db) -> Result<Refresh, DbError> {
        let next = db.change_cursor().await?;
        let Some(cursor) = self.cursor else {
            let vols = db.list_volumes(None, None).await?;
            let snaps = db.list_snapshots(None, true).await?;
            let mut jobs = db.active_jobs().await?;
            let recent = db.list_jobs(None, JOBS_KEPT as i64).await?;
            let rows_read = vols.len() + snaps.len() + jobs.len() + recent.len();
            jobs.extend(recent.into_iter().filter(|j| !active(j)));
            self.volumes = Table::load(vols, |v| &v.id);
            self.snapshots = Table::load(snaps, |s| &s.id);
            self.jobs = Arc::new(order_jobs(jobs));
            self.cursor = Some(next);
            return Ok(Refresh {
                full: true,
                volumes: true,
                snapshots: true,
                jobs: true,
                rows_read,
            });
        };
        let vols = db.volumes_since(cursor).await?;
        let snaps = db.snapshots_since(cursor).await?;
        let jobs = db.jobs_since(cursor).await?;
        let rows_read = vols.len() + snaps.len() + jobs.len();
        let volumes = self
            .volumes
            .patch(vols, |v| &v.id, |v| v.deleted_at.is_some());
        let snapshots = self
            .snapshots
            .patch(snaps, |s| &s.id, |s| s.deleted_at.is_some());
        let jobs_changed = !jobs.is_empty();
        if jobs_changed {
            let mut all: Vec<JobRow> = self
                .jobs
                .iter()
                .filter(|j| !jobs.iter().any(|n| n.id == j.id))
                .cloned()
                .collect();
            all.extend(jobs);
            self.jobs = Arc::new(order_jobs(all));
        }
        self.cursor = Some(next);
        Ok(Refresh {
            full: false,
            volumes,
            snapshots,
            jobs: jobs_changed,
            rows_read,
        })
    }
}

/// Newest first; every unfinished job, then the newest finished ones up to [`JOBS_KEPT`].
fn order_jobs(mut jobs: Vec<JobRow>) -> Vec<JobRow> {
    jobs.sort_by(|a, b| b.created_at.cmp(&a.created_at).then(a.id.cmp(&b.id)));
    let mut finished = 0;
    jobs.retain(|j| {
        if active(j) {
            return true;
        }
        finished += 1;
        finished <= JOBS_KEPT
    });
    jobs
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Clone, PartialEq)]
    struct R {
        id: String,
        v: u32,
        gone: bool,
    }

    fn r(id: &str, v: u32, gone: bool) -> R {
        R {
            id: id.into(),
            v,
            gone,
        }
    }

    #[test]
    fn patch_upserts_and_removes_keeping_the_index_true() {
        let mut t = Table::load(
            vec![r("a", 1, false), r("b", 1, false), r("c", 1, false)],
            |x| &x.id,
        );
        let before = t.rows().clone();
        assert!(t.patch(
            vec![r("a", 2, true), r("d", 1, false), r("c", 3, false)],
            |x| &x.id,
            |x| x.gone
        ));
        assert_eq!(before.len(), 3, "the published picture is not touched");
        let mut ids: Vec<(String, u32)> = t.rows().iter().map(|x| (x.id.clone(), x.v)).collect();
        ids.sort();
        assert_eq!(ids, vec![("b".into(), 1), ("c".into(), 3), ("d".into(), 1)]);
        for (id, i) in &t.index {
            assert_eq!(&t.rows()[*i].id, id);
        }
        assert!(!t.patch(vec![], |x| &x.id, |x| x.gone));
    }
}
