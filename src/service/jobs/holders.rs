//! Who else has a volume open before a job changes it: a delete, an extend, a migration or a
//! backup is refused while a live client holds the image, unless forced (then the holders are
//! fenced and the audit log says who they were); a client this service left behind when it
//! died, or this job's own from an earlier run, is stale and fenced without asking.

use tracing::{info, warn};

use crate::driver::{BLOCKLIST_SECS, DriverError, Holder};

use super::exec::{Ctx, Step};

/// Before a delete or an extend: refused while someone else has the volume open, unless the
/// operator forced it (then the event says who was holding it). Returns those holders when
/// forced.
pub(super) async fn check_holders(ctx: &Ctx, action: &str) -> Result<Vec<Holder>, Step> {
    check_holders_of(ctx, &ctx.id(), action).await
}

/// [`check_holders`] for a volume that is not the job's target (a backup's).
pub(super) async fn check_holders_of(
    ctx: &Ctx,
    volume: &str,
    action: &str,
) -> Result<Vec<Holder>, Step> {
    let h = match ctx.svc.holders(&ctx.db, volume).await {
        Ok(h) => h,
        // Gone already (a delete run again after a crash): nobody can hold it.
        Err(DriverError::NotFound { .. }) => return Ok(vec![]),
        Err(e) => return Err(e.into()),
    };
    if !ctx.params.force {
        // A watch left by this service's own previous client (killed -9, or renewed) is stale:
        // fenced like a forced holder, never a reason to refuse. So is one left by this job's
        // own client in an earlier run (a throttled rbd flatten's or live migration's).
        let mut dead = ctx.svc.dead_clients();
        dead.extend(ctx.job.client_address.clone());
        let is_ours = |x: &Holder| {
            dead.iter()
                .any(|a| crate::driver::address_key(a) == crate::driver::address_key(&x.address))
        };
        let (ours, live): (Vec<Holder>, Vec<Holder>) =
            h.others().into_iter().cloned().partition(|x| is_ours(x));
        let live = crate::service::inspect::Inspection { holders: live, ..h };
        if let Some(e) = live.in_use(&ctx.svc.name, volume) {
            return Err(e.into());
        }
        if !ours.is_empty() {
            info!(
                job = %ctx.job.id,
                "{action}: fencing this service's previous storage client(s) {}, left watching since it stopped",
                ours.iter().map(|x| x.address.clone()).collect::<Vec<_>>().join(", ")
            );
        }
        return Ok(ours);
    }
    let others: Vec<Holder> = h.others().into_iter().cloned().collect();
    if !others.is_empty() {
        let names: Vec<String> = others.iter().map(|h| h.describe()).collect();
        let fenced = if action == "delete" && others.iter().any(|h| h.how != "open file") {
            format!("; their storage clients are blocklisted for {BLOCKLIST_SECS} s")
        } else {
            String::new()
        };
        let message = format!(
            "{action} forced by {} while open by {}{fenced}",
            ctx.job.requested_by,
            names.join("; ")
        );
        warn!(job = %ctx.job.id, "{message}");
        let _ = ctx
            .db
            .add_event(&crate::db::events::NewEvent {
                actor: &ctx.job.requested_by,
                host: Some(&ctx.svc.host),
                kind: crate::db::EventKind::ForcedWhileOpen,
                target: Some(volume),
                message: &message,
            })
            .await;
    }
    Ok(others)
}

/// A forced delete under live clients: fence them (rbd: the OSD blocklist, an hour) so the
/// storage lets the image go and they cannot write to it meanwhile; then the remove is asked
/// again while the OSDs drop the fenced clients' watches.
pub(super) async fn fence_holders(ctx: &Ctx, holders: &[Holder]) -> Result<(), Step> {
    let mut fenced = std::collections::BTreeSet::new();
    for h in holders
        .iter()
        .filter(|h| h.how == "watcher" || h.cookie.is_some())
    {
        if fenced.insert(crate::driver::address_key(&h.address)) {
            let addr = h.address.clone();
            ctx.call(move |d, _| d.fence_client(&addr, BLOCKLIST_SECS))
                .await?;
            crate::service::metrics::Metrics::backend_count(
                &crate::service::metrics::get().fenced_clients,
                &ctx.svc.name,
            );
        }
    }
    Ok(())
}
