//! Adopt and release, as Cinder's manage / unmanage: `volume manage` gives an existing image
//! that no volume records (what `volume reconcile` calls an orphan, or an image made outside
//! ember) a volume row, renamed `volume-<new id>` as Cinder does; `volume unmanage` forgets a
//! volume and leaves its image in place. Both run where the backend's storage is reachable
//! (this host's config must have its section), bounded in time, and are audited.
//!
//! Order on manage: the checks, the rename, then the row. A crash between the last two leaves
//! an image `volume-<id>` with no row: reconcile lists it as manageable, and managing it again
//! finishes the adoption. Nothing is left half-recorded.

use std::sync::Arc;
use std::time::Duration;

use uuid::Uuid;

use crate::config::Config;
use crate::db::events::NewEvent;
use crate::db::volumes::NewVolume;
use crate::db::{Db, VolumeRow};
use crate::driver::{self, DriverError, ImageInfo, VolumeDriver, volume_image};
use crate::service::lifecycle;

use super::jobs::JobError;
use super::jobs::guards::not_busy;
use super::jobs::request::volume;
use super::units::check_name;

/// A storage call made for manage gives up after this long.
const CALL_LIMIT: Duration = Duration::from_secs(60);

/// One bounded storage call; its error becomes the refusal.
async fn call<T: Send + 'static>(
    drv: &Arc<dyn VolumeDriver>,
    f: impl FnOnce(&dyn VolumeDriver) -> Result<T, DriverError> + Send + 'static,
) -> Result<T, JobError> {
    ask(drv, f)
        .await
        .map_err(|e| JobError::Refused(e.to_string()))
}

/// The same, keeping the driver's error for the caller to decide on.
async fn ask<T: Send + 'static>(
    drv: &Arc<dyn VolumeDriver>,
    f: impl FnOnce(&dyn VolumeDriver) -> Result<T, DriverError> + Send + 'static,
) -> Result<T, DriverError> {
    super::inspect::bounded(drv.clone(), "manage", CALL_LIMIT, f).await
}

/// Adopts `image` on `backend` as a new volume named `name`.
pub async fn manage(
    db: &Db,
    cfg: &Config,
    backend: &str,
    image: &str,
    name: &str,
    actor: &str,
) -> Result<VolumeRow, JobError> {
    db.ensure_writable("manage an image")?;
    check_name(name)?;
    let Some(bc) = cfg.backend(backend) else {
        return Err(JobError::Refused(format!(
            "this host's config has no backend {backend}: run manage on a host that serves it"
        )));
    };
    if image.starts_with("snapshot-") {
        return Err(JobError::Refused(format!(
            "{image} is a snapshot's image: only volumes can be managed"
        )));
    }
    if let Some(id) = image.strip_prefix("volume-")
        && let Some(v) = db.get_volume(id).await?
        && v.deleted_at.is_none()
    {
        return Err(JobError::Refused(format!(
            "{image} is already volume {} ({}): nothing to adopt",
            v.name, v.id
        )));
    }
    let drv = driver::open_once(bc).map_err(|e| JobError::Refused(e.to_string()))?;
    let img = image.to_string();
    let info: ImageInfo = match ask(&drv, move |d| d.inspect_image(&img)).await {
        Ok(i) => i,
        Err(DriverError::NotFound { .. }) => {
            return Err(JobError::Refused(format!(
                "backend {backend} has no image {image} (its orphans: ember volume reconcile {backend})"
            )));
        }
        Err(e) => return Err(JobError::Refused(e.to_string())),
    };
    let img = image.to_string();
    let holders = call(&drv, move |d| d.holders(&img)).await?;
    let others: Vec<String> = holders
        .iter()
        .filter(|h| !h.ember)
        .map(|h| h.describe())
        .collect();
    if !others.is_empty() {
        let img = image.to_string();
        let check = drv.holders_command(&img);
        return Err(JobError::Refused(format!(
            "{image} is open by {}: adopt it once nobody uses it (check with `{check}`)",
            others.join("; ")
        )));
    }
    // A clone keeps its layering only under a snapshot ember knows.
    let parent = match &info.parent {
        None => None,
        Some(snap_image) => {
            let known = match snap_image.strip_prefix("snapshot-") {
                Some(sid) => db
                    .get_snapshot(sid)
                    .await?
                    .filter(|s| s.deleted_at.is_none()),
                None => None,
            };
            match known {
                Some(s) => Some(s),
                None => {
                    return Err(JobError::Refused(format!(
                        "{image} is a clone of {snap_image}, which ember does not know: flatten it first (rbd flatten {image}), or manage its parent and snapshot"
                    )));
                }
            }
        }
    };
    let depth = match &parent {
        Some(s) => db
            .get_volume(&s.volume_id)
            .await?
            .map_or(1, |p| p.clone_depth + 1),
        None => 0,
    };
    let id = Uuid::new_v4().to_string();
    let new_image = volume_image(&id);
    let (from, to) = (image.to_string(), new_image.clone());
    call(&drv, move |d| d.rename_image(&from, &to)).await?;
    let owner = cfg.service_owner(backend);
    db.insert_volume(&NewVolume {
        id: &id,
        name,
        size_bytes: info.size_bytes as i64,
        status: lifecycle::ADOPTED,
        backend,
        host: &owner,
        source_snapshot_id: parent.as_ref().map(|s| s.id.as_str()),
        source_volume_id: parent.as_ref().map(|s| s.volume_id.as_str()),
        clone_depth: depth,
        multiattach: false,
    })
    .await?;
    let layered = parent
        .as_ref()
        .map(|s| format!(", a clone of snapshot {} ({})", s.name, s.id))
        .unwrap_or_default();
    let _ = db
        .add_event(&NewEvent {
            actor,
            host: None,
            kind: crate::db::EventKind::VolumeManaged,
            target: Some(&id),
            message: &format!(
                "image {image} on {backend} adopted as volume {name} ({id}), renamed {new_image}{layered}"
            ),
        })
        .await;
    db.get_volume(&id)
        .await?
        .ok_or_else(|| JobError::Refused(format!("volume {id} vanished after manage")))
}

/// Forgets a volume and leaves its image in place (`volume-<id>` on its backend).
pub async fn unmanage(db: &Db, key: &str, actor: &str) -> Result<VolumeRow, JobError> {
    db.ensure_writable("unmanage a volume")?;
    let v = volume(db, key).await?;
    super::jobs::guards::may_start(
        "volume",
        &v.name,
        &v.id,
        v.status,
        lifecycle::UNMANAGE_FROM,
        "unmanage",
    )?;
    not_busy(db, &v.id, &format!("volume {}", v.name)).await?;
    let snaps = db.snapshots_of(&v.id).await?;
    if !snaps.is_empty() {
        let names: Vec<String> = snaps
            .iter()
            .map(|s| format!("{} ({})", s.name, s.id))
            .collect();
        return Err(JobError::Refused(format!(
            "volume {} has snapshots ({}), and clones may read from them: delete them first",
            v.name,
            names.join(", ")
        )));
    }
    db.mark_volume_deleted(&v.id).await?;
    let image = volume_image(&v.id);
    let _ = db
        .add_event(&NewEvent {
            actor,
            host: None,
            kind: crate::db::EventKind::VolumeUnmanaged,
            target: Some(&v.id),
            message: &format!(
                "volume {} forgotten; its image {image} stays on {} (ember volume manage {} {image} --name {} adopts it again)",
                v.name, v.backend, v.backend, v.name
            ),
        })
        .await;
    Ok(v)
}
