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
use crate::service::evacuate::{moving, remaining};
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

/// One volume's migration this run started or found under way.
struct Moving {
    volume_id: String,
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
                let v = db.get_volume(&j.target_id).await?;
                jobs.insert(
                    j.id.clone(),
                    Moving {
                        volume_id: j.target_id.clone(),
                        name: v.as_ref().map_or(j.target_id.clone(), |v| v.name.clone()),
                        size: v.map_or(0, |v| v.size_bytes.max(0) as u64),
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
                    moved += 1;
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
                    skipped_ids.insert(j.target_id.clone());
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
            .map(|m| m.volume_id.clone())
            .chain(skipped_ids.iter().cloned())
            .collect();
        let left = remaining(&db, from, &busy).await?;
        // A volume whose snapshot a waiting or moving clone reads from waits for it.
        let mut read_from = HashSet::new();
        // The parents of what waits (its rows are at hand) and of what moves (read).
        let mut parents: Vec<String> = left
            .iter()
            .filter_map(|v| v.source_snapshot_id.clone())
            .collect();
        for id in jobs.values().map(|m| &m.volume_id) {
            parents.extend(db.get_volume(id).await?.and_then(|v| v.source_snapshot_id));
        }
        for snap in parents {
            if let Some(s) = db.get_snapshot(&snap).await? {
                read_from.insert(s.volume_id);
            }
        }
        // Start more, up to --parallel.
        for v in left.iter().filter(|v| !read_from.contains(&v.id)) {
            if jobs.len() >= parallel {
                break;
            }
            let req = Request::Migrate {
                volume: v.id.clone(),
                to: to.to_string(),
            };
            match enqueue(&db, &cfg, req, &actor).await {
                Ok(e) => {
                    jobs.insert(
                        e.job_id,
                        Moving {
                            volume_id: v.id.clone(),
                            name: v.name.clone(),
                            size: v.size_bytes.max(0) as u64,
                        },
                    );
                }
                Err(JobError::Refused(why)) => {
                    skipped.push((v.name.clone(), why));
                    skipped_ids.insert(v.id.clone());
                }
                Err(e) => return Err(e.into()),
            }
        }
        let waiting: Vec<&crate::db::VolumeRow> = left
            .iter()
            .filter(|v| !skipped_ids.contains(&v.id) && !jobs.values().any(|m| m.volume_id == v.id))
            .collect();
        let left_bytes: u64 = waiting
            .iter()
            .map(|v| v.size_bytes.max(0) as u64)
            .sum::<u64>()
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
                "evacuate {from} -> {to}: {moved} moved, {} moving, {} waiting, {} skipped; {} left, ETA {eta}",
                jobs.len(),
                waiting.len(),
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
