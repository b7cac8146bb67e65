//! One process per service (`host@backend`), decided by the database and released by the
//! operating system when the process dies, however it dies.
//!
//! PostgreSQL: a session advisory lock held by a connection of its own (not the pool's: a
//! pooled connection would be handed to other queries and closed at will). SQLite, whose
//! processes share one host: an exclusive `flock` on a file beside the database. Either way a
//! `kill -9` frees it at once, and no row has to be cleaned up first.

use std::path::PathBuf;

use sqlx::Connection;

use super::{Db, DbError, Engine, q};

/// Held while this process runs a service; dropping it releases the service.
#[derive(Debug)]
pub enum ServiceLock {
    Postgres(Box<sqlx::AnyConnection>),
    File(nix::fcntl::Flock<std::fs::File>),
    /// An in-memory SQLite database: no other process can reach it.
    Memory,
}

impl ServiceLock {
    /// Whether the lock is still held: a PostgreSQL connection that died (the server restarted)
    /// took its advisory lock with it.
    pub async fn alive(&mut self) -> bool {
        match self {
            ServiceLock::Postgres(c) => c.ping().await.is_ok(),
            ServiceLock::File(_) | ServiceLock::Memory => true,
        }
    }
}

/// A stable 64-bit key for a service name (FNV-1a): the same on every host and every build.
pub fn lock_key(service: &str) -> i64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in format!("ember-service:{service}").bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h as i64
}

impl Db {
    /// Takes the service's lock, or None when another live process holds it.
    pub async fn try_service_lock(&self, service: &str) -> Result<Option<ServiceLock>, DbError> {
        match self.engine {
            Engine::Postgres => {
                let mut conn = tokio::time::timeout(
                    super::BUSY_TIMEOUT,
                    sqlx::AnyConnection::connect(self.url()),
                )
                .await
                .map_err(|_| DbError::Connect {
                    url: self.display_url.clone(),
                    message: format!("no answer within {}s", super::BUSY_TIMEOUT.as_secs()),
                })?
                .map_err(|e| DbError::Connect {
                    url: self.display_url.clone(),
                    message: e.to_string(),
                })?;
                let got: i64 = sqlx::query_scalar(
                    "SELECT CAST(CASE WHEN pg_try_advisory_lock($1) THEN 1 ELSE 0 END AS BIGINT)",
                )
                .bind(lock_key(service))
                .fetch_one(&mut conn)
                .await
                .map_err(q("take service lock"))?;
                Ok((got == 1).then(|| ServiceLock::Postgres(Box::new(conn))))
            }
            Engine::Sqlite => {
                let Some(db) = self.sqlite_file() else {
                    return Ok(Some(ServiceLock::Memory));
                };
                let mut name = db.as_os_str().to_owned();
                name.push(format!(".service-{:016x}.lock", lock_key(service) as u64));
                let path = PathBuf::from(name);
                let file = {
                    use std::os::unix::fs::OpenOptionsExt;
                    std::fs::OpenOptions::new()
                        .create(true)
                        .truncate(false)
                        .write(true)
                        .mode(0o600)
                        .open(&path)
                        .map_err(|e| DbError::Connect {
                            url: self.display_url.clone(),
                            message: format!("cannot open {}: {e}", path.display()),
                        })?
                };
                match nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusiveNonblock) {
                    Ok(lock) => Ok(Some(ServiceLock::File(lock))),
                    Err((_, nix::errno::Errno::EWOULDBLOCK)) => Ok(None),
                    Err((_, e)) => Err(DbError::Connect {
                        url: self.display_url.clone(),
                        message: format!("cannot lock {}: {e}", path.display()),
                    }),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_stable_and_distinct() {
        assert_eq!(lock_key("a@file0"), lock_key("a@file0"));
        assert_ne!(lock_key("a@file0"), lock_key("b@file0"));
        assert_ne!(lock_key("a@file0"), lock_key("a@file1"));
    }
}
