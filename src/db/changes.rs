//! Incremental reads: rows changed since a cursor, by their change stamps (see the migration
//! `change_stamps`). A reader takes the next cursor *before* it reads, so a row written while
//! it reads is read again next time rather than missed.

use super::jobs::JOB_COLUMNS;
use super::volumes::{SNAPSHOT_COLUMNS, VOLUME_COLUMNS};
use super::{Db, DbError, Engine, JobRow, SnapshotRow, VolumeRow, q};

/// The PostgreSQL channel writers notify (see the `change_stamps` migration); the payload is
/// the table's name.
pub const CHANNEL: &str = "ember_changes";

/// Reads of one table since a cursor, as typed rows.
impl Db {
    /// A connection listening for change notifications, if this engine can push (PostgreSQL);
    /// None otherwise, or when it cannot be made (the caller polls).
    pub async fn listen_changes(&self) -> Option<sqlx::postgres::PgListener> {
        if self.engine != Engine::Postgres {
            return None;
        }
        let connect = async {
            let mut l = sqlx::postgres::PgListener::connect(self.url()).await?;
            // A lost connection is reported at once (`try_recv` gives `Ok(None)`), not after
            // sqlx has reconnected: its listener pool has no timeout, so with the database down
            // that would wait for the whole outage, and the console would not say it is away.
            l.eager_reconnect(false);
            l.listen(CHANNEL).await?;
            Ok::<_, sqlx::Error>(l)
        };
        match tokio::time::timeout(super::BUSY_TIMEOUT, connect).await {
            Ok(Ok(l)) => Some(l),
            Ok(Err(e)) => {
                tracing::warn!("no change notifications from the database ({e}): polling instead");
                None
            }
            Err(_) => {
                tracing::warn!(
                    "no change notifications from the database (no answer): polling instead"
                );
                None
            }
        }
    }

    /// Where the next incremental read starts: rows stamped at or after it are new to a reader
    /// that has read everything before taking it.
    pub async fn change_cursor(&self) -> Result<i64, DbError> {
        let sql = match self.engine {
            Engine::Sqlite => "SELECT value + 1 FROM change_counter WHERE id = 1",
            Engine::Postgres => {
                "SELECT CAST(CAST(pg_snapshot_xmin(pg_current_snapshot()) AS TEXT) AS BIGINT)"
            }
        };
        sqlx::query_scalar::<_, i64>(sql)
            .fetch_one(&self.pool)
            .await
            .map_err(q("read change cursor"))
    }

    /// Volumes written at or after `cursor`, deleted ones included (so a reader drops them).
    pub async fn volumes_since(&self, cursor: i64) -> Result<Vec<VolumeRow>, DbError> {
        let sql = format!("SELECT {VOLUME_COLUMNS} FROM volumes WHERE stamp >= $1");
        sqlx::query_as::<_, VolumeRow>(sqlx::AssertSqlSafe(sql))
            .bind(cursor)
            .fetch_all(&self.pool)
            .await
            .map_err(q("volumes since"))
    }

    /// Snapshots written at or after `cursor`, deleted ones included.
    pub async fn snapshots_since(&self, cursor: i64) -> Result<Vec<SnapshotRow>, DbError> {
        let sql = format!("SELECT {SNAPSHOT_COLUMNS} FROM snapshots WHERE stamp >= $1");
        sqlx::query_as::<_, SnapshotRow>(sqlx::AssertSqlSafe(sql))
            .bind(cursor)
            .fetch_all(&self.pool)
            .await
            .map_err(q("snapshots since"))
    }

    /// Jobs written at or after `cursor`.
    pub async fn jobs_since(&self, cursor: i64) -> Result<Vec<JobRow>, DbError> {
        let sql = format!("SELECT {JOB_COLUMNS} FROM jobs WHERE stamp >= $1");
        sqlx::query_as::<_, JobRow>(sqlx::AssertSqlSafe(sql))
            .bind(cursor)
            .fetch_all(&self.pool)
            .await
            .map_err(q("jobs since"))
    }

    /// Every unfinished job, however old (the newest-N list may not reach them).
    pub async fn active_jobs(&self) -> Result<Vec<JobRow>, DbError> {
        let sql = format!(
            "SELECT {JOB_COLUMNS} FROM jobs WHERE state IN {} ORDER BY created_at DESC, id",
            super::jobs::ACTIVE
        );
        sqlx::query_as::<_, JobRow>(sqlx::AssertSqlSafe(sql))
            .fetch_all(&self.pool)
            .await
            .map_err(q("active jobs"))
    }
}
