//! The database: one pool, typed queries, row types.
//!
//! Owner: `db/`. May import `config`. SQLite (embedded default) and PostgreSQL (several hosts
//! sharing one cluster) are served by the same queries through sqlx's `Any` driver: times are
//! Unix milliseconds, ids are text, placeholders are `$n` (which SQLite also accepts). Each
//! engine has its own migrations under `migrations/<engine>/`, run at connect.

pub mod attachments;
pub mod backups;
pub mod changes;
pub mod clock;
pub mod events;
pub mod fence;
pub mod jobs;
pub mod lock;
pub mod names;
pub mod roles;
pub mod services;
pub mod snapshots;
pub mod volumes;
pub mod words;

use std::path::{Path, PathBuf};
use std::time::Duration;

use sqlx::any::{AnyPoolOptions, install_default_drivers};
use sqlx::{AnyPool, Connection, Executor};
use thiserror::Error;

pub use attachments::AttachmentRow;
pub use backups::BackupRow;
pub use clock::now_ms;
pub use events::EventRow;
pub use jobs::JobRow;
pub use services::ServiceRow;
pub use volumes::{SnapshotRow, VolumeRow};
pub use words::{EventKind, JobKind, JobState, Purpose, Status};

/// How long a statement waits for a SQLite lock held by another process before failing, and
/// how long any connect may take. Long enough for a busy writer, short enough to never look hung.
pub const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, Error)]
pub enum DbError {
    #[error("database {url}: {message}")]
    Connect { url: String, message: String },
    #[error("database {url}: migrations failed: {message}")]
    Migrate { url: String, message: String },
    /// The sqlx error is shown in the message, not chained: its own Display already nests
    /// its causes, and chaining would print them twice.
    #[error("database query ({what}) failed: {cause}")]
    Query {
        what: &'static str,
        cause: Box<sqlx::Error>,
    },
    #[error("unsupported database_url {url:?}: expected sqlite://PATH or postgres://...")]
    Scheme { url: String },
    /// A worker's write for a job it no longer holds: the job was taken over (its claim token
    /// moved), so this worker must stop and write nothing more for it.
    #[error(
        "job {job}: lease lost (claim {token} was taken over by another service); nothing more is written for it"
    )]
    Fenced { job: String, token: i64 },
    /// A change through a read-only handle, refused by the database itself (SQLite's
    /// `query_only`, a PostgreSQL read-only session), so that no entry point can miss the rule.
    #[error("ember is read-only ({reason}): cannot {what}; nothing was changed")]
    ReadOnly { what: String, reason: String },
    /// PostgreSQL refused a change for the connected role's lack of a grant.
    #[error("{who} may not {what} ({detail}): GRANT {grant} TO {user}")]
    Permission {
        what: String,
        detail: String,
        who: String,
        user: String,
        grant: &'static str,
    },
    /// A guarded change found a row it needs gone: nothing was written.
    #[error("{what}: {id} is gone; nothing was changed")]
    Gone { what: &'static str, id: String },
}

/// Whether an error is the database being away for a moment (connection lost, refused,
/// server restarting, pool timed out), as opposed to a query that can never succeed.
pub fn is_transient(e: &DbError) -> bool {
    let DbError::Query { cause, .. } = e else {
        return false;
    };
    match cause.as_ref() {
        sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut | sqlx::Error::Tls(_) => true,
        sqlx::Error::Protocol(_) | sqlx::Error::WorkerCrashed => true,
        // 08xxx connection exceptions, 57P01-03 admin/crash shutdown, cannot connect now.
        sqlx::Error::Database(d) => d
            .code()
            .is_some_and(|c| c.starts_with("08") || c.starts_with("57P")),
        _ => false,
    }
}

/// Wraps a sqlx error with the name of the query that failed; a write the database refused
/// because the handle is read-only becomes [`DbError::ReadOnly`].
pub(crate) fn q(what: &'static str) -> impl Fn(sqlx::Error) -> DbError + Copy {
    move |e| {
        if refused_as_read_only(&e) {
            return DbError::ReadOnly {
                what: what.into(),
                reason: READ_ONLY_FLAG.into(),
            };
        }
        if let sqlx::Error::Database(d) = &e
            && d.code().as_deref() == Some("42501")
        {
            let detail = d.message().to_string();
            let (who, user) = LOGIN
                .get()
                .cloned()
                .unwrap_or_else(|| ("this login".into(), "<login>".into()));
            return DbError::Permission {
                what: what.into(),
                grant: if detail.contains("services") {
                    roles::SERVICE
                } else {
                    roles::OPERATOR
                },
                detail,
                who,
                user,
            };
        }
        DbError::Query {
            what,
            cause: Box::new(e),
        }
    }
}

/// Why a handle opened with `read_only` refuses changes.
const READ_ONLY_FLAG: &str = "read_only = true, or --read-only";

/// The PostgreSQL login this process connected as (`alice (ember_viewer)`, `alice`), so that a
/// permission error names it. A process connects as one login.
static LOGIN: std::sync::OnceLock<(String, String)> = std::sync::OnceLock::new();

/// SQLite's SQLITE_READONLY (8: `query_only` or a read-only file), PostgreSQL's 25006
/// (read_only_sql_transaction).
fn refused_as_read_only(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Database(d) => {
            d.code().is_some_and(|c| c == "8" || c == "25006")
                || d.message().contains("readonly database")
                || d.message().contains("read-only transaction")
        }
        _ => false,
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Engine {
    Sqlite,
    Postgres,
}

/// A connected, migrated database.
#[derive(Clone, Debug)]
pub struct Db {
    pub pool: AnyPool,
    pub engine: Engine,
    /// The URL with any password hidden, for messages.
    pub display_url: String,
    /// The URL as given, for the extra connection that holds a service's lock.
    url: fence::Hidden,
    /// Set on the handle a job's worker writes through: every volume, snapshot and job write
    /// then carries the job's claim token and is refused once a takeover moved it.
    pub(crate) fence: Option<fence::Fence>,
    /// Set on the handle a worker writes through: a write that fails because the database is
    /// away for a moment is tried again for this long, so a short outage costs no job.
    pub(crate) retry_for: Option<Duration>,
    /// Why every change through this handle is refused: opened read-only (the connections
    /// refuse writes, see [`Db::connect_read_only`]), or a login that may only read.
    read_only: Option<String>,
}

fn sqlite_path(url: &str) -> Option<PathBuf> {
    let rest = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))?;
    let path = rest.split('?').next().unwrap_or(rest);
    if path.is_empty() || path == ":memory:" {
        return None;
    }
    Some(PathBuf::from(path))
}

/// Creates the SQLite file (and its directory) private to this user before sqlx opens it:
/// the database names hosts, users and SSH clients.
fn prepare_sqlite_file(path: &Path, url: &str) -> Result<(), DbError> {
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
    let err = |what: &str, e: std::io::Error| DbError::Connect {
        url: url.to_string(),
        message: format!("{what} {}: {e}", path.display()),
    };
    if let Some(dir) = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty() && !d.exists())
    {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|e| err("cannot create directory for", e))?;
    }
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| err("cannot open", e))?;
    Ok(())
}

/// Takes an exclusive lock on `<db>.lock` (waiting off the reactor, at most [`BUSY_TIMEOUT`]).
async fn lock_file(db: &Path, url: &str) -> Result<nix::fcntl::Flock<std::fs::File>, DbError> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut name = db.as_os_str().to_owned();
    name.push(".lock");
    let path = PathBuf::from(name);
    let err = |m: String| DbError::Migrate {
        url: url.to_string(),
        message: m,
    };
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .open(&path)
        .map_err(|e| err(format!("cannot open {}: {e}", path.display())))?;
    let locking = tokio::task::spawn_blocking(move || {
        nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusive).map_err(|(_, e)| e)
    });
    match tokio::time::timeout(BUSY_TIMEOUT, locking).await {
        Ok(Ok(Ok(lock))) => Ok(lock),
        Ok(Ok(Err(e))) => Err(err(format!("cannot lock {}: {e}", path.display()))),
        Ok(Err(e)) => Err(err(format!("lock task failed: {e}"))),
        Err(_) => Err(err(format!(
            "{} is held by another ember for more than {}s",
            path.display(),
            BUSY_TIMEOUT.as_secs()
        ))),
    }
}

impl Db {
    /// Connects and runs the engine's migrations.
    pub async fn connect(url: &str) -> Result<Db, DbError> {
        Self::connect_with(url, false).await
    }

    /// Connects for an operator who may change nothing (`read_only = true`, `--read-only`):
    /// every connection of the pool is read-only in the database itself, so any write, from
    /// any entry point, is refused there ([`DbError::ReadOnly`]). Runs no migrations (they
    /// write); a schema older than this build is an error.
    pub async fn connect_read_only(url: &str) -> Result<Db, DbError> {
        let db = Self::connect_with(url, true).await?;
        let (applied, known, _) = db.schema_status().await?;
        if applied < known {
            return Err(DbError::Migrate {
                url: db.display_url.clone(),
                message: format!(
                    "the schema has {applied} of this ember's {known} migrations, and a read-only ember does not apply them: run ember once without read-only"
                ),
            });
        }
        Ok(db)
    }

    /// Why changes through this handle are refused (`read_only`, or a login that may only
    /// read), if they are.
    pub fn read_only_reason(&self) -> Option<&str> {
        self.read_only.as_deref()
    }

    pub fn is_read_only(&self) -> bool {
        self.read_only.is_some()
    }

    /// Checked before an operator's change is tried (and before a storage repair, which is no
    /// database write): refused on a read-only handle as the database would refuse the write.
    pub fn ensure_writable(&self, what: &str) -> Result<(), DbError> {
        match &self.read_only {
            Some(reason) => Err(DbError::ReadOnly {
                what: what.into(),
                reason: reason.clone(),
            }),
            None => Ok(()),
        }
    }

    async fn connect_with(url: &str, read_only: bool) -> Result<Db, DbError> {
        install_default_drivers();
        let display_url = crate::config::redact_url(url);
        let engine = if url.starts_with("sqlite:") {
            Engine::Sqlite
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Engine::Postgres
        } else {
            return Err(DbError::Scheme { url: display_url });
        };
        let mut url_owned = url.to_string();
        if engine == Engine::Sqlite {
            if let Some(path) = sqlite_path(url)
                && !read_only
            {
                prepare_sqlite_file(&path, &display_url)?;
            }
            if !url.contains('?') {
                // A read-only ember never creates the file.
                url_owned.push_str(if read_only { "?mode=rw" } else { "?mode=rwc" });
            }
        }
        let mut opts = AnyPoolOptions::new()
            .max_connections(if engine == Engine::Sqlite { 8 } else { 10 })
            .acquire_timeout(BUSY_TIMEOUT * 2);
        if engine == Engine::Sqlite {
            opts = opts.after_connect(move |conn, _meta| {
                Box::pin(async move {
                    // WAL lets the console read while a job writes; the busy timeout turns
                    // a lock held by another ember into a wait, then a clear error.
                    if !read_only {
                        conn.execute("PRAGMA journal_mode = WAL").await?;
                    }
                    conn.execute("PRAGMA busy_timeout = 5000").await?;
                    conn.execute("PRAGMA synchronous = NORMAL").await?;
                    conn.execute("PRAGMA foreign_keys = ON").await?;
                    if read_only {
                        conn.execute("PRAGMA query_only = ON").await?;
                    }
                    Ok(())
                })
            });
        } else if read_only {
            opts = opts.after_connect(|conn, _meta| {
                Box::pin(async move {
                    conn.execute("SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY")
                        .await?;
                    Ok(())
                })
            });
        }
        // One plain connection first: the pool retries a refused connection until its acquire
        // timeout, while an operator wants "connection refused" at once.
        let probe = tokio::time::timeout(BUSY_TIMEOUT, sqlx::AnyConnection::connect(&url_owned))
            .await
            .map_err(|_| DbError::Connect {
                url: display_url.clone(),
                message: format!("no answer within {}s", BUSY_TIMEOUT.as_secs()),
            })?
            .map_err(|e| DbError::Connect {
                url: display_url.clone(),
                message: e.to_string(),
            })?;
        let _ = probe.close().await;
        let pool = tokio::time::timeout(BUSY_TIMEOUT * 2, opts.connect(&url_owned))
            .await
            .map_err(|_| DbError::Connect {
                url: display_url.clone(),
                message: format!("no answer within {}s", (BUSY_TIMEOUT * 2).as_secs()),
            })?
            .map_err(|e| DbError::Connect {
                url: display_url.clone(),
                message: e.to_string(),
            })?;
        let migrator = match engine {
            Engine::Sqlite => sqlx::migrate!("migrations/sqlite"),
            Engine::Postgres => sqlx::migrate!("migrations/postgres"),
        };
        // PostgreSQL migrations take an advisory lock; sqlx's SQLite ones take none, so two
        // ember processes starting at once would both create the tables. A file lock beside
        // the database serialises them.
        // Nothing to apply (the usual start): skip the migrator, which needs the right to
        // create tables, so that roles other than the owner can connect.
        let applied: Option<i64> =
            sqlx::query_scalar("SELECT COUNT(*) FROM _sqlx_migrations WHERE success")
                .fetch_one(&pool)
                .await
                .ok();
        let known = migrator.iter().count();
        let current = applied.is_some_and(|n| n as usize >= known);
        if read_only && !current {
            // Before anything else reads a table the schema may not have yet.
            return Err(DbError::Migrate {
                url: display_url,
                message: format!(
                    "the schema has {} of this ember's {known} migrations, and a read-only ember does not apply them: run ember once without read-only",
                    applied.unwrap_or(0)
                ),
            });
        }
        if !read_only && !current {
            let _guard = match (engine, sqlite_path(url)) {
                (Engine::Sqlite, Some(path)) => Some(lock_file(&path, &display_url).await?),
                _ => None,
            };
            migrator.run(&pool).await.map_err(|e| DbError::Migrate {
                url: display_url.clone(),
                message: e.to_string(),
            })?;
        }
        let db = Db {
            pool,
            engine,
            display_url,
            url: fence::Hidden(url.into()),
            fence: None,
            retry_for: None,
            read_only: read_only.then(|| READ_ONLY_FLAG.to_string()),
        };
        // Every age this process computes is by the database's clock from here on.
        db.clock_ms().await?;
        let mut db = db;
        if engine == Engine::Postgres {
            let access = db.access().await?;
            let _ = LOGIN.set((access.describe(), access.user.clone()));
            // A login that may only read finds out now, and never tries a change.
            if !access.can_change && db.read_only.is_none() {
                db.read_only = Some(format!(
                    "connected as {}, which may only read",
                    access.describe()
                ));
            }
        }
        Ok(db)
    }

    /// This handle, with writes that survive an outage of up to `window` (see [`is_transient`]).
    pub fn retrying(&self, window: Duration) -> Db {
        Db {
            retry_for: Some(window),
            ..self.clone()
        }
    }

    /// Runs a write, again while the database is away (for `retry_for`, when set).
    pub(crate) async fn write<T, F, Fut>(&self, what: &'static str, f: F) -> Result<T, DbError>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T, DbError>>,
    {
        use backon::{ExponentialBuilder, Retryable};
        let Some(window) = self.retry_for else {
            let mut f = f;
            return f().await;
        };
        let policy = ExponentialBuilder::default()
            .with_min_delay(Duration::from_millis(100))
            .with_max_delay(Duration::from_secs(2))
            .with_total_delay(Some(window))
            .without_max_times();
        f.retry(policy)
            .when(is_transient)
            .notify(|e, after| {
                tracing::warn!("{what}: database away ({e}); trying again in {after:?}");
            })
            .await
    }

    /// SQL for the database's clock in Unix milliseconds. Ages that decide up/down and
    /// takeovers are judged by this one clock, never by the hosts', whose clocks drift.
    pub fn now_sql(&self) -> &'static str {
        match self.engine {
            Engine::Sqlite => "CAST((julianday('now') - 2440587.5) * 86400000.0 AS BIGINT)",
            Engine::Postgres => "CAST(EXTRACT(EPOCH FROM clock_timestamp()) * 1000 AS BIGINT)",
        }
    }

    /// The database's clock, in Unix milliseconds. Each read also corrects this process's
    /// [`clock::now_ms`].
    pub async fn clock_ms(&self) -> Result<i64, DbError> {
        let sql = format!("SELECT {}", self.now_sql());
        let before = clock::local_ms();
        let db_ms = sqlx::query_scalar::<_, i64>(sqlx::AssertSqlSafe(sql))
            .fetch_one(&self.pool)
            .await
            .map_err(q("read the database clock"))?;
        clock::observe(before, db_ms, clock::local_ms());
        Ok(db_ms)
    }

    /// Applied migrations against the ones this build knows, for `ember doctor`: (applied,
    /// known, names of failed ones).
    pub async fn schema_status(&self) -> Result<(usize, usize, Vec<String>), DbError> {
        let known = match self.engine {
            Engine::Sqlite => sqlx::migrate!("migrations/sqlite").iter().count(),
            Engine::Postgres => sqlx::migrate!("migrations/postgres").iter().count(),
        };
        // No migrations table: a database ember never set up (none of its migrations applied).
        let table = match self.engine {
            Engine::Sqlite => {
                "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = '_sqlx_migrations'"
            }
            Engine::Postgres => {
                "SELECT COUNT(*) FROM pg_tables WHERE tablename = '_sqlx_migrations'"
            }
        };
        let (tables,): (i64,) = sqlx::query_as(table)
            .fetch_one(&self.pool)
            .await
            .map_err(q("read migrations"))?;
        if tables == 0 {
            return Ok((0, known, vec![]));
        }
        let rows: Vec<(i64, String, i64)> = sqlx::query_as(
            "SELECT version, description, CAST(CASE WHEN success THEN 1 ELSE 0 END AS BIGINT) FROM _sqlx_migrations ORDER BY version",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(q("read migrations"))?;
        let failed = rows
            .iter()
            .filter(|r| r.2 == 0)
            .map(|r| format!("{} {}", r.0, r.1))
            .collect();
        Ok((rows.len(), known, failed))
    }

    /// The database's size in bytes (SQLite: the file and its WAL; PostgreSQL: the database).
    pub async fn size_bytes(&self) -> Result<u64, DbError> {
        match (self.engine, self.sqlite_file()) {
            (Engine::Sqlite, Some(p)) => {
                let mut wal = p.as_os_str().to_owned();
                wal.push("-wal");
                let len = |p: &Path| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0);
                Ok(len(&p) + len(Path::new(&wal)))
            }
            (Engine::Sqlite, None) => Ok(0),
            (Engine::Postgres, _) => {
                let (n,): (i64,) = sqlx::query_as("SELECT pg_database_size(current_database())")
                    .fetch_one(&self.pool)
                    .await
                    .map_err(q("database size"))?;
                Ok(n as u64)
            }
        }
    }

    /// The SQLite file, if this is one.
    pub fn sqlite_file(&self) -> Option<PathBuf> {
        match self.engine {
            Engine::Sqlite => sqlite_path(&self.display_url),
            Engine::Postgres => None,
        }
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }
}
