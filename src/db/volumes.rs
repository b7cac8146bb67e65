//! The `volumes` table (snapshots: `snapshots.rs`). Statuses are Cinder's words, stored as text; every
//! status change that could race is a conditional update (`... WHERE status IN (...)`), so two
//! deleters cannot both win, as in Cinder.

use sqlx::FromRow;

pub use super::snapshots::{NewSnapshot, SnapshotRow};
pub(crate) use super::snapshots::{SNAPSHOT_COLUMNS, insert_snapshot};
use super::words::Status;
use super::{Db, DbError, now_ms, q};

#[derive(Debug, Clone, FromRow, PartialEq)]
pub struct VolumeRow {
    pub id: String,
    pub name: String,
    pub size_bytes: i64,
    pub status: Status,
    pub status_reason: Option<String>,
    pub backend: String,
    pub host: Option<String>,
    pub source_snapshot_id: Option<String>,
    pub source_volume_id: Option<String>,
    pub clone_depth: i64,
    pub created_at: i64,
    pub updated_at: i64,
    pub deleted_at: Option<i64>,
    /// The snapshot it was flattened from (`volume verify`'s default once it is flat).
    pub flattened_from: Option<String>,
}

/// A volume row about to be written.
pub struct NewVolume<'a> {
    pub id: &'a str,
    pub name: &'a str,
    pub size_bytes: i64,
    pub status: Status,
    pub backend: &'a str,
    /// The owner (`host@backend` or `cluster@backend`).
    pub host: &'a str,
    pub source_snapshot_id: Option<&'a str>,
    pub source_volume_id: Option<&'a str>,
    pub clone_depth: i64,
    /// Takes more than one attachment at a time (`volume create --multiattach`).
    pub multiattach: bool,
}

pub(crate) const VOLUME_COLUMNS: &str = "id, name, size_bytes, status, status_reason, backend, host, \
     source_snapshot_id, source_volume_id, clone_depth, created_at, updated_at, deleted_at, \
     flattened_from";

/// A lookup that matches an id, else a unique name, as the `openstack` CLI does.
#[derive(Debug)]
pub enum Found<T> {
    One(T),
    None,
    /// Several rows share the name: the ids, so the operator can pick one.
    Ambiguous(Vec<String>),
}

impl Db {
    pub async fn insert_volume(&self, v: &NewVolume<'_>) -> Result<(), DbError> {
        let mut conn = self.pool.acquire().await.map_err(q("insert volume"))?;
        insert_volume(&mut conn, v).await
    }

    /// Volumes not deleted, newest first; `backend` narrows to one backend, `host` to one
    /// owner (`host@backend`, `cluster@backend`, or a bare host or cluster name).
    pub async fn list_volumes(
        &self,
        backend: Option<&str>,
        host: Option<&str>,
    ) -> Result<Vec<VolumeRow>, DbError> {
        use futures_util::TryStreamExt;
        self.stream_volumes(backend, host).try_collect().await
    }

    /// Like [`Db::list_volumes`], as the database returns the rows (for listings of any size).
    pub fn stream_volumes<'a>(
        &'a self,
        backend: Option<&'a str>,
        host: Option<&'a str>,
    ) -> impl futures_util::Stream<Item = Result<VolumeRow, DbError>> + Send + 'a {
        use futures_util::TryStreamExt;
        let sql = format!(
            "SELECT {VOLUME_COLUMNS} FROM volumes WHERE deleted_at IS NULL \
             AND ($1 IS NULL OR backend = $1) AND ($2 IS NULL OR host = $2 OR host LIKE $3) \
             ORDER BY created_at DESC, id"
        );
        sqlx::query_as::<_, VolumeRow>(sqlx::AssertSqlSafe(sql))
            .bind(backend)
            .bind(host)
            .bind(host.map(|h| format!("{}@%", h.replace(['%', '_'], ""))))
            .fetch(&self.pool)
            .map_err(q("list volumes"))
    }

    /// (last update, row count): changes whenever any volume row does; lets a reader skip
    /// reloading a large table that did not change.
    pub async fn volumes_version(&self) -> Result<(i64, i64), DbError> {
        sqlx::query_as::<_, (i64, i64)>(
            "SELECT COALESCE(MAX(updated_at), 0), COUNT(*) FROM volumes",
        )
        .fetch_one(&self.pool)
        .await
        .map_err(q("volumes version"))
    }

    /// Benchmark data as a cloud has it: `n` volumes and one nightly snapshot of each.
    pub async fn bench_fill_volumes_and_snapshots(&self, n: usize) -> Result<(), DbError> {
        self.bench_fill_volumes(n).await?;
        let mut tx = self.pool.begin().await.map_err(q("begin fill"))?;
        let now = now_ms();
        for i in 0..n {
            sqlx::query(
                "INSERT INTO snapshots (id, name, volume_id, size_bytes, status, backend, host, purpose, created_at, updated_at) \
                 VALUES ($1, $2, $3, $4, 'available', 'file0', 'bench@file0', 'user', $5, $5)",
            )
            .bind(format!("{i:08x}-5555-4000-8000-{i:012x}"))
            .bind(format!("vol-{i}-nightly"))
            .bind(format!("{i:08x}-0000-4000-8000-{i:012x}"))
            .bind(((i % 100) as i64 + 1) << 30)
            .bind(now - i as i64)
            .execute(&mut *tx)
            .await
            .map_err(q("fill snapshots"))?;
        }
        tx.commit().await.map_err(q("commit fill"))?;
        Ok(())
    }

    /// Benchmark data: `n` available volumes named `vol-N`, written in one transaction.
    pub async fn bench_fill_volumes(&self, n: usize) -> Result<(), DbError> {
        let mut tx = self.pool.begin().await.map_err(q("begin fill"))?;
        let now = now_ms();
        for i in 0..n {
            let id = format!("{i:08x}-0000-4000-8000-{i:012x}");
            sqlx::query(
                "INSERT INTO volumes (id, name, size_bytes, status, backend, host, clone_depth, created_at, updated_at) \
                 VALUES ($1, $2, $3, 'available', 'file0', 'bench@file0', 0, $4, $4)",
            )
            .bind(&id)
            .bind(format!("vol-{i}"))
            .bind(((i % 100) as i64 + 1) << 30)
            .bind(now - i as i64)
            .execute(&mut *tx)
            .await
            .map_err(q("fill volumes"))?;
        }
        tx.commit().await.map_err(q("commit fill"))?;
        Ok(())
    }

    pub async fn get_volume(&self, id: &str) -> Result<Option<VolumeRow>, DbError> {
        let sql = format!("SELECT {VOLUME_COLUMNS} FROM volumes WHERE id = $1");
        sqlx::query_as::<_, VolumeRow>(sqlx::AssertSqlSafe(sql))
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .map_err(q("get volume"))
    }

    /// Finds a live volume by id, else by unique name.
    pub async fn find_volume(&self, key: &str) -> Result<Found<VolumeRow>, DbError> {
        let sql = format!(
            "SELECT {VOLUME_COLUMNS} FROM volumes WHERE deleted_at IS NULL AND (id = $1 OR name = $1) \
             ORDER BY created_at"
        );
        let rows = sqlx::query_as::<_, VolumeRow>(sqlx::AssertSqlSafe(sql))
            .bind(key)
            .fetch_all(&self.pool)
            .await
            .map_err(q("find volume"))?;
        Ok(pick(rows, key, |r| &r.id))
    }

    /// Sets a volume's status only if it is in one of `from` (empty: any). True if it changed.
    pub async fn set_volume_status(
        &self,
        id: &str,
        from: &[Status],
        to: Status,
        reason: Option<&str>,
    ) -> Result<bool, DbError> {
        self.set_status("volumes", id, from, to, reason).await
    }

    /// The one conditional status update behind volumes and snapshots.
    pub(crate) async fn set_status(
        &self,
        table: &'static str,
        id: &str,
        from: &[Status],
        to: Status,
        reason: Option<&str>,
    ) -> Result<bool, DbError> {
        let guard = if from.is_empty() {
            String::new()
        } else {
            let marks: Vec<String> = (0..from.len()).map(|i| format!("${}", i + 5)).collect();
            format!(" AND status IN ({})", marks.join(", "))
        };
        let fence = self.fence_sql(5 + from.len());
        let sql = format!(
            "UPDATE {table} SET status = $1, status_reason = $2, updated_at = $3 \
             WHERE id = $4 AND deleted_at IS NULL{guard}{fence}"
        );
        let r = self
            .write("set status", || async {
                let mut query = sqlx::query(sqlx::AssertSqlSafe(sql.clone()))
                    .bind(to)
                    .bind(reason.map(str::to_string))
                    .bind(now_ms())
                    .bind(id.to_string());
                for f in from {
                    query = query.bind(*f);
                }
                self.bind_fence(query)
                    .execute(&self.pool)
                    .await
                    .map_err(q("set status"))
            })
            .await?;
        if r.rows_affected() == 0 {
            self.check_fence().await?;
        }
        Ok(r.rows_affected() > 0)
    }

    /// One fenced write of a volume or snapshot row by id: `set` uses `$1` and `$2`
    /// (the value and the time), the id is `$3`.
    pub(crate) async fn update_row<T>(
        &self,
        what: &'static str,
        table: &'static str,
        set: &str,
        value: T,
        id: &str,
    ) -> Result<(), DbError>
    where
        T: 'static + Send + Clone + sqlx::Encode<'static, sqlx::Any> + sqlx::Type<sqlx::Any>,
    {
        let sql = format!(
            "UPDATE {table} SET {set} WHERE id = $3{}",
            self.fence_sql(4)
        );
        let r = self
            .write(what, || async {
                let query = sqlx::query(sqlx::AssertSqlSafe(sql.clone()))
                    .bind(value.clone())
                    .bind(now_ms())
                    .bind(id.to_string());
                self.bind_fence(query)
                    .execute(&self.pool)
                    .await
                    .map_err(q(what))
            })
            .await?;
        if r.rows_affected() == 0 {
            self.check_fence().await?;
        }
        Ok(())
    }

    /// After a flatten (or a clone flattened at once): no parent, depth 0.
    pub async fn set_volume_flattened(&self, id: &str) -> Result<(), DbError> {
        self.update_row(
            "set volume flattened",
            "volumes",
            "clone_depth = $1, flattened_from = COALESCE(source_snapshot_id, flattened_from), \
             source_snapshot_id = NULL, updated_at = $2",
            0i64,
            id,
        )
        .await
    }

    /// A migration's switch: the volumes of `moved` (one, or a parent with the clones that
    /// moved with it) are now on `backend`, owned by `owner`, in one transaction, so a crash
    /// leaves all of them on one side. Each volume's `bool` says it arrived flat (a copy read
    /// it through a parent that did not move): it drops its parent. Their snapshots move with
    /// them (a live migration keeps them in the image, a copy carries them).
    pub async fn move_volumes(
        &self,
        moved: &[(&str, bool)],
        backend: &str,
        owner: &str,
    ) -> Result<(), DbError> {
        let what = "move volumes";
        let unmatched = self
            .write(what, || async {
                let mut tx = self.pool.begin().await.map_err(q(what))?;
                let now = now_ms();
                for &(id, flat) in moved {
                    let layering = if flat {
                        ", source_snapshot_id = NULL, clone_depth = 0, flattened_from = NULL"
                    } else {
                        ""
                    };
                    // Each statement sets backend ($1), host ($2), updated_at ($3) where $4
                    // names the volume.
                    for (is_volume, sql) in [
                        (false, format!(
                            "UPDATE snapshots SET backend = $1, host = $2, updated_at = $3 \
                             WHERE volume_id = $4 AND deleted_at IS NULL{}",
                            self.fence_sql(5)
                        )),
                        (true, format!(
                            "UPDATE volumes SET backend = $1, host = $2{layering}, updated_at = $3 \
                             WHERE id = $4{}",
                            self.fence_sql(5)
                        )),
                    ] {
                        let query = sqlx::query(sqlx::AssertSqlSafe(sql))
                            .bind(backend.to_string())
                            .bind(owner.to_string())
                            .bind(now)
                            .bind(id.to_string());
                        let r = self
                            .bind_fence(query)
                            .execute(&mut *tx)
                            .await
                            .map_err(q(what))?;
                        if is_volume && r.rows_affected() == 0 {
                            tx.rollback().await.map_err(q(what))?;
                            return Ok(Some(id.to_string()));
                        }
                    }
                }
                tx.commit().await.map_err(q(what))?;
                Ok(None)
            })
            .await?;
        if let Some(id) = unmatched {
            // Fenced (the claim is gone), or the volume's row is gone: nothing was written.
            self.check_fence().await?;
            return Err(DbError::Gone { what, id });
        }
        Ok(())
    }

    /// The sum of the sizes of a backend's live volumes: Cinder's `allocated_capacity_gb`,
    /// the provisioned figure of a pool that holds only this backend's volumes.
    pub async fn provisioned_bytes(&self, backend: &str) -> Result<u64, DbError> {
        let sum: Option<i64> = sqlx::query_scalar(
            "SELECT CAST(SUM(size_bytes) AS BIGINT) FROM volumes WHERE backend = $1 AND deleted_at IS NULL",
        )
        .bind(backend)
        .fetch_one(&self.pool)
        .await
        .map_err(q("provisioned bytes"))?;
        Ok(sum.unwrap_or(0).max(0) as u64)
    }

    pub async fn set_volume_size(&self, id: &str, size: i64) -> Result<(), DbError> {
        self.update_row(
            "set volume size",
            "volumes",
            "size_bytes = $1, updated_at = $2",
            size,
            id,
        )
        .await
    }

    pub async fn mark_volume_deleted(&self, id: &str) -> Result<(), DbError> {
        self.mark_deleted("volumes", id).await
    }

    /// Rows are never removed: a deleted volume or snapshot keeps its history for `events`.
    pub(crate) async fn mark_deleted(&self, table: &'static str, id: &str) -> Result<(), DbError> {
        self.update_row(
            "mark deleted",
            table,
            "status = 'deleted', status_reason = NULL, deleted_at = $1, updated_at = $2",
            now_ms(),
            id,
        )
        .await
    }

    /// Live volumes cloned from a snapshot and not yet flattened: they depend on it.
    /// The clones that read from volume `id` through its snapshots, and theirs, parents
    /// before their clones: what moves with it when a migration keeps the layering.
    pub async fn descendants(&self, id: &str) -> Result<Vec<VolumeRow>, DbError> {
        let mut family = vec![];
        let mut next = std::collections::VecDeque::from([id.to_string()]);
        while let Some(id) = next.pop_front() {
            for s in self.snapshots_of(&id).await? {
                for c in self.clones_of_snapshot(&s.id).await? {
                    next.push_back(c.id.clone());
                    family.push(c);
                }
            }
        }
        Ok(family)
    }

    pub async fn clones_of_snapshot(&self, snapshot_id: &str) -> Result<Vec<VolumeRow>, DbError> {
        let sql = format!(
            "SELECT {VOLUME_COLUMNS} FROM volumes WHERE deleted_at IS NULL AND source_snapshot_id = $1 ORDER BY created_at"
        );
        sqlx::query_as::<_, VolumeRow>(sqlx::AssertSqlSafe(sql))
            .bind(snapshot_id)
            .fetch_all(&self.pool)
            .await
            .map_err(q("clones of snapshot"))
    }

    /// Volumes (and snapshots) of an owner left in a transitional state: crash leftovers.
    pub async fn transitional_volumes(&self, owner: &str) -> Result<Vec<VolumeRow>, DbError> {
        let sql = format!(
            "SELECT {VOLUME_COLUMNS} FROM volumes WHERE deleted_at IS NULL AND host = $1 \
             AND status IN ('creating', 'deleting', 'extending', 'maintenance')"
        );
        sqlx::query_as::<_, VolumeRow>(sqlx::AssertSqlSafe(sql))
            .bind(owner)
            .fetch_all(&self.pool)
            .await
            .map_err(q("transitional volumes"))
    }
}

pub(crate) async fn insert_volume(
    conn: &mut sqlx::AnyConnection,
    v: &NewVolume<'_>,
) -> Result<(), DbError> {
    let now = now_ms();
    sqlx::query(
        "INSERT INTO volumes (id, name, size_bytes, status, backend, source_snapshot_id, \
             source_volume_id, clone_depth, created_at, updated_at, host, multiattach) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $9, $10, $11)",
    )
    .bind(v.id)
    .bind(v.name)
    .bind(v.size_bytes)
    .bind(v.status)
    .bind(v.backend)
    .bind(v.source_snapshot_id)
    .bind(v.source_volume_id)
    .bind(v.clone_depth)
    .bind(now)
    .bind(v.host)
    .bind(i64::from(v.multiattach))
    .execute(conn)
    .await
    .map_err(q("insert volume"))?;
    Ok(())
}

/// An exact id wins over names; otherwise a name must be unique.
pub(crate) fn pick<T>(mut rows: Vec<T>, key: &str, id: impl Fn(&T) -> &str) -> Found<T> {
    if let Some(pos) = rows.iter().position(|r| id(r) == key) {
        return Found::One(rows.swap_remove(pos));
    }
    match rows.len() {
        0 => Found::None,
        1 => Found::One(rows.remove(0)),
        _ => Found::Ambiguous(rows.iter().map(|r| id(r).to_string()).collect()),
    }
}
