//! The `snapshots` table: as for volumes, every status change that could race is a
//! conditional update.

use sqlx::FromRow;

use super::volumes::{Found, pick};
use super::words::{Purpose, Status};
use super::{Db, DbError, now_ms, q};

#[derive(Debug, Clone, FromRow, PartialEq)]
pub struct SnapshotRow {
    pub id: String,
    pub name: String,
    pub volume_id: String,
    pub size_bytes: i64,
    pub status: Status,
    pub status_reason: Option<String>,
    pub backend: String,
    /// The owner: `host@backend`, or `cluster@backend` for a clustered backend.
    pub host: Option<String>,
    /// `user` or `clone` (made under `volume create --source`, removed with its last clone).
    pub purpose: Purpose,
    pub created_at: i64,
    pub updated_at: i64,
    pub deleted_at: Option<i64>,
}

pub struct NewSnapshot<'a> {
    pub id: &'a str,
    pub name: &'a str,
    pub volume_id: &'a str,
    pub size_bytes: i64,
    pub status: Status,
    pub backend: &'a str,
    pub host: &'a str,
    pub purpose: Purpose,
}

pub(crate) const SNAPSHOT_COLUMNS: &str = "id, name, volume_id, size_bytes, status, status_reason, \
     backend, host, purpose, created_at, updated_at, deleted_at";

impl Db {
    pub async fn insert_snapshot(&self, s: &NewSnapshot<'_>) -> Result<(), DbError> {
        let mut conn = self.pool.acquire().await.map_err(q("insert snapshot"))?;
        insert_snapshot(&mut conn, s).await
    }

    /// Snapshots not deleted; `volume` narrows to one volume; clone snapshots only with `all`.
    pub async fn list_snapshots(
        &self,
        volume: Option<&str>,
        all: bool,
    ) -> Result<Vec<SnapshotRow>, DbError> {
        let sql = format!(
            "SELECT {SNAPSHOT_COLUMNS} FROM snapshots WHERE deleted_at IS NULL \
             AND ($1 IS NULL OR volume_id = $1) AND ($2 = 1 OR purpose = 'user') ORDER BY created_at, id"
        );
        sqlx::query_as::<_, SnapshotRow>(sqlx::AssertSqlSafe(sql))
            .bind(volume)
            .bind(i64::from(all))
            .fetch_all(&self.pool)
            .await
            .map_err(q("list snapshots"))
    }

    /// Every live snapshot, as the database returns them (for tables of any size).
    pub fn stream_snapshots(
        &self,
    ) -> impl futures_util::Stream<Item = Result<SnapshotRow, DbError>> + Send + '_ {
        use futures_util::TryStreamExt;
        let sql = format!(
            "SELECT {SNAPSHOT_COLUMNS} FROM snapshots WHERE deleted_at IS NULL ORDER BY created_at, id"
        );
        sqlx::query_as::<_, SnapshotRow>(sqlx::AssertSqlSafe(sql))
            .fetch(&self.pool)
            .map_err(q("list snapshots"))
    }

    /// Snapshots of a volume, user and clone ones.
    pub async fn snapshots_of(&self, volume_id: &str) -> Result<Vec<SnapshotRow>, DbError> {
        self.list_snapshots(Some(volume_id), true).await
    }

    pub async fn get_snapshot(&self, id: &str) -> Result<Option<SnapshotRow>, DbError> {
        let sql = format!("SELECT {SNAPSHOT_COLUMNS} FROM snapshots WHERE id = $1");
        sqlx::query_as::<_, SnapshotRow>(sqlx::AssertSqlSafe(sql))
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .map_err(q("get snapshot"))
    }

    pub async fn find_snapshot(&self, key: &str) -> Result<Found<SnapshotRow>, DbError> {
        let sql = format!(
            "SELECT {SNAPSHOT_COLUMNS} FROM snapshots WHERE deleted_at IS NULL AND (id = $1 OR name = $1) ORDER BY created_at"
        );
        let rows = sqlx::query_as::<_, SnapshotRow>(sqlx::AssertSqlSafe(sql))
            .bind(key)
            .fetch_all(&self.pool)
            .await
            .map_err(q("find snapshot"))?;
        Ok(pick(rows, key, |r| &r.id))
    }

    pub async fn set_snapshot_status(
        &self,
        id: &str,
        from: &[Status],
        to: Status,
        reason: Option<&str>,
    ) -> Result<bool, DbError> {
        self.set_status("snapshots", id, from, to, reason).await
    }

    pub async fn mark_snapshot_deleted(&self, id: &str) -> Result<(), DbError> {
        self.mark_deleted("snapshots", id).await
    }

    pub async fn transitional_snapshots(&self, owner: &str) -> Result<Vec<SnapshotRow>, DbError> {
        let sql = format!(
            "SELECT {SNAPSHOT_COLUMNS} FROM snapshots WHERE deleted_at IS NULL AND host = $1 \
             AND status IN ('creating', 'deleting')"
        );
        sqlx::query_as::<_, SnapshotRow>(sqlx::AssertSqlSafe(sql))
            .bind(owner)
            .fetch_all(&self.pool)
            .await
            .map_err(q("transitional snapshots"))
    }
}

pub(crate) async fn insert_snapshot(
    conn: &mut sqlx::AnyConnection,
    s: &NewSnapshot<'_>,
) -> Result<(), DbError> {
    let now = now_ms();
    sqlx::query(
        "INSERT INTO snapshots (id, name, volume_id, size_bytes, status, backend, purpose, created_at, updated_at, host) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8, $9)",
    )
    .bind(s.id)
    .bind(s.name)
    .bind(s.volume_id)
    .bind(s.size_bytes)
    .bind(s.status)
    .bind(s.backend)
    .bind(s.purpose)
    .bind(now)
    .bind(s.host)
    .execute(conn)
    .await
    .map_err(q("insert snapshot"))?;
    Ok(())
}
