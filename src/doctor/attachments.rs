//! `<backend>.attachments`: the attachment records against who really has the images open.
//! "In-use but the VM is gone" (attached on paper only) and "used but not attached" (a client
//! nobody recorded, which a delete or migrate would surprise) are both findings with the fix.

use std::time::Instant;

use crate::config::BackendConfig;
use crate::db::{AttachmentRow, Status as VolumeStatus, VolumeRow};
use crate::service::attach::{self, Mismatch};
use crate::service::inspect;

use super::{Finding, Run, Sink};

/// How many unattached volumes are asked for unrecorded users (every attached one is).
pub const UNATTACHED_CHECKED: usize = 200;

pub async fn check(t: &Run, b: &BackendConfig, sink: &Sink, idx: usize) {
    let started = Instant::now();
    let Ok(db) = &t.target.db else {
        sink.report(
            idx,
            "attachments",
            started,
            Finding::skip("not tried: the database cannot be opened"),
        );
        return;
    };
    let read = async {
        let vols = db.list_volumes(Some(&b.name), None).await?;
        let atts = db.list_attachments().await?;
        Ok::<_, crate::db::DbError>((vols, atts))
    };
    let (vols, atts) = match read.await {
        Ok(x) => x,
        Err(e) => {
            sink.report(
                idx,
                "attachments",
                started,
                Finding::fail(format!("cannot read volumes and attachments: {e}")),
            );
            return;
        }
    };
    let attached: Vec<&VolumeRow> = vols
        .iter()
        .filter(|v| atts.iter().any(|a| a.volume_id == v.id))
        .collect();
    let others: Vec<&VolumeRow> = vols
        .iter()
        .filter(|v| v.status == VolumeStatus::Available && !attached.iter().any(|a| a.id == v.id))
        .take(UNATTACHED_CHECKED)
        .collect();
    let ids: Vec<String> = attached
        .iter()
        .chain(others.iter())
        .map(|v| v.id.clone())
        .collect();
    let asked = ids.len();
    let holders = match inspect::holders_of_many(&t.target.config, db, &b.name, ids).await {
        Ok(h) => h,
        Err(e) => {
            sink.report(
                idx,
                "attachments",
                started,
                Finding::skip(format!(
                    "not tried: cannot ask the storage who has images open: {e}"
                )),
            );
            return;
        }
    };
    let mut lines = vec![];
    for (id, h) in &holders {
        let Some(v) = vols.iter().find(|v| &v.id == id) else {
            continue;
        };
        let mine: Vec<AttachmentRow> = atts
            .iter()
            .filter(|a| &a.volume_id == id)
            .cloned()
            .collect();
        for m in attach::compare(&mine, h, &attach::addresses_of, &attach::is_this_host) {
            lines.push((
                matches!(m, Mismatch::Unattached { .. }),
                m.describe(&v.name),
            ));
        }
    }
    // Paper-only first: the on-call case ("in-use but the VM is gone").
    lines.sort_by_key(|(unattached, _)| *unattached);
    let lines: Vec<String> = lines.into_iter().map(|(_, l)| l).collect();
    let more = vols
        .iter()
        .filter(|v| v.status == VolumeStatus::Available)
        .count()
        .saturating_sub(others.len());
    let scope = if more > 0 {
        format!(" ({more} more unattached volumes not asked)")
    } else {
        String::new()
    };
    let f = if lines.is_empty() {
        Finding::ok(format!(
            "{} attachment(s) match the storage's clients; {asked} volume(s) asked{scope}",
            atts.iter()
                .filter(|a| attached.iter().any(|v| v.id == a.volume_id))
                .count()
        ))
    } else {
        let mut f = Finding::warn(format!(
            "{} disagreement(s) between attachments and the storage: {}",
            lines.len(),
            lines[0]
        ))
        .fix("each line says what to run: detach what is gone, attach (record) what is used");
        f.evidence = lines;
        f
    };
    sink.report(idx, "attachments", started, f);
}
