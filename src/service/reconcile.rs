//! Reconcile: the database against what a backend really holds.
//!
//! Finds images with no row (orphans, e.g. left by a crash between the storage call and the
//! database write), rows whose image is gone, and parent links that disagree. With `fix`:
//! orphans nothing depends on are deleted, volumes whose image is gone go to `error` with the
//! reason, and parent links take the storage's word. Anything a running job touches is left
//! alone: it is not a difference, only work in progress.

use std::collections::HashMap;

use serde::Serialize;

use crate::config::BackendConfig;
use crate::db::{Db, EventKind, Status};
use crate::driver::{self, ImageInfo, NoProgress, snapshot_image, volume_image};

use super::inspect;
use super::jobs::JobError;

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
    let by_name: HashMap<&str, &ImageInfo> = images.iter().map(|i| (i.name.as_str(), i)).collect();

    let ours = |h: &Option<String>| h.as_deref().is_none_or(|h| h == owner);
    let volumes: Vec<_> = db
        .list_volumes(Some(&backend.name), None)
        .await?
        .into_iter()
        .filter(|v| ours(&v.host))
        .collect();
    let snapshots: Vec<_> = db
        .list_snapshots(None, true)
        .await?
        .into_iter()
        .filter(|s| s.backend == backend.name && ours(&s.host))
        .collect();
    let mut known: HashMap<String, Option<String>> = HashMap::new(); // image -> expected parent
    let mut findings = vec![];

    for v in &volumes {
        let image = volume_image(&v.id);
        known.insert(
            image.clone(),
            v.source_snapshot_id.as_deref().map(snapshot_image),
        );
        if db.active_job_referencing(&v.id).await?.is_some() {
            continue;
        }
        match by_name.get(image.as_str()) {
            None if v.status != Status::Error => {
                let mut f = Finding {
                    kind: EventKind::MissingImage,
                    image: image.clone(),
                    detail: format!(
                        "volume {} ({}) is {} but the backend has no image",
                        v.name, v.id, v.status
                    ),
                    fixed: None,
                    manageable: None,
                };
                if fix {
                    db.set_volume_status(
                        &v.id,
                        &[],
                        Status::Error,
                        Some("image missing on the backend (reconcile)"),
                    )
                    .await?;
                    f.fixed = Some("volume marked error".into());
                }
                findings.push(f);
            }
            Some(img) => {
                let want = v.source_snapshot_id.as_deref().map(snapshot_image);
                if img.parent != want {
                    let mut f = Finding {
                        kind: EventKind::ParentMismatch,
                        image: image.clone(),
                        detail: format!(
                            "database parent {:?}, backend parent {:?}",
                            want, img.parent
                        ),
                        fixed: None,
                        manageable: None,
                    };
                    if fix && img.parent.is_none() {
                        db.set_volume_flattened(&v.id).await?;
                        f.fixed = Some("database now says: no parent (flattened)".into());
                    }
                    findings.push(f);
                }
            }
            None => {}
        }
    }
    for s in &snapshots {
        let image = snapshot_image(&s.id);
        known.insert(image.clone(), None);
        if db.active_job_referencing(&s.id).await?.is_some() || s.status == Status::Error {
            continue;
        }
        if !by_name.contains_key(image.as_str()) {
            let mut f = Finding {
                kind: EventKind::MissingImage,
                image,
                detail: format!(
                    "snapshot {} ({}) is {} but the backend has no image",
                    s.name, s.id, s.status
                ),
                fixed: None,
                manageable: None,
            };
            if fix {
                db.set_snapshot_status(
                    &s.id,
                    &[],
                    Status::Error,
                    Some("image missing on the backend (reconcile)"),
                )
                .await?;
                f.fixed = Some("snapshot marked error".into());
            }
            findings.push(f);
        }
    }
    for img in &images {
        if known.contains_key(&img.name) || img.deferred_delete {
            continue;
        }
        let id = img.name.split_once('-').map(|(_, id)| id).unwrap_or("");
        if db.active_job_referencing(id).await?.is_some() {
            continue;
        }
        let children: Vec<&str> = images
            .iter()
            .filter(|i| i.parent.as_deref() == Some(img.name.as_str()))
            .map(|i| i.name.as_str())
            .collect();
        let mut f = Finding {
            kind: EventKind::OrphanImage,
            image: img.name.clone(),
            detail: format!(
                "{} bytes on the backend, no live row in the database",
                img.size_bytes
            ),
            fixed: None,
            manageable: None,
        };
        if !img.name.starts_with("snapshot-") && img.volume.is_none() && !img.deferred_delete {
            f.manageable = Some(format!(
                "ember volume manage {} {} --name NAME",
                backend.name, img.name
            ));
        }
        if !children.is_empty() {
            f.detail
                .push_str(&format!("; kept: {} read from it", children.join(", ")));
        } else if fix {
            let (d, name, sid) = (drv.clone(), img.name.clone(), id.to_string());
            let vid = img
                .volume
                .as_deref()
                .and_then(|v| v.strip_prefix("volume-"))
                .unwrap_or("")
                .to_string();
            let r = inspect::bounded(d, "delete", DELETE_LIMIT, move |d| {
                if name.starts_with("volume-") {
                    d.delete_volume(&sid, &NoProgress)
                } else {
                    d.delete_snapshot(&sid, &vid, false).map(|_| ())
                }
            })
            .await;
            f.fixed = Some(match r {
                Ok(()) => "image deleted".into(),
                Err(e) => format!("not deleted: {e}"),
            });
        }
        findings.push(f);
    }
    Ok(findings)
}
