//! `ember volume attach`, `volume detach` and `volume attachments`: the records of who has a
//! volume, and the connection info a consumer opens it with.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};

use crate::db::attachments::KIND_ATTACH;
use crate::db::{AttachmentRow, Db, VolumeRow};
use crate::service::actor::current_actor;
use crate::service::attach::{self, AttachRequest, Mode, Which};
use crate::service::connection::{self, Format};
use crate::service::inspect::{self, Usage};
use crate::service::jobs::{JobError, volume};

use super::args::Global;
use super::output::{age, print_json, table};
use super::{load_config, open_db};

/// `ember volume attach VOL --host H [--instance ID] [--mode rw|ro] [--format ...]`.
pub async fn attach_cmd(
    g: &Global,
    key: &str,
    host: &str,
    instance: Option<&str>,
    mode: Mode,
    format: Format,
) -> anyhow::Result<ExitCode> {
    let cfg = load_config(g)?;
    let db = open_db(g, Some(&cfg), &cfg.database_url).await?;
    let v = volume(&db, key).await?;
    // The connection info is made from this host's section of the backend: refuse before
    // recording anything when it cannot be.
    let Some(b) = cfg.backend(&v.backend) else {
        bail!(
            "volume {} is on backend {}, which this host's config has no section for: attach from a host that serves it",
            v.name,
            v.backend
        );
    };
    let req = AttachRequest {
        volume: &v.id,
        host,
        instance,
        mode,
        kind: KIND_ATTACH,
        endpoint: None,
        served_by: None,
        pid: None,
    };
    let (v, a) = attach::attach(&db, &req, &current_actor()).await?;
    let conn = match connection::connection_info(b, &v, &a) {
        Ok(c) => c,
        Err(e) => {
            // Nothing a consumer could use was handed out: take the record back.
            attach::end(&db, &v, &a, &current_actor(), " (no connection info)").await?;
            return Err(e).context(format!("attach volume {}", v.name));
        }
    };
    for w in &conn.warnings {
        eprintln!("warning: {w}");
    }
    if g.json && format == Format::Json {
        print_json(&serde_json::json!({
            "attachment": a,
            "connection_info": conn.json,
        }))?;
    } else {
        println!("{}", conn.render(format));
        eprintln!(
            "attached volume {} to {}; it is in-use until `ember volume detach {} --attachment {}`",
            v.name,
            a.describe(),
            v.name,
            crate::service::units::short_id(&a.id)
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// What to detach, as the flags said it.
pub struct DetachArgs<'a> {
    pub attachment: Option<&'a str>,
    pub host: Option<&'a str>,
    pub all: bool,
    pub force: bool,
}

/// `ember volume detach VOL [--attachment ID | --host H | --all] [--force]`. Without
/// `--force`, refused while the consumer still has the image open, or the export's server
/// still runs; `--force` detaches anyway (and stops an export served from this host).
pub async fn detach_cmd(g: &Global, key: &str, d: DetachArgs<'_>) -> anyhow::Result<ExitCode> {
    let cfg = load_config(g)?;
    let db = open_db(g, Some(&cfg), &cfg.database_url).await?;
    let v = volume(&db, key).await?;
    let live = db.attachments_of(&v.id).await?;
    let which = match (d.attachment, d.host, d.all) {
        (Some(id), _, _) => Which::Id(id),
        (None, Some(h), _) => Which::Host(h),
        (None, None, true) => Which::All,
        (None, None, false) => Which::Only,
    };
    let picked = attach::pick(&v, &live, &which)?;
    let actor = current_actor();
    let me = &cfg.host;
    let mut holders = None;
    let mut status = v.status;
    for a in picked {
        if a.is_export() {
            let here = a.served_by.as_deref() == Some(me.as_str());
            let alive = here && a.pid.is_some_and(pid_alive);
            match (alive, here, d.force) {
                (true, _, false) => bail!(
                    "{}: its server (pid {}) still runs on this host: end it with Ctrl-C where `ember volume export` runs, or --force stops it",
                    a.describe(),
                    a.pid.unwrap_or_default()
                ),
                (true, _, true) => stop_server(a.pid.unwrap_or_default()).await,
                (false, false, false) => bail!(
                    "{}: served from host {}, which this host cannot check: stop it there, or --force records the detach (a server still running there keeps serving)",
                    a.describe(),
                    a.served_by.as_deref().unwrap_or("?")
                ),
                _ => {}
            }
        } else if !d.force {
            if holders.is_none() {
                holders = Some(
                    inspect::of_volume(&cfg, &db, &[], &v, Usage::Skip)
                        .await
                        .map_err(|e| e.to_string()),
                );
            }
            match holders.as_ref() {
                Some(Ok(h)) => {
                    let open: Vec<String> = still_open(a, &h.holders);
                    if !open.is_empty() {
                        bail!(
                            "{} still has {} open: {}; detach it on the consumer first, or --force",
                            a.describe(),
                            v.name,
                            open.join("; ")
                        );
                    }
                }
                Some(Err(e)) => bail!(
                    "cannot tell whether {} still has {} open ({e}); --force detaches without asking the storage",
                    a.attached_host,
                    v.name
                ),
                None => {}
            }
        }
        let why = if d.force { " (forced)" } else { "" };
        status = attach::end(&db, &v, a, &actor, why).await?;
        println!("detached {} from {}", v.name, a.describe());
    }
    println!("volume {} is {status}", v.name);
    Ok(ExitCode::SUCCESS)
}

/// The holders an attachment's consumer still has (described), from the storage's answer.
fn still_open(a: &AttachmentRow, holders: &[crate::driver::Holder]) -> Vec<String> {
    let mismatches = attach::compare(
        std::slice::from_ref(a),
        holders,
        &attach::addresses_of,
        &attach::is_this_host,
    );
    let paper_only = mismatches
        .iter()
        .any(|m| matches!(m, attach::Mismatch::PaperOnly { .. }));
    if paper_only {
        return vec![];
    }
    let unattached: Vec<&crate::driver::Holder> = mismatches
        .iter()
        .filter_map(|m| match m {
            attach::Mismatch::Unattached { holder } => Some(holder),
            _ => None,
        })
        .collect();
    holders
        .iter()
        .filter(|h| !h.ember && !unattached.contains(h))
        .map(|h| h.describe())
        .collect()
}

/// Whether a process of this host is alive (a zombie, exited but not yet reaped, is not).
pub fn pid_alive(pid: i64) -> bool {
    if pid <= 0 {
        return false;
    }
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state follows the command name in parentheses, which may itself hold spaces.
        Ok(stat) => stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|state| state != "Z" && state != "X"),
        Err(_) => false,
    }
}

/// Stops an NBD server of this host: SIGTERM (it flushes and exits), SIGKILL after 10 s.
pub async fn stop_server(pid: i64) {
    use nix::sys::signal::{Signal, kill};
    use nix::unistd::Pid;
    let p = Pid::from_raw(pid as i32);
    let _ = kill(p, Signal::SIGTERM);
    for _ in 0..100 {
        if !pid_alive(pid) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let _ = kill(p, Signal::SIGKILL);
}

/// `ember volume attachments [VOL]`.
pub async fn list_cmd(g: &Global, key: Option<&str>) -> anyhow::Result<ExitCode> {
    let cfg = load_config(g)?;
    let db = open_db(g, Some(&cfg), &cfg.database_url).await?;
    let rows = match key {
        Some(k) => {
            let v = volume(&db, k).await?;
            db.attachments_of(&v.id).await?
        }
        None => db.list_attachments().await?,
    };
    if g.json {
        print_json(&rows)?;
        return Ok(ExitCode::SUCCESS);
    }
    let names = volume_names(&db, &rows).await?;
    let mut t = table(&[
        "ID", "Volume", "Host", "Instance", "Mode", "Kind", "Since", "By",
    ]);
    let now = crate::db::now_ms();
    for a in &rows {
        let what = match &a.endpoint {
            Some(e) => format!("{} {e}", a.kind),
            None => a.kind.clone(),
        };
        t.add_row(vec![
            crate::service::units::short_id(&a.id).to_string(),
            names
                .iter()
                .find(|v| v.id == a.volume_id)
                .map_or(a.volume_id.clone(), |v| v.name.clone()),
            a.attached_host.clone(),
            a.instance.clone().unwrap_or_default(),
            a.mode.clone(),
            what,
            age((now - a.created_at) as f64 / 1000.0),
            a.asked_by.clone(),
        ]);
    }
    println!("{t}");
    Ok(ExitCode::SUCCESS)
}

async fn volume_names(db: &Db, rows: &[AttachmentRow]) -> Result<Vec<VolumeRow>, JobError> {
    let mut out: Vec<VolumeRow> = vec![];
    for a in rows {
        if out.iter().any(|v| v.id == a.volume_id) {
            continue;
        }
        if let Some(v) = db.get_volume(&a.volume_id).await? {
            out.push(v);
        }
    }
    Ok(out)
}
