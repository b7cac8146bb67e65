//! The `jobs` table: long storage work asked for by an operator and run by a service of the
//! target's backend. Progress is written here (throttled) so any console can show it.
//!
//! Claiming is one conditional `UPDATE ... WHERE state = 'queued' RETURNING`: on PostgreSQL the
//! second of two racing claimers re-checks the row after the first commits and gets nothing;
//! SQLite serialises writers. Either way no job runs twice.

use sqlx::FromRow;

use super::volumes::{NewSnapshot, NewVolume, insert_snapshot, insert_volume};
use super::{Db, DbError, now_ms, q};

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
    /// 0 or 1: an operator asked to cancel (possibly from another process).
    pub cancel_requested: i64,
    pub created_at: i64,
    pub started_at: Option<i64>,
    pub updated_at: i64,
    pub finished_at: Option<i64>,
}

pub struct NewJob<'a> {
    pub id: &'a str,
    pub kind: &'a str,
    pub target_id: &'a str,
    pub backend: &'a str,
    pub params: &'a str,
    pub requested_by: &'a str,
}

/// A conditional status change that must hold for the job to be enqueued.
pub struct Transition<'a> {
    pub table: &'static str,
    pub id: &'a str,
    pub from: &'a [&'a str],
    pub to: &'a str,
}

/// Everything one request writes, in one transaction: new rows, a guarded status change, the
/// job itself. Either all of it is written or nothing is.
pub struct Enqueue<'a> {
    pub volume: Option<NewVolume<'a>>,
    pub snapshot: Option<NewSnapshot<'a>>,
    pub transition: Option<Transition<'a>>,
    pub job: NewJob<'a>,
}

/// Jobs that are not finished.
pub const ACTIVE: &str = "('queued', 'running')";

const JOB_COLUMNS: &str = "id, kind, target_id, backend, state, params, bytes_done, bytes_total, \
     error, requested_by, claimed_by, cancel_requested, created_at, started_at, updated_at, finished_at";

impl Db {
    /// Writes a request atomically. Returns false (and writes nothing) when the transition's
    /// status guard did not hold: someone else changed the row first.
    pub async fn enqueue(&self, e: &Enqueue<'_>) -> Result<bool, DbError> {
        let mut tx = self.pool.begin().await.map_err(q("begin enqueue"))?;
        if let Some(v) = &e.volume {
            insert_volume(&mut tx, v).await?;
        }
        if let Some(s) = &e.snapshot {
            insert_snapshot(&mut tx, s).await?;
        }
        if let Some(t) = &e.transition {
            let marks: Vec<String> = (0..t.from.len()).map(|i| format!("${}", i + 4)).collect();
            let sql = format!(
                "UPDATE {} SET status = $1, status_reason = NULL, updated_at = $2 WHERE id = $3 \
                 AND deleted_at IS NULL AND status IN ({})",
                t.table,
                marks.join(", ")
            );
            let mut query = sqlx::query(sqlx::AssertSqlSafe(sql))
                .bind(t.to)
                .bind(now_ms())
                .bind(t.id);
            for f in t.from {
                query = query.bind(*f);
            }
            if query
                .execute(&mut *tx)
                .await
                .map_err(q("enqueue transition"))?
                .rows_affected()
                == 0
            {
                tx.rollback().await.map_err(q("rollback enqueue"))?;
                return Ok(false);
            }
        }
        let now = now_ms();
        let j = &e.job;
        sqlx::query(
            "INSERT INTO jobs (id, kind, target_id, backend, state, params, requested_by, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, 'queued', $5, $6, $7, $7)",
        )
        .bind(j.id)
        .bind(j.kind)
        .bind(j.target_id)
        .bind(j.backend)
        .bind(j.params)
        .bind(j.requested_by)
        .bind(now)
        .execute(&mut *tx)
        .await
        .map_err(q("insert job"))?;
        tx.commit().await.map_err(q("commit enqueue"))?;
        Ok(true)
    }

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

    /// A job by id or unique id prefix (ids are long; operators paste the first 8 characters).
    pub async fn find_job(&self, key: &str) -> Result<super::volumes::Found<JobRow>, DbError> {
        let sql = format!(
            "SELECT {JOB_COLUMNS} FROM jobs WHERE id = $1 OR id LIKE $2 ORDER BY created_at LIMIT 10"
        );
        let rows = sqlx::query_as::<_, JobRow>(sqlx::AssertSqlSafe(sql))
            .bind(key)
            .bind(format!("{}%", key.replace(['%', '_'], "")))
            .fetch_all(&self.pool)
            .await
            .map_err(q("find job"))?;
        Ok(super::volumes::pick(rows, key, |r| &r.id))
    }

    /// The unfinished job on a volume or snapshot, if any (one at a time per target).
    pub async fn active_job_on(&self, target: &str) -> Result<Option<JobRow>, DbError> {
        let sql = format!(
            "SELECT {JOB_COLUMNS} FROM jobs WHERE target_id = $1 AND state IN {ACTIVE} ORDER BY created_at LIMIT 1"
        );
        sqlx::query_as::<_, JobRow>(sqlx::AssertSqlSafe(sql))
            .bind(target)
            .fetch_optional(&self.pool)
            .await
            .map_err(q("active job"))
    }

    /// An unfinished job that targets `id` or names it in its parameters.
    pub async fn active_job_referencing(&self, id: &str) -> Result<Option<JobRow>, DbError> {
        let sql = format!(
            "SELECT {JOB_COLUMNS} FROM jobs WHERE state IN {ACTIVE} AND (target_id = $1 OR params LIKE $2) LIMIT 1"
        );
        sqlx::query_as::<_, JobRow>(sqlx::AssertSqlSafe(sql))
            .bind(id)
            .bind(format!("%\"{id}\"%"))
            .fetch_optional(&self.pool)
            .await
            .map_err(q("active job referencing"))
    }

    /// Claims the oldest queued job of a backend whose target has no running job.
    pub async fn claim_job(&self, backend: &str, host: &str) -> Result<Option<JobRow>, DbError> {
        let sql = format!(
            "UPDATE jobs SET state = 'running', claimed_by = $2, started_at = $3, updated_at = $3 \
             WHERE state = 'queued' AND id = ( \
                 SELECT j.id FROM jobs j WHERE j.backend = $1 AND j.state = 'queued' \
                 AND NOT EXISTS (SELECT 1 FROM jobs r WHERE r.state = 'running' AND r.target_id = j.target_id) \
                 ORDER BY j.created_at, j.id LIMIT 1) \
             RETURNING {JOB_COLUMNS}"
        );
        sqlx::query_as::<_, JobRow>(sqlx::AssertSqlSafe(sql))
            .bind(backend)
            .bind(host)
            .bind(now_ms())
            // fetch_all, never fetch_optional/fetch_one, on RETURNING: SQLite commits the
            // statement only when it is stepped to the end, and a half-read statement keeps
            // the write lock, stalling every other writer.
            .fetch_all(&self.pool)
            .await
            .map(|mut rows| rows.pop())
            .map_err(q("claim job"))
    }

    /// Writes progress; returns whether an operator asked to cancel meanwhile. `updated_at`
    /// moves only when the bytes do, so it tells when the job last made progress (a job
    /// whose `updated_at` is old is stuck, which `ember doctor` reports).
    pub async fn job_progress(&self, id: &str, done: u64, total: u64) -> Result<bool, DbError> {
        let r: Vec<i64> = sqlx::query_scalar(
            "UPDATE jobs SET updated_at = CASE WHEN bytes_done <> $1 OR bytes_total <> $2 THEN $3 ELSE updated_at END, \
             bytes_done = $1, bytes_total = $2 WHERE id = $4 RETURNING cancel_requested",
        )
        .bind(super::services::clamp(done))
        .bind(super::services::clamp(total))
        .bind(now_ms())
        .bind(id)
        .fetch_all(&self.pool) // see claim_job: RETURNING must be read to the end
        .await
        .map_err(q("job progress"))?;
        Ok(r.first().copied().unwrap_or(0) != 0)
    }

    /// Ends a job: `succeeded`, `failed` (with the error) or `cancelled`.
    pub async fn finish_job(
        &self,
        id: &str,
        state: &str,
        error: Option<&str>,
    ) -> Result<(), DbError> {
        let now = now_ms();
        sqlx::query("UPDATE jobs SET state = $1, error = $2, finished_at = $3, updated_at = $3 WHERE id = $4")
            .bind(state)
            .bind(error)
            .bind(now)
            .bind(id)
            .execute(&self.pool)
            .await
            .map_err(q("finish job"))?;
        Ok(())
    }

    /// Hands a running job back to the queue (shutdown): another worker, or the next start,
    /// runs it again from the top; drivers make that safe.
    pub async fn requeue_job(&self, id: &str) -> Result<(), DbError> {
        sqlx::query("UPDATE jobs SET state = 'queued', claimed_by = NULL, updated_at = $1 WHERE id = $2 AND state = 'running'")
            .bind(now_ms())
            .bind(id)
            .execute(&self.pool)
            .await
            .map_err(q("requeue job"))?;
        Ok(())
    }

    /// Crash recovery: every job this host was running goes back to the queue. Returns them.
    pub async fn requeue_claimed_by(&self, host: &str) -> Result<Vec<JobRow>, DbError> {
        let sql = format!(
            "UPDATE jobs SET state = 'queued', claimed_by = NULL, updated_at = $2 \
             WHERE state = 'running' AND claimed_by = $1 RETURNING {JOB_COLUMNS}"
        );
        sqlx::query_as::<_, JobRow>(sqlx::AssertSqlSafe(sql))
            .bind(host)
            .bind(now_ms())
            .fetch_all(&self.pool)
            .await
            .map_err(q("requeue jobs"))
    }

    /// Cancel: a queued job ends at once; a running one is flagged for its worker.
    /// Returns the job's state afterwards, or None if there is no such unfinished job.
    pub async fn request_cancel(&self, id: &str) -> Result<Option<String>, DbError> {
        let now = now_ms();
        let queued = sqlx::query(
            "UPDATE jobs SET state = 'cancelled', error = 'cancelled before it started', finished_at = $1, updated_at = $1 \
             WHERE id = $2 AND state = 'queued'",
        )
        .bind(now)
        .bind(id)
        .execute(&self.pool)
        .await
        .map_err(q("cancel job"))?;
        if queued.rows_affected() > 0 {
            return Ok(Some("cancelled".into()));
        }
        let running = sqlx::query("UPDATE jobs SET cancel_requested = 1, updated_at = $1 WHERE id = $2 AND state = 'running'")
            .bind(now)
            .bind(id)
            .execute(&self.pool)
            .await
            .map_err(q("cancel job"))?;
        Ok((running.rows_affected() > 0).then(|| "running".into()))
    }
}
