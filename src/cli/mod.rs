//! Subcommands: parse, load what they need, print text or JSON.
//!
//! Owner: `cli/`. May import `service`, `config` and `db` (read-only queries for listings).
//! Errors here are `anyhow` with context naming the file, backend or volume.

pub mod args;
pub mod bench;
pub mod bench_rbd;
pub mod console;
pub mod doctor;
pub mod jobs;
pub mod output;

use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, bail};

use crate::config::{self, Config, DriverConfig};
use crate::db::{Db, now_ms};
use crate::service::{Services, shutdown_signal};

use crate::service::jobs::Request;
use args::{BackendCmd, Command, ConfigCmd, Global, JobCmd, ServiceCmd, SnapshotCmd, VolumeCmd};
use output::*;

/// Loads the config the command should use, with `--database-url` / `$EMBER_DATABASE_URL`
/// applied on top.
pub fn load_config(g: &Global) -> anyhow::Result<Config> {
    let path = config::locate(g.config.as_deref())?;
    let mut cfg = config::load(&path)?;
    if let Some(url) = g.database_url.as_deref().filter(|u| !u.is_empty()) {
        cfg.database_url = url.to_string();
    }
    Ok(cfg)
}

/// Listing commands need only the database: with `--database-url` and no config file they
/// still work, with Cinder's default `service_down_time`.
fn load_for_reading(g: &Global) -> anyhow::Result<(Option<Config>, String)> {
    match load_config(g) {
        Ok(c) => {
            let url = c.database_url.clone();
            Ok((Some(c), url))
        }
        Err(e) => match (&g.database_url, e.downcast_ref::<config::ConfigError>()) {
            (Some(url), Some(config::ConfigError::NotFound { .. })) => Ok((None, url.clone())),
            _ => Err(e),
        },
    }
}

async fn open_db(url: &str) -> anyhow::Result<Db> {
    Ok(Db::connect(url).await?)
}

pub async fn run(
    cmd: Command,
    g: Global,
    console_args: args::ConsoleArgs,
) -> anyhow::Result<ExitCode> {
    match cmd {
        Command::Console { no_worker } => console::run(&g, &console_args, no_worker).await,
        Command::Serve => serve(&g).await,
        Command::Config(ConfigCmd::Check { path }) => config_check(&g, path),
        Command::Doctor {
            backend,
            strict,
            verbose,
            stuck_after,
        } => doctor::run(&g, backend, strict, verbose, stuck_after).await,
        Command::Service(ServiceCmd::List) => service_list(&g).await,
        Command::Backend(BackendCmd::List) => backend_list(&g).await,
        Command::Volume(VolumeCmd::List { backend }) => volume_list(&g, backend.as_deref()).await,
        Command::Volume(VolumeCmd::Show { volume }) => volume_show(&g, &volume).await,
        Command::Volume(VolumeCmd::Snapshot(SnapshotCmd::List { volume, all })) => {
            let (_, url) = load_for_reading(&g)?;
            jobs::snapshot_list(&g, &open_db(&url).await?, volume.as_deref(), all).await
        }
        Command::Volume(VolumeCmd::Reconcile { backend, fix }) => {
            reconcile(&g, &backend, fix).await
        }
        Command::Volume(cmd) => {
            let (req, wait) = match cmd {
                VolumeCmd::Create {
                    name,
                    size,
                    backend,
                    snapshot,
                    source,
                    wait,
                } => {
                    if size.is_none() && snapshot.is_none() && source.is_none() {
                        bail!("volume create needs --size (or --snapshot / --source to clone)");
                    }
                    (
                        Request::Create {
                            name,
                            size,
                            backend,
                            snapshot,
                            source,
                        },
                        wait,
                    )
                }
                VolumeCmd::Flatten { volume, wait } => (Request::Flatten { volume }, wait),
                VolumeCmd::Extend { volume, size, wait } => {
                    (Request::Extend { volume, size }, wait)
                }
                VolumeCmd::Delete {
                    volume,
                    cascade,
                    wait,
                } => (Request::Delete { volume, cascade }, wait),
                VolumeCmd::Snapshot(SnapshotCmd::Create { name, volume, wait }) => {
                    (Request::SnapshotCreate { name, volume }, wait)
                }
                VolumeCmd::Snapshot(SnapshotCmd::Delete { snapshot, wait }) => {
                    (Request::SnapshotDelete { snapshot }, wait)
                }
                VolumeCmd::List { .. }
                | VolumeCmd::Show { .. }
                | VolumeCmd::Reconcile { .. }
                | VolumeCmd::Snapshot(SnapshotCmd::List { .. }) => {
                    bail!("internal error: this volume command queues no job")
                }
            };
            let cfg = load_config(&g)?;
            let db = open_db(&cfg.database_url).await?;
            jobs::submit(&g, &cfg, &db, req, wait.wait).await
        }
        Command::Job(JobCmd::List { limit }) => job_list(&g, limit).await,
        Command::Job(JobCmd::Show { id }) => job_show(&g, &id).await,
        Command::Job(JobCmd::Watch { id }) => {
            let cfg = load_config(&g)?;
            let db = open_db(&cfg.database_url).await?;
            jobs::watch(&g, &cfg, &db, &id).await
        }
        Command::Job(JobCmd::Cancel { id }) => {
            let (_, url) = load_for_reading(&g)?;
            jobs::cancel(&g, &open_db(&url).await?, &id).await
        }
        Command::Events { limit } => events(&g, limit).await,
        Command::Bench(args::BenchCmd::Heartbeat {
            jobs,
            seconds,
            threads,
        }) => {
            bench::heartbeat(
                &g,
                &jobs,
                seconds,
                threads
                    .map(|t| t as usize)
                    .unwrap_or_else(|| config::defaults::native_threads_pool_size() as usize),
            )
            .await
        }
        Command::Bench(args::BenchCmd::Console { volumes }) => bench::console(&g, &volumes).await,
        Command::Bench(args::BenchCmd::Flatten { dir, size, data }) => {
            bench::flatten(&g, &dir, size, data)
        }
        Command::Bench(args::BenchCmd::RbdFlatten {
            backend,
            size,
            data,
            rounds,
        }) => {
            let cfg = load_config(&g)?;
            let b = cfg
                .backends
                .iter()
                .find(|b| b.name == backend)
                .with_context(|| format!("no backend {backend:?} in the config"))?;
            bench_rbd::flatten(&g, b, size, data, rounds.max(1))
        }
    }
}

async fn serve(g: &Global) -> anyhow::Result<ExitCode> {
    let cfg = Arc::new(load_config(g)?);
    for note in &cfg.notes {
        tracing::info!("config: {note}");
    }
    let db = open_db(&cfg.database_url).await?;
    tracing::info!(database = %db.display_url, backends = cfg.backends.len(), "starting");
    let cancel = tokio_util::sync::CancellationToken::new();
    let services = Services::start(cfg, db, cancel.clone()).await?;
    shutdown_signal().await;
    services.shutdown().await;
    Ok(ExitCode::SUCCESS)
}

fn config_check(g: &Global, path: Option<std::path::PathBuf>) -> anyhow::Result<ExitCode> {
    let path = config::locate(path.as_deref().or(g.config.as_deref()))?;
    let cfg = match config::load(&path) {
        Ok(c) => c,
        Err(e) => {
            if g.json {
                print_json(
                    &serde_json::json!({ "file": path, "ok": false, "error": e.to_string() }),
                )?;
                return Ok(ExitCode::from(1));
            }
            return Err(e.into());
        }
    };
    let ok = cfg.broken.is_empty();
    if g.json {
        let mut v = serde_json::to_value(&cfg)?;
        v["database_url"] = serde_json::Value::String(config::redact_url(&cfg.database_url));
        v["ok"] = serde_json::Value::Bool(ok);
        print_json(&v)?;
    } else {
        println!(
            "{}: {} ({})",
            path.display(),
            if ok { "ok" } else { "errors" },
            match cfg.format {
                config::Format::Toml => "ember TOML",
                config::Format::CinderConf => "cinder.conf",
            }
        );
        println!(
            "  host               {}",
            cfg.backend_host.as_deref().unwrap_or(&cfg.host)
        );
        if let Some(c) = &cfg.cluster {
            println!("  cluster            {c}");
        }
        println!(
            "  database           {}",
            config::redact_url(&cfg.database_url)
        );
        println!("  data_dir           {}", cfg.data_dir.display());
        println!(
            "  intervals          report {}s, down after {}s, periodic {}s (first within {}s)",
            cfg.report_interval.as_secs_f64(),
            cfg.service_down_time.as_secs_f64(),
            cfg.periodic_interval.as_secs(),
            cfg.periodic_fuzzy_delay.as_secs()
        );
        for b in &cfg.backends {
            let detail = match &b.driver {
                DriverConfig::File { dir } => format!("dir {}", dir.display()),
                DriverConfig::Rbd(r) => format!(
                    "pool {}, user {}, conf {}, cluster {}, connect timeout {}s",
                    r.pool,
                    r.user.as_deref().unwrap_or("(librados default)"),
                    r.ceph_conf
                        .as_ref()
                        .map(|p| p.display().to_string())
                        .unwrap_or_else(|| "(librados default)".into()),
                    r.cluster_name,
                    r.connect_timeout.as_secs()
                ),
                DriverConfig::Fake(f) => format!(
                    "latency {} ms{}",
                    f.latency_ms,
                    if f.blocking { ", blocking" } else { "" }
                ),
            };
            println!(
                "  backend {:<10} {} driver: {detail}; {} slots",
                b.name,
                b.driver_name(),
                b.pool_size
            );
        }
        for b in &cfg.broken {
            println!("  backend {:<10} DISABLED: {}", b.name, b.reason);
        }
        for n in &cfg.notes {
            println!("  note: {n}");
        }
    }
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn down_time_ms(cfg: &Option<Config>) -> i64 {
    cfg.as_ref()
        .map(|c| c.service_down_time.as_millis() as i64)
        .unwrap_or(config::defaults::SERVICE_DOWN_TIME_S * 1000)
}

async fn service_list(g: &Global) -> anyhow::Result<ExitCode> {
    let (cfg, url) = load_for_reading(g)?;
    let db = open_db(&url).await?;
    let now = now_ms();
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

async fn backend_list(g: &Global) -> anyhow::Result<ExitCode> {
    let cfg = load_config(g)?;
    let db = open_db(&cfg.database_url).await?;
    let rows = db.list_services().await?;
    let now = now_ms();
    let down = cfg.service_down_time.as_millis() as i64;
    let mut out = vec![];
    let names = cfg
        .backends
        .iter()
        .map(|b| (b.name.clone(), Some(b)))
        .chain(cfg.broken.iter().map(|b| (b.name.clone(), None)));
    for (name, b) in names {
        let host = cfg.service_host(&name);
        let row = rows.iter().find(|r| r.host == host);
        let broken_reason = cfg
            .broken
            .iter()
            .find(|x| x.name == name)
            .map(|x| x.reason.clone());
        out.push(serde_json::json!({
            "name": name,
            "host": host,
            "driver": b.map(|b| b.driver_name()),
            "volume_backend_name": b.map(|b| b.volume_backend_name.clone()),
            "state": row.map(|r| if crate::db::services::is_up(r, now, down) { "up" } else { "down" }).unwrap_or("down"),
            "error": broken_reason.or_else(|| row.and_then(|r| r.error.clone())),
            "total_bytes": row.and_then(|r| r.capacity_total),
            "free_bytes": row.and_then(|r| r.capacity_free),
            "provisioned_bytes": row.and_then(|r| r.capacity_provisioned),
            "max_over_subscription_ratio": b.map(|b| b.max_over_subscription_ratio),
            "capacity_updated_at": row.and_then(|r| r.capacity_at).map(rfc3339),
        }));
    }
    if g.json {
        print_json(&out)?;
    } else {
        let mut t = table(&[
            "Backend",
            "Driver",
            "State",
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
                b["state"].as_str().unwrap_or("").to_string(),
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

async fn volume_list(g: &Global, backend: Option<&str>) -> anyhow::Result<ExitCode> {
    let (_, url) = load_for_reading(g)?;
    let db = open_db(&url).await?;
    let vols: Vec<VolumeJson> = db
        .list_volumes(backend)
        .await?
        .iter()
        .map(VolumeJson::from)
        .collect();
    if g.json {
        print_json(&vols)?;
    } else {
        let mut t = table(&["ID", "Name", "Status", "Size", "Backend", "Parent", "Depth"]);
        for v in &vols {
            t.add_row(vec![
                v.id.clone(),
                v.name.clone(),
                v.status.clone(),
                human_bytes(v.size_bytes),
                v.backend.clone(),
                v.parent.clone().unwrap_or_default(),
                v.clone_depth.to_string(),
            ]);
        }
        println!("{t}");
    }
    Ok(ExitCode::SUCCESS)
}

async fn volume_show(g: &Global, key: &str) -> anyhow::Result<ExitCode> {
    let (_, url) = load_for_reading(g)?;
    let db = open_db(&url).await?;
    let v = crate::service::jobs::request::volume(&db, key).await?;
    let snaps = db
        .snapshots_of(&v.id)
        .await
        .with_context(|| format!("volume {}", v.id))?;
    let jobs = db.list_jobs(Some(&v.id), 20).await?;
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
        print_json(&j)?;
    } else {
        let mut t = table(&["Field", "Value"]);
        for (k, val) in [
            ("id", vj.id.clone()),
            ("name", vj.name.clone()),
            ("status", vj.status.clone()),
            (
                "size",
                format!("{} ({} bytes)", human_bytes(vj.size_bytes), vj.size_bytes),
            ),
            ("backend", vj.backend.clone()),
            ("parent", vj.parent.clone().unwrap_or_else(|| "-".into())),
            ("clone_depth", vj.clone_depth.to_string()),
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
        println!("{t}");
    }
    Ok(ExitCode::SUCCESS)
}

async fn job_list(g: &Global, limit: i64) -> anyhow::Result<ExitCode> {
    let (_, url) = load_for_reading(g)?;
    let db = open_db(&url).await?;
    let jobs: Vec<JobJson> = db
        .list_jobs(None, limit)
        .await?
        .iter()
        .map(JobJson::from)
        .collect();
    if g.json {
        print_json(&jobs)?;
    } else {
        let mut t = table(&[
            "ID",
            "Kind",
            "Target",
            "State",
            "Progress",
            "Requested by",
            "Error",
        ]);
        for j in &jobs {
            let pct = if j.bytes_total > 0 {
                format!("{:.0}%", 100.0 * j.bytes_done as f64 / j.bytes_total as f64)
            } else {
                "-".into()
            };
            t.add_row(vec![
                j.id.clone(),
                j.kind.clone(),
                j.target.clone(),
                j.state.clone(),
                pct,
                j.requested_by.clone(),
                j.error.clone().unwrap_or_default(),
            ]);
        }
        println!("{t}");
    }
    Ok(ExitCode::SUCCESS)
}

async fn job_show(g: &Global, id: &str) -> anyhow::Result<ExitCode> {
    let (_, url) = load_for_reading(g)?;
    let db = open_db(&url).await?;
    let j = crate::service::jobs::request::found("job", id, db.find_job(id).await?)?;
    let jj = JobJson::from(&j);
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

async fn events(g: &Global, limit: i64) -> anyhow::Result<ExitCode> {
    let (_, url) = load_for_reading(g)?;
    let db = open_db(&url).await?;
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
                e.kind.clone(),
                e.target.clone().unwrap_or_default(),
                e.message.clone(),
            ]);
        }
        println!("{t}");
    }
    Ok(ExitCode::SUCCESS)
}

async fn reconcile(g: &Global, backend: &str, fix: bool) -> anyhow::Result<ExitCode> {
    let cfg = load_config(g)?;
    let Some(b) = cfg.backend(backend) else {
        let names: Vec<&str> = cfg.backends.iter().map(|b| b.name.as_str()).collect();
        bail!(
            "no backend {backend:?} in {}; known: {}",
            cfg.file
                .as_ref()
                .map(|p| p.display().to_string())
                .unwrap_or_default(),
            names.join(", ")
        );
    };
    let db = open_db(&cfg.database_url).await?;
    let findings = crate::service::reconcile::reconcile(&db, b, fix).await?;
    if g.json {
        print_json(&findings)?;
    } else if findings.is_empty() {
        println!("backend {backend}: database and storage agree");
    } else {
        let mut t = table(&["Kind", "Image", "Detail", "Fixed"]);
        for f in &findings {
            t.add_row(vec![
                f.kind.to_string(),
                f.image.clone(),
                f.detail.clone(),
                f.fixed.clone().unwrap_or_else(|| "-".into()),
            ]);
        }
        println!("{t}");
    }
    let open = findings
        .iter()
        .filter(|f| f.fixed.as_deref().is_none_or(|x| x.starts_with("not ")))
        .count();
    Ok(if open == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
