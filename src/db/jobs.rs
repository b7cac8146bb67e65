//! The `jobs` table: long storage work asked for by an operator and run by the service that
//! owns the target's backend. Progress is written here (throttled) so any console can show it.

use sqlx::FromRow;

use super::{Db, DbError, q};

#[derive(Debug, Clone, FromRow, PartialEq)]
pub struct JobRow {
    pub id: String,
    pub kind: String,
    pub target_id: String,
    pub backend: String,
    pub state: String,
    pub params: String,
    pub bytes_done: i64,
    pub bytes_total: i64,
    pub error: Option<String>,
    pub requested_by: String,
    pub claimed_by: Option<String>,
    pub cancel_requested: i64,
    pub created_at: i64,
    pub started_at: Option<i64>,
    pub updated_at: i64,
    pub finished_at: Option<i64>,
}

const JOB_COLUMNS: &str = "id, kind, target_id, backend, state, params, bytes_done, bytes_total, \
     error, requested_by, claimed_by, cancel_requested, created_at, started_at, updated_at, finished_at";

impl Db {
    /// Jobs newest first; `target` narrows to one volume or snapshot.
    pub async fn list_jobs(
        &self,
        target: Option<&str>,
        limit: i64,
    ) -> Result<Vec<JobRow>, DbError> {
        let sql = format!(
            "SELECT {JOB_COLUMNS} FROM jobs WHERE ($1 IS NULL OR target_id = $1) \
             ORDER BY created_at DESC, id LIMIT $2"
        );
        sqlx::query_as::<_, JobRow>(sqlx::AssertSqlSafe(sql))
            .bind(target)
            .bind(limit)
            .fetch_all(&self.pool)
            .await
            .map_err(q("list jobs"))
    }

    pub async fn get_job(&self, id: &str) -> Result<Option<JobRow>, DbError> {
        let sql = format!("SELECT {JOB_COLUMNS} FROM jobs WHERE id = $1");
        sqlx::query_as::<_, JobRow>(sqlx::AssertSqlSafe(sql))
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .map_err(q("get job"))
    }
}
