//! The `attachments` table: who has a volume (`volume attach`, `volume export`). Attaching and
//! detaching change the volume's status in the same transaction: the first attachment makes it
//! `in-use` (refusing delete, migrate and extend through the lifecycle table), the last detach
//! makes it `available`. A volume not created `--multiattach` takes one attachment at a time,
//! and the guard is the status update itself, so two attaches at once cannot both win.

use sqlx::FromRow;

use super::words::Status;
use super::{Db, DbError, now_ms, q};

#[derive(Debug, Clone, FromRow, PartialEq, serde::Serialize)]
pub struct AttachmentRow {
    pub id: String,
    pub volume_id: String,
    /// The consumer's host (a hypervisor), as the operator named it.
    pub attached_host: String,
    pub instance: Option<String>,
    /// `rw` or `ro`.
    pub mode: String,
    /// `attach` (connection info handed out) or `export` (ember serves it over NBD).
    pub kind: String,
    /// An export's `nbd://ADDR:PORT`.
    pub endpoint: Option<String>,
    /// The ember host serving an export, and the server's process there.
    pub served_by: Option<String>,
    pub pid: Option<i64>,
    pub asked_by: String,
    pub created_at: i64,
    pub detached_at: Option<i64>,
}

impl AttachmentRow {
    /// `host H (instance I, rw)` or `export nbd://… by host (pid N, ro)`: what a refusal names.
    pub fn describe(&self) -> String {
        let short = crate::service::units::short_id(&self.id);
        match (self.kind.as_str(), &self.endpoint) {
            ("export", Some(e)) => format!(
                "NBD export {e} served by {} (pid {}, {}; attachment {short})",
                self.served_by.as_deref().unwrap_or("?"),
                self.pid.map_or("?".into(), |p| p.to_string()),
                self.mode
            ),
            _ => match &self.instance {
                Some(i) => format!(
                    "host {} (instance {i}, {}; attachment {short})",
                    self.attached_host, self.mode
                ),
                None => format!(
                    "host {} ({}; attachment {short})",
                    self.attached_host, self.mode
                ),
            },
        }
    }

    pub fn is_export(&self) -> bool {
        self.kind == KIND_EXPORT
    }
}

pub const KIND_ATTACH: &str = "attach";
pub const KIND_EXPORT: &str = "export";

pub struct NewAttachment<'a> {
    pub id: &'a str,
    pub volume_id: &'a str,
    pub attached_host: &'a str,
    pub instance: Option<&'a str>,
    pub mode: &'a str,
    pub kind: &'a str,
    pub endpoint: Option<&'a str>,
    pub served_by: Option<&'a str>,
    pub pid: Option<i64>,
    pub asked_by: &'a str,
}

/// How an attach ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Attach {
    Attached,
    /// The volume is in a status that takes no attachment (creating, maintenance, error...).
    Status(Status),
    /// Not multiattach, and these hold it.
    Held(Vec<AttachmentRow>),
    NoVolume,
}

/// How a detach ended: the volume's status after it, or the attachment was not live.
#[derive(Debug, Clone, PartialEq)]
pub enum Detach {
    /// Detached; the volume is now `available` (its last attachment) or still `in-use`.
    Detached {
        now: Status,
    },
    NotAttached,
}

const COLUMNS: &str = "id, volume_id, attached_host, instance, mode, kind, endpoint, served_by, \
     pid, asked_by, created_at, detached_at";

async fn live_of(
    conn: &mut sqlx::AnyConnection,
    volume_id: &str,
) -> Result<Vec<AttachmentRow>, DbError> {
    let sql = format!(
        "SELECT {COLUMNS} FROM attachments WHERE volume_id = $1 AND detached_at IS NULL \
         ORDER BY created_at, id"
    );
    sqlx::query_as::<_, AttachmentRow>(sqlx::AssertSqlSafe(sql))
        .bind(volume_id)
        .fetch_all(conn)
        .await
        .map_err(q("attachments of volume"))
}

impl Db {
    /// Records an attachment and makes the volume `in-use`, in one transaction.
    pub async fn attach(&self, a: &NewAttachment<'_>) -> Result<Attach, DbError> {
        self.ensure_writable("attach a volume")?;
        let mut tx = self.pool.begin().await.map_err(q("begin attach"))?;
        let row: Option<(Status, i64)> = sqlx::query_as(
            "SELECT status, multiattach FROM volumes WHERE id = $1 AND deleted_at IS NULL",
        )
        .bind(a.volume_id)
        .fetch_optional(&mut *tx)
        .await
        .map_err(q("read volume for attach"))?;
        let Some((status, multi)) = row else {
            return Ok(Attach::NoVolume);
        };
        // The guard: one attachment unless multiattach, decided by the update itself.
        let from = if multi != 0 {
            "('available', 'in-use')"
        } else {
            "('available')"
        };
        let sql = format!(
            "UPDATE volumes SET status = 'in-use', status_reason = NULL, updated_at = $1 \
             WHERE id = $2 AND deleted_at IS NULL AND status IN {from}"
        );
        let changed = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(now_ms())
            .bind(a.volume_id)
            .execute(&mut *tx)
            .await
            .map_err(q("attach: volume status"))?
            .rows_affected();
        if changed == 0 {
            let held = live_of(&mut tx, a.volume_id).await?;
            tx.rollback().await.map_err(q("rollback attach"))?;
            return Ok(if status == Status::InUse && !held.is_empty() {
                Attach::Held(held)
            } else {
                Attach::Status(status)
            });
        }
        sqlx::query(
            "INSERT INTO attachments (id, volume_id, attached_host, instance, mode, kind, endpoint, \
                 served_by, pid, asked_by, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
        )
        .bind(a.id)
        .bind(a.volume_id)
        .bind(a.attached_host)
        .bind(a.instance)
        .bind(a.mode)
        .bind(a.kind)
        .bind(a.endpoint)
        .bind(a.served_by)
        .bind(a.pid)
        .bind(a.asked_by)
        .bind(now_ms())
        .execute(&mut *tx)
        .await
        .map_err(q("insert attachment"))?;
        tx.commit().await.map_err(q("commit attach"))?;
        Ok(Attach::Attached)
    }

    /// Ends an attachment; the volume becomes `available` when it was the last one (else its
    /// row is touched, so a console reading changes sees the attachment go).
    pub async fn detach(&self, id: &str) -> Result<Detach, DbError> {
        self.ensure_writable("detach a volume")?;
        let mut tx = self.pool.begin().await.map_err(q("begin detach"))?;
        let now = now_ms();
        let volume: Option<String> = sqlx::query_scalar(
            "SELECT volume_id FROM attachments WHERE id = $1 AND detached_at IS NULL",
        )
        .bind(id)
        .fetch_optional(&mut *tx)
        .await
        .map_err(q("read attachment"))?;
        let Some(volume) = volume else {
            return Ok(Detach::NotAttached);
        };
        let ended = sqlx::query(
            "UPDATE attachments SET detached_at = $1 WHERE id = $2 AND detached_at IS NULL",
        )
        .bind(now)
        .bind(id)
        .execute(&mut *tx)
        .await
        .map_err(q("end attachment"))?
        .rows_affected();
        if ended == 0 {
            tx.rollback().await.map_err(q("rollback detach"))?;
            return Ok(Detach::NotAttached);
        }
        let left = live_of(&mut tx, &volume).await?.len();
        let sql = if left == 0 {
            "UPDATE volumes SET status = CASE WHEN status = 'in-use' THEN 'available' ELSE status END, \
                 updated_at = $1 WHERE id = $2"
        } else {
            "UPDATE volumes SET updated_at = $1 WHERE id = $2"
        };
        sqlx::query(sql)
            .bind(now)
            .bind(&volume)
            .execute(&mut *tx)
            .await
            .map_err(q("detach: volume status"))?;
        let status: Option<Status> = sqlx::query_scalar("SELECT status FROM volumes WHERE id = $1")
            .bind(&volume)
            .fetch_optional(&mut *tx)
            .await
            .map_err(q("read volume after detach"))?;
        tx.commit().await.map_err(q("commit detach"))?;
        Ok(Detach::Detached {
            now: status.unwrap_or(Status::Unknown),
        })
    }

    /// Live attachments of one volume, oldest first.
    pub async fn attachments_of(&self, volume_id: &str) -> Result<Vec<AttachmentRow>, DbError> {
        let mut conn = self.pool.acquire().await.map_err(q("attachments of"))?;
        live_of(&mut conn, volume_id).await
    }

    /// Every live attachment, oldest first (a small table: one row per consumer).
    pub async fn list_attachments(&self) -> Result<Vec<AttachmentRow>, DbError> {
        let sql = format!(
            "SELECT {COLUMNS} FROM attachments WHERE detached_at IS NULL ORDER BY created_at, id"
        );
        sqlx::query_as::<_, AttachmentRow>(sqlx::AssertSqlSafe(sql))
            .fetch_all(&self.pool)
            .await
            .map_err(q("list attachments"))
    }

    /// Records an export's server process once it runs.
    pub async fn set_attachment_pid(&self, id: &str, pid: i64) -> Result<(), DbError> {
        sqlx::query("UPDATE attachments SET pid = $1 WHERE id = $2")
            .bind(pid)
            .bind(id)
            .execute(&self.pool)
            .await
            .map_err(q("set attachment pid"))?;
        Ok(())
    }

    /// Sets whether a volume takes more than one attachment.
    pub async fn set_multiattach(&self, volume_id: &str, on: bool) -> Result<(), DbError> {
        self.ensure_writable("set multiattach")?;
        sqlx::query("UPDATE volumes SET multiattach = $1, updated_at = $2 WHERE id = $3")
            .bind(i64::from(on))
            .bind(now_ms())
            .bind(volume_id)
            .execute(&self.pool)
            .await
            .map_err(q("set multiattach"))?;
        Ok(())
    }

    /// Whether a volume was made `--multiattach`.
    pub async fn is_multiattach(&self, volume_id: &str) -> Result<bool, DbError> {
        let v: Option<i64> = sqlx::query_scalar("SELECT multiattach FROM volumes WHERE id = $1")
            .bind(volume_id)
            .fetch_optional(&self.pool)
            .await
            .map_err(q("read multiattach"))?;
        Ok(v.unwrap_or(0) != 0)
    }
}
