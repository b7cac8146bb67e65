//! `volume migrate VOL --to BACKEND`: a volume moved to another backend, keeping its id and
//! name. Between two pools of one Ceph cluster, by librbd's live migration (the driver's
//! `live_migrate`: prepare, execute, commit; snapshots and parent move with it). Between any
//! other two, as a host-assisted copy (Cinder's generic migration): the target image is made empty,
//! the source is read as clients see it (a clone through its parent, so it arrives flat) and
//! written where it holds data, the target is read back and checked against what was read, and
//! only then does the database say the volume is on the target; the source image is removed
//! last.
//!
//! Crash safety without a checkpoint: before the switch, a run that finds the volume still on
//! its source removes whatever partial copy an earlier run left and starts over; after it, a
//! run that finds the volume on the target only removes what is left of the source. A cancel
//! or failure before the switch removes the partial copy: the volume stays whole on its source.

use std::sync::Arc;

use tracing::warn;

use crate::config::{BackendConfig, Config, DriverConfig};
use crate::db::{Db, EventKind, JobKind, Status};
use crate::driver::transfer::{Copied, copy_verified};
use crate::driver::transfer_over::copy_over_verified;
use crate::driver::verify::Readable;
use crate::driver::{DriverError, LiveTarget, NoProgress, VolumeDriver, human_size};
use crate::service::BackendService;
use crate::service::lifecycle::{End, settle};

use super::exec::{Ctx, Step, check_holders, collect_clone_snapshot, fence_holders};
use super::request::{Plan, asks_from, not_busy, status_is, volume};
use super::{JobError, placement};

/// Checks a migration and plans its job: run by the volume's own service, which must also
/// serve the target backend (both are opened in one process for the copy).
pub(super) async fn plan_migrate(
    db: &Db,
    cfg: &Config,
    key: &str,
    to: &str,
) -> Result<Plan, JobError> {
    let v = volume(db, key).await?;
    crate::service::attach::refuse_if_attached(db, &v, "migrate").await?;
    status_is(&v, asks_from(JobKind::Migrate), "migrate")?;
    let to_name = to.rsplit('@').next().unwrap_or(to);
    if v.backend == to_name {
        return Err(JobError::Refused(format!(
            "volume {} ({}) is on backend {to_name} already",
            v.name, v.id
        )));
    }
    let to_cfg = cfg.backend(to_name);
    let live = same_cluster(cfg.backend(&v.backend), to_cfg);
    let snaps = db.snapshots_of(&v.id).await?;
    for s in &snaps {
        let clones = db.clones_of_snapshot(&s.id).await?;
        if let Some(c) = clones.first() {
            return Err(JobError::Refused(format!(
                "snapshot {} of volume {} has dependent clones ({} and {} more): migrate or flatten them first (ember volume flatten {})",
                s.name,
                v.name,
                c.name,
                clones.len() - 1,
                c.name
            )));
        }
    }
    if let Some(s) = snaps.iter().find(|s| s.status != Status::Available) {
        return Err(JobError::Refused(format!(
            "snapshot {} of volume {} is {}: a migration carries only available snapshots; wait for it, or delete it (ember volume snapshot delete {})",
            s.name, v.name, s.status, s.name
        )));
    }
    not_busy(db, &v.id, &format!("volume {}", v.name)).await?;
    // Room on the target, by the same thin-provisioning rule as a new volume's placement.
    let placed = placement::place(db, cfg, Some(to), v.size_bytes.max(0) as u64).await?;
    let mut plan = Plan::new(
        cfg,
        JobKind::Migrate,
        &v.id,
        &v.backend,
        v.host.as_deref(),
        format!(
            "migrate {} from {} to {}",
            v.name, v.backend, placed.backend
        ),
    );
    plan.params.to_backend = Some(placed.backend.clone());
    plan.params.to_owner = Some(placed.owner.clone());
    // The parent a clone leaves behind: collected after the move if nothing else reads it.
    plan.params.snapshot_id = v.source_snapshot_id.clone();
    if live {
        plan.placement = Some(format!(
            "{} and {} share a Ceph cluster: a live migration (rbd migration prepare, execute, commit), snapshots and parent kept",
            v.backend, placed.backend
        ));
    } else if !snaps.is_empty() {
        let names: Vec<&str> = snaps.iter().map(|s| s.name.as_str()).collect();
        plan.placement = Some(format!(
            "volume {} carries its {} snapshot(s) to {}, oldest first ({}): each is copied, read back and checked, then taken again on the target with the same id; then the volume itself",
            v.name,
            snaps.len(),
            placed.backend,
            names.join(", ")
        ));
    }
    if !live && let Some(parent) = &v.source_snapshot_id {
        let name = db
            .get_snapshot(parent)
            .await?
            .map_or_else(|| parent.clone(), |s| s.name);
        let flat = format!(
            "volume {} is a clone of snapshot {name} on {}: it is flattened on the way (the copy reads through its parent), and arrives on {} without one",
            v.name, v.backend, placed.backend
        );
        plan.placement = Some(match plan.placement.take() {
            Some(carried) => format!("{flat}; {carried}"),
            None => flat,
        });
    }
    plan.guard(v.id.clone(), asks_from(JobKind::Migrate));
    Ok(plan)
}

/// Whether two backends are rbd on the same cluster by their config (the same ceph conf and
/// cluster name): the request expects a live migration. The job asks the clusters themselves
/// (their fsids) before it relies on it.
fn same_cluster(a: Option<&BackendConfig>, b: Option<&BackendConfig>) -> bool {
    match (a.map(|a| &a.driver), b.map(|b| &b.driver)) {
        (Some(DriverConfig::Rbd(a)), Some(DriverConfig::Rbd(b))) => {
            a.cluster_name == b.cluster_name && a.ceph_conf == b.ceph_conf
        }
        _ => false,
    }
}

/// How the volume moves.
#[derive(Debug, Clone, PartialEq)]
enum Method {
    /// `resuming`: an earlier run began it (the source is linked to the target already, so
    /// the only holders are the migration's own).
    Live {
        target: LiveTarget,
        resuming: bool,
    },
    Copy,
}

/// What a move did, for the result line.
enum Moved {
    Live,
    Copied(Copied),
}

/// The job's body.
pub(super) async fn run(ctx: &Ctx) -> Result<(), Step> {
    let id = ctx.id();
    let (Some(to), Some(to_owner)) = (ctx.params.to_backend.clone(), ctx.params.to_owner.clone())
    else {
        return Err(invalid(ctx, "no target backend in the job".into()));
    };
    let Some(v) = ctx.db.get_volume(&id).await? else {
        return Err(invalid(ctx, format!("volume {id} is gone")));
    };
    let from = ctx.svc.name.clone();
    let mut flat = false;
    if v.backend != to {
        let target = peer(ctx, &to)?;
        let method = method(ctx, &target).await?;
        if !matches!(method, Method::Live { resuming: true, .. }) {
            // Left by this service's or this job's own earlier client (kill -9 mid-run): fenced
            // now, or its exclusive lock would hold the migration until its watch times out.
            let stale = check_holders(ctx, "migrate").await?;
            fence_holders(ctx, &stale).await?;
        }
        let moved = match &method {
            Method::Live { target: t, .. } => {
                let (id, t) = (id.clone(), t.clone());
                ctx.call(move |d, p| d.live_migrate(&id, &t, p))
                    .await
                    .map(|()| Moved::Live)
                    .map_err(Step::from)
            }
            Method::Copy => copy(ctx, &target).await.map(Moved::Copied),
        };
        let moved = match moved {
            Ok(m) => m,
            Err(e) => {
                // A peer that took the job over may be copying into the target now; a live
                // migration's own abort is the driver's.
                if method == Method::Copy && !ctx.progress.lost.is_cancelled() {
                    remove_partial(ctx, &target).await;
                }
                return Err(e);
            }
        };
        flat = matches!(moved, Moved::Copied(_));
        ctx.db.move_volume(&id, &to, &to_owner, flat).await?;
        let summary = match moved {
            Moved::Copied(c) => format!(
                "volume {} moved from {from} to {to}: {} copied ({} read where the source holds data, {} written), read back and checked",
                v.name,
                human_size(c.size_bytes),
                human_size(c.read_bytes),
                human_size(c.written_bytes),
            ),
            Moved::Live => format!(
                "volume {} moved from {from} to {to} by live migration within one cluster (prepared, executed, committed): {}, snapshots and parent kept",
                v.name,
                human_size(v.size_bytes.max(0) as u64)
            ),
        };
        ctx.found(EventKind::VolumeMigrated, &summary).await?;
    }
    // On the target now: what is left of the source goes, its snapshots first (a copy
    // carried them; after a live migration none are left on the source).
    let (gone, snaps) = (id.clone(), snapshot_ids(ctx).await?);
    match ctx
        .call(move |d, _| remove_with_snapshots(d, &gone, &snaps))
        .await
    {
        Ok(()) => {}
        Err(e) => {
            // The volume is whole on the target; the leftover is an orphan image for
            // `volume reconcile`, named in the job's error.
            warn!(job = %ctx.job.id, "source image left on {from}: {e}");
            return Err(e.into());
        }
    }
    // A copy arrived flat: its parent may have no reader left (after a crash past the
    // switch, `flat` is not known here: collecting then is only a `volume reconcile` away).
    if flat && let Some(parent) = &ctx.params.snapshot_id {
        collect_clone_snapshot(ctx, parent).await?;
    }
    settle(&ctx.db, JobKind::Migrate, End::Succeeded, &id, None).await?;
    Ok(())
}

/// Live when both backends' storage is one cluster (asked of the clusters, not the config),
/// or when an earlier run left a live migration under way; else a copy.
async fn method(ctx: &Ctx, target: &Arc<BackendService>) -> Result<Method, Step> {
    let (id, dst) = (ctx.id(), target.driver.clone());
    Ok(ctx
        .call(move |d, _| {
            let Some(there) = dst.live_target() else {
                return Ok(Method::Copy);
            };
            let resuming = d.live_migration(&id)?;
            let here = d.live_target();
            if resuming || here.is_some_and(|h| h.cluster == there.cluster) {
                return Ok(Method::Live {
                    target: there,
                    resuming,
                });
            }
            Ok(Method::Copy)
        })
        .await?)
}

/// The target backend's service in this process.
fn peer(ctx: &Ctx, to: &str) -> Result<Arc<BackendService>, Step> {
    ctx.peers
        .iter()
        .find(|p| p.name == to)
        .cloned()
        .ok_or_else(|| {
            Step::Driver(DriverError::Setup {
                backend: ctx.svc.name.clone(),
                op: "migrate",
                cause: format!("backend {to} is not served by this ember process ({})", ctx.svc.host),
                fix: format!(
                    "add a [backends.{to}] section to this host's config (the copy opens both backends in one process), or run the job where both are served"
                ),
            })
        })
}

/// The ids of the volume's snapshots, oldest first: what a copy carries.
async fn snapshot_ids(ctx: &Ctx) -> Result<Vec<String>, Step> {
    Ok(ctx
        .db
        .snapshots_of(&ctx.id())
        .await?
        .into_iter()
        .map(|s| s.id)
        .collect())
}

/// Removes volume `id` and its snapshots `snaps` from `drv` (what is not there is fine): a
/// partial copy on the target, or the source once the volume is on the target.
fn remove_with_snapshots(
    drv: &dyn VolumeDriver,
    id: &str,
    snaps: &[String],
) -> Result<(), DriverError> {
    for s in snaps {
        match drv.delete_snapshot(s, id, false) {
            Ok(_) | Err(DriverError::NotFound { .. }) => {}
            Err(e) => return Err(e),
        }
    }
    let remove = || match drv.delete_volume(id, &NoProgress) {
        Ok(()) | Err(DriverError::NotFound { .. }) => Ok(()),
        Err(e) => Err(e),
    };
    // After a crash the image may still be held by the dead process's client (an rbd watch
    // outlives its client by osd_client_watch_timeout, 30 s): found by the tests' kill -9
    // round, where the next run's removal of the partial copy failed at once with EBUSY.
    use backon::{BlockingRetryable, ConstantBuilder};
    let policy = ConstantBuilder::default()
        .with_delay(std::time::Duration::from_secs(2))
        .with_max_times(BUSY_RETRIES);
    remove
        .retry(policy)
        .sleep(std::thread::sleep)
        .when(crate::driver::is_busy)
        .notify(|e, after| {
            tracing::warn!("volume-{id} cannot be removed yet ({e}); trying again in {after:?}")
        })
        .call()
}

/// Tries of a removal refused because the image is busy, 2 s apart: past the 30 s a dead
/// client's watch outlives it.
const BUSY_RETRIES: usize = 30;

/// A new empty image on the target (any partial one of an earlier run removed first), then
/// the copy and its comparison, on the source's storage pool. With snapshots: the oldest is
/// copied into the empty image and checked, and taken on the target under its own id; each
/// later one, then the volume, is brought over the last (only what differs is written) and
/// checked again. The progress bar restarts for each of them.
async fn copy(ctx: &Ctx, target: &Arc<BackendService>) -> Result<Copied, Step> {
    let id = ctx.id();
    let dst = target.driver.clone();
    let snaps = snapshot_ids(ctx).await?;
    let bps = match (
        ctx.svc.cfg.volume_copy_bps_limit,
        target.cfg.volume_copy_bps_limit,
    ) {
        (0, b) | (b, 0) => b,
        (a, b) => a.min(b),
    };
    let backend = ctx.svc.name.clone();
    let copied = ctx
        .call(move |src, progress| {
            remove_with_snapshots(dst.as_ref(), &id, &snaps)?;
            // None until the first step has made the target.
            let mut total: Option<Copied> = None;
            let mut made_size = 0;
            // Each step reads one state of the source: its snapshots, oldest first, then the
            // volume itself.
            for snap in snaps.iter().map(Some).chain([None]) {
                let what =
                    snap.map_or_else(|| "the volume".to_string(), |s| format!("snapshot-{s}"));
                let fail = |message: String| DriverError::Io {
                    backend: backend.clone(),
                    op: "migrate",
                    message: format!("volume-{id}, {what}: {message}"),
                };
                let mut step = |r: &dyn Readable| -> Result<(), DriverError> {
                    if total.is_none() {
                        dst.create_volume(&id, r.size())?;
                        made_size = r.size();
                    } else if made_size < r.size() {
                        dst.extend_volume(&id, r.size())?;
                        made_size = r.size();
                    }
                    dst.with_volume(&id, true, &mut |w| {
                        let c = match &total {
                            None => copy_verified(&backend, r, w, bps, progress, fail)?.0,
                            Some(_) => copy_over_verified(&backend, r, w, bps, progress, fail)?,
                        };
                        let t = total.get_or_insert_with(Copied::default);
                        t.size_bytes = c.size_bytes;
                        t.read_bytes += c.read_bytes;
                        t.written_bytes += c.written_bytes;
                        Ok(())
                    })
                };
                match snap {
                    Some(s) => {
                        src.with_snapshot(s, &id, &mut step)?;
                        dst.create_snapshot(s, &id, &NoProgress)?;
                    }
                    None => src.with_volume(&id, false, &mut |r| step(r))?,
                }
            }
            total.ok_or_else(|| DriverError::Io {
                backend: backend.clone(),
                op: "migrate",
                message: "the copy did not run".into(),
            })
        })
        .await?;
    Ok(copied)
}

/// After a failure or cancel before the switch: the partial copy goes (its snapshots too), so
/// the volume is whole on its source only. A failure to remove it is logged (reconcile will
/// see an orphan).
async fn remove_partial(ctx: &Ctx, target: &Arc<BackendService>) {
    let (id, dst) = (ctx.id(), target.driver.clone());
    let snaps = match snapshot_ids(ctx).await {
        Ok(s) => s,
        Err(e) => {
            warn!(job = %ctx.job.id, "partial copy left on {}: {e:?}", target.name);
            return;
        }
    };
    let r = ctx
        .svc
        .pool
        .run(move || remove_with_snapshots(dst.as_ref(), &id, &snaps))
        .await;
    match r {
        Ok(Ok(())) => {}
        Ok(Err(e)) => warn!(job = %ctx.job.id, "partial copy left on {}: {e}", target.name),
        Err(e) => warn!(job = %ctx.job.id, "partial copy left on {}: {e}", target.name),
    }
}

fn invalid(ctx: &Ctx, message: String) -> Step {
    Step::Driver(DriverError::Invalid {
        backend: ctx.svc.name.clone(),
        op: "migrate",
        message,
    })
}
