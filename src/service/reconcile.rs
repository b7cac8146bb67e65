//! Reconcile: the database against what a backend really holds.
//!
//! Finds images with no row (orphans, e.g. left by a crash between the storage call and the
//! database write), rows whose image is gone, and parent links that disagree. With `fix`:
//! orphans nothing depends on are deleted, volumes whose image is gone go to `error` with the
//! reason, and parent links take the storage's word. Anything a running job touches is left
//! alone: it is not a difference, only work in progress.

use std::collections::{HashMap, HashSet};

use serde::Serialize;

use crate::config::BackendConfig;
use crate::db::{Db, EventKind, JobRow, SnapshotRow, VolumeRow};
use crate::driver::{self, ImageInfo, NoProgress, snapshot_image, volume_image};
use crate::service::lifecycle::IMAGE_MISSING;

use super::inspect;
use super::jobs::{JobError, Params};

/// Listing a backend's images may take a while on a large pool; it is still given up.
const LIST_LIMIT: std::time::Duration = std::time::Duration::from_secs(120);
/// Deleting an orphan image (a large rbd image is removed object by object).
const DELETE_LIMIT: std::time::Duration = std::time::Duration::from_secs(600);

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Finding {
    /// `orphan_image`, `missing_image` or `parent_mismatch`.
    pub kind: EventKind,
    /// The image name on the backend.
    pub image: String,
    pub detail: String,
    /// With `fix`: what was done (None: left as is, and why is in `detail`).
    pub fixed: Option<String>,
    /// For an orphan volume image: the command that adopts it instead (`volume manage`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub manageable: Option<String>,
}

/// `owner`: this host's service of the backend (`host@backend` or `cluster@backend`): only
/// its volumes are compared with the storage this host sees.
pub async fn reconcile(
    db: &Db,
    backend: &BackendConfig,
    owner: &str,
    fix: bool,
) -> Result<Vec<Finding>, JobError> {
    let drv = driver::open_once(backend).map_err(|e| JobError::Refused(e.to_string()))?;
    let images: Vec<ImageInfo> = inspect::bounded(drv.clone(), "list", LIST_LIMIT, |d| d.list())
        .await
        .map_err(|e| JobError::Refused(e.to_string()))?;
    let ours = |h: &Option<String>| h.as_deref().is_none_or(|h| h == owner);
    let scan = Scan {
        db,
        fix,
        by_name: images.iter().map(|i| (i.name.as_str(), i)).collect(),
        // One read: every id an unfinished job works on or names is work in progress.
        busy: busy_ids(&db.active_jobs().await?),
    };
    let volumes: Vec<VolumeRow> = db
        .list_volumes(Some(&backend.name), None)
        .await?
        .into_iter()
        .filter(|v| ours(&v.host))
        .collect();
    let snapshots: Vec<SnapshotRow> = db
        .list_snapshots(None, true)
        .await?
        .into_iter()
        .filter(|s| s.backend == backend.name && ours(&s.host))
        .collect();
    let mut findings = scan.volumes(&volumes).await?;
    findings.extend(scan.snapshots(&snapshots).await?);
    let known: HashSet<String> = volumes
        .iter()
        .map(|v| volume_image(&v.id))
        .chain(snapshots.iter().map(|s| snapshot_image(&s.id)))
        .collect();
    // A backup's snapshot on its volume's image belongs to the backup (its row, not a
    // snapshot row); backups prune those they no longer need.
    let backup_snap =
        |i: &ImageInfo| i.volume.is_some() && driver::backup_of_snapshot(&i.name).is_some();
    for img in images
        .iter()
        .filter(|i| !known.contains(&i.name) && !backup_snap(i))
    {
        if let Some(f) = scan.orphan(&drv, backend, &images, img).await {
            findings.push(f);
        }
    }
    Ok(findings)
}

/// The ids that unfinished jobs work on or name in their parameters (a clone's snapshot, a
/// snapshot's volume): rows and images that are work in progress, not differences.
fn busy_ids(jobs: &[JobRow]) -> HashSet<String> {
    let mut ids = HashSet::new();
    for j in jobs {
        ids.insert(j.target_id.clone());
        ids.extend(j.volume_id.clone());
        let p: Params = serde_json::from_str(&j.params).unwrap_or_default();
        ids.extend(p.snapshot_id);
        ids.extend(p.source_volume_id);
        ids.extend(p.volume_id);
    }
    ids
}

/// One comparison of a backend's images with its rows.
struct Scan<'a> {
    db: &'a Db,
    fix: bool,
    by_name: HashMap<&'a str, &'a ImageInfo>,
    busy: HashSet<String>,
}

impl Scan<'_> {
    /// Volumes whose image is gone, and parent links that disagree.
    async fn volumes(&self, volumes: &[VolumeRow]) -> Result<Vec<Finding>, JobError> {
        let mut findings = vec![];
        for v in volumes.iter().filter(|v| !self.busy.contains(&v.id)) {
            let image = volume_image(&v.id);
            match self.by_name.get(image.as_str()) {
                None if v.status != IMAGE_MISSING => {
                    let mut f = Finding::new(
                        EventKind::MissingImage,
                        &image,
                        format!(
                            "volume {} ({}) is {} but the backend has no image",
                            v.name, v.id, v.status
                        ),
                    );
                    if self.fix {
                        self.db
                            .set_volume_status(&v.id, &[], IMAGE_MISSING, Some(MISSING))
                            .await?;
                        f.fixed = Some("volume marked error".into());
                    }
                    findings.push(f);
                }
                Some(img) => {
                    let want = v.source_snapshot_id.as_deref().map(snapshot_image);
                    if img.parent == want {
                        continue;
                    }
                    let mut f = Finding::new(
                        EventKind::ParentMismatch,
                        &image,
                        format!("database parent {want:?}, backend parent {:?}", img.parent),
                    );
                    if self.fix && img.parent.is_none() {
                        self.db.set_volume_flattened(&v.id).await?;
                        f.fixed = Some("database now says: no parent (flattened)".into());
                    }
                    findings.push(f);
                }
                None => {}
            }
        }
        Ok(findings)
    }

    /// Snapshots whose image is gone.
    async fn snapshots(&self, snapshots: &[SnapshotRow]) -> Result<Vec<Finding>, JobError> {
        let mut findings = vec![];
        for s in snapshots
            .iter()
            .filter(|s| !self.busy.contains(&s.id) && s.status != IMAGE_MISSING)
        {
            let image = snapshot_image(&s.id);
            if self.by_name.contains_key(image.as_str()) {
                continue;
            }
            let mut f = Finding::new(
                EventKind::MissingImage,
                &image,
                format!(
                    "snapshot {} ({}) is {} but the backend has no image",
                    s.name, s.id, s.status
                ),
            );
            if self.fix {
                self.db
                    .set_snapshot_status(&s.id, &[], IMAGE_MISSING, Some(MISSING))
                    .await?;
                f.fixed = Some("snapshot marked error".into());
            }
            findings.push(f);
        }
        Ok(findings)
    }

    /// An image with no live row: kept while something reads from it, else deleted with
    /// `fix`; a volume image can be adopted instead (`volume manage`).
    async fn orphan(
        &self,
        drv: &std::sync::Arc<dyn driver::VolumeDriver>,
        backend: &BackendConfig,
        images: &[ImageInfo],
        img: &ImageInfo,
    ) -> Option<Finding> {
        let id = img.name.split_once('-').map(|(_, id)| id).unwrap_or("");
        if img.deferred_delete || self.busy.contains(id) {
            return None;
        }
        let children: Vec<&str> = images
            .iter()
            .filter(|i| i.parent.as_deref() == Some(img.name.as_str()))
            .map(|i| i.name.as_str())
            .collect();
        let mut f = Finding::new(
            EventKind::OrphanImage,
            &img.name,
            format!(
                "{} bytes on the backend, no live row in the database",
                img.size_bytes
            ),
        );
        if !img.name.starts_with("snapshot-") && img.volume.is_none() {
            f.manageable = Some(format!(
                "ember volume manage {} {} --name NAME",
                backend.name, img.name
            ));
        }
        if !children.is_empty() {
            f.detail
                .push_str(&format!("; kept: {} read from it", children.join(", ")));
        } else if self.fix {
            f.fixed = Some(match delete_orphan(drv, img, id).await {
                Ok(()) => "image deleted".into(),
                Err(e) => format!("not deleted: {e}"),
            });
        }
        Some(f)
    }
}

const MISSING: &str = "image missing on the backend (reconcile)";

impl Finding {
    fn new(kind: EventKind, image: &str, detail: String) -> Finding {
        Finding {
            kind,
            image: image.to_string(),
            detail,
            fixed: None,
            manageable: None,
        }
    }
}

async fn delete_orphan(
    drv: &std::sync::Arc<dyn driver::VolumeDriver>,
    img: &ImageInfo,
    id: &str,
) -> Result<(), driver::DriverError> {
    let (name, sid) = (img.name.clone(), id.to_string());
    let vid = img
        .volume
        .as_deref()
        .and_then(|v| v.strip_prefix("volume-"))
        .unwrap_or("")
        .to_string();
    inspect::bounded(drv.clone(), "delete", DELETE_LIMIT, move |d| {
        if name.starts_with("volume-") {
            d.delete_volume(&sid, &NoProgress)
        } else {
            d.delete_snapshot(&sid, &vid, false).map(|_| ())
        }
    })
    .await
}
