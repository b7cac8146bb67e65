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

use crate::db::{Db, DbError, EventRow, JobKind};

use super::snapshot::EventView;
use super::view::{Interner, JobView, SnapshotView, VolumeView};

/// How many finished jobs the model keeps (unfinished ones are always kept).
pub const JOBS_KEPT: usize = 500;
/// How many audit events the model keeps (the Events view's reach; `ember events` reads all).
pub const EVENTS_KEPT: usize = 1000;

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

    /// Replaces rows by position (before the table is published).
    fn replace(&mut self, updates: Vec<(usize, T)>) {
        if updates.is_empty() {
            return;
        }
        let mut rows: Vec<Arc<T>> = self.rows.as_ref().clone();
        for (i, r) in updates {
            if let Some(slot) = rows.get_mut(i) {
                *slot = Arc::new(r);
            }
        }
        self.rows = Arc::new(rows);
    }

    pub fn rows(&self) -> &Arc<Vec<Arc<T>>> {
        &self.rows
    }

    /// The row of an id, if the table has it.
    pub fn get(&self, id: &str) -> Option<&Arc<T>> {
        self.index.get(&key(id)).and_then(|i| self.rows.get(*i))
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
    /// Newest first: every unfinished job and the newest finished ones, as the console draws
    /// them (who a job waits for is read from these too).
    pub jobs: Arc<Vec<JobView>>,
    /// The audit log's newest events, newest first (the Events view, the Overview).
    pub events: Arc<Vec<EventView>>,
    /// Live backups, newest first: a small table, read whole when a backup job changed.
    pub backups: Arc<Vec<super::snapshot::BackupView>>,
    /// Live attachments, oldest first; each volume's count is in its row's `attached`.
    pub attachments: Arc<Vec<crate::db::AttachmentRow>>,
    /// Names of ids the tables no longer hold (deleted volumes and snapshots), learnt from the
    /// database once; ids that are neither (a service's host) are remembered as unnamed.
    names: HashMap<String, String>,
    unnamed: std::collections::HashSet<String>,
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

    /// Keeps `jobs` in order, each target named as the tables name it now.
    fn set_jobs(&mut self, jobs: Vec<JobView>) {
        let jobs = order_jobs(jobs)
            .into_iter()
            .map(|j| JobView {
                target_name: self.name_of(&j.target_id),
                ..j
            })
            .collect();
        self.jobs = Arc::new(jobs);
    }

    /// Names the parent snapshots of these clones.
    fn name_parents_of(&mut self, ids: &[String]) {
        let updates: Vec<(usize, VolumeView)> = ids
            .iter()
            .filter_map(|id| {
                let i = *self.volumes.index.get(&key(id))?;
                let v = self.volumes.rows.get(i)?;
                with_parent_name(v, &self.volumes, &self.snapshots, &mut self.strings)
                    .map(|n| (i, n))
            })
            .collect();
        self.volumes.replace(updates);
    }

    /// Names the parent snapshot of every clone not named yet (after a full read).
    fn name_parents(&mut self) {
        let updates: Vec<(usize, VolumeView)> = self
            .volumes
            .rows
            .iter()
            .enumerate()
            .filter(|(_, v)| v.parent_name.is_none())
            .filter_map(|(i, v)| {
                with_parent_name(v, &self.volumes, &self.snapshots, &mut self.strings)
                    .map(|n| (i, n))
            })
            .collect();
        self.volumes.replace(updates);
    }

    /// What an operator calls a volume or snapshot id: the volume's name, or
    /// `volume@snapshot` as `rbd` writes it.
    pub fn name_of(&self, id: &str) -> Option<String> {
        if let Some(v) = self.volumes.get(id) {
            return Some(v.name.to_string());
        }
        if let Some(s) = self.snapshots.get(id) {
            let of = self
                .volumes
                .get(&s.volume_id)
                .map(|v| v.name.to_string())
                .or_else(|| self.names.get(&*s.volume_id).cloned())
                .unwrap_or_else(|| "?".into());
            return Some(format!("{of}@{}", s.name));
        }
        self.names.get(id).cloned()
    }

    /// Asks the database once for the names of ids the tables do not hold.
    async fn learn_names<'a>(
        &mut self,
        db: &Db,
        ids: impl Iterator<Item = &'a str>,
    ) -> Result<(), DbError> {
        let mut missing: Vec<String> = ids
            .filter(|id| !self.unnamed.contains(*id) && self.name_of(id).is_none())
            .map(String::from)
            .collect();
        missing.sort();
        missing.dedup();
        if missing.is_empty() {
            return Ok(());
        }
        let found = db.target_names(&missing).await?;
        for id in missing {
            match found.get(&id) {
                Some(n) => {
                    self.names.insert(id, n.clone());
                }
                None => {
                    self.unnamed.insert(id);
                }
            }
        }
        Ok(())
    }

    /// Backup rows change only under backup jobs: read whole after one changed.
    async fn read_backups(&mut self, db: &Db) -> Result<(), DbError> {
        let rows = db.list_backups(None).await?;
        self.backups = Arc::new(rows.into_iter().map(Into::into).collect());
        Ok(())
    }

    /// Attachments change only with a write to their volume's row: read whole after a
    /// volume changed, and each volume's count set where it differs.
    async fn read_attachments(&mut self, db: &Db) -> Result<(), DbError> {
        let rows = db.list_attachments().await?;
        let mut count: HashMap<u128, u16> = HashMap::new();
        for a in &rows {
            *count.entry(key(&a.volume_id)).or_default() += 1;
        }
        let updates: Vec<(usize, VolumeView)> = self
            .volumes
            .rows
            .iter()
            .enumerate()
            .filter_map(|(i, v)| {
                let n = count.get(&key(&v.id)).copied().unwrap_or(0);
                (v.attached != n).then(|| {
                    let mut v = VolumeView::clone(v);
                    v.attached = n;
                    (i, v)
                })
            })
            .collect();
        self.volumes.replace(updates);
        self.attachments = Arc::new(rows);
        Ok(())
    }

    /// Takes in events read newest first, keeping the newest [`EVENTS_KEPT`].
    async fn add_events(&mut self, db: &Db, rows: Vec<EventRow>) -> Result<(), DbError> {
        if rows.is_empty() {
            return Ok(());
        }
        self.learn_names(db, rows.iter().filter_map(|e| e.target.as_deref()))
            .await?;
        let mut all: Vec<EventView> = rows
            .into_iter()
            .map(|e| {
                let name = e.target.as_deref().and_then(|t| self.name_of(t));
                EventView {
                    target_name: name,
                    ..EventView::from(e)
                }
            })
            .collect();
        all.extend(self.events.iter().cloned());
        all.truncate(EVENTS_KEPT);
        self.events = Arc::new(all);
        Ok(())
    }

    fn last_event_id(&self) -> i64 {
        self.events.first().map_or(0, |e| e.id)
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
            jobs.extend(recent.into_iter().filter(|j| !j.state.is_active()));
            self.volumes = Table::load(vols);
            self.snapshots = Table::load(snaps);
            self.name_parents();
            self.names.clear();
            self.unnamed.clear();
            self.learn_names(db, jobs.iter().map(|j| j.target_id.as_str()))
                .await?;
            self.set_jobs(jobs.iter().map(JobView::from).collect());
            let events = db.events_after(0, EVENTS_KEPT as i64).await?;
            self.events = Arc::new(vec![]);
            self.add_events(db, events).await?;
            self.read_backups(db).await?;
            self.read_attachments(db).await?;
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
        let changed_snapshots = self.snapshots.patch(
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
        let clones: Vec<String> = vols
            .iter()
            .filter(|v| v.deleted_at.is_none() && v.source_snapshot_id.is_some())
            .map(|v| v.id.clone())
            .collect();
        let changed_volumes = self.volumes.patch(
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
        // The changed clones' parents, named from the patched tables (a parent that came in
        // this same read included): the work follows the changes, not the table's size.
        self.name_parents_of(&clones);
        let events = db
            .events_after(self.last_event_id(), EVENTS_KEPT as i64)
            .await?;
        self.add_events(db, events).await?;
        if changed_volumes {
            self.read_attachments(db).await?;
        }
        if changed_volumes || changed_snapshots {
            // A new row may name an id that had no name before.
            self.unnamed.clear();
        }
        if jobs.iter().any(|j| {
            matches!(
                j.kind,
                JobKind::BackupCreate | JobKind::BackupDelete | JobKind::BackupRestore
            )
        }) {
            self.read_backups(db).await?;
        }
        if !jobs.is_empty() || changed_volumes || changed_snapshots {
            // New jobs, or names of the jobs' targets may have come or gone (a deleted
            // volume's name is then learnt from its kept row).
            let mut all: Vec<JobView> = std::mem::take(&mut self.jobs)
                .iter()
                .filter(|j| !jobs.iter().any(|n| n.id == j.id))
                .cloned()
                .collect();
            all.extend(jobs.iter().map(JobView::from));
            self.learn_names(db, all.iter().map(|j| j.target_id.as_str()))
                .await?;
            self.set_jobs(all);
        }
        self.cursor = Some(next);
        Ok(Refresh {
            full: false,
            rows_read,
        })
    }
}

/// The volume with its parent snapshot's name (`volume@snapshot`), if it is a clone whose
/// parent the tables hold and the name is not set yet; None when nothing changes.
fn with_parent_name(
    v: &VolumeView,
    volumes: &Table<VolumeView>,
    snapshots: &Table<SnapshotView>,
    strings: &mut Interner,
) -> Option<VolumeView> {
    let sid = v.source_snapshot_id.as_deref()?;
    let s = snapshots.get(sid)?;
    let of = volumes.get(&s.volume_id).map_or("?", |p| &p.name);
    let name = strings.get(&format!("{of}@{}", s.name));
    (v.parent_name.as_deref() != Some(&*name)).then(|| VolumeView {
        parent_name: Some(name),
        ..v.clone()
    })
}

/// Newest first; every unfinished job, then the newest finished ones up to [`JOBS_KEPT`].
fn order_jobs(mut jobs: Vec<JobView>) -> Vec<JobView> {
    jobs.sort_by(|a, b| b.created_at.cmp(&a.created_at).then(a.id.cmp(&b.id)));
    let mut finished = 0;
    jobs.retain(|j| {
        if j.state.is_active() {
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
