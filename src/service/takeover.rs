//! Takeover in a cluster (Cinder's active-active `cluster@backend`): when the service that holds
//! a job has not heartbeated for `service_down_time`, judged by the database's clock, a live
//! member of the same cluster fences the dead one's storage client (rbd: the OSD blocklist),
//! then requeues the job under a new claim token. Any member then claims it and runs it again
//! from the top (every driver call is idempotent). The old worker, should it wake up, finds
//! its token moved: its writes match nothing, and it stops.
//!
//! Outside a cluster there is no peer that may act on a host's volumes: its jobs wait for it
//! (`ember job show` and `ember doctor` say so), or for `ember service remove`.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::MissedTickBehavior;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::config::Config;
use crate::db::services::{is_alive, is_up};
use crate::db::{Db, JobRow, JobState, ServiceRow};

use super::BackendService;
use super::backend::check_timeout;

/// How long a fenced client stays on the OSD blocklist. A woken host reconnects with a new
/// client at once; the entry only has to outlive the old client's pending writes.
pub const FENCE_EXPIRY_S: u32 = 3600;

/// Looks for jobs of dead members every `report_interval` until `stop`.
pub async fn takeover_loop(
    svc: Arc<BackendService>,
    db: Db,
    config: Arc<Config>,
    stop: CancellationToken,
) {
    let Some(cluster) = svc.cluster.clone() else {
        return;
    };
    let down_ms = config.service_down_time.as_millis() as i64;
    let mut tick = tokio::time::interval(config.report_interval.max(Duration::from_secs(1)));
    tick.set_missed_tick_behavior(MissedTickBehavior::Skip);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        // A member whose own storage is failing, or that an operator disabled, leaves the
        // work to the others.
        if !svc.healthy.load(std::sync::atomic::Ordering::SeqCst)
            || svc.disabled.load(std::sync::atomic::Ordering::SeqCst)
        {
            continue;
        }
        match db.orphaned_jobs(&cluster, down_ms).await {
            Ok(jobs) if jobs.is_empty() => {}
            Ok(jobs) => {
                // Where each dead member's storage client is, to fence it. Without that
                // answer no job is taken over: running it twice is worse than running it late.
                let services = match db.list_services().await {
                    Ok(s) => s,
                    Err(e) => {
                        warn!(backend = %svc.name, "not taking jobs over yet: cannot read the services to fence: {e}");
                        continue;
                    }
                };
                for job in jobs {
                    take_over(&svc, &db, &job, &services, down_ms).await;
                }
            }
            Err(e) => warn!(backend = %svc.name, "cannot look for jobs to take over: {e}"),
        }
    }
}

async fn take_over(
    svc: &BackendService,
    db: &Db,
    job: &JobRow,
    services: &[ServiceRow],
    down_ms: i64,
) {
    let old = job.claimed_by.clone().unwrap_or_default();
    let address = services
        .iter()
        .find(|r| r.host == old)
        .and_then(|r| r.client_address.clone());
    // The service's client, and the job's own when it had one (a throttled rbd flatten's).
    let mut clients: Vec<String> = address.into_iter().collect();
    if let Some(own) = &job.client_address
        && !clients.contains(own)
    {
        clients.push(own.clone());
    }
    let mut fenced = vec![];
    for addr in clients {
        let a = addr.clone();
        match svc
            .call_driver("fence", check_timeout(&svc.cfg), move |d| {
                d.fence_client(&a, FENCE_EXPIRY_S)
            })
            .await
        {
            Ok(()) => {
                super::metrics::Metrics::backend_count(
                    &super::metrics::get().fenced_clients,
                    &svc.name,
                );
                fenced.push(addr)
            }
            Err(e) => {
                // Running the job twice is worse than running it late: wait and retry.
                warn!(backend = %svc.name, job = %job.id, "not taken over from {old}: cannot fence {addr}: {e}");
                return;
            }
        }
    }
    let fenced = match fenced.len() {
        0 => String::new(),
        1 => format!("; its storage client {} is blocklisted", fenced[0]),
        _ => format!(
            "; its storage clients {} are blocklisted",
            fenced.join(" and ")
        ),
    };
    match db.take_over_job(&job.id, job.claim_token).await {
        Ok(true) => {
            let text = format!(
                "{} job {} taken over by {} from {old}: {old} has not heartbeated for {} s{fenced}",
                job.kind,
                job.id,
                svc.host,
                down_ms / 1000
            );
            info!(backend = %svc.name, job = %job.id, "{text}");
            super::metrics::Metrics::backend_count(&super::metrics::get().takeovers, &svc.name);
            super::event(
                db,
                &svc.host,
                crate::db::EventKind::JobTakenOver,
                &job.target_id,
                &text,
            )
            .await;
        }
        Ok(false) => {} // another member was first
        Err(e) => warn!(backend = %svc.name, job = %job.id, "take over failed: {e}"),
    }
}

/// Who holds a job: what [`waiting_for`] reads of a job row or of the console's view.
#[derive(Debug, Clone, Copy)]
pub struct Claim<'a> {
    pub id: &'a str,
    pub state: JobState,
    pub claimed_by: Option<&'a str>,
    pub owner: Option<&'a str>,
}

impl<'a> From<&'a JobRow> for Claim<'a> {
    fn from(j: &'a JobRow) -> Self {
        Claim {
            id: &j.id,
            state: j.state,
            claimed_by: j.claimed_by.as_deref(),
            owner: j.owner.as_deref(),
        }
    }
}

impl<'a> From<&'a super::view::JobView> for Claim<'a> {
    fn from(j: &'a super::view::JobView) -> Self {
        Claim {
            id: &j.id,
            state: j.state,
            claimed_by: j.claimed_by.as_deref(),
            owner: j.owner.as_deref(),
        }
    }
}

/// For an unfinished job: what it waits for when its owner (or the host running it) is a
/// service that is down and has no peer that may take over, with the fix.
pub fn waiting_for<'a>(
    j: impl Into<Claim<'a>>,
    services: &[ServiceRow],
    now_ms: i64,
    down_ms: i64,
) -> Option<String> {
    let j: Claim<'a> = j.into();
    if !j.state.is_active() {
        return None;
    }
    let holder = match j.state {
        JobState::Running => j.claimed_by?,
        _ => j.owner?,
    };
    // A clustered owner: any live member may run it, and takes it over if its runner died.
    let members: Vec<&ServiceRow> = services
        .iter()
        .filter(|s| s.host == holder || s.cluster.as_deref() == Some(holder))
        .collect();
    // A running job whose process heartbeats waits only for its storage, when that is failing:
    // the call is paused in the storage client and goes on when the storage answers again.
    if j.state == JobState::Running
        && let Some(runner) = members
            .iter()
            .find(|s| s.host == holder && is_alive(s, now_ms, down_ms))
    {
        return runner.error.as_ref().map(|e| {
            format!(
                "paused: {holder}'s storage is failing ({e}); the job goes on when it answers again (ember job cancel {} stops it)",
                crate::service::units::short_id(j.id)
            )
        });
    }
    if members.iter().any(|s| is_up(s, now_ms, down_ms)) {
        return None;
    }
    let clustered = j
        .owner
        .is_some_and(|o| members.iter().any(|s| s.cluster.as_deref() == Some(o)));
    let since = members
        .iter()
        .filter_map(|s| s.updated_at)
        .max()
        .map(|u| {
            format!(
                "last heartbeat {} ago",
                super::units::age((now_ms - u) as f64 / 1000.0)
            )
        })
        .unwrap_or_else(|| "never heartbeated".into());
    Some(if clustered {
        format!("waiting for a live member of {holder} ({since}): start one")
    } else {
        format!(
            "waiting for {holder} to return ({since}): restart it, or `ember service remove {holder}` once it is gone for good (its jobs then fail)"
        )
    })
}
