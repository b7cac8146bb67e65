//! A migration's host-assisted copy (Cinder's generic migration), for a volume and the clones
//! that move with it (`--with-clones`). The job's own volume is made empty on the target and
//! read as clients see it (through any parent, which stays behind: it arrives flat). A clone
//! moving with it is made on the target as a clone of the same snapshot (carried there by its
//! parent, with the same id) and only what differs from that is written: it keeps its
//! layering and its parent's data is not written twice. Each volume's snapshots come first,
//! oldest first; every state is read back and compared byte for byte before the next.
//!
//! Removal goes the other way, clones before what they read from, because a snapshot with
//! clones (a file image with children) cannot go before them.

use std::sync::Arc;

use tracing::warn;

use crate::driver::transfer::{Copied, Stage, copy_verified};
use crate::driver::transfer_over::copy_over_verified;
use crate::driver::verify::Readable;
use crate::driver::{DriverError, NoProgress, VolumeDriver};
use crate::service::BackendService;

use super::exec::{Ctx, Step};

/// One volume of a migration: the job's own, or a clone moving with it.
#[derive(Debug, Clone)]
pub(super) struct Member {
    pub(super) id: String,
    /// Its snapshots, oldest first: what a copy carries.
    pub(super) snaps: Vec<String>,
    /// For a clone moving with its parent: the snapshot it reads from and that snapshot's
    /// volume, both in this migration. None for the job's own volume.
    pub(super) parent: Option<(String, String)>,
    /// The size of each state a copy carries: its snapshots', then its own (each state's
    /// share of the job's progress bar).
    pub(super) sizes: Vec<u64>,
}

/// The job's volume, then the clones of its family (`params.family`, parents first), from
/// their rows.
pub(super) async fn members(ctx: &Ctx) -> Result<Vec<Member>, Step> {
    let mut out = vec![];
    for (i, id) in std::iter::once(ctx.id())
        .chain(ctx.params.family.iter().cloned())
        .enumerate()
    {
        let rows = ctx.db.snapshots_of(&id).await?;
        let mut sizes: Vec<u64> = rows.iter().map(|s| s.size_bytes.max(0) as u64).collect();
        let snaps = rows.into_iter().map(|s| s.id).collect();
        let volume = ctx.db.get_volume(&id).await?;
        sizes.push(volume.as_ref().map_or(0, |v| v.size_bytes.max(0) as u64));
        let mut parent = None;
        if i > 0
            && let Some(sid) = volume.and_then(|v| v.source_snapshot_id)
            && let Some(s) = ctx.db.get_snapshot(&sid).await?
        {
            parent = Some((sid, s.volume_id));
        }
        out.push(Member {
            id,
            snaps,
            parent,
            sizes,
        });
    }
    Ok(out)
}

/// Removes volume `id` and its snapshots `snaps` from `drv` (what is not there is fine): a
/// partial copy on the target, or the source once the volume is on the target.
pub(super) fn remove_with_snapshots(
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

/// Removes every member from `drv`, clones before what they read from.
fn remove_all(drv: &dyn VolumeDriver, members: &[Member]) -> Result<(), DriverError> {
    members
        .iter()
        .rev()
        .try_for_each(|m| remove_with_snapshots(drv, &m.id, &m.snaps))
}

/// What any earlier run left on the target goes first; then each member in turn (see the
/// module doc). Returns what each member's copy did, in the members' order.
pub(super) async fn copy(
    ctx: &Ctx,
    target: &Arc<BackendService>,
    members: &[Member],
) -> Result<Vec<Copied>, Step> {
    let dst = target.driver.clone();
    let bps = match (
        ctx.svc.cfg.volume_copy_bps_limit,
        target.cfg.volume_copy_bps_limit,
    ) {
        (0, b) | (b, 0) => b,
        (a, b) => a.min(b),
    };
    let backend = ctx.svc.name.clone();
    let members = members.to_vec();
    Ok(ctx
        .call(move |src, progress| {
            remove_all(dst.as_ref(), &members)?;
            // Each state is copied, then read back: twice its size on the bar.
            let whole = members.iter().flat_map(|m| &m.sizes).sum::<u64>() * 2;
            let mut before = 0;
            members
                .iter()
                .map(|m| {
                    let mut bar = |i: usize| {
                        let share = m.sizes.get(i).copied().unwrap_or(0) * 2;
                        let stage = Stage {
                            inner: progress,
                            before,
                            share,
                            whole,
                        };
                        before += share;
                        stage
                    };
                    copy_one(src, dst.as_ref(), m, &backend, bps, &mut bar)
                })
                .collect()
        })
        .await?)
}

/// One member: its snapshots, oldest first, then the volume. The first state goes into a new
/// image (empty, or a clone of the member's parent snapshot on the target); each later one is
/// brought over the last, writing only what differs; each is read back and checked, and each
/// snapshot is then taken on the target under its own id. `bar(i)` is state i's share of the
/// job's progress bar.
fn copy_one<'p>(
    src: &dyn VolumeDriver,
    dst: &dyn VolumeDriver,
    m: &Member,
    backend: &str,
    bps: u64,
    bar: &mut dyn FnMut(usize) -> Stage<'p>,
) -> Result<Copied, DriverError> {
    let id = &m.id;
    // None until the first step has made the target.
    let mut total: Option<Copied> = None;
    let mut made_size = 0;
    for (i, snap) in m.snaps.iter().map(Some).chain([None]).enumerate() {
        let progress = &bar(i);
        let what = snap.map_or_else(|| "the volume".to_string(), |s| format!("snapshot-{s}"));
        let fail = |message: String| DriverError::Io {
            backend: backend.to_string(),
            op: "migrate",
            message: format!("volume-{id}, {what}: {message}"),
        };
        let mut step = |r: &dyn Readable| -> Result<(), DriverError> {
            if total.is_none() {
                match &m.parent {
                    Some((sid, pid)) => dst.clone_snapshot(sid, pid, id, r.size())?,
                    None => dst.create_volume(id, r.size())?,
                }
                made_size = r.size();
            } else if made_size < r.size() {
                dst.extend_volume(id, r.size())?;
                made_size = r.size();
            }
            dst.with_volume(id, true, &mut |w| {
                let c = match (&total, &m.parent) {
                    (None, None) => copy_verified(backend, r, w, bps, progress, fail)?.0,
                    _ => copy_over_verified(backend, r, w, bps, progress, fail)?,
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
                src.with_snapshot(s, id, &mut step)?;
                dst.create_snapshot(s, id, &NoProgress)?;
            }
            None => src.with_volume(id, false, &mut |r| step(r))?,
        }
    }
    total.ok_or_else(|| DriverError::Io {
        backend: backend.to_string(),
        op: "migrate",
        message: format!("volume-{id}: the copy did not run"),
    })
}

/// After a failure or cancel before the switch: the partial copies go (their snapshots too,
/// clones first), so the volumes are whole on their source only. A failure to remove them
/// is logged (reconcile will see an orphan).
pub(super) async fn remove_partial(ctx: &Ctx, target: &Arc<BackendService>, members: &[Member]) {
    let (dst, members) = (target.driver.clone(), members.to_vec());
    let r = ctx
        .svc
        .pool
        .run(move || remove_all(dst.as_ref(), &members))
        .await;
    match r {
        Ok(Ok(())) => {}
        Ok(Err(e)) => warn!(job = %ctx.job.id, "partial copy left on {}: {e}", target.name),
        Err(e) => warn!(job = %ctx.job.id, "partial copy left on {}: {e}", target.name),
    }
}
