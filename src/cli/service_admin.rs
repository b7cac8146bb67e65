//! Maintenance of services, as Cinder operators do it: `service disable` / `enable`
//! (`openstack volume service set --disable`) and `service remove` (`cinder-manage service
//! remove`). Each is recorded in `events` with who did it.

use std::process::ExitCode;

use anyhow::bail;

use crate::db::events::NewEvent;
use crate::db::services::is_up;
use crate::db::{Db, EventKind, ServiceRow};
use crate::service::actor::current_actor;
use crate::service::jobs::recovery::settle_transitional;

use super::args::Global;
use super::output::{age, print_json};

async fn find(db: &Db, name: &str) -> anyhow::Result<ServiceRow> {
    let rows = db.list_services().await?;
    if let Some(r) = rows.iter().find(|r| r.host == name) {
        return Ok(r.clone());
    }
    let known: Vec<&str> = rows.iter().map(|r| r.host.as_str()).collect();
    bail!(
        "no service {name:?}; services are named HOST@BACKEND: {}",
        if known.is_empty() {
            "none is registered".to_string()
        } else {
            known.join(", ")
        }
    )
}

async fn record(db: &Db, kind: EventKind, target: &str, message: &str) {
    let _ = db
        .add_event(&NewEvent {
            actor: &current_actor(),
            host: None,
            kind,
            target: Some(target),
            message,
        })
        .await;
}

/// `service disable` (with a reason) or `service enable` (reason None).
pub async fn set_disabled(
    g: &Global,
    db: &Db,
    name: &str,
    reason: Option<&str>,
) -> anyhow::Result<ExitCode> {
    let row = find(db, name).await?;
    if reason.is_some_and(|r| r.trim().is_empty()) {
        bail!("service disable needs a --reason that says why (it is shown in `service list`)");
    }
    db.ensure_writable(if reason.is_some() {
        "disable a service"
    } else {
        "enable a service"
    })?;
    db.set_service_disabled(&row.host, reason).await?;
    let (kind, text) = match reason {
        Some(r) => (
            EventKind::ServiceDisabled,
            format!(
                "{} disabled: {r} (it claims no job and gets no new volume)",
                row.host
            ),
        ),
        None => (EventKind::ServiceEnabled, format!("{} enabled", row.host)),
    };
    record(db, kind, &row.host, &text).await;
    if g.json {
        print_json(
            &serde_json::json!({"service": row.host, "disabled": reason.is_some(), "reason": reason}),
        )?;
    } else {
        println!("{text}; it takes effect at its next heartbeat");
    }
    Ok(ExitCode::SUCCESS)
}

/// `service remove`: refused while the service is up. The jobs only it could run are failed
/// with the reason (never run elsewhere: its storage may be local); running jobs of a cluster
/// go back to the queue for a live member; its half-done volumes go to their error states.
pub async fn remove(g: &Global, db: &Db, name: &str, down_ms: i64) -> anyhow::Result<ExitCode> {
    db.ensure_writable("remove a service")?;
    let row = find(db, name).await?;
    let now = db.clock_ms().await?;
    if is_up(&row, now, down_ms) {
        bail!(
            "{} is up (last heartbeat {} ago, pid {}): stop it first; `service remove` is for a service that is gone for good",
            row.host,
            row.updated_at
                .map_or("?".into(), |u| age((now - u) as f64 / 1000.0)),
            row.pid.map_or("?".into(), |p| p.to_string())
        );
    }
    let actor = current_actor();
    let why = format!("service {} was removed by {actor}", row.host);
    let (mut failed, mut requeued) = (vec![], vec![]);
    for j in db.jobs_held_by(&row.host).await? {
        if j.owner.as_deref() == Some(row.host.as_str()) {
            if db.fail_job(&j.id, &why).await? {
                failed.push(j.id);
            }
        } else if db.take_over_job(&j.id, j.claim_token).await? {
            requeued.push(j.id);
        }
    }
    settle_transitional(db, &row.host, &row.backend, &why).await?;
    db.remove_service(&row.host).await?;
    let text = format!(
        "{} removed: {} job(s) failed, {} handed to its cluster",
        row.host,
        failed.len(),
        requeued.len()
    );
    record(db, EventKind::ServiceRemoved, &row.host, &text).await;
    if g.json {
        print_json(&serde_json::json!({
            "service": row.host,
            "failed_jobs": failed,
            "requeued_jobs": requeued,
        }))?;
    } else {
        println!("{text}");
        for id in &failed {
            println!("  failed: job {id}");
        }
    }
    Ok(ExitCode::SUCCESS)
}
