//! Where a new volume goes, as Cinder's scheduler decides it: among the live, enabled services
//! that match `--backend` (`NAME`, `HOST@NAME` or `CLUSTER@NAME`), the owner with the most free
//! capacity that fits the size. A clustered backend is one candidate (`cluster@backend`),
//! whichever member reports it. ember's backends are thin (sparse files, rbd images), so, as
//! Cinder's CapacityFilter does for thin provisioning, the free capacity is virtual:
//! `total × max_over_subscription_ratio − provisioned`, and a volume fits when its size does.

use crate::config::Config;
use crate::db::services::is_up;
use crate::db::{Db, ServiceRow};

use super::JobError;

/// The pick.
#[derive(Debug, Clone, PartialEq)]
pub struct Placement {
    pub backend: String,
    /// `host@backend` or `cluster@backend`.
    pub owner: String,
    /// Said when there was a choice: which one and why.
    pub why: Option<String>,
}

/// One candidate owner, with the best figures any of its live members reports.
#[derive(Debug)]
struct Candidate {
    owner: String,
    backend: String,
    /// Virtual free bytes; None: unknown capacity.
    free: Option<i64>,
    provisioned: i64,
}

/// Thin provisioning's free capacity (Cinder's `free_virtual`); None when unknown (a total
/// of 0 means unknown: an rbd pool without a ceph-mgr).
fn virtual_free(r: &ServiceRow, ratio: f64) -> Option<i64> {
    let total = r.capacity_total.filter(|t| *t > 0)?;
    r.capacity_free?;
    Some((total as f64 * ratio) as i64 - r.capacity_provisioned.unwrap_or(0))
}

fn matches(row: &ServiceRow, want: Option<&str>) -> bool {
    match want {
        None => true,
        Some(w) if w.contains('@') => row.host == w || row.cluster.as_deref() == Some(w),
        Some(w) => row.backend == w,
    }
}

/// Places a new volume of `size` bytes.
pub async fn place(
    db: &Db,
    cfg: &Config,
    want: Option<&str>,
    size: u64,
) -> Result<Placement, JobError> {
    let rows = db.list_services().await?;
    let now = db.clock_ms().await?;
    let down = cfg.service_down_time.as_millis() as i64;
    let mut cands: Vec<Candidate> = vec![];
    for r in rows
        .iter()
        .filter(|r| is_up(r, now, down) && r.disabled == 0 && r.draining == 0 && matches(r, want))
    {
        let owner = r.cluster.clone().unwrap_or_else(|| r.host.clone());
        // Unknown capacity passes, as Cinder's CapacityFilter passes `unknown`, and ranks
        // after every known figure. The ratio is this host's setting for the backend, or
        // Cinder's default for a backend only other hosts serve.
        let ratio = cfg
            .backend(&r.backend)
            .map_or(crate::config::defaults::MAX_OVER_SUBSCRIPTION_RATIO, |b| {
                b.max_over_subscription_ratio
            });
        let free = virtual_free(r, ratio);
        match cands.iter_mut().find(|c| c.owner == owner) {
            Some(c) => {
                c.free = c.free.max(free);
                c.provisioned = c.provisioned.max(r.capacity_provisioned.unwrap_or(0));
            }
            None => cands.push(Candidate {
                owner,
                backend: r.backend.clone(),
                free,
                provisioned: r.capacity_provisioned.unwrap_or(0),
            }),
        }
    }
    if cands.is_empty() {
        // Asked for by name while it is being emptied: say so, rather than queue a volume
        // the evacuation would have to move again.
        if let Some(r) = rows
            .iter()
            .find(|r| r.draining != 0 && matches(r, want) && want.is_some())
        {
            return Err(JobError::Refused(format!(
                "backend {} is being evacuated (draining): no new volume goes there; `ember backend drain {} --off` ends that",
                r.backend, r.backend
            )));
        }
        return fallback(cfg, want, &rows);
    }
    // Several backends of different names and none asked for: the operator chooses.
    let mut names: Vec<&str> = cands.iter().map(|c| c.backend.as_str()).collect();
    names.sort_unstable();
    names.dedup();
    if want.is_none() && names.len() > 1 {
        return Err(JobError::Refused(format!(
            "several backends: choose one with --backend ({})",
            names.join(", ")
        )));
    }
    let n = cands.len();
    let fits = |c: &Candidate| c.free.is_none_or(|f| f >= size as i64);
    let Some(best) = cands.iter().filter(|c| fits(c)).max_by(|a, b| {
        // Most free first; a known figure beats an unknown one; then the least provisioned.
        a.free
            .unwrap_or(-1)
            .cmp(&b.free.unwrap_or(-1))
            .then(b.provisioned.cmp(&a.provisioned))
            .then(b.owner.cmp(&a.owner))
    }) else {
        let most = cands.iter().filter_map(|c| c.free).max().unwrap_or(0);
        return Err(JobError::Refused(format!(
            "no live service of {} has room for {size} bytes (the most, thin-provisioned, is {most} bytes: total × max_over_subscription_ratio − provisioned); free space, raise max_over_subscription_ratio, or extend the pool",
            want.unwrap_or("any backend")
        )));
    };
    Ok(Placement {
        backend: best.backend.clone(),
        owner: best.owner.clone(),
        why: (n > 1).then(|| {
            format!(
                "placed on {}: the most free capacity ({} thin-provisioned) of {n} live services",
                best.owner,
                best.free
                    .map_or("unknown".into(), crate::service::units::human_bytes)
            )
        }),
    })
}

/// No live candidate: the volume goes to this host's own service of the backend (its job
/// waits for it to come up), or to the exact `HOST@NAME` asked for.
fn fallback(cfg: &Config, want: Option<&str>, rows: &[ServiceRow]) -> Result<Placement, JobError> {
    let backend = match want {
        Some(w) => match w.split_once('@') {
            Some((_, b)) => {
                if !rows
                    .iter()
                    .any(|r| r.host == w || r.cluster.as_deref() == Some(w))
                {
                    return Err(JobError::Refused(format!(
                        "no service or cluster {w:?} is known; `ember service list` shows them"
                    )));
                }
                return Ok(Placement {
                    backend: b.to_string(),
                    owner: w.to_string(),
                    why: None,
                });
            }
            None => w.to_string(),
        },
        None if cfg.backends.len() == 1 => cfg.backends[0].name.clone(),
        None => {
            let names: Vec<&str> = cfg.backends.iter().map(|b| b.name.as_str()).collect();
            return Err(JobError::Refused(format!(
                "several backends: choose one with --backend ({})",
                names.join(", ")
            )));
        }
    };
    if cfg.backend(&backend).is_none() {
        let known: Vec<&str> = cfg.backends.iter().map(|b| b.name.as_str()).collect();
        return Err(JobError::Refused(format!(
            "no backend {backend:?} in the config; known: {}",
            known.join(", ")
        )));
    }
    Ok(Placement {
        owner: cfg.service_owner(&backend),
        backend,
        why: None,
    })
}
