//! Breaking a stale lock the way Ceph recommends: the locker's address goes to the OSD
//! blocklist (so a live holder cannot write on), then its lock is removed. Refused for a
//! client that still watches the image (alive, not stale) unless forced, and for an ember
//! service's own client (its job holds the lock). One function for the CLI and the console.

use std::sync::Arc;

use crate::config::Config;
use crate::db::Db;
use crate::db::events::NewEvent;
use crate::driver::{self, BLOCKLIST_SECS, Holder};

use super::BackendService;
use super::inspect;
use super::jobs::JobError;
use super::jobs::request::volume;

/// Blocklisting and removing a lock: two monitor/OSD round trips, bounded.
const BREAK_LIMIT: std::time::Duration = std::time::Duration::from_secs(60);

/// What was broken, and the audit line written for it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Broken {
    pub volume: String,
    pub broken: Holder,
    pub blocklisted_secs: u32,
    pub message: String,
}

pub async fn break_lock(
    cfg: &Config,
    db: &Db,
    local: &[Arc<BackendService>],
    key: &str,
    locker: &str,
    force: bool,
    actor: &str,
) -> Result<Broken, JobError> {
    db.ensure_writable("break a lock")?;
    let v = volume(db, key).await?;
    let what = format!("volume {} ({})", v.name, v.id);
    let refused = |why: String| JobError::Refused(format!("{what}: {why}"));
    let h = inspect::of_volume(cfg, db, local, &v, inspect::Usage::Skip)
        .await
        .map_err(|e| refused(e.to_string()))?;
    let Some(lock) = h
        .holders
        .iter()
        .find(|x| x.client == locker && x.cookie.is_some())
        .cloned()
    else {
        let lockers: Vec<String> = h
            .holders
            .iter()
            .filter(|x| x.cookie.is_some())
            .map(|x| x.client.clone())
            .collect();
        return Err(refused(format!(
            "{locker} holds no lock on it; lockers now: {} (see `ember volume locks {}`)",
            if lockers.is_empty() {
                "none".to_string()
            } else {
                lockers.join(", ")
            },
            v.name
        )));
    };
    if lock.ember {
        return Err(refused(format!(
            "{} is an ember service's own client (host {}): its job holds the lock; cancel the job instead",
            lock.client,
            lock.host.as_deref().unwrap_or("?")
        )));
    }
    let watching = h.holders.iter().any(|x| {
        x.how == "watcher" && driver::address_key(&x.address) == driver::address_key(&lock.address)
    });
    if watching && !force {
        return Err(refused(format!(
            "{} still watches the image ({}): it is alive, not stale; breaking its lock blocklists it for {BLOCKLIST_SECS} s and its writes fail. Use --force if that is what you want",
            lock.client, lock.address
        )));
    }
    let drv = match local.iter().find(|s| s.name == v.backend) {
        Some(svc) => svc.driver.clone(),
        None => {
            let Some(bc) = cfg.backend(&v.backend) else {
                return Err(refused(format!(
                    "this host's config has no section for backend {}",
                    v.backend
                )));
            };
            driver::open_once(bc).map_err(|e| refused(e.to_string()))?
        }
    };
    let (id, l) = (v.id.clone(), lock.clone());
    inspect::bounded(drv, "break-lock", BREAK_LIMIT, move |d| {
        d.break_lock(&id, &l, BLOCKLIST_SECS)
    })
    .await
    .map_err(|e| refused(e.to_string()))?;
    let message = format!(
        "lock of {} broken{}: {} blocklisted for {BLOCKLIST_SECS} s",
        lock.describe(),
        if watching {
            " (forced: it was still watching)"
        } else {
            ""
        },
        lock.address
    );
    let _ = db
        .add_event(&NewEvent {
            actor,
            host: None,
            kind: crate::db::EventKind::LockBroken,
            target: Some(&v.id),
            message: &message,
        })
        .await;
    Ok(Broken {
        volume: v.id,
        broken: lock,
        blocklisted_secs: BLOCKLIST_SECS,
        message: format!("{what}: {message}"),
    })
}
