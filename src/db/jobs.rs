//! The `jobs` table: long storage work asked for by an operator and run by a service of the
//! target's backend. Progress is written here (throttled) so any console can show it.
//!
//! Claiming is one conditional `UPDATE ... WHERE state = 'queued' RETURNING`, and only a service
//! of the job's owner (its `host@backend`, or any member of its `cluster@backend`) claims it.
//! On PostgreSQL the candidate row is picked `FOR UPDATE SKIP LOCKED`, so racing claimers skip
//! each other instead of waiting; SQLite serialises writers. The partial unique index
//! `jobs_one_active` allows one unfinished job per target, so two hosts submitting or claiming
//! at the same moment can never run two jobs on one volume.
//!
//! Every claim bumps `claim_token`; the worker's later writes (progress, finish, hand-back)
//! carry it and match nothing once a takeover moved it: see [`super::fence`].

use sqlx::FromRow;

use super::volumes::{NewSnapshot, NewVolume, insert_snapshot, insert_volume};
use super::words::{JobKind, JobState, Status};
use super::{Db, DbError, now_ms, q};

#[derive(Debug, Clone, FromRow, PartialEq)]
pub struct JobRow {
    pub id: String,
    pub kind: JobKind,
    pub target_id: String,
    pub backend: String,
    pub state: JobState,
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
    /// Who may run it: `host@backend`, or `cluster@backend` for a clustered backend.
    pub owner: Option<String>,
    /// Bumped by every claim; the running worker's writes carry it.
    pub claim_token: i64,
    /// The volume the job works on: one unfinished job per volume (`jobs_one_active`).
    pub volume_id: Option<String>,
    /// What the job found, when that is its point (`volume verify`).
    pub result: Option<String>,
    /// Why a running job does not move yet (a flatten waiting for a flatten slot).
    pub wait_reason: Option<String>,
    /// The storage client the job works through when it is not its service's (a throttled
    /// rbd flatten's own client): fenced too when a peer takes the job over.
    pub client_address: Option<String>,
}

pub struct NewJob<'a> {
    pub id: &'a str,
    pub kind: JobKind,
    pub target_id: &'a str,
    pub backend: &'a str,
    pub owner: &'a str,
    /// The volume it works on (a snapshot job: the snapshot's volume).
    pub volume_id: &'a str,
    pub params: &'a str,
    pub requested_by: &'a str,
}

/// What an enqueue did.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Enqueued {
    Written,
    /// The transition's status guard did not hold: someone changed the row first.
    TargetChanged,
    /// Another unfinished job on the same target won the race (`jobs_one_active`).
    TargetBusy,
}

/// What a progress write learnt.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Lease {
    /// Still ours; `cancel`: an operator asked to cancel it.
    Held { cancel: bool },
    /// Taken over (or ended) meanwhile: stop at once and write nothing more for it.
    Lost,
}

/// Whether a database error is a unique-constraint violation.
pub(crate) fn is_unique_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(d) if d.is_unique_violation())
}

/// A conditional status change that must hold for the job to be enqueued.
pub struct Transition<'a> {
    pub table: &'static str,
    pub id: &'a str,
    pub from: &'a [Status],
    pub to: Status,
}

/// Everything one request writes, in one transaction: new rows, guarded status changes (one,
/// or a migrating family's), the job itself. Either all of it is written or nothing is.
pub struct Enqueue<'a> {
    pub volume: Option<NewVolume<'a>>,
    pub snapshot: Option<NewSnapshot<'a>>,
    pub backup: Option<super::backups::NewBackup<'a>>,
    pub transitions: Vec<Transition<'a>>,
    pub job: NewJob<'a>,
}

/// Jobs that are not finished.
pub const ACTIVE: &str = "('queued', 'running')";

pub(crate) const JOB_COLUMNS: &str = "id, kind, target_id, backend, state, params, bytes_done, bytes_total, \
     error, requested_by, claimed_by, cancel_requested, created_at, started_at, updated_at, finished_at, \
     owner, claim_token, volume_id, result, wait_reason, client_address";

impl Db {
    /// Writes a request atomically; on anything but [`Enqueued::Written`], nothing is written.
    pub async fn enqueue(&self, e: &Enqueue<'_>) -> Result<Enqueued, DbError> {
        let mut tx = self.pool.begin().await.map_err(q("begin enqueue"))?;
        if let Some(v) = &e.volume {
            insert_volume(&mut tx, v).await?;
        }
        if let Some(s) = &e.snapshot {
            insert_snapshot(&mut tx, s).await?;
        }
        if let Some(b) = &e.backup {
            super::backups::insert_backup(&mut tx, b).await?;
        }
        for t in &e.transitions {
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
                return Ok(Enqueued::TargetChanged);
            }
        }
        let now = now_ms();
        let j = &e.job;
        let inserted = sqlx::query(
            "INSERT INTO jobs (id, kind, target_id, backend, owner, state, params, requested_by, created_at, updated_at, volume_id) \
             VALUES ($1, $2, $3, $4, $5, 'queued', $6, $7, $8, $8, $9)",
        )
        .bind(j.id)
        .bind(j.kind)
        .bind(j.target_id)
        .bind(j.backend)
        .bind(j.owner)
        .bind(j.params)
        .bind(j.requested_by)
        .bind(now)
        .bind(j.volume_id)
        .execute(&mut *tx)
        .await;
        match inserted {
            Ok(_) => {}
            Err(e) if is_unique_violation(&e) => {
                tx.rollback().await.map_err(q("rollback enqueue"))?;
                return Ok(Enqueued::TargetBusy);
            }
            Err(e) => return Err(q("insert job")(e)),
        }
        tx.commit().await.map_err(q("commit enqueue"))?;
        Ok(Enqueued::Written)
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

    /// The newest `limit` jobs as the database returns them (for listings of any size).
    pub fn stream_jobs(
        &self,
        limit: i64,
    ) -> impl futures_util::Stream<Item = Result<JobRow, DbError>> + Send + '_ {
        use futures_util::TryStreamExt;
        let sql = format!("SELECT {JOB_COLUMNS} FROM jobs ORDER BY created_at DESC, id LIMIT $1");
        sqlx::query_as::<_, JobRow>(sqlx::AssertSqlSafe(sql))
            .bind(limit)
            .fetch(&self.pool)
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

    /// The unfinished job on a volume or snapshot, if any (one at a time per volume).
    pub async fn active_job_on(&self, target: &str) -> Result<Option<JobRow>, DbError> {
        let sql = format!(
            "SELECT {JOB_COLUMNS} FROM jobs WHERE (target_id = $1 OR volume_id = $1) AND state IN {ACTIVE} \
             ORDER BY created_at LIMIT 1"
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

    /// Claims the oldest queued job that `owners` may run (this service's `host@backend`, and
    /// its `cluster@backend` if clustered), for `claimer` (the service's `host@backend`).
    pub async fn claim_job(
        &self,
        owners: &[&str],
        claimer: &str,
    ) -> Result<Option<JobRow>, DbError> {
        let skip_locked = match self.engine {
            super::Engine::Postgres => " FOR UPDATE SKIP LOCKED",
            super::Engine::Sqlite => "",
        };
        let sql = format!(
            "UPDATE jobs SET state = 'running', claimed_by = $3, claim_token = claim_token + 1, \
             started_at = $4, updated_at = $4 \
             WHERE state = 'queued' AND id = ( \
                 SELECT j.id FROM jobs j WHERE j.state = 'queued' AND j.owner IN ($1, $2) \
                 ORDER BY j.created_at, j.id LIMIT 1{skip_locked}) \
             RETURNING {JOB_COLUMNS}"
        );
        let owner2 = owners.get(1).or(owners.first()).copied().unwrap_or("");
        sqlx::query_as::<_, JobRow>(sqlx::AssertSqlSafe(sql))
            .bind(owners.first().copied().unwrap_or(""))
            .bind(owner2)
            .bind(claimer)
            .bind(now_ms())
            // fetch_all, never fetch_optional/fetch_one, on RETURNING: SQLite commits the
            // statement only when it is stepped to the end, and a half-read statement keeps
            // the write lock, stalling every other writer.
            .fetch_all(&self.pool)
            .await
            .map(|mut rows| rows.pop())
            .map_err(q("claim job"))
    }

    /// Writes progress under the worker's claim. `updated_at` moves only when the bytes do, so
    /// it tells when the job last made progress (a job whose `updated_at` is old is stuck,
    /// which `ember doctor` reports). The same statement reads back the cancel flag.
    pub async fn job_progress(
        &self,
        id: &str,
        token: i64,
        done: u64,
        total: u64,
    ) -> Result<Lease, DbError> {
        let r: Vec<i64> = sqlx::query_scalar(
            "UPDATE jobs SET updated_at = CASE WHEN bytes_done <> $1 OR bytes_total <> $2 THEN $3 ELSE updated_at END, \
             bytes_done = $1, bytes_total = $2 WHERE id = $4 AND claim_token = $5 AND state = 'running' \
             RETURNING cancel_requested",
        )
        .bind(super::services::clamp(done))
        .bind(super::services::clamp(total))
        .bind(now_ms())
        .bind(id)
        .bind(token)
        .fetch_all(&self.pool) // see claim_job: RETURNING must be read to the end
        .await
        .map_err(q("job progress"))?;
        Ok(match r.first() {
            Some(c) => Lease::Held { cancel: *c != 0 },
            None => Lease::Lost,
        })
    }

    /// Ends a job under the worker's claim: `succeeded`, `failed` (with the error) or
    /// `cancelled`. False when the claim was lost: nothing was written.
    pub async fn finish_job(
        &self,
        id: &str,
        token: i64,
        state: JobState,
        error: Option<&str>,
    ) -> Result<bool, DbError> {
        let r = self
            .write("finish job", || async {
                let now = now_ms();
                sqlx::query(
                    "UPDATE jobs SET state = $1, error = $2, finished_at = $3, updated_at = $3, wait_reason = NULL \
                     WHERE id = $4 AND claim_token = $5 AND state = 'running'",
                )
                .bind(state)
                .bind(error.map(str::to_string))
                .bind(now)
                .bind(id.to_string())
                .bind(token)
                .execute(&self.pool)
                .await
                .map_err(q("finish job"))
            })
            .await?;
        Ok(r.rows_affected() > 0)
    }

    /// Records the storage client a running job works through, under the worker's claim,
    /// before the job writes anything with it (false: claim lost, nothing written).
    pub async fn set_job_client(
        &self,
        id: &str,
        token: i64,
        address: &str,
    ) -> Result<bool, DbError> {
        let r = self
            .write("record job client", || async {
                sqlx::query(
                    "UPDATE jobs SET client_address = $1, updated_at = $2 \
                     WHERE id = $3 AND claim_token = $4 AND state = 'running'",
                )
                .bind(address.to_string())
                .bind(now_ms())
                .bind(id.to_string())
                .bind(token)
                .execute(&self.pool)
                .await
                .map_err(q("record job client"))
            })
            .await?;
        Ok(r.rows_affected() > 0)
    }

    /// Records what a running job found, under the worker's claim (false: claim lost).
    pub async fn set_job_result(
        &self,
        id: &str,
        token: i64,
        result: &str,
    ) -> Result<bool, DbError> {
        let r = sqlx::query(
            "UPDATE jobs SET result = $1 WHERE id = $2 AND claim_token = $3 AND state = 'running'",
        )
        .bind(result)
        .bind(id)
        .bind(token)
        .execute(&self.pool)
        .await
        .map_err(q("set job result"))?;
        Ok(r.rows_affected() > 0)
    }

    /// Says (or, with None, clears) why a running job waits, under the worker's claim.
    pub async fn set_job_wait(
        &self,
        id: &str,
        token: i64,
        reason: Option<&str>,
    ) -> Result<bool, DbError> {
        let r = sqlx::query(
            "UPDATE jobs SET wait_reason = $1, updated_at = $2 \
             WHERE id = $3 AND claim_token = $4 AND state = 'running'",
        )
        .bind(reason.map(str::to_string))
        .bind(now_ms())
        .bind(id)
        .bind(token)
        .execute(&self.pool)
        .await
        .map_err(q("set job wait"))?;
        Ok(r.rows_affected() > 0)
    }

    /// Hands a running job back to the queue (shutdown): another worker, or the next start,
    /// runs it again from the top; drivers make that safe. Progress is kept for the operator.
    pub async fn requeue_job(&self, id: &str, token: i64) -> Result<bool, DbError> {
        let r = self
            .write("requeue job", || async {
                sqlx::query(
                    "UPDATE jobs SET state = 'queued', claimed_by = NULL, updated_at = $1 \
                     WHERE id = $2 AND claim_token = $3 AND state = 'running'",
                )
                .bind(now_ms())
                .bind(id.to_string())
                .bind(token)
                .execute(&self.pool)
                .await
                .map_err(q("requeue job"))
            })
            .await?;
        Ok(r.rows_affected() > 0)
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

    /// Running jobs of `owner` whose worker is no live service: it has not heartbeated for
    /// `down_ms` by the database's clock, stopped, or is gone from `services`.
    pub async fn orphaned_jobs(&self, owner: &str, down_ms: i64) -> Result<Vec<JobRow>, DbError> {
        let sql = format!(
            "SELECT {JOB_COLUMNS} FROM jobs WHERE state = 'running' AND owner = $1 \
             AND claimed_by IS NOT NULL AND NOT EXISTS ( \
                 SELECT 1 FROM services s WHERE s.host = jobs.claimed_by AND s.stopped_at IS NULL \
                 AND s.updated_at IS NOT NULL AND s.updated_at >= {} - $2) \
             ORDER BY created_at",
            self.now_sql()
        );
        sqlx::query_as::<_, JobRow>(sqlx::AssertSqlSafe(sql))
            .bind(owner)
            .bind(down_ms)
            .fetch_all(&self.pool)
            .await
            .map_err(q("orphaned jobs"))
    }

    /// Takes a job over from a dead worker: back to the queue under a new claim token, so the
    /// old worker's writes are refused from now on. False if someone else took it first.
    pub async fn take_over_job(&self, id: &str, token: i64) -> Result<bool, DbError> {
        let r = sqlx::query(
            "UPDATE jobs SET state = 'queued', claimed_by = NULL, claim_token = claim_token + 1, \
             updated_at = $1 WHERE id = $2 AND claim_token = $3 AND state = 'running'",
        )
        .bind(now_ms())
        .bind(id)
        .bind(token)
        .execute(&self.pool)
        .await
        .map_err(q("take over job"))?;
        Ok(r.rows_affected() > 0)
    }

    /// Unfinished jobs that only `host` may run (its own, or running there): waiting for it.
    pub async fn jobs_held_by(&self, host: &str) -> Result<Vec<JobRow>, DbError> {
        let sql = format!(
            "SELECT {JOB_COLUMNS} FROM jobs WHERE state IN {ACTIVE} \
             AND (owner = $1 OR (state = 'running' AND claimed_by = $1)) ORDER BY created_at"
        );
        sqlx::query_as::<_, JobRow>(sqlx::AssertSqlSafe(sql))
            .bind(host)
            .fetch_all(&self.pool)
            .await
            .map_err(q("jobs held by"))
    }

    /// Fails an unfinished job whatever its claim (a removed service will never finish it).
    pub async fn fail_job(&self, id: &str, error: &str) -> Result<bool, DbError> {
        let now = now_ms();
        let sql = format!(
            "UPDATE jobs SET state = 'failed', error = $1, finished_at = $2, updated_at = $2, \
             claim_token = claim_token + 1 WHERE id = $3 AND state IN {ACTIVE}"
        );
        let r = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(error)
            .bind(now)
            .bind(id)
            .execute(&self.pool)
            .await
            .map_err(q("fail job"))?;
        Ok(r.rows_affected() > 0)
    }

    /// Jobs queued before ownership existed (or by an older ember) belong to `owner` from now
    /// on, as do such volumes and snapshots of `backend`: in a one-host setup, the only host.
    pub async fn adopt_unowned(&self, backend: &str, owner: &str) -> Result<u64, DbError> {
        let mut n = 0;
        for table in ["jobs", "volumes", "snapshots"] {
            let col = if table == "jobs" { "owner" } else { "host" };
            let sql = format!("UPDATE {table} SET {col} = $1 WHERE {col} IS NULL AND backend = $2");
            n += sqlx::query(sqlx::AssertSqlSafe(sql))
                .bind(owner)
                .bind(backend)
                .execute(&self.pool)
                .await
                .map_err(q("adopt unowned rows"))?
                .rows_affected();
        }
        Ok(n)
    }

    /// Whether an operator asked to cancel this running job (read by its worker 4 times a
    /// second, so a cancel from any process reaches the driver quickly).
    pub async fn cancel_requested(&self, id: &str) -> Result<bool, DbError> {
        let r: Vec<i64> = sqlx::query_scalar(
            "SELECT cancel_requested FROM jobs WHERE id = $1 AND state = 'running'",
        )
        .bind(id)
        .fetch_all(&self.pool)
        .await
        .map_err(q("read cancel flag"))?;
        Ok(r.first().copied().unwrap_or(0) != 0)
    }

    /// Cancel: a queued job ends at once; a running one is flagged for its worker.
    /// Returns the job's state afterwards, or None if there is no such unfinished job.
    pub async fn request_cancel(&self, id: &str) -> Result<Option<JobState>, DbError> {
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
            return Ok(Some(JobState::Cancelled));
        }
        let running = sqlx::query("UPDATE jobs SET cancel_requested = 1, updated_at = $1 WHERE id = $2 AND state = 'running'")
            .bind(now)
            .bind(id)
            .execute(&self.pool)
            .await
            .map_err(q("cancel job"))?;
        Ok((running.rows_affected() > 0).then_some(JobState::Running))
    }
}
