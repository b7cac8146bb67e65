//! Fencing tokens: a worker's writes for a job are valid only while it still holds the job.
//!
//! Every claim bumps `jobs.claim_token`; a takeover requeues the job with a new token. A worker
//! writes through a [`Db`] handle made by [`Db::fenced`], and every write of a volume or
//! snapshot row through it carries `AND EXISTS (job still running under my token)` in the same
//! statement, so a worker that froze past `service_down_time` and woke up after a peer took its
//! job over cannot flip the volume's status: its write matches no row, and the next check
//! turns that into [`DbError::Fenced`].

use std::sync::Arc;

use sqlx::any::AnyArguments;
use sqlx::query::Query;

use super::{Db, DbError, q};

/// A string that never shows in `Debug` output (the database URL may hold a password).
#[derive(Clone)]
pub(crate) struct Hidden(pub(crate) Arc<str>);

impl std::fmt::Debug for Hidden {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("\"***\"")
    }
}

/// The claim a worker holds: the job and the token it claimed it with.
#[derive(Debug, Clone, PartialEq)]
pub struct Fence {
    pub job: Arc<str>,
    pub token: i64,
}

pub(crate) type AnyQuery<'q> = Query<'q, sqlx::Any, AnyArguments>;

impl Db {
    /// The handle a job's worker writes through: volume and snapshot writes carry the claim.
    pub fn fenced(&self, job: &str, token: i64) -> Db {
        Db {
            fence: Some(Fence {
                job: job.into(),
                token,
            }),
            ..self.clone()
        }
    }

    /// The URL this handle connected with (for a second connection of the same process).
    pub(crate) fn url(&self) -> &str {
        &self.url.0
    }

    /// ` AND EXISTS (...)` binding the fence at `$first` and `$first + 1`; empty without one.
    pub(crate) fn fence_sql(&self, first: usize) -> String {
        match self.fence {
            Some(_) => format!(
                " AND EXISTS (SELECT 1 FROM jobs f WHERE f.id = ${first} AND f.claim_token = ${} \
                 AND f.state = 'running')",
                first + 1
            ),
            None => String::new(),
        }
    }

    /// Binds what [`Db::fence_sql`] refers to.
    pub(crate) fn bind_fence<'q>(&self, query: AnyQuery<'q>) -> AnyQuery<'q> {
        match &self.fence {
            Some(f) => query.bind(f.job.to_string()).bind(f.token),
            None => query,
        }
    }

    /// After a fenced write matched no row: fails with [`DbError::Fenced`] if the claim is
    /// gone (otherwise the row simply was not in the expected state).
    pub(crate) async fn check_fence(&self) -> Result<(), DbError> {
        let Some(f) = &self.fence else {
            return Ok(());
        };
        let held: Vec<i64> = sqlx::query_scalar(
            "SELECT claim_token FROM jobs WHERE id = $1 AND claim_token = $2 AND state = 'running'",
        )
        .bind(f.job.to_string())
        .bind(f.token)
        .fetch_all(&self.pool)
        .await
        .map_err(q("check claim"))?;
        if held.is_empty() {
            return Err(DbError::Fenced {
                job: f.job.to_string(),
                token: f.token,
            });
        }
        Ok(())
    }
}
