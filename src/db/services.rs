//! The `services` table: one row per (host@backend, binary), written by the service that owns
//! it (register, heartbeat, capacity, stop) and read by anyone to tell up from down.

use sqlx::FromRow;

use super::{Db, DbError, now_ms, q};

/// The binary name in service rows (Cinder writes `cinder-volume`).
pub const BINARY: &str = "ember-volume";

#[derive(Debug, Clone, FromRow, PartialEq)]
pub struct ServiceRow {
    pub id: i64,
    pub host: String,
    pub binary_name: String,
    pub backend: String,
    pub cluster: Option<String>,
    pub driver: String,
    /// 0 or 1 (sqlx Any maps no boolean for SQLite).
    pub disabled: i64,
    pub disabled_reason: Option<String>,
    pub error: Option<String>,
    pub version: String,
    pub pid: Option<i64>,
    pub created_at: i64,
    pub started_at: Option<i64>,
    pub updated_at: Option<i64>,
    pub stopped_at: Option<i64>,
    pub report_count: i64,
    pub lateness_ms: String,
    pub capacity_total: Option<i64>,
    pub capacity_free: Option<i64>,
    pub capacity_provisioned: Option<i64>,
    pub capacity_at: Option<i64>,
    /// An rbd backend's librados client address (`v2:10.0.0.5:0/123`), recorded at connect so
    /// that a peer can blocklist it before taking this service's jobs over.
    pub client_address: Option<String>,
    /// How far the host's clock was ahead of the database's at its last heartbeat (ms).
    pub clock_skew_ms: Option<i64>,
    /// When this run's first setup check finished; NULL while the service is starting.
    pub ready_at: Option<i64>,
    /// 0 or 1: the backend is being emptied (`backend evacuate`): no new volume goes here.
    pub draining: i64,
}

/// What a service says about itself when it starts.
pub struct Registration<'a> {
    pub host: &'a str,
    pub backend: &'a str,
    pub cluster: Option<&'a str>,
    pub driver: &'a str,
    /// Why the backend could not start; None when it started.
    pub error: Option<&'a str>,
}

const COLUMNS: &str = "id, host, binary_name, backend, cluster, driver, disabled, disabled_reason, error, \
     version, pid, created_at, started_at, updated_at, stopped_at, report_count, lateness_ms, \
     capacity_total, capacity_free, capacity_provisioned, capacity_at, client_address, clock_skew_ms, ready_at, \
     draining";

impl Db {
    /// Creates or updates the service's row (Cinder's `_create_service_ref` / update on start),
    /// keeping the operator's `disabled` flag. Returns the row id.
    pub async fn register_service(&self, r: &Registration<'_>) -> Result<i64, DbError> {
        let pid = i64::from(std::process::id());
        // Started by the database's clock, as heartbeats are: the first beat after a restart
        // is then always later than the start, which is how "starting" is told apart.
        let sql = format!(
            "INSERT INTO services (host, binary_name, backend, cluster, driver, error, version, pid, \
                 created_at, started_at, stopped_at, report_count, lateness_ms) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, {now}, {now}, NULL, 0, '') \
             ON CONFLICT (host, binary_name) DO UPDATE SET \
                 backend = $3, cluster = $4, driver = $5, error = $6, version = $7, pid = $8, \
                 started_at = {now}, stopped_at = NULL, ready_at = NULL, lateness_ms = '' \
             RETURNING id",
            now = self.now_sql()
        );
        let ids: Vec<i64> = sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
            .bind(r.host)
            .bind(BINARY)
            .bind(r.backend)
            .bind(r.cluster)
            .bind(r.driver)
            .bind(r.error)
            .bind(env!("CARGO_PKG_VERSION"))
            .bind(pid)
            .fetch_all(&self.pool) // RETURNING is read to the end: see Db::claim_job
            .await
            .map_err(q("register service"))?;
        ids.first().copied().ok_or(DbError::Query {
            what: "register service",
            cause: Box::new(sqlx::Error::RowNotFound),
        })
    }

    /// One heartbeat: bumps `report_count` and `updated_at` (by the database's clock, which
    /// every peer judges it by), and stores recent lateness. It also renews the leases of the
    /// jobs this service runs: a peer takes them over only once it stops.
    /// Returns the operator's `disabled` flag, so a disable reaches the service within one
    /// `report_interval` without a read of its own.
    pub async fn heartbeat(&self, id: i64, lateness_ms: &str) -> Result<bool, DbError> {
        let sql = format!(
            "UPDATE services SET updated_at = {}, report_count = report_count + 1, lateness_ms = $1, \
                 clock_skew_ms = $2 \
             WHERE id = $3 RETURNING disabled, updated_at",
            self.now_sql()
        );
        let before = super::clock::local_ms();
        let d: Vec<(i64, i64)> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(lateness_ms)
            .bind(super::clock::skew_ms())
            .bind(id)
            .fetch_all(&self.pool) // RETURNING is read to the end: see Db::claim_job
            .await
            .map_err(q("heartbeat"))?;
        let Some(&(disabled, db_ms)) = d.first() else {
            return Ok(false);
        };
        // Each beat also measures this host's clock against the database's.
        super::clock::observe(before, db_ms, super::clock::local_ms());
        Ok(disabled != 0)
    }

    /// Marks the end of this run's first setup check (whatever its outcome: a failure is in
    /// `error`): the service is no longer `starting`.
    pub async fn set_service_ready(&self, id: i64) -> Result<(), DbError> {
        let sql = format!(
            "UPDATE services SET ready_at = {} WHERE id = $1",
            self.now_sql()
        );
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(id)
            .execute(&self.pool)
            .await
            .map_err(q("record the first setup check"))?;
        Ok(())
    }

    /// Records the backend's storage client address (None: not known, or not rbd).
    pub async fn set_client_address(&self, id: i64, addr: Option<&str>) -> Result<(), DbError> {
        sqlx::query("UPDATE services SET client_address = $1 WHERE id = $2")
            .bind(addr)
            .bind(id)
            .execute(&self.pool)
            .await
            .map_err(q("set client address"))?;
        Ok(())
    }

    /// Cinder's `service set --disable`: the service heartbeats but claims nothing, and no new
    /// volume is placed on it. `reason` None enables it again. False if there is no such row.
    pub async fn set_service_disabled(
        &self,
        host: &str,
        reason: Option<&str>,
    ) -> Result<bool, DbError> {
        let r = sqlx::query(
            "UPDATE services SET disabled = $1, disabled_reason = $2 WHERE host = $3 AND binary_name = $4",
        )
        .bind(i64::from(reason.is_some()))
        .bind(reason)
        .bind(host)
        .bind(BINARY)
        .execute(&self.pool)
        .await
        .map_err(q("disable service"))?;
        Ok(r.rows_affected() > 0)
    }

    /// `backend drain`: no new volume is placed on any service of `backend` (`on`), or again
    /// (`!on`). Returns how many service rows it changed.
    pub async fn set_backend_draining(&self, backend: &str, on: bool) -> Result<u64, DbError> {
        self.ensure_writable("drain a backend")?;
        let r = sqlx::query(
            "UPDATE services SET draining = $1 WHERE backend = $2 AND binary_name = $3",
        )
        .bind(i64::from(on))
        .bind(backend)
        .bind(BINARY)
        .execute(&self.pool)
        .await
        .map_err(q("drain backend"))?;
        Ok(r.rows_affected())
    }

    /// Whether the operator disabled this service (read by its job runner before each claim).
    pub async fn service_disabled(&self, id: i64) -> Result<bool, DbError> {
        let d: Vec<i64> = sqlx::query_scalar("SELECT disabled FROM services WHERE id = $1")
            .bind(id)
            .fetch_all(&self.pool)
            .await
            .map_err(q("read service disabled"))?;
        Ok(d.first().copied().unwrap_or(0) != 0)
    }

    /// `cinder-manage service remove`: deletes a service's row. The caller checks it is down.
    pub async fn remove_service(&self, host: &str) -> Result<bool, DbError> {
        let r = sqlx::query("DELETE FROM services WHERE host = $1 AND binary_name = $2")
            .bind(host)
            .bind(BINARY)
            .execute(&self.pool)
            .await
            .map_err(q("remove service"))?;
        Ok(r.rows_affected() > 0)
    }

    pub async fn set_capacity(
        &self,
        id: i64,
        total: u64,
        free: u64,
        provisioned: u64,
    ) -> Result<(), DbError> {
        sqlx::query(
            "UPDATE services SET capacity_total = $1, capacity_free = $2, capacity_provisioned = $3, \
             capacity_at = $4 WHERE id = $5",
        )
        .bind(clamp(total))
        .bind(clamp(free))
        .bind(clamp(provisioned))
        .bind(now_ms())
        .bind(id)
        .execute(&self.pool)
        .await
        .map_err(q("set capacity"))?;
        Ok(())
    }

    /// Records that the service's backend failed at run time (or recovered, with None).
    pub async fn set_service_error(&self, id: i64, error: Option<&str>) -> Result<(), DbError> {
        sqlx::query("UPDATE services SET error = $1 WHERE id = $2")
            .bind(error)
            .bind(id)
            .execute(&self.pool)
            .await
            .map_err(q("set service error"))?;
        Ok(())
    }

    /// A clean stop: the row stays, marked stopped, so `service list` shows it down at once
    /// instead of after `service_down_time`.
    pub async fn stop_service(&self, id: i64) -> Result<(), DbError> {
        sqlx::query("UPDATE services SET stopped_at = $1 WHERE id = $2")
            .bind(now_ms())
            .bind(id)
            .execute(&self.pool)
            .await
            .map_err(q("stop service"))?;
        Ok(())
    }

    pub async fn list_services(&self) -> Result<Vec<ServiceRow>, DbError> {
        let sql = format!("SELECT {COLUMNS} FROM services ORDER BY backend, host");
        sqlx::query_as::<_, ServiceRow>(sqlx::AssertSqlSafe(sql))
            .fetch_all(&self.pool)
            .await
            .map_err(q("list services"))
    }
}

pub(crate) fn clamp(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// Whether a service counts as up, from anyone's point of view (Cinder's `is_up`): it has
/// heartbeated within `down_time`, has not stopped cleanly, and its backend is not failing.
pub fn is_up(row: &ServiceRow, now_ms: i64, down_time_ms: i64) -> bool {
    liveness(row, now_ms, down_time_ms) == Liveness::Up
}

/// Whether the service's process is alive (it heartbeats and has not stopped), whatever its
/// storage does: a service whose backend is failing still runs, and ends, the jobs it holds.
pub fn is_alive(row: &ServiceRow, now_ms: i64, down_time_ms: i64) -> bool {
    row.stopped_at.is_none() && row.updated_at.is_some_and(|u| now_ms - u <= down_time_ms)
}

/// A service's state as an operator reads it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Liveness {
    Up,
    /// Started within `service_down_time` and still on its first setup check: not up (it
    /// takes no work), but not dead either. A restarted service is here until its first beat
    /// replaces the previous run's last one.
    Starting,
    /// No heartbeat within `service_down_time`, or its backend is failing.
    Down,
    /// Stopped cleanly.
    Stopped,
}

impl Liveness {
    pub fn as_str(self) -> &'static str {
        match self {
            Liveness::Up => "up",
            Liveness::Starting => "starting",
            Liveness::Down => "down",
            Liveness::Stopped => "stopped",
        }
    }
}

/// See [`Liveness`]. Every age is by the database's clock (`now_ms`, heartbeats).
pub fn liveness(row: &ServiceRow, now_ms: i64, down_time_ms: i64) -> Liveness {
    if row.stopped_at.is_some() {
        return Liveness::Stopped;
    }
    if row.error.is_some() {
        return Liveness::Down;
    }
    // This run's first beat may not be written yet: the previous run's last one says nothing.
    let beat_this_run = match (row.updated_at, row.started_at) {
        (Some(u), Some(s)) => u >= s,
        (Some(_), None) => true,
        (None, _) => false,
    };
    let fresh_start = row.started_at.is_some_and(|s| now_ms - s <= down_time_ms);
    if !beat_this_run {
        return if fresh_start {
            Liveness::Starting
        } else {
            Liveness::Down
        };
    }
    if !is_alive(row, now_ms, down_time_ms) {
        return Liveness::Down;
    }
    if row.ready_at.is_none() {
        return Liveness::Starting;
    }
    Liveness::Up
}

/// Parses the stored recent lateness (comma-separated milliseconds).
pub fn parse_lateness(s: &str) -> Vec<f64> {
    s.split(',').filter_map(|x| x.trim().parse().ok()).collect()
}
