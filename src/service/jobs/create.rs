//! A new volume: empty (placed as Cinder's scheduler would), or a clone of a snapshot
//! (`--snapshot`) or of a volume (`--source`, snapshotted first, as Cinder's rbd driver does).

use uuid::Uuid;

use crate::config::Config;
use crate::db::{Db, Purpose, Status};
use crate::service::units::check_name;

use super::guards::{asks_from, not_busy, rules, short, snapshot_not_moving, status_is};
use super::request::{Plan, PlanSnapshot, PlanVolume, snapshot, volume};
use super::{JobError, JobKind};

/// A new volume: empty, or a clone of a snapshot (`--snapshot`) or of a volume (`--source`).
pub(super) async fn plan_create(
    db: &Db,
    cfg: &Config,
    name: &str,
    size: Option<u64>,
    want_backend: Option<&str>,
    (snap_key, source_key): (Option<&str>, Option<&str>),
    multiattach: bool,
) -> Result<Plan, JobError> {
    check_name(name)?;
    let id = Uuid::new_v4().to_string();
    // (backend, owner, clone depth, source snapshot, source volume, smallest size allowed)
    let (backend, owner, depth, src_snap, src_vol, min_size) = if let Some(key) = snap_key {
        let s = snapshot(db, key).await?;
        if s.status != Status::Available {
            return Err(JobError::Refused(format!(
                "snapshot {} is {}; clones need an available snapshot",
                s.name, s.status
            )));
        }
        snapshot_not_moving(db, &s, "clone").await?;
        let depth = db
            .get_volume(&s.volume_id)
            .await?
            .map(|v| v.clone_depth + 1)
            .unwrap_or(1);
        (
            s.backend.clone(),
            s.host.clone(),
            depth,
            Some(s.id.clone()),
            None,
            s.size_bytes as u64,
        )
    } else if let Some(key) = source_key {
        let v = volume(db, key).await?;
        // `--source`: the volume is snapshotted first, as a snapshot create would.
        status_is(&v, asks_from(JobKind::Flatten), "clone")?;
        not_busy(db, &v.id, &format!("volume {}", v.name)).await?;
        // Cinder's rbd driver: snapshot the source, then clone that snapshot.
        (
            v.backend.clone(),
            v.host.clone(),
            v.clone_depth + 1,
            Some(Uuid::new_v4().to_string()),
            Some(v.clone()),
            v.size_bytes as u64,
        )
    } else {
        (String::new(), None, 0, None, None, 1)
    };
    // A clone lives where its source does; a new volume is placed (Cinder's scheduler).
    let (backend, owner, placement) = if src_snap.is_some() {
        if let Some(w) = want_backend
            && w != backend
            && owner.as_deref() != Some(w)
        {
            return Err(JobError::Refused(format!(
                "a clone stays on its source's backend {} ({backend}), not {w}",
                owner.as_deref().unwrap_or("?")
            )));
        }
        let owner = owner.unwrap_or_else(|| cfg.service_owner(&backend));
        (backend, owner, None)
    } else {
        let p = super::placement::place(db, cfg, want_backend, size.unwrap_or(0)).await?;
        (p.backend, p.owner, p.why)
    };
    let bc = rules(cfg, &backend);
    let size = size.unwrap_or(min_size);
    if size < min_size {
        return Err(JobError::Refused(format!(
            "size {size} bytes is smaller than the source ({min_size} bytes); a clone cannot shrink"
        )));
    }
    let kind = if src_snap.is_some() {
        JobKind::Clone
    } else {
        JobKind::Create
    };
    let describe = match (&src_vol, snap_key) {
        (Some(v), _) => format!("clone of volume {} as {name}", v.name),
        (None, Some(k)) => format!("clone of snapshot {k} as {name}"),
        _ => format!("create {name}"),
    };
    let mut plan = Plan::new(cfg, kind, &id, &backend, Some(&owner), describe);
    plan.placement = placement;
    plan.params.size = Some(size);
    if src_snap.is_some() {
        plan.params.flatten = depth > i64::from(bc.max_clone_depth)
            || (snap_key.is_some() && bc.flatten_volume_from_snapshot);
        plan.params.snapshot_id = src_snap.clone();
        plan.params.source_volume_id = src_vol.as_ref().map(|v| v.id.clone());
    }
    if let (Some(v), Some(sid)) = (&src_vol, &src_snap) {
        // It snapshots the source first: the source is what it works on.
        plan.works_on = v.id.clone();
        plan.snapshot = Some(PlanSnapshot {
            id: sid.clone(),
            name: format!("clone-snap-{}", short(&id)),
            volume_id: v.id.clone(),
            size: v.size_bytes,
            purpose: Purpose::Clone,
        });
    }
    plan.volume = Some(PlanVolume {
        id,
        name: name.to_string(),
        size: size as i64,
        source_snapshot_id: src_snap,
        source_volume_id: src_vol.map(|v| v.id),
        depth: if plan.params.flatten { 0 } else { depth },
        multiattach,
    });
    Ok(plan)
}
