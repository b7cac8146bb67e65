//! `backup create / restore / delete`: jobs over the backup store (`crate::backup`). A backup
//! reads the volume as clients see it through the driver (any backend that can read its
//! images back), a restore makes a new volume and writes it, then checks it (each chunk
//! hashed by the storage where it keeps it, else read back); both run
//! on the storage pool of the backend whose volume they read or write. The target is the
//! running process's (`backup::open`): its `backup_posix_path`, or with `backup_driver =
//! "ceph"` its `backup_ceph_pool`.

use crate::backup::StoreError;
use crate::config::Config;
use crate::db::{Db, EventKind, JobKind, Status};
use crate::driver::{BackupRead, DriverError, human_size};
use crate::service::lifecycle::{End, settle};

use super::exec::{Ctx, Step};
use super::guards::{asks_from, may_start, not_busy};
use super::holders::check_holders_of;
use super::request::{Plan, PlanBackup, PlanVolume, found, volume};
use super::{JobError, placement};
use crate::service::units::check_name;

/// Looks a backup up by id or unique name.
pub(super) async fn backup(db: &Db, key: &str) -> Result<crate::db::BackupRow, JobError> {
    found("backup", key, db.find_backup(key).await?)
}

pub(super) async fn plan_create(
    db: &Db,
    cfg: &Config,
    key: &str,
    name: Option<&str>,
    incremental: bool,
) -> Result<Plan, JobError> {
    let v = volume(db, key).await?;
    // Read without a snapshot: only while no guest writes to it (the job checks who has it
    // open, as Cinder's backup of a volume that is not in-use).
    may_start(
        "volume",
        &v.name,
        &v.id,
        v.status,
        &[Status::Available],
        "back up",
    )?;
    let name = match name {
        Some(n) => n.to_string(),
        None => format!("{}-{}", v.name, chrono::Utc::now().format("%Y%m%dT%H%M%SZ")),
    };
    check_name(&name)?;
    let parent = db
        .list_backups(Some(&v.id))
        .await?
        .into_iter()
        .find(|b| b.status == Status::Available);
    if incremental && parent.is_none() {
        return Err(JobError::Refused(format!(
            "volume {} has no available backup to be incremental to: make a full one first (without --incremental)",
            v.name
        )));
    }
    not_busy(db, &v.id, &format!("volume {}", v.name)).await?;
    let id = uuid::Uuid::new_v4().to_string();
    let mut plan = Plan::new(
        cfg,
        JobKind::BackupCreate,
        &id,
        &v.backend,
        v.host.as_deref(),
        format!("back up {} as {name}", v.name),
    );
    plan.works_on = v.id.clone();
    plan.params.volume_id = Some(v.id.clone());
    plan.backup = Some(PlanBackup {
        id,
        name,
        volume_id: v.id.clone(),
        size: v.size_bytes,
        parent_id: incremental.then(|| parent.map(|p| p.id)).flatten(),
    });
    Ok(plan)
}

pub(super) async fn plan_restore(
    db: &Db,
    cfg: &Config,
    key: &str,
    name: Option<&str>,
    backend: Option<&str>,
) -> Result<Plan, JobError> {
    let b = backup(db, key).await?;
    may_start(
        "backup",
        &b.name,
        &b.id,
        b.status,
        &[Status::Available],
        "restore",
    )?;
    let name = name.map_or_else(|| format!("{}-restore", b.name), str::to_string);
    check_name(&name)?;
    let placed = placement::place(
        db,
        cfg,
        Some(backend.unwrap_or(&b.backend)),
        b.size_bytes.max(0) as u64,
    )
    .await?;
    let id = uuid::Uuid::new_v4().to_string();
    let mut plan = Plan::new(
        cfg,
        JobKind::BackupRestore,
        &id,
        &placed.backend,
        Some(&placed.owner),
        format!("restore backup {} as volume {name}", b.name),
    );
    plan.params.backup_id = Some(b.id.clone());
    plan.volume = Some(PlanVolume {
        id,
        name,
        size: b.size_bytes,
        source_snapshot_id: None,
        source_volume_id: None,
        depth: 0,
        multiattach: false,
    });
    Ok(plan)
}

pub(super) async fn plan_delete(db: &Db, cfg: &Config, key: &str) -> Result<Plan, JobError> {
    let b = backup(db, key).await?;
    let from = asks_from(JobKind::BackupDelete);
    may_start("backup", &b.name, &b.id, b.status, from, "delete")?;
    let mut plan = Plan::new(
        cfg,
        JobKind::BackupDelete,
        &b.id,
        &b.backend,
        b.host.as_deref(),
        format!("delete backup {}", b.name),
    );
    plan.works_on = b.volume_id.clone();
    plan.guard(b.id.clone(), from);
    Ok(plan)
}

/// A store failure as the job reports it.
fn store_error(backend: &str, e: StoreError) -> DriverError {
    match e {
        StoreError::Volume(message) | StoreError::Io { message, .. } => DriverError::Io {
            backend: backend.to_string(),
            op: "backup",
            message,
        },
        e => DriverError::Invalid {
            backend: backend.to_string(),
            op: "backup",
            message: e.to_string(),
        },
    }
}

fn cancelled(backend: &str) -> DriverError {
    DriverError::Cancelled {
        backend: backend.to_string(),
        op: "backup",
    }
}

pub(super) async fn create(ctx: &Ctx) -> Result<(), Step> {
    let id = ctx.id();
    let Some(vid) = ctx.params.volume_id.clone() else {
        return Err(Step::Driver(DriverError::Invalid {
            backend: ctx.svc.name.clone(),
            op: "backup",
            message: "no volume in the job".into(),
        }));
    };
    // Storage that reads a snapshot backs up a point in time while a guest writes; other
    // storage reads the volume itself, so nobody may have it open.
    if !ctx.svc.driver.backup_reads_snapshot() {
        check_holders_of(ctx, &vid, "back up").await?;
    }
    let row = ctx.db.get_backup(&id).await?;
    let since = row.as_ref().and_then(|b| b.parent_id.clone());
    let (target, backend) = (ctx.svc.backup.clone(), ctx.svc.name.clone());
    let bps = ctx.svc.cfg.volume_copy_bps_limit;
    let (bid, v2, base) = (id.clone(), vid.clone(), since.clone());
    let (manifest, stored, how) = ctx
        .call(move |d, p| {
            let store = crate::backup::open(&target).map_err(|e| store_error(&backend, e))?;
            let mut out = None;
            d.backup_read(&v2, &bid, base.as_deref(), &mut |r, how| {
                out = store
                    .backup(&bid, &v2, r, how, base.as_deref(), bps, p)
                    .map_err(|e| store_error(&backend, e))?
                    .map(|(m, s)| (m, s, how));
                Ok(())
            })?;
            out.ok_or_else(|| cancelled(&backend))
        })
        .await?;
    ctx.db
        .set_backup_figures(
            &id,
            stored.data_bytes,
            stored.read_bytes,
            stored.stored_bytes,
        )
        .await?;
    let pruned = prune_snapshots(ctx, &vid, Some(&id)).await;
    let name = row.map_or(id.clone(), |b| b.name);
    let read = match (how, &since) {
        (BackupRead::ChangedSince, Some(p)) => format!(
            "read {} that changed since backup {}",
            human_size(stored.read_bytes),
            ctx.db.get_backup(p).await?.map_or(p.clone(), |b| b.name)
        ),
        _ => format!("read {}", human_size(stored.read_bytes)),
    };
    let summary = format!(
        "backup {name} of volume {}: {read}; {} of data in {} chunks, {} new in the store (the rest was there already){pruned}",
        ctx.db
            .get_volume(&vid)
            .await?
            .map_or(vid.clone(), |v| v.name),
        human_size(stored.data_bytes),
        manifest.chunks.len(),
        human_size(stored.stored_bytes),
    );
    ctx.found(EventKind::BackupCreated, &summary).await?;
    settle(&ctx.db, JobKind::BackupCreate, End::Succeeded, &id, None).await?;
    Ok(())
}

/// Removes the volume's backup snapshots that no backup needs: those of failed or deleted
/// backups, and all but the newest `backup_ceph_max_snapshots` (0: no bound). `also`: a
/// backup being made, not available yet, that keeps its snapshot. Best effort: a snapshot
/// left costs space, not data, and the next backup or delete tries again; what was done or
/// not is said in the returned text (for the job's summary).
async fn prune_snapshots(ctx: &Ctx, volume_id: &str, also: Option<&str>) -> String {
    let max = ctx.svc.backup.max_snapshots as usize;
    let keep = match ctx.db.list_backups(Some(volume_id)).await {
        Ok(rows) => {
            // Newest first, as listed.
            let mut keep: Vec<String> = also.map(str::to_string).into_iter().collect();
            keep.extend(
                rows.into_iter()
                    .filter(|b| b.status == Status::Available && Some(b.id.as_str()) != also)
                    .map(|b| b.id),
            );
            if max > 0 {
                keep.truncate(max);
            }
            keep
        }
        Err(e) => return format!("; backup snapshots not pruned: {e}"),
    };
    let vid = volume_id.to_string();
    match ctx
        .call(move |d, _| d.prune_backup_snapshots(&vid, &keep))
        .await
    {
        Ok(gone) if gone.is_empty() => String::new(),
        Ok(gone) => format!("; removed backup snapshot(s) {}", gone.join(", ")),
        Err(e) => {
            tracing::warn!(job = %ctx.job.id, "backup snapshots of volume {volume_id} not pruned: {e}");
            format!("; backup snapshots not pruned: {e}")
        }
    }
}

pub(super) async fn restore(ctx: &Ctx) -> Result<(), Step> {
    let id = ctx.id();
    let Some(b) = (match &ctx.params.backup_id {
        Some(bid) => ctx.db.get_backup(bid).await?,
        None => None,
    }) else {
        return Err(Step::Driver(DriverError::Invalid {
            backend: ctx.svc.name.clone(),
            op: "restore",
            message: "the backup of the job is gone".into(),
        }));
    };
    let (target, backend) = (ctx.svc.backup.clone(), ctx.svc.name.clone());
    let bps = ctx.svc.cfg.volume_copy_bps_limit;
    let (vid, bid, size) = (id.clone(), b.id.clone(), b.size_bytes.max(0) as u64);
    let restored = ctx
        .call(move |d, p| {
            let store = crate::backup::open(&target).map_err(|e| store_error(&backend, e))?;
            let m = store.manifest(&bid).map_err(|e| store_error(&backend, e))?;
            d.create_volume(&vid, size)?;
            let mut out = None;
            d.with_volume(&vid, true, &mut |w| {
                out = store
                    .restore(&m, w, bps, p)
                    .map_err(|e| store_error(&backend, e))?;
                Ok(())
            })?;
            out.ok_or_else(|| cancelled(&backend))
        })
        .await?;
    let summary = format!(
        "volume {} restored from backup {}: {} written and checked ({} chunk(s) hashed where stored, {} read back)",
        ctx.db.get_volume(&id).await?.map_or(id.clone(), |v| v.name),
        b.name,
        human_size(restored.written_bytes),
        restored.hashed_where_stored,
        restored.read_back
    );
    ctx.found(EventKind::BackupRestored, &summary).await?;
    settle(&ctx.db, JobKind::BackupRestore, End::Succeeded, &id, None).await?;
    Ok(())
}

pub(super) async fn delete(ctx: &Ctx) -> Result<(), Step> {
    let id = ctx.id();
    let (target, backend, bid) = (ctx.svc.backup.clone(), ctx.svc.name.clone(), id.clone());
    let freed = ctx
        .call(move |_, _| {
            let store = crate::backup::open(&target).map_err(|e| store_error(&backend, e))?;
            store.delete(&bid).map_err(|e| store_error(&backend, e))
        })
        .await?;
    let row = ctx.db.get_backup(&id).await?;
    // Its snapshot on the volume goes too (when the volume is still on this backend).
    let pruned = match &row {
        Some(b) => prune_snapshots(ctx, &b.volume_id, None).await,
        None => String::new(),
    };
    let name = row.map_or(id.clone(), |b| b.name);
    ctx.found(
        EventKind::BackupDeleted,
        &format!("backup {name} deleted: {freed}{pruned}"),
    )
    .await?;
    settle(&ctx.db, JobKind::BackupDelete, End::Succeeded, &id, None).await?;
    Ok(())
}
