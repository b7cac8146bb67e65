//! The `volumes` and `snapshots` tables. Statuses are Cinder's words, stored as text.

use sqlx::FromRow;

use super::{Db, DbError, now_ms, q};

#[derive(Debug, Clone, FromRow, PartialEq)]
pub struct VolumeRow {
    pub id: String,
    pub name: String,
    pub size_bytes: i64,
    pub status: String,
    pub backend: String,
    pub host: Option<String>,
    pub source_snapshot_id: Option<String>,
    pub source_volume_id: Option<String>,
    pub clone_depth: i64,
    pub created_at: i64,
    pub updated_at: i64,
    pub deleted_at: Option<i64>,
}

#[derive(Debug, Clone, FromRow, PartialEq)]
pub struct SnapshotRow {
    pub id: String,
    pub name: String,
    pub volume_id: String,
    pub size_bytes: i64,
    pub status: String,
    pub backend: String,
    pub created_at: i64,
    pub updated_at: i64,
    pub deleted_at: Option<i64>,
}

/// A volume row about to be written.
pub struct NewVolume<'a> {
    pub id: &'a str,
    pub name: &'a str,
    pub size_bytes: i64,
    pub status: &'a str,
    pub backend: &'a str,
    pub source_snapshot_id: Option<&'a str>,
    pub source_volume_id: Option<&'a str>,
    pub clone_depth: i64,
}

const VOLUME_COLUMNS: &str = "id, name, size_bytes, status, backend, host, source_snapshot_id, \
     source_volume_id, clone_depth, created_at, updated_at, deleted_at";

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
        let now = now_ms();
        sqlx::query(
            "INSERT INTO volumes (id, name, size_bytes, status, backend, source_snapshot_id, \
                 source_volume_id, clone_depth, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $9)",
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
        .execute(&self.pool)
        .await
        .map_err(q("insert volume"))?;
        Ok(())
    }

    /// Volumes not deleted, newest first; `backend` narrows to one backend.
    pub async fn list_volumes(&self, backend: Option<&str>) -> Result<Vec<VolumeRow>, DbError> {
        let sql = format!(
            "SELECT {VOLUME_COLUMNS} FROM volumes WHERE deleted_at IS NULL \
             AND ($1 IS NULL OR backend = $1) ORDER BY created_at DESC, id"
        );
        sqlx::query_as::<_, VolumeRow>(sqlx::AssertSqlSafe(sql))
            .bind(backend)
            .fetch_all(&self.pool)
            .await
            .map_err(q("list volumes"))
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

    pub async fn snapshots_of(&self, volume_id: &str) -> Result<Vec<SnapshotRow>, DbError> {
        sqlx::query_as::<_, SnapshotRow>(
            "SELECT id, name, volume_id, size_bytes, status, backend, created_at, updated_at, deleted_at \
             FROM snapshots WHERE deleted_at IS NULL AND volume_id = $1 ORDER BY created_at",
        )
        .bind(volume_id)
        .fetch_all(&self.pool)
        .await
        .map_err(q("list snapshots"))
    }
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
