//! The live model of volumes, snapshots and jobs that the console draws: read whole once, then
//! patched with only the rows changed since the last read (change stamps), so an idle console
//! on 100,000 volumes and 100,000 snapshots reads nothing but a cursor.
//!
//! Rows are kept behind `Arc`s: publishing a new picture after a change copies pointers, not
//! rows, and a table that did not change is published as the very same `Arc`, so the console
//! knows it need not filter or sort it again.

use std::collections::HashMap;
use std::sync::Arc;

use futures_util::TryStreamExt;

use crate::db::{Db, DbError, JobRow};

use super::view::{Interner, JobView, SnapshotView, VolumeView};

/// How many finished jobs the model keeps (unfinished ones are always kept).
pub const JOBS_KEPT: usize = 500;

/// A row's id as a compact key: ids are UUIDs (16 bytes instead of a 36-byte string); any
/// other id is hashed to 128 bits.
fn key(id: &str) -> u128 {
    match uuid::Uuid::parse_str(id) {
        Ok(u) => u.as_u128(),
        Err(_) => {
            use std::hash::{BuildHasher, BuildHasherDefault, DefaultHasher};
            let h = |salt: u64| BuildHasherDefault::<DefaultHasher>::default().hash_one((salt, id));
            (u128::from(h(1)) << 64) | u128::from(h(2))
        }
    }
}

/// Something with an id.
pub trait Keyed {
    fn id(&self) -> &str;
}

impl Keyed for VolumeView {
    fn id(&self) -> &str {
        &self.id
    }
}

impl Keyed for SnapshotView {
    fn id(&self) -> &str {
        &self.id
    }
}

/// One table of the model: rows by position, and the position of each id.
#[derive(Debug, Clone)]
pub struct Table<T> {
    rows: Arc<Vec<Arc<T>>>,
    index: HashMap<u128, usize>,
}

impl<T> Default for Table<T> {
    fn default() -> Self {
        Table {
            rows: Arc::new(vec![]),
            index: HashMap::new(),
        }
    }
}

impl<T: Keyed> Table<T> {
    fn load(rows: Vec<Arc<T>>) -> Table<T> {
        let index = rows
            .iter()
            .enumerate()
            .map(|(i, r)| (key(r.id()), i))
            .collect();
        Table {
            rows: Arc::new(rows),
            index,
        }
    }

    /// Applies changes (an id and its new row, or None when it is gone); true if any.
    fn patch(&mut self, changed: Vec<(String, Option<T>)>) -> bool {
        if changed.is_empty() {
            return false;
        }
        // A new picture (pointers copied, not rows): the published one stays as it was, and
        // a reader comparing pointers sees the change.
        let mut rows: Vec<Arc<T>> = self.rows.as_ref().clone();
        for (id, row) in changed {
            let k = key(&id);
            match (self.index.get(&k).copied(), row) {
                (Some(i), Some(r)) => rows[i] = Arc::new(r),
                (None, Some(r)) => {
                    self.index.insert(k, rows.len());
                    rows.push(Arc::new(r));
                }
                (Some(i), None) => {
                    self.index.remove(&k);
                    rows.swap_remove(i);
                    if let Some(moved) = rows.get(i) {
                        self.index.insert(key(moved.id()), i);
                    }
                }
                (None, None) => {}
            }
        }
        self.rows = Arc::new(rows);
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
    /// Rows read from the three tables (the figure `bench console-live` prints).
    pub rows_read: usize,
}

/// Volumes, snapshots and jobs as the console shows them.
#[derive(Debug, Clone, Default)]
pub struct LiveModel {
    /// None until the first full read, and after a read failed (the next one is full).
    cursor: Option<i64>,
    strings: Interner,
    pub volumes: Table<VolumeView>,
    pub snapshots: Table<SnapshotView>,
    /// Newest first: every unfinished job and the newest finished ones (rows: the service
    /// layer reasons on them, e.g. who a job waits for).
    pub job_rows: Vec<JobRow>,
    /// The same, as the console draws them.
    pub jobs: Arc<Vec<JobView>>,
}

fn active(j: &JobRow) -> bool {
    matches!(j.state.as_str(), "queued" | "running")
}

impl LiveModel {
    /// Whether the next refresh reads everything (no cursor yet, or invalidated).
    pub fn reads_all_next(&self) -> bool {
        self.cursor.is_none()
    }

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

    fn set_jobs(&mut self, jobs: Vec<JobRow>) {
        self.job_rows = order_jobs(jobs);
        self.jobs = Arc::new(self.job_rows.iter().map(JobView::from).collect());
    }

    async fn read(&mut self, db: &Db) -> Result<Refresh, DbError> {
        let next = db.change_cursor().await?;
        let Some(cursor) = self.cursor else {
            // Streamed into views: no table-sized vector of rows in between.
            let strings = &mut self.strings;
            let mut vols = vec![];
            let stream = db.stream_volumes(None, None);
            futures_util::pin_mut!(stream);
            while let Some(r) = stream.try_next().await? {
                vols.push(Arc::new(VolumeView::from_row(r, strings)));
            }
            let mut snaps = vec![];
            let stream = db.stream_snapshots();
            futures_util::pin_mut!(stream);
            while let Some(r) = stream.try_next().await? {
                snaps.push(Arc::new(SnapshotView::from_row(r, strings)));
            }
            let mut jobs = db.active_jobs().await?;
            let recent = db.list_jobs(None, JOBS_KEPT as i64).await?;
            let rows_read = vols.len() + snaps.len() + jobs.len() + recent.len();
            jobs.extend(recent.into_iter().filter(|j| !active(j)));
            self.volumes = Table::load(vols);
            self.snapshots = Table::load(snaps);
            self.set_jobs(jobs);
            self.cursor = Some(next);
            return Ok(Refresh {
                full: true,
                rows_read,
            });
        };
        let vols = db.volumes_since(cursor).await?;
        let snaps = db.snapshots_since(cursor).await?;
        let jobs = db.jobs_since(cursor).await?;
        let rows_read = vols.len() + snaps.len() + jobs.len();
        let strings = &mut self.strings;
        self.volumes.patch(
            vols.into_iter()
                .map(|v| {
                    let gone = v.deleted_at.is_some();
                    (
                        v.id.clone(),
                        (!gone).then(|| VolumeView::from_row(v, strings)),
                    )
                })
                .collect(),
        );
        self.snapshots.patch(
            snaps
                .into_iter()
                .map(|s| {
                    let gone = s.deleted_at.is_some();
                    (
                        s.id.clone(),
                        (!gone).then(|| SnapshotView::from_row(s, strings)),
                    )
                })
                .collect(),
        );
        if !jobs.is_empty() {
            let mut all: Vec<JobRow> = self
                .job_rows
                .iter()
                .filter(|j| !jobs.iter().any(|n| n.id == j.id))
                .cloned()
                .collect();
            all.extend(jobs);
            self.set_jobs(all);
        }
        self.cursor = Some(next);
        Ok(Refresh {
            full: false,
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
    }

    impl Keyed for R {
        fn id(&self) -> &str {
            &self.id
        }
    }

    fn r(id: &str, v: u32) -> R {
        R { id: id.into(), v }
    }

    #[test]
    fn patch_upserts_and_removes_keeping_the_index_true() {
        let mut t = Table::load(vec![
            Arc::new(r("a", 1)),
            Arc::new(r("b", 1)),
            Arc::new(r("c", 1)),
        ]);
        let before = t.rows().clone();
        assert!(t.patch(vec![
            ("a".into(), None),
            ("d".into(), Some(r("d", 1))),
            ("c".into(), Some(r("c", 3))),
        ]));
        assert_eq!(before.len(), 3, "the published picture is not touched");
        let mut ids: Vec<(String, u32)> = t.rows().iter().map(|x| (x.id.clone(), x.v)).collect();
        ids.sort();
        assert_eq!(ids, vec![("b".into(), 1), ("c".into(), 3), ("d".into(), 1)]);
        for (k, i) in &t.index {
            assert_eq!(key(&t.rows()[*i].id), *k);
        }
        assert!(!t.patch(vec![]));
    }

    #[test]
    fn uuid_keys_are_exact_and_others_hash_apart() {
        let u = "7f3c9a10-aaaa-4000-8000-000000000000";
        assert_eq!(
            key(u),
            uuid::Uuid::parse_str(u).unwrap_or_default().as_u128()
        );
        assert_ne!(key("job-1"), key("job-2"));
    }
}
