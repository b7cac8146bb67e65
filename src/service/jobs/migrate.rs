//! `volume migrate VOL --to BACKEND [--with-clones]`: a volume moved to another backend,
//! keeping its id and name; with `--with-clones`, together with every clone that reads from
//! its snapshots, which keep their layering. A single volume between two pools of one Ceph
//! cluster, by librbd's live migration (the driver's `live_migrate`: prepare, execute, commit;
//! snapshots and parent move with it). A family, or between any other two, as a host-assisted copy
//! (Cinder's generic migration, `migrate_copy.rs`): each image is made on the target, written,
//! read back and checked against what was read, and only then does the database say the
//! volumes are on the target (all in one transaction); the source images are removed last.
//!
//! Crash safety without a checkpoint: before the switch, a run that finds the volume still on
//! its source removes whatever partial copies an earlier run left and starts over; after it, a
//! run that finds it on the target only removes what is left of the source. A cancel or
//! failure before the switch removes the partial copies: the volumes stay whole on their source.

use std::sync::Arc;

use tracing::warn;

use crate::config::{BackendConfig, Config, DriverConfig};
use crate::db::{Db, EventKind, JobKind, Status, VolumeRow};
use crate::driver::transfer::Copied;
use crate::driver::{DriverError, LiveTarget, human_size};
use crate::service::BackendService;
use crate::service::lifecycle::{End, settle};

use super::exec::{Ctx, Step, collect_clone_snapshot};
use super::guards::{asks_from, not_busy, status_is};
use super::holders::{check_holders_of, fence_holders};
use super::migrate_copy::{copy, members, remove_partial, remove_with_snapshots};
use super::request::{Plan, volume};
use super::{JobError, placement};

/// Checks a migration and plans its job: run by the volume's own service, which must also
/// serve the target backend (both are opened in one process for the copy). `with_clones`:
/// the clones of its snapshots (and theirs) move in the same job and keep their layering;
/// without it, a volume whose snapshot has clones is refused.
pub(super) async fn plan_migrate(
    db: &Db,
    cfg: &Config,
    key: &str,
    to: &str,
    with_clones: bool,
) -> Result<Plan, JobError> {
    let v = volume(db, key).await?;
    // Attached or busy says more than where it is: first.
    crate::service::attach::refuse_if_attached(db, &v, "migrate").await?;
    status_is(&v, asks_from(JobKind::Migrate), "migrate")?;
    let to_name = to.rsplit('@').next().unwrap_or(to);
    if v.backend == to_name {
        return Err(JobError::Refused(format!(
            "volume {} ({}) is on backend {to_name} already",
            v.name, v.id
        )));
    }
    let family = if with_clones {
        db.descendants(&v.id).await?
    } else {
        refuse_dependent_clones(db, &v).await?;
        vec![]
    };
    for m in std::iter::once(&v).chain(&family) {
        movable(db, m, &v).await?;
    }
    let to_cfg = cfg.backend(to_name);
    // A family is copied (see `run`).
    let live = family.is_empty() && same_cluster(cfg.backend(&v.backend), to_cfg);
    // Room on the target, by the same thin-provisioning rule as a new volume's placement
    // (a clone counts its whole size, as it does when it is made).
    let size: i64 = std::iter::once(&v)
        .chain(&family)
        .map(|m| m.size_bytes.max(0))
        .sum();
    let placed = placement::place(db, cfg, Some(to), size as u64).await?;
    let mut plan = Plan::new(
        cfg,
        JobKind::Migrate,
        &v.id,
        &v.backend,
        v.host.as_deref(),
        format!(
            "migrate {}{} from {} to {}",
            v.name,
            if family.is_empty() {
                String::new()
            } else {
                format!(" with {} clone(s)", family.len())
            },
            v.backend,
            placed.backend
        ),
    );
    plan.params.to_backend = Some(placed.backend.clone());
    plan.params.to_owner = Some(placed.owner.clone());
    plan.params.family = family.iter().map(|c| c.id.clone()).collect();
    // The parent a clone leaves behind: collected after the move if nothing else reads it.
    plan.params.snapshot_id = v.source_snapshot_id.clone();
    let mut said = vec![];
    if !live && let Some(parent) = &v.source_snapshot_id {
        let name = db
            .get_snapshot(parent)
            .await?
            .map_or_else(|| parent.clone(), |s| s.name);
        said.push(format!(
            "volume {} is a clone of snapshot {name} on {}: it is flattened on the way (the copy reads through its parent), and arrives on {} without one",
            v.name, v.backend, placed.backend
        ));
    }
    if live {
        said.push(format!(
            "{} and {} share a Ceph cluster: a live migration (rbd migration prepare, execute, commit), snapshots and parent kept",
            v.backend, placed.backend
        ));
    } else {
        let snaps = db.snapshots_of(&v.id).await?;
        if !snaps.is_empty() {
            let names: Vec<&str> = snaps.iter().map(|s| s.name.as_str()).collect();
            said.push(format!(
                "volume {} carries its {} snapshot(s) to {}, oldest first ({}): each is copied, read back and checked, then taken again on the target with the same id; then the volume itself",
                v.name,
                snaps.len(),
                placed.backend,
                names.join(", ")
            ));
        }
    }
    if !family.is_empty() {
        let names: Vec<&str> = family.iter().map(|c| c.name.as_str()).collect();
        said.push(format!(
            "its {} clone(s) move with it, parents first ({}): each arrives as a clone of the same snapshot on {}{}",
            family.len(),
            names.join(", "),
            placed.backend,
            ", only what differs from its parent written, then read back and checked"
        ));
    }
    if !said.is_empty() {
        plan.placement = Some(said.join("; "));
    }
    plan.guard(v.id.clone(), asks_from(JobKind::Migrate));
    Ok(plan)
}

/// A volume whose snapshots have clones cannot leave them behind (they read from it).
async fn refuse_dependent_clones(db: &Db, v: &VolumeRow) -> Result<(), JobError> {
    for s in db.snapshots_of(&v.id).await? {
        let clones = db.clones_of_snapshot(&s.id).await?;
        if let Some(c) = clones.first() {
            let mut names: Vec<&str> = clones.iter().take(3).map(|c| c.name.as_str()).collect();
            if clones.len() > 3 {
                names.push("...");
            }
            return Err(JobError::Refused(format!(
                "volume {} has dependent clones of its snapshot {} ({}): move them with it (--with-clones; in the console, y to \"with its clones\"), or flatten them first (ember volume flatten {})",
                v.name,
                s.name,
                names.join(", "),
                c.name
            )));
        }
    }
    Ok(())
}

/// What every volume of a migration (`root`, or a clone moving with it) must be: on the
/// root's backend, not attached, available, without a job, its snapshots available.
async fn movable(db: &Db, v: &VolumeRow, root: &VolumeRow) -> Result<(), JobError> {
    if v.backend != root.backend {
        return Err(JobError::Refused(format!(
            "clone {} of volume {} is on backend {}, not {}: a migration moves a family from one backend; migrate {} on its own first",
            v.name, root.name, v.backend, root.backend, v.name
        )));
    }
    crate::service::attach::refuse_if_attached(db, v, "migrate").await?;
    status_is(v, asks_from(JobKind::Migrate), "migrate")?;
    if let Some(s) = db
        .snapshots_of(&v.id)
        .await?
        .into_iter()
        .find(|s| s.status != Status::Available)
    {
        return Err(JobError::Refused(format!(
            "snapshot {} of volume {} is {}: a migration carries only available snapshots; wait for it, or delete it (ember volume snapshot delete {})",
            s.name, v.name, s.status, s.name
        )));
    }
    not_busy(db, &v.id, &format!("volume {}", v.name)).await
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
    /// Per volume of the family, the job's own first.
    Copied(Vec<Copied>),
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
    let members = members(ctx).await?;
    let from = ctx.svc.name.clone();
    let mut flat = false;
    // The whole family switches in one transaction: the job's own volume says for all.
    if v.backend != to {
        let target = peer(ctx, &to)?;
        // A family is copied even between two pools of one cluster: librbd's live migration
        // of a volume whose snapshots have clones could not be carried on after a kill -9
        // here (the commit failed with EBUSY, then EINVAL), while the copy starts over safely.
        let method = if members.len() > 1 {
            Method::Copy
        } else {
            method(ctx, &target).await?
        };
        if !matches!(method, Method::Live { resuming: true, .. }) {
            for m in &members {
                // Left by this service's or this job's own earlier client (kill -9 mid-run):
                // fenced now, or its exclusive lock would hold the migration until its watch
                // times out. Anyone else's refuses the migration.
                let stale = check_holders_of(ctx, &m.id, "migrate").await?;
                fence_holders(ctx, &stale).await?;
            }
        }
        let moved = match &method {
            Method::Live { target: t, .. } => {
                let (id, t) = (id.clone(), t.clone());
                ctx.call(move |d, p| d.live_migrate(&id, &t, p))
                    .await
                    .map(|()| Moved::Live)
                    .map_err(Step::from)
            }
            Method::Copy => copy(ctx, &target, &members).await.map(Moved::Copied),
        };
        let moved = match moved {
            Ok(m) => m,
            Err(e) => {
                // A peer that took the job over may be copying into the target now; a live
                // migration's own abort is the driver's.
                if method == Method::Copy && !ctx.progress.lost.is_cancelled() {
                    remove_partial(ctx, &target, &members).await;
                }
                return Err(e);
            }
        };
        flat = matches!(moved, Moved::Copied(_));
        // A copy read the job's own volume through any parent (flat now); its clones were
        // made as clones again on the target.
        let switch: Vec<(&str, bool)> = members
            .iter()
            .map(|m| (m.id.as_str(), flat && m.parent.is_none()))
            .collect();
        ctx.db.move_volumes(&switch, &to, &to_owner).await?;
        let clones = match members.len() - 1 {
            0 => String::new(),
            n => format!(" with {n} clone(s) of its snapshots"),
        };
        let summary = match moved {
            Moved::Copied(c) => {
                let layered = match c.iter().skip(1).map(|c| c.written_bytes).sum::<u64>() {
                    _ if c.len() == 1 => String::new(),
                    w => format!(
                        "; the clones made as clones of the same snapshots there, {} of their own data written",
                        human_size(w)
                    ),
                };
                format!(
                    "volume {}{clones} moved from {from} to {to}: {} copied ({} read where the source holds data, {} written), read back and checked{layered}",
                    v.name,
                    human_size(c.iter().map(|c| c.size_bytes).sum()),
                    human_size(c.iter().map(|c| c.read_bytes).sum()),
                    human_size(c.iter().map(|c| c.written_bytes).sum()),
                )
            }
            Moved::Live => format!(
                "volume {}{clones} moved from {from} to {to} by live migration within one cluster (prepared, executed, committed): {}, snapshots and parent kept",
                v.name,
                human_size(v.size_bytes.max(0) as u64)
            ),
        };
        ctx.found(EventKind::VolumeMigrated, &summary).await?;
    }
    // On the target now: what is left of the source goes, clones before what they read from,
    // each volume's snapshots before it (a copy carried them; after a live migration none
    // are left on the source).
    let gone = members.clone();
    match ctx
        .call(move |d, _| {
            gone.iter()
                .rev()
                .try_for_each(|m| remove_with_snapshots(d, &m.id, &m.snaps))
        })
        .await
    {
        Ok(()) => {}
        Err(e) => {
            // The volumes are whole on the target; the leftover is an orphan image for
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
    for m in &members {
        settle(&ctx.db, JobKind::Migrate, End::Succeeded, &m.id, None).await?;
    }
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

fn invalid(ctx: &Ctx, message: String) -> Step {
    Step::Driver(DriverError::Invalid {
        backend: ctx.svc.name.clone(),
        op: "migrate",
        message,
    })
}
