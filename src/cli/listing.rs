//! The listing commands: services, backends, volumes, jobs and events, as tables or stable
//! JSON. They read the database only, so they work with `--database-url` and no config.

use std::process::ExitCode;

use anyhow::Context;

use crate::config::{self, Config};
use crate::db::{JobState, now_ms};

use super::args::Global;
use super::output::*;
use super::stream::{JsonArray, TextTable};
use super::{load_config, load_for_reading, open_db};

fn down_time_ms(cfg: &Option<Config>) -> i64 {
    cfg.as_ref()
        .map(|c| c.service_down_time.as_millis() as i64)
        .unwrap_or(config::defaults::SERVICE_DOWN_TIME_S * 1000)
}

pub(super) async fn service_list(g: &Global) -> anyhow::Result<ExitCode> {
    let (cfg, url) = load_for_reading(g)?;
    let db = open_db(g, cfg.as_ref(), &url).await?;
    let now = db.clock_ms().await?;
    let rows: Vec<ServiceJson> = db
        .list_services()
        .await?
        .iter()
        .map(|r| ServiceJson::from_row(r, now, down_time_ms(&cfg)))
        .collect();
    if g.json {
        print_json(&rows)?;
    } else {
        let mut t = table(&[
            "Binary",
            "Host",
            "Cluster",
            "Driver",
            "Status",
            "State",
            "Heartbeat",
            "Late p50/max",
            "Reason",
        ]);
        for s in &rows {
            t.add_row(vec![
                s.binary.clone(),
                s.host.clone(),
                s.cluster.clone().unwrap_or_default(),
                s.driver.clone(),
                s.status.to_string(),
                s.state.to_string(),
                match (s.heartbeat_age_s, s.stopped) {
                    (_, true) => "stopped".into(),
                    (Some(a), _) => format!("{} ago", age(a)),
                    (None, _) => "never".into(),
                },
                s.lateness_ms
                    .map(|l| format!("{:.1}/{:.1} ms", l.p50, l.max))
                    .unwrap_or_default(),
                s.error
                    .clone()
                    .or_else(|| s.disabled_reason.clone())
                    .unwrap_or_default(),
            ]);
        }
        println!("{t}");
    }
    Ok(ExitCode::SUCCESS)
}

pub(super) async fn backend_list(g: &Global) -> anyhow::Result<ExitCode> {
    let cfg = load_config(g)?;
    let db = open_db(g, Some(&cfg), &cfg.database_url).await?;
    let rows = db.list_services().await?;
    // The database's clock (open_db set it), as the console reads it.
    let now = now_ms();
    let down = cfg.service_down_time.as_millis() as i64;
    let views: Vec<crate::service::view::ServiceView> = rows
        .iter()
        .map(|r| {
            crate::service::view::ServiceView::from_row(
                r,
                crate::db::services::liveness(r, now, down),
            )
        })
        .collect();
    let newest_capacity = |name: &str| {
        rows.iter()
            .filter(|r| r.backend == name)
            .filter_map(|r| r.capacity_at)
            .max()
    };
    let out: Vec<serde_json::Value> = crate::service::snapshot::backends(&cfg, &views)
        .into_iter()
        .map(|b| {
            let cfgb = cfg.backend(&b.name);
            serde_json::json!({
                "name": b.name,
                "host": cfg.service_host(&b.name),
                "driver": b.driver,
                "volume_backend_name": cfgb.map(|c| c.volume_backend_name.clone()),
                "state": b.state(),
                "services_up": b.up,
                "services_starting": b.starting,
                "services_down": b.down,
                "error": b.error,
                "total_bytes": b.total_bytes,
                "free_bytes": b.free_bytes,
                "provisioned_bytes": b.provisioned_bytes,
                "max_over_subscription_ratio": b.max_over_subscription_ratio,
                "capacity_updated_at": newest_capacity(&b.name).map(rfc3339),
                "draining": rows.iter().any(|r| r.backend == b.name && r.draining != 0),
            })
        })
        .collect();
    if g.json {
        print_json(&out)?;
    } else {
        let mut t = table(&[
            "Backend",
            "Driver",
            "State",
            "Services",
            "Total",
            "Free",
            "Provisioned",
            "Error",
        ]);
        let bytes =
            |v: &serde_json::Value| v.as_i64().map(human_bytes).unwrap_or_else(|| "-".into());
        for b in &out {
            t.add_row(vec![
                b["name"].as_str().unwrap_or("").to_string(),
                b["driver"].as_str().unwrap_or("?").to_string(),
                match b["draining"].as_bool() {
                    Some(true) => format!("{}, draining", b["state"].as_str().unwrap_or("")),
                    _ => b["state"].as_str().unwrap_or("").to_string(),
                },
                format!("{} up, {} down", b["services_up"], b["services_down"]),
                bytes(&b["total_bytes"]),
                bytes(&b["free_bytes"]),
                bytes(&b["provisioned_bytes"]),
                b["error"].as_str().unwrap_or("").to_string(),
            ]);
        }
        println!("{t}");
    }
    Ok(ExitCode::SUCCESS)
}

pub(super) async fn volume_list(
    g: &Global,
    backend: Option<&str>,
    host: Option<&str>,
    wide: bool,
) -> anyhow::Result<ExitCode> {
    use futures_util::TryStreamExt;
    let (cfg, url) = load_for_reading(g)?;
    let db = open_db(g, cfg.as_ref(), &url).await?;
    // --wide: what each image really uses, from the storage of this host's backends.
    let used = match (&cfg, wide) {
        (Some(c), true) => {
            let (used, unknown) = crate::service::inspect::used_by_volume(c, backend).await;
            for u in unknown {
                eprintln!("ember: used bytes unknown for {u}");
            }
            Some(used)
        }
        _ => None,
    };
    let used_of = |id: &str| used.as_ref().and_then(|m| m.get(id).copied());
    let parents = db.parent_names().await?;
    let rows = db.stream_volumes(backend, host);
    futures_util::pin_mut!(rows);
    let out = std::io::BufWriter::new(std::io::stdout().lock());
    if g.json {
        let mut arr = JsonArray::new(out);
        while let Some(v) = rows.try_next().await? {
            let mut j = VolumeJson::from(&v);
            j.used_bytes = used_of(&v.id);
            arr.item(&j)?;
        }
        arr.finish()?;
    } else {
        let mut cols = vec![("ID", 36), ("Name", 24), ("Status", 14), ("Size", 10)];
        if wide {
            cols.push(("Used", 10));
        }
        cols.extend([("Host", 22), ("Parent", 30), ("Depth", 5)]);
        let mut t = TextTable::new(out, &cols)?;
        while let Some(v) = rows.try_next().await? {
            let mut row = vec![
                v.id.clone(),
                v.name.clone(),
                v.status.to_string(),
                human_bytes(v.size_bytes),
            ];
            if wide {
                row.push(
                    used_of(&v.id)
                        .map(|u| human_bytes(u as i64))
                        .unwrap_or_else(|| "-".into()),
                );
            }
            row.extend([
                v.host.clone().unwrap_or_else(|| v.backend.clone()),
                v.source_snapshot_id
                    .as_ref()
                    .map(|p| parents.get(p).cloned().unwrap_or_else(|| p.clone()))
                    .unwrap_or_default(),
                v.clone_depth.to_string(),
            ]);
            t.row(&row)?;
        }
        t.finish()?;
    }
    Ok(ExitCode::SUCCESS)
}

pub(super) async fn volume_show(g: &Global, key: &str) -> anyhow::Result<ExitCode> {
    let (cfg, url) = load_for_reading(g)?;
    let db = open_db(g, cfg.as_ref(), &url).await?;
    let v = crate::service::jobs::request::volume(&db, key).await?;
    // Who has it open, when this host can ask its storage (no config: the database only).
    let holders = match &cfg {
        Some(c) => Some(
            crate::service::inspect::of_volume(
                c,
                &db,
                &[],
                &v,
                crate::service::inspect::Usage::Measure,
            )
            .await,
        ),
        None => None,
    };
    let why = super::oncall::why_in_error(&db, &v).await;
    let snaps = db
        .snapshots_of(&v.id)
        .await
        .with_context(|| format!("volume {}", v.id))?;
    let jobs = db.list_jobs(Some(&v.id), 20).await?;
    let attachments = db.attachments_of(&v.id).await?;
    let multiattach = db.is_multiattach(&v.id).await?;
    let vj = VolumeJson::from(&v);
    if g.json {
        let mut j = serde_json::to_value(&vj)?;
        j["snapshots"] = snaps
            .iter()
            .map(|s| serde_json::json!({"id": s.id, "name": s.name, "status": s.status}))
            .collect();
        j["jobs"] = jobs
            .iter()
            .map(|x| serde_json::to_value(JobJson::from(x)))
            .collect::<Result<_, _>>()?;
        j["attachments"] = serde_json::to_value(&attachments)?;
        j["multiattach"] = multiattach.into();
        match &holders {
            Some(Ok(h)) => {
                j["holders"] = serde_json::to_value(h)?;
                j["used_bytes"] = h.used_bytes.into();
            }
            Some(Err(e)) => j["holders_error"] = e.to_string().into(),
            None => {}
        }
        if let Some(w) = &why {
            j["error_reason"] = w.reason.clone().into();
            j["fix"] = w.fix.clone().into();
        }
        print_json(&j)?;
    } else {
        let mut t = table(&["Field", "Value"]);
        for (k, val) in [
            ("id", vj.id.clone()),
            ("name", vj.name.clone()),
            ("status", vj.status.to_string()),
            (
                "size",
                format!("{} ({} bytes)", human_bytes(vj.size_bytes), vj.size_bytes),
            ),
            ("backend", vj.backend.clone()),
            ("host", vj.host.clone().unwrap_or_else(|| "-".into())),
            ("parent", vj.parent.clone().unwrap_or_else(|| "-".into())),
            ("clone_depth", vj.clone_depth.to_string()),
            (
                "attachments",
                if attachments.is_empty() {
                    "-".to_string()
                } else {
                    attachments
                        .iter()
                        .map(|a| a.describe())
                        .collect::<Vec<_>>()
                        .join("; ")
                },
            ),
            ("multiattach", multiattach.to_string()),
            (
                "snapshots",
                snaps
                    .iter()
                    .map(|s| format!("{} ({})", s.name, s.id))
                    .collect::<Vec<_>>()
                    .join(", "),
            ),
            ("created_at", vj.created_at.clone()),
            ("updated_at", vj.updated_at.clone()),
        ] {
            t.add_row(vec![k.to_string(), val]);
        }
        if let Some(w) = &why {
            t.add_row(vec!["error".to_string(), w.reason.clone()]);
            t.add_row(vec!["fix".to_string(), w.fix.clone()]);
        }
        if let Some(Ok(h)) = &holders {
            let used = h
                .used_bytes
                .map(|u| format!("{} ({u} bytes)", human_bytes(u as i64)))
                .unwrap_or_else(|| "unknown".into());
            t.add_row(vec!["used".to_string(), used]);
        }
        match &holders {
            Some(Ok(h)) if h.holders.is_empty() => {
                t.add_row(vec!["open by".to_string(), "nobody".to_string()]);
            }
            Some(Ok(h)) => {
                let lines: Vec<String> = h.holders.iter().map(|x| x.describe()).collect();
                t.add_row(vec!["open by".to_string(), lines.join("\n")]);
            }
            Some(Err(e)) => {
                t.add_row(vec!["open by".to_string(), format!("unknown: {e}")]);
            }
            None => {}
        }
        println!("{t}");
    }
    Ok(ExitCode::SUCCESS)
}

pub(super) async fn job_list(g: &Global, limit: i64, wide: bool) -> anyhow::Result<ExitCode> {
    use futures_util::TryStreamExt;
    let (cfg, url) = load_for_reading(g)?;
    let db = open_db(g, cfg.as_ref(), &url).await?;
    let rows: Vec<crate::db::JobRow> = db.stream_jobs(limit).try_collect().await?;
    let ids: Vec<String> = rows.iter().map(|j| j.target_id.clone()).collect();
    let names = db.target_names(&ids).await?;
    let out = std::io::BufWriter::new(std::io::stdout().lock());
    if g.json {
        let mut arr = JsonArray::new(out);
        for j in &rows {
            let mut jj = JobJson::from(j);
            jj.target_name = names.get(&j.target_id).cloned();
            arr.item(&jj)?;
        }
        arr.finish()?;
        return Ok(ExitCode::SUCCESS);
    }
    let mut cols = vec![];
    if wide {
        cols.push(("ID", 36));
    }
    cols.extend([
        ("Target", 30),
        ("Kind", 15),
        ("State", 9),
        ("Progress", 8),
        ("Host", 22),
        ("Requested by", 28),
        ("Started", 20),
        ("Took", 6),
    ]);
    if wide {
        cols.push(("Target ID", 36));
    }
    cols.push(("Error", 0));
    let mut t = TextTable::new(out, &cols)?;
    for j in &rows {
        let pct = if j.bytes_total > 0 {
            format!("{:.0}%", 100.0 * j.bytes_done as f64 / j.bytes_total as f64)
        } else {
            "-".into()
        };
        let name = names
            .get(&j.target_id)
            .cloned()
            .unwrap_or_else(|| crate::service::units::short_id(&j.target_id).to_string());
        let took = j.started_at.map(|s| {
            crate::service::units::age(
                (j.finished_at.unwrap_or(j.updated_at.max(s)) - s) as f64 / 1000.0,
            )
        });
        let mut cells = vec![];
        if wide {
            cells.push(j.id.clone());
        }
        cells.extend([
            format!("{name} ({})", j.backend),
            j.kind.to_string(),
            match &j.wait_reason {
                Some(_) if j.state == JobState::Running => "waiting".to_string(),
                _ => j.state.to_string(),
            },
            pct,
            j.claimed_by.clone().or(j.owner.clone()).unwrap_or_default(),
            j.requested_by.clone(),
            j.started_at.map(rfc3339).unwrap_or_else(|| "-".into()),
            took.unwrap_or_else(|| "-".into()),
        ]);
        if wide {
            cells.push(j.target_id.clone());
        }
        cells.push(
            j.error
                .clone()
                .or(j.wait_reason.clone())
                .unwrap_or_default(),
        );
        t.row(&cells)?;
    }
    t.finish()?;
    Ok(ExitCode::SUCCESS)
}

pub(super) async fn job_show(g: &Global, id: &str) -> anyhow::Result<ExitCode> {
    let (cfg, url) = load_for_reading(g)?;
    let db = open_db(g, cfg.as_ref(), &url).await?;
    let j = crate::service::jobs::request::found("job", id, db.find_job(id).await?)?;
    let mut jj = JobJson::from(&j);
    jj.target_name = db
        .target_names(std::slice::from_ref(&j.target_id))
        .await?
        .remove(&j.target_id);
    jj.waiting = waiting_for(
        &j,
        &db.list_services().await?,
        db.clock_ms().await?,
        down_time_ms(&cfg),
    )
    .or(j.wait_reason.clone());
    if g.json {
        print_json(&jj)?;
    } else {
        let v = serde_json::to_value(&jj)?;
        let mut t = table(&["Field", "Value"]);
        if let Some(map) = v.as_object() {
            for (k, val) in map {
                t.add_row(vec![
                    k.clone(),
                    val.as_str()
                        .map(String::from)
                        .unwrap_or_else(|| val.to_string()),
                ]);
            }
        }
        println!("{t}");
    }
    Ok(ExitCode::SUCCESS)
}

pub(super) async fn events(g: &Global, limit: i64) -> anyhow::Result<ExitCode> {
    let (cfg, url) = load_for_reading(g)?;
    let db = open_db(g, cfg.as_ref(), &url).await?;
    let evs: Vec<EventJson> = db
        .list_events(limit)
        .await?
        .iter()
        .map(EventJson::from)
        .collect();
    if g.json {
        print_json(&evs)?;
    } else {
        let mut t = table(&["At", "Actor", "Host", "Kind", "Target", "Message"]);
        for e in &evs {
            t.add_row(vec![
                e.at.clone(),
                e.actor.clone(),
                e.host.clone().unwrap_or_default(),
                e.kind.to_string(),
                e.target.clone().unwrap_or_default(),
                e.message.clone(),
            ]);
        }
        println!("{t}");
    }
    Ok(ExitCode::SUCCESS)
}
