//! `backend evacuate` and `backend drain`: the command's side of `service::evacuate` (it keeps
//! N migrations going, shows what is left, and stops cleanly on Ctrl-C).

use std::collections::{HashMap, HashSet};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use super::args::Global;
use super::output::{human_bytes, print_json};
use super::{load_config, open_db};
use crate::db::JobState;
use crate::service::actor::current_actor;
use crate::service::evacuate::{Family, moving, remaining};
use crate::service::jobs::Params;
use crate::service::jobs::{JobError, Request, enqueue};

pub async fn drain(g: &Global, backend: &str, off: bool) -> anyhow::Result<ExitCode> {
    let cfg = load_config(g)?;
    let db = open_db(g, Some(&cfg), &cfg.database_url).await?;
    let n = db.set_backend_draining(backend, !off).await?;
    if n == 0 {
        anyhow::bail!("no service of backend {backend:?} is registered (`ember service list`)");
    }
    println!(
        "backend {backend}: {}",
        if off {
            "new volumes may be placed here again"
        } else {
            "draining: no new volume is placed here (its services keep running their jobs)"
        }
    );
    Ok(ExitCode::SUCCESS)
}

/// One migration this run started or found under way: a volume and the clones moving with it.
struct Moving {
    /// The volume and its clones.
    volume_ids: Vec<String>,
    name: String,
    size: u64,
}

pub async fn evacuate(
    g: &Global,
    from: &str,
    to: &str,
    parallel: usize,
) -> anyhow::Result<ExitCode> {
    let cfg = load_config(g)?;
    let db = open_db(g, Some(&cfg), &cfg.database_url).await?;
    if from == to {
        anyhow::bail!("evacuate {from} to itself: name another backend with --to");
    }
    if db.set_backend_draining(from, true).await? == 0 {
        anyhow::bail!("no service of backend {from:?} is registered (`ember service list`)");
    }
    let actor = current_actor();
    let started = Instant::now();
    let mut jobs: HashMap<String, Moving> = HashMap::new();
    let mut skipped: Vec<(String, String)> = vec![];
    let mut skipped_ids: HashSet<String> = HashSet::new();
    let (mut moved, mut moved_bytes) = (0usize, 0u64);
    let mut last_line = Instant::now() - Duration::from_secs(10);
    let stop = tokio::signal::ctrl_c();
    tokio::pin!(stop);
    loop {
        // Under way, whoever started them (a run before this one carries on).
        for j in moving(&db, from, to).await? {
            if !jobs.contains_key(&j.id) {
                let family = serde_json::from_str::<Params>(&j.params)
                    .map(|p| p.family)
                    .unwrap_or_default();
                let mut size = 0;
                for id in std::iter::once(&j.target_id).chain(&family) {
                    size += db
                        .get_volume(id)
                        .await?
                        .map_or(0, |v| v.size_bytes.max(0) as u64);
                }
                let name = db
                    .get_volume(&j.target_id)
                    .await?
                    .map_or(j.target_id.clone(), |v| v.name);
                jobs.insert(
                    j.id.clone(),
                    Moving {
                        volume_ids: std::iter::once(j.target_id.clone()).chain(family).collect(),
                        name,
                        size,
                    },
                );
            }
        }
        // Ended since the last look.
        let mut in_flight = 0.0f64;
        let mut ended = vec![];
        for (id, m) in &jobs {
            let Some(j) = db.get_job(id).await? else {
                ended.push(id.clone());
                continue;
            };
            match j.state {
                JobState::Succeeded => {
                    moved += m.volume_ids.len();
                    moved_bytes += m.size;
                    ended.push(id.clone());
                }
                JobState::Failed | JobState::Cancelled => {
                    skipped.push((
                        m.name.clone(),
                        format!(
                            "migrate job {} {}: {}",
                            short(id),
                            j.state,
                            j.error.unwrap_or_default()
                        ),
                    ));
                    skipped_ids.extend(m.volume_ids.iter().cloned());
                    ended.push(id.clone());
                }
                _ => {
                    if j.bytes_total > 0 {
                        in_flight += m.size as f64 * (j.bytes_done as f64 / j.bytes_total as f64);
                    }
                }
            }
        }
        for id in ended {
            jobs.remove(&id);
        }
        // The jobs still under way are the ones just looked at (an ended one was removed).
        let busy: HashSet<String> = jobs
            .values()
            .flat_map(|m| m.volume_ids.iter().cloned())
            .chain(skipped_ids.iter().cloned())
            .collect();
        let left = remaining(&db, from, &busy).await?;
        // Start more, up to --parallel.
        let mut waiting = vec![];
        for f in left {
            if jobs.len() >= parallel {
                waiting.push(f);
                continue;
            }
            let req = Request::Migrate {
                volume: f.root.id.clone(),
                to: to.to_string(),
                with_clones: true,
            };
            match enqueue(&db, &cfg, req, &actor).await {
                Ok(e) => {
                    jobs.insert(
                        e.job_id,
                        Moving {
                            volume_ids: f.ids().map(str::to_string).collect(),
                            name: f.root.name.clone(),
                            size: f.bytes(),
                        },
                    );
                }
                Err(JobError::Refused(why)) => {
                    let with = match f.clones.len() {
                        0 => String::new(),
                        n => format!(" (with its {n} clone(s))"),
                    };
                    skipped.push((format!("{}{with}", f.root.name), why));
                    skipped_ids.extend(f.ids().map(str::to_string));
                }
                Err(e) => return Err(e.into()),
            }
        }
        let waiting_volumes: usize = waiting.iter().map(|f| 1 + f.clones.len()).sum();
        let left_bytes: u64 = waiting.iter().map(Family::bytes).sum::<u64>()
            + jobs.values().map(|m| m.size).sum::<u64>();
        if !g.json && last_line.elapsed() >= Duration::from_secs(2) {
            let done = moved_bytes as f64 + in_flight;
            let rate = done / started.elapsed().as_secs_f64().max(0.001);
            let eta = if rate > 0.0 {
                format!("{:.0} s", (left_bytes as f64 - in_flight).max(0.0) / rate)
            } else {
                "-".into()
            };
            eprintln!(
                "evacuate {from} -> {to}: {moved} moved, {} moving, {waiting_volumes} waiting, {} skipped; {} left, ETA {eta}",
                jobs.values().map(|m| m.volume_ids.len()).sum::<usize>(),
                skipped.len(),
                human_bytes(left_bytes as i64)
            );
            last_line = Instant::now();
        }
        if jobs.is_empty() && waiting.is_empty() {
            break;
        }
        tokio::select! {
            _ = &mut stop => {
                eprintln!(
                    "ember: evacuation paused: {} migration(s) under way go on as jobs; `ember backend evacuate {from} --to {to}` carries on",
                    jobs.len()
                );
                return Ok(ExitCode::from(130));
            }
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
    }
    let left_on_source = db.list_volumes(Some(from), None).await?.len();
    if g.json {
        print_json(&serde_json::json!({
            "from": from, "to": to, "moved": moved, "moved_bytes": moved_bytes,
            "left": left_on_source,
            "skipped": skipped.iter().map(|(v, why)| serde_json::json!({"volume": v, "reason": why})).collect::<Vec<_>>(),
        }))?;
    } else {
        println!(
            "evacuate {from} -> {to}: {moved} volume(s) moved ({}) in {:.0} s; {left_on_source} left on {from}",
            human_bytes(moved_bytes as i64),
            started.elapsed().as_secs_f64()
        );
        for (v, why) in &skipped {
            println!("  not moved: {v}: {why}");
        }
    }
    Ok(if left_on_source == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn short(id: &str) -> &str {
    crate::service::units::short_id(id)
}
