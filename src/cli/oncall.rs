//! The on-call commands for a volume someone else is using: who has it open (`volume locks`,
//! and the check before a delete or extend is queued), and breaking a stale lock the way
//! Ceph recommends (`volume break-lock`: blocklist the locker, then remove its lock).

use std::process::ExitCode;

use anyhow::{Context, bail};

use crate::config::Config;
use crate::db::Db;
use crate::driver;
use crate::service::actor::current_actor;
use crate::service::inspect::{self, Inspection, Usage};
use crate::service::jobs::{Request, request, retry};

use super::args::{Global, Reset};
use super::output::{print_json, table};
use super::{load_config, open_db};

/// A delete or extend of a volume someone has open, refused before anything is queued. Only
/// when this host can ask the storage and it answers: otherwise the job checks again anyway.
pub async fn open_refusal(cfg: &Config, db: &Db, req: &Request) -> Option<String> {
    let key = match req {
        Request::Delete {
            volume,
            force: false,
            ..
        }
        | Request::Extend {
            volume,
            force: false,
            ..
        } => volume,
        _ => return None,
    };
    let v = request::volume(db, key).await.ok()?;
    let h = inspect::of_volume(cfg, db, &[], &v, Usage::Skip)
        .await
        .ok()?;
    h.in_use(&v.backend, &v.id).map(|e| e.to_string())
}

/// One table row per holder.
fn print_holders(h: &Inspection) {
    let mut t = table(&["Client", "Address", "How", "Cookie", "Host", "Ember's"]);
    for x in &h.holders {
        t.add_row(vec![
            x.client.clone(),
            x.address.clone(),
            x.how.clone(),
            x.cookie.clone().unwrap_or_default(),
            x.host.clone().unwrap_or_else(|| "-".into()),
            if x.ember { "yes" } else { "" }.into(),
        ]);
    }
    println!("{t}");
}

/// `ember volume locks VOL`: watchers, lockers (or processes), as `rbd status` and `rbd lock
/// ls` would show them, with the hosts named.
pub async fn locks(g: &Global, key: &str) -> anyhow::Result<ExitCode> {
    let cfg = load_config(g)?;
    let db = open_db(g, Some(&cfg), &cfg.database_url).await?;
    let v = request::volume(&db, key).await?;
    let h = inspect::of_volume(&cfg, &db, &[], &v, Usage::Skip)
        .await
        .with_context(|| format!("volume {} ({})", v.name, v.id))?;
    if g.json {
        print_json(&h)?;
        return Ok(ExitCode::SUCCESS);
    }
    if h.holders.is_empty() {
        println!(
            "volume {} ({}): nobody has {} open (checked: {})",
            v.name,
            v.id,
            driver::volume_image(&v.id),
            h.check
        );
    } else {
        print_holders(&h);
        println!("the storage's own view: {}", h.check);
    }
    Ok(ExitCode::SUCCESS)
}

/// `ember volume break-lock VOL --locker CLIENT`.
pub async fn break_lock(
    g: &Global,
    key: &str,
    locker: &str,
    force: bool,
) -> anyhow::Result<ExitCode> {
    let cfg = load_config(g)?;
    let db = open_db(g, Some(&cfg), &cfg.database_url).await?;
    let b = crate::service::locks::break_lock(&cfg, &db, &[], key, locker, force, &current_actor())
        .await?;
    if g.json {
        print_json(&b)?;
    } else {
        println!("{}", b.message);
    }
    Ok(ExitCode::SUCCESS)
}

/// `ember volume reset-state` / `ember volume snapshot reset-state`. Asks first on a terminal
/// (the record changes, the storage does not); elsewhere needs `--yes`.
pub async fn reset_state(
    g: &Global,
    key: &str,
    snapshot: bool,
    r: &Reset,
) -> anyhow::Result<ExitCode> {
    use std::io::IsTerminal;
    let (cfg, url) = super::load_for_reading(g)?;
    let db = open_db(g, cfg.as_ref(), &url).await?;
    let what = if snapshot { "snapshot" } else { "volume" };
    if !r.yes {
        if !std::io::stdin().is_terminal() {
            bail!(
                "{what} {key}: reset-state changes ember's record only, not the storage; check the storage first, then add --yes"
            );
        }
        eprint!(
            "Set {what} {key} to {}? This changes ember's record only: the storage is not touched, \
             and a wrong state can make the {what} unusable (as Cinder's reset-state warns).\n\
             Type the {what}'s name or id to go on: ",
            r.state
        );
        let mut line = String::new();
        std::io::stdin().read_line(&mut line)?;
        if line.trim() != key {
            bail!("not confirmed: nothing changed");
        }
    }
    let out = retry::reset_state(
        &db,
        key,
        snapshot,
        r.state,
        r.reason.as_deref(),
        &current_actor(),
    )
    .await?;
    if g.json {
        print_json(&out)?;
    } else {
        println!(
            "{what} {} ({}): {} -> {} (recorded in the events)",
            out.name, out.id, out.from, out.to
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// `ember job retry JOB [--wait]`.
pub async fn retry(
    g: &Global,
    cfg: &Config,
    db: &Db,
    key: &str,
    wait: bool,
) -> anyhow::Result<ExitCode> {
    let enq = retry::retry(db, cfg, key, &current_actor()).await?;
    super::jobs::after_enqueue(g, cfg, db, enq, wait).await
}

/// Why a volume is in an error state, and the fix, for `volume show`.
pub async fn why_in_error(db: &Db, v: &crate::db::VolumeRow) -> Option<retry::InError> {
    retry::why_in_error(db, v).await
}

/// `ember volume manage BACKEND IMAGE --name NAME`.
pub async fn manage(
    g: &Global,
    backend: &str,
    image: &str,
    name: &str,
) -> anyhow::Result<ExitCode> {
    let cfg = load_config(g)?;
    let db = open_db(g, Some(&cfg), &cfg.database_url).await?;
    let v =
        crate::service::manage::manage(&db, &cfg, backend, image, name, &current_actor()).await?;
    if g.json {
        print_json(&super::output::VolumeJson::from(&v))?;
    } else {
        println!(
            "image {image} adopted as volume {} ({}), now {} on {}",
            v.name,
            v.id,
            driver::volume_image(&v.id),
            v.backend
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// `ember volume unmanage VOL`.
pub async fn unmanage(g: &Global, key: &str) -> anyhow::Result<ExitCode> {
    let (cfg, url) = super::load_for_reading(g)?;
    let db = open_db(g, cfg.as_ref(), &url).await?;
    let v = crate::service::manage::unmanage(&db, key, &current_actor()).await?;
    let image = driver::volume_image(&v.id);
    if g.json {
        print_json(&serde_json::json!({"volume": v.id, "image": image, "backend": v.backend}))?;
    } else {
        println!(
            "volume {} ({}) forgotten; image {image} stays on {} (ember volume manage {} {image} --name {} adopts it again)",
            v.name, v.id, v.backend, v.backend, v.name
        );
    }
    Ok(ExitCode::SUCCESS)
}
