//! The `backups` table: one row per backup of a volume, with Cinder's statuses (`creating`,
//! `available`, `error`, `deleting`, `error_deleting`). The data is in the backup store
//! (`crate::backup`); the row says what the store holds and what it cost.

use sqlx::FromRow;

use super::volumes::{Found, pick};
use super::words::Status;
use super::{Db, DbError, now_ms, q};

#[derive(Debug, Clone, FromRow, PartialEq, serde::Serialize)]
pub struct BackupRow {
    pub id: String,
    pub name: String,
    /// The volume it was taken of (which may be gone since).
    pub volume_id: String,
    pub size_bytes: i64,
    pub status: Status,
    pub status_reason: Option<String>,
    /// The volume's backend when the backup was taken: a restore goes there by default.
    pub backend: String,
    /// The owner whose service took it (its host holds the store).
    pub host: Option<String>,
    /// The volume's previous backup when this one was asked as incremental.
    pub parent_id: Option<String>,
    /// Bytes of the volume that hold data (the rest are zeros, stored as nothing).
    pub data_bytes: i64,
    /// Bytes the backup read from the volume: its data, or (incremental, rbd) only what
    /// changed since the earlier backup's snapshot.
    pub read_bytes: i64,
    /// Bytes this backup added to the store (chunks no earlier backup held).
    pub stored_bytes: i64,
    pub created_at: i64,
    pub updated_at: i64,
    pub deleted_at: Option<i64>,
}

pub struct NewBackup<'a> {
    pub id: &'a str,
    pub name: &'a str,
    pub volume_id: &'a str,
    pub size_bytes: i64,
    pub backend: &'a str,
    pub host: &'a str,
    pub parent_id: Option<&'a str>,
}

pub(crate) const BACKUP_COLUMNS: &str = "id, name, volume_id, size_bytes, status, status_reason, \
     backend, host, parent_id, data_bytes, read_bytes, stored_bytes, created_at, updated_at, deleted_at";

pub(crate) async fn insert_backup(
    conn: &mut sqlx::AnyConnection,
    b: &NewBackup<'_>,
) -> Result<(), DbError> {
    let now = now_ms();
    sqlx::query(
        "INSERT INTO backups (id, name, volume_id, size_bytes, status, backend, host, parent_id, \
             created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $9)",
    )
    .bind(b.id)
    .bind(b.name)
    .bind(b.volume_id)
    .bind(b.size_bytes)
    .bind(Status::Creating)
    .bind(b.backend)
    .bind(b.host)
    .bind(b.parent_id)
    .bind(now)
    .execute(conn)
    .await
    .map_err(q("insert backup"))?;
    Ok(())
}

impl Db {
    /// Live backups, newest first; `volume` narrows to one volume's.
    pub async fn list_backups(&self, volume: Option<&str>) -> Result<Vec<BackupRow>, DbError> {
        let sql = format!(
            "SELECT {BACKUP_COLUMNS} FROM backups WHERE deleted_at IS NULL \
             AND ($1 IS NULL OR volume_id = $1) ORDER BY created_at DESC, id"
        );
        sqlx::query_as::<_, BackupRow>(sqlx::AssertSqlSafe(sql))
            .bind(volume)
            .fetch_all(&self.pool)
            .await
            .map_err(q("list backups"))
    }

    pub async fn get_backup(&self, id: &str) -> Result<Option<BackupRow>, DbError> {
        let sql = format!("SELECT {BACKUP_COLUMNS} FROM backups WHERE id = $1");
        sqlx::query_as::<_, BackupRow>(sqlx::AssertSqlSafe(sql))
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .map_err(q("get backup"))
    }

    /// A live backup by id or unique name.
    pub async fn find_backup(&self, key: &str) -> Result<Found<BackupRow>, DbError> {
        let sql = format!(
            "SELECT {BACKUP_COLUMNS} FROM backups WHERE deleted_at IS NULL AND (id = $1 OR name = $1) \
             ORDER BY created_at"
        );
        let rows = sqlx::query_as::<_, BackupRow>(sqlx::AssertSqlSafe(sql))
            .bind(key)
            .fetch_all(&self.pool)
            .await
            .map_err(q("find backup"))?;
        Ok(pick(rows, key, |r| &r.id))
    }

    /// Sets a backup's status only if it is in one of `from` (empty: any). True if it changed.
    pub async fn set_backup_status(
        &self,
        id: &str,
        from: &[Status],
        to: Status,
        reason: Option<&str>,
    ) -> Result<bool, DbError> {
        self.set_status("backups", id, from, to, reason).await
    }

    pub async fn mark_backup_deleted(&self, id: &str) -> Result<(), DbError> {
        self.mark_deleted("backups", id).await
    }

    /// Backups of `owner` in a job's status (`creating`, `deleting`).
    pub async fn transitional_backups(&self, owner: &str) -> Result<Vec<BackupRow>, DbError> {
        let sql = format!(
            "SELECT {BACKUP_COLUMNS} FROM backups WHERE deleted_at IS NULL AND host = $1 \
             AND status IN ('creating', 'deleting')"
        );
        sqlx::query_as::<_, BackupRow>(sqlx::AssertSqlSafe(sql))
            .bind(owner)
            .fetch_all(&self.pool)
            .await
            .map_err(q("transitional backups"))
    }

    /// A backup row as a test or an import makes it: `status` from the start.
    pub async fn insert_backup(&self, b: &NewBackup<'_>, status: Status) -> Result<(), DbError> {
        let mut conn = self.pool.acquire().await.map_err(q("insert backup"))?;
        insert_backup(&mut conn, b).await?;
        self.set_backup_status(b.id, &[], status, None)
            .await
            .map(drop)
    }

    /// What a finished backup holds (its data bytes), read, and added to the store.
    pub async fn set_backup_figures(
        &self,
        id: &str,
        data_bytes: u64,
        read_bytes: u64,
        stored_bytes: u64,
    ) -> Result<(), DbError> {
        self.update_row(
            "set backup figures",
            "backups",
            &format!(
                "data_bytes = $1, read_bytes = {read_bytes}, stored_bytes = {stored_bytes}, updated_at = $2"
            ),
            data_bytes as i64,
            id,
        )
        .await
    }
}
