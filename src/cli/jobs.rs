//! The commands that change things: they enqueue jobs (the service runs them) and, with
//! `--wait`, follow them with a progress bar on stderr.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::config::Config;
use crate::db::services::{is_alive, is_up};
use crate::db::{Db, JobRow, JobState};
use crate::service::actor::current_actor;
use crate::service::jobs::request::Cancelled;
use crate::service::jobs::{self, Enqueued, Request};

use super::args::Global;
use super::output::{JobJson, VolumeJson, human_bytes, print_json, table};

/// How often `--wait` reads the job.
const FOLLOW_EVERY: Duration = Duration::from_millis(250);

/// A live service that may run `owner`'s jobs (`host@backend`, or a member of
/// `cluster@backend`), judged by the database's clock. With `running_on`, the job already runs
/// there: that service's process being alive is enough (its storage may be failing; it still
/// ends the job, with the reason).
async fn live_service(
    db: &Db,
    cfg: &Config,
    owner: &str,
    running_on: Option<&str>,
) -> anyhow::Result<bool> {
    let down = cfg.service_down_time.as_millis() as i64;
    let now = db.clock_ms().await?;
    Ok(db.list_services().await?.iter().any(|s| {
        if running_on == Some(s.host.as_str()) {
            return is_alive(s, now, down);
        }
        (s.host == owner || s.cluster.as_deref() == Some(owner))
            && s.disabled == 0
            && is_up(s, now, down)
    }))
}

/// When `owner`'s service runs but cannot take work: its storage is failing, or it is still
/// on its first setup check. Which service, and why.
async fn failing_storage(db: &Db, cfg: &Config, owner: &str) -> anyhow::Result<Option<String>> {
    let down = cfg.service_down_time.as_millis() as i64;
    let now = db.clock_ms().await?;
    Ok(db.list_services().await?.iter().find_map(|s| {
        let mine = s.host == owner || s.cluster.as_deref() == Some(owner);
        if !mine || !is_alive(s, now, down) {
            return None;
        }
        match (&s.error, s.ready_at) {
            (Some(e), _) => Some(format!(
                "{} is running but its storage is failing: {e}",
                s.host
            )),
            (None, None) => Some(format!(
                "{} is still starting: its first setup check has run for {} s (its storage is slow to answer)",
                s.host,
                s.started_at.map_or(0, |t| (now - t) / 1000)
            )),
            _ => None,
        }
    }))
}

/// Checks, enqueues, and prints or follows.
pub async fn submit(
    g: &Global,
    cfg: &Config,
    db: &Db,
    req: Request,
    wait: bool,
) -> anyhow::Result<ExitCode> {
    let checked = jobs::check(db, cfg, &req).await?;
    if let Some(why) = super::oncall::open_refusal(cfg, db, &req).await {
        bail!("{why}; nothing was queued");
    }
    let owner = checked.owner().to_string();
    let live = live_service(db, cfg, &owner, None).await?;
    if !live && wait {
        // Waiting would never end: refuse before anything is written, instead of hanging.
        if let Some(why) = failing_storage(db, cfg, &owner).await? {
            bail!(
                "{why}; nothing was queued (a job waits until the storage recovers: drop --wait to queue it anyway)"
            );
        }
        bail!(
            "no live service serves {owner}: start `ember serve` there (or enable it: `ember service enable`); nothing was queued"
        );
    }
    let enq = jobs::enqueue_checked(db, checked, &current_actor()).await?;
    after_enqueue(g, cfg, db, enq, wait).await
}

/// What every command that queues a job prints: the placement, a warning when nobody runs
/// it, and the job, or (`--wait`) its progress until it ends.
pub async fn after_enqueue(
    g: &Global,
    cfg: &Config,
    db: &Db,
    enq: Enqueued,
    wait: bool,
) -> anyhow::Result<ExitCode> {
    let owner = enq.owner.clone();
    let live = live_service(db, cfg, &owner, None).await?;
    if let Some(why) = &enq.placement
        && !g.json
    {
        eprintln!("ember: {why}");
    }
    if !live {
        eprintln!(
            "ember: warning: no live service serves {owner}: job {} stays queued until `ember serve` there runs it",
            enq.job_id
        );
    }
    if !wait {
        print_enqueued(g, &enq)?;
        return Ok(ExitCode::SUCCESS);
    }
    if !g.json {
        eprintln!("job {} queued", enq.job_id);
    }
    let job = follow(db, cfg, &enq.job_id, g.json).await?;
    finish(g, db, &job).await
}

fn print_enqueued(g: &Global, enq: &Enqueued) -> anyhow::Result<()> {
    if g.json {
        let mut v = serde_json::json!({
            "job_id": enq.job_id,
            "owner": enq.owner,
            "placement": enq.placement,
        });
        if let Some(vol) = &enq.volume {
            v["volume"] = serde_json::to_value(VolumeJson::from(vol))?;
        }
        if let Some(s) = &enq.snapshot {
            v["snapshot"] = snapshot_json(s);
        }
        print_json(&v)?;
    } else {
        match (&enq.volume, &enq.snapshot) {
            (Some(v), _) => println!(
                "volume {} ({}) is {}; job {} queued",
                v.name, v.id, v.status, enq.job_id
            ),
            (_, Some(s)) => println!(
                "snapshot {} ({}) is {}; job {} queued",
                s.name, s.id, s.status, enq.job_id
            ),
            _ => println!("job {} queued", enq.job_id),
        }
    }
    Ok(())
}

pub fn snapshot_json(s: &crate::db::SnapshotRow) -> serde_json::Value {
    serde_json::json!({
        "id": s.id,
        "name": s.name,
        "volume_id": s.volume_id,
        "status": s.status,
        "status_reason": s.status_reason,
        "size_bytes": s.size_bytes,
        "backend": s.backend,
        "host": s.host,
        "purpose": s.purpose,
        "created_at": super::output::rfc3339(s.created_at),
    })
}

/// Prints the ended job (and its target) and turns its state into the exit code.
async fn finish(g: &Global, db: &Db, job: &JobRow) -> anyhow::Result<ExitCode> {
    if g.json {
        let mut v = serde_json::json!({ "job_id": job.id, "job": JobJson::from(job) });
        if let Some(vol) = db.get_volume(&job.target_id).await? {
            v["volume"] = serde_json::to_value(VolumeJson::from(&vol))?;
        } else if let Some(s) = db.get_snapshot(&job.target_id).await? {
            v["snapshot"] = snapshot_json(&s);
        }
        print_json(&v)?;
    }
    match job.state {
        JobState::Succeeded => {
            if !g.json {
                eprintln!("job {} succeeded", job.id);
                if let Some(r) = &job.result {
                    println!("{r}");
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        state => bail!(
            "{} job {} {state}: {}",
            job.kind,
            job.id,
            job.error.as_deref().unwrap_or("no reason recorded")
        ),
    }
}

/// Follows a job until it ends. Never hangs: if no live service can run it, it says so.
pub async fn follow(db: &Db, cfg: &Config, job_id: &str, quiet: bool) -> anyhow::Result<JobRow> {
    let bar = ProgressBar::with_draw_target(
        None,
        if quiet {
            ProgressDrawTarget::hidden()
        } else {
            ProgressDrawTarget::stderr()
        },
    );
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} {msg} [{bar:30}] {bytes}/{total_bytes} {binary_bytes_per_sec} ETA {eta}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> "),
    );
    let mut orphaned_since: Option<Instant> = None;
    loop {
        let job = db
            .get_job(job_id)
            .await?
            .with_context(|| format!("job {job_id} disappeared"))?;
        if job.bytes_total > 0 {
            bar.set_length(job.bytes_total as u64);
            bar.set_position(job.bytes_done as u64);
        }
        bar.set_message(format!("{} {}", job.kind, job.state));
        bar.tick();
        if job.state.is_finished() {
            bar.finish_and_clear();
            return Ok(job);
        }
        // Who can finish it? Give a dead worker service_down_time before giving up.
        let owner = job
            .owner
            .clone()
            .unwrap_or_else(|| cfg.service_owner(&job.backend));
        let running_on = (job.state == JobState::Running)
            .then_some(job.claimed_by.as_deref())
            .flatten();
        if live_service(db, cfg, &owner, running_on).await? {
            orphaned_since = None;
        } else if orphaned_since.get_or_insert_with(Instant::now).elapsed() > cfg.service_down_time
        {
            bar.abandon();
            bail!(
                "stopped waiting for job {}: no live service serves {owner} (the job is {}; it resumes when `ember serve` runs there again)",
                job.id,
                job.state
            );
        }
        tokio::time::sleep(FOLLOW_EVERY).await;
    }
}

pub async fn watch(g: &Global, cfg: &Config, db: &Db, key: &str) -> anyhow::Result<ExitCode> {
    let job = jobs::request::found("job", key, db.find_job(key).await?)?;
    let job = follow(db, cfg, &job.id, g.json).await?;
    finish(g, db, &job).await
}

pub async fn cancel(g: &Global, db: &Db, key: &str) -> anyhow::Result<ExitCode> {
    let out = jobs::cancel(db, key, &current_actor()).await?;
    let (job, text) = match &out {
        Cancelled::Now(j) => (j, "cancelled (it had not started)"),
        Cancelled::Requested(j) => (
            j,
            "cancel requested: the worker stops it at its next progress step",
        ),
    };
    if g.json {
        print_json(
            &serde_json::json!({ "job_id": job.id, "result": match out { Cancelled::Now(_) => JobState::Cancelled.as_str(), Cancelled::Requested(_) => "cancel_requested" } }),
        )?;
    } else {
        println!("{} job {}: {text}", job.kind, job.id);
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn snapshot_list(
    g: &Global,
    db: &Db,
    volume: Option<&str>,
    all: bool,
) -> anyhow::Result<ExitCode> {
    let vol_id = match volume {
        Some(key) => Some(jobs::request::volume(db, key).await?.id),
        None => None,
    };
    let snaps = db.list_snapshots(vol_id.as_deref(), all).await?;
    if g.json {
        print_json(&snaps.iter().map(snapshot_json).collect::<Vec<_>>())?;
    } else {
        let mut t = table(&["ID", "Name", "Volume", "Status", "Size", "Host", "Clones"]);
        for s in &snaps {
            let clones = db.clones_of_snapshot(&s.id).await?.len();
            t.add_row(vec![
                s.id.clone(),
                s.name.clone(),
                s.volume_id.clone(),
                s.status.to_string(),
                human_bytes(s.size_bytes),
                s.host.clone().unwrap_or_else(|| s.backend.clone()),
                clones.to_string(),
            ]);
        }
        println!("{t}");
    }
    Ok(ExitCode::SUCCESS)
}
