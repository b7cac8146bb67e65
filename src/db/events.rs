//! The append-only `events` log: what was done, to what, and by whom. Never updated, never
//! deleted by ember; operators read it with `ember events`.

use sqlx::FromRow;

use super::{Db, DbError, now_ms, q};

#[derive(Debug, Clone, FromRow, PartialEq, serde::Serialize)]
pub struct EventRow {
    pub id: i64,
    pub at: i64,
    pub actor: String,
    pub host: Option<String>,
    /// `Unknown` for a kind a newer ember wrote (its message still says what happened).
    pub kind: super::EventKind,
    pub target: Option<String>,
    pub message: String,
}

/// An event about to be written.
pub struct NewEvent<'a> {
    pub actor: &'a str,
    pub host: Option<&'a str>,
    pub kind: super::EventKind,
    pub target: Option<&'a str>,
    pub message: &'a str,
}

impl Db {
    pub async fn add_event(&self, e: &NewEvent<'_>) -> Result<(), DbError> {
        sqlx::query(
            "INSERT INTO events (at, actor, host, kind, target, message) VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(now_ms())
        .bind(e.actor)
        .bind(e.host)
        .bind(e.kind)
        .bind(e.target)
        .bind(e.message)
        .execute(&self.pool)
        .await
        .map_err(q("add event"))?;
        Ok(())
    }

    /// The newest `limit` events, oldest first (as a log reads).
    pub async fn list_events(&self, limit: i64) -> Result<Vec<EventRow>, DbError> {
        let mut rows = sqlx::query_as::<_, EventRow>(
            "SELECT id, at, actor, host, kind, target, message FROM events ORDER BY id DESC LIMIT $1",
        )
        .bind(limit)
        .fetch_all(&self.pool)
        .await
        .map_err(q("list events"))?;
        rows.reverse();
        Ok(rows)
    }

    /// Events after `after_id`, newest first, at most `limit` (the newest ones): how the
    /// console's Events view follows the log without reading it whole each refresh.
    pub async fn events_after(&self, after_id: i64, limit: i64) -> Result<Vec<EventRow>, DbError> {
        sqlx::query_as::<_, EventRow>(
            "SELECT id, at, actor, host, kind, target, message FROM events WHERE id > $1 \
             ORDER BY id DESC LIMIT $2",
        )
        .bind(after_id)
        .bind(limit)
        .fetch_all(&self.pool)
        .await
        .map_err(q("events after"))
    }

    /// The newest `limit` events of the cluster's own doings (takeovers, lost claims, services
    /// disabled, enabled or removed), newest first: what the console's Overview shows.
    pub async fn cluster_events(&self, limit: i64) -> Result<Vec<EventRow>, DbError> {
        sqlx::query_as::<_, EventRow>(
            "SELECT id, at, actor, host, kind, target, message FROM events \
             WHERE kind IN ('job_taken_over', 'job_lease_lost', 'service_disabled', \
                            'service_enabled', 'service_removed') \
             ORDER BY id DESC LIMIT $1",
        )
        .bind(limit)
        .fetch_all(&self.pool)
        .await
        .map_err(q("cluster events"))
    }
}
