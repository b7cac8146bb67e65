//! Subcommands: parse, load what they need, print text or JSON.
//!
//! Owner: `cli/`. May import `service`, `config` and `db` (read-only queries for listings).
//! Errors here are `anyhow` with context naming the file, backend or volume.

pub mod args;
mod attach;
mod backup;
pub mod bench;
mod bench_backup;
mod bench_live;
mod bench_migrate;
pub mod bench_rbd;
mod bench_rbd_backup;
mod bench_rbd_migrate;
mod bench_takeover;
pub mod complete;
pub mod console;
mod dispatch;
pub mod doctor;
mod evacuate;
mod export;
pub mod jobs;
pub mod json_log;
mod listing;
mod oncall;
mod service_admin;
mod stream;

use listing::{backend_list, events};
pub mod output;

use std::process::ExitCode;
use std::sync::Arc;

use anyhow::bail;

use crate::config::{self, Config, DriverConfig};
use crate::db::Db;
use crate::service::{Services, shutdown_signal};

use args::{BackendCmd, Command, ConfigCmd, Global};
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

/// The log filter: `$EMBER_LOG` (default `info`). PostgreSQL's notices (`relation ... already
/// exists, skipping` at every migration check) are the server talking to itself: only their
/// warnings pass. sqlx's per-query log (a "slow statement" warning whenever the console loads
/// a large table) is noise to an operator: only its errors pass.
pub fn log_filter() -> tracing_subscriber::EnvFilter {
    let mut filter =
        tracing_subscriber::EnvFilter::try_from_env("EMBER_LOG").unwrap_or_else(|_| "info".into());
    for d in ["sqlx::postgres::notice=warn", "sqlx::query=error"] {
        if let Ok(d) = d.parse() {
            filter = filter.add_directive(d);
        }
    }
    filter
}

/// The one way an operator's command opens the database: read-only (refused by the database
/// itself on any change) when `--read-only` is given or the config says `read_only = true`.
async fn open_db(g: &Global, cfg: Option<&Config>, url: &str) -> anyhow::Result<Db> {
    if g.read_only || cfg.is_some_and(|c| c.read_only) {
        Ok(Db::connect_read_only(url).await?)
    } else {
        Ok(Db::connect(url).await?)
    }
}

pub async fn run(
    cmd: Command,
    mut g: Global,
    mut console_args: args::ConsoleArgs,
) -> anyhow::Result<ExitCode> {
    // `ember --attach` and `ember console --attach` mean the same.
    if let Command::Console { args, .. } = &cmd {
        console_args.attach |= args.attach;
        console_args.read_only |= args.read_only;
        if args.theme.is_some() {
            console_args.theme.clone_from(&args.theme);
        }
    }
    g.read_only |= console_args.read_only;
    match cmd {
        Command::Console { no_worker, .. } => console::run(&g, &console_args, no_worker).await,
        Command::Serve => serve(&g).await,
        Command::Completions { shell } => {
            complete::registration(&shell, &mut std::io::stdout().lock())?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Man => {
            complete::man_page(&mut std::io::stdout().lock())?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Config(ConfigCmd::Check { path }) => config_check(&g, path),
        Command::Doctor {
            backend,
            strict,
            verbose,
            stuck_after,
            ceph_checks,
        } => {
            if ceph_checks {
                doctor::ceph_checks(&g)
            } else {
                doctor::run(&g, backend, strict, verbose, stuck_after).await
            }
        }
        Command::Db(args::DbCmd::Roles { apply }) => dispatch::db_roles(&g, apply).await,
        Command::Service(cmd) => dispatch::service(&g, cmd).await,
        Command::Backend(BackendCmd::List) => backend_list(&g).await,
        Command::Backend(BackendCmd::Evacuate {
            backend,
            to,
            parallel,
        }) => evacuate::evacuate(&g, &backend, &to, parallel as usize).await,
        Command::Backend(BackendCmd::Drain { backend, off }) => {
            evacuate::drain(&g, &backend, off).await
        }
        Command::Volume(cmd) => dispatch::volume(&g, cmd).await,
        Command::Job(cmd) => dispatch::job(&g, cmd).await,
        Command::Backup(cmd) => backup::run(&g, cmd).await,
        Command::Events { limit } => events(&g, limit).await,
        Command::Bench(cmd) => dispatch::bench(&g, cmd).await,
    }
}

async fn serve(g: &Global) -> anyhow::Result<ExitCode> {
    let cfg = Arc::new(load_config(g)?);
    for note in &cfg.notes {
        tracing::info!("config: {note}");
    }
    // The services' own writes (heartbeats, jobs): read_only governs operators, not them.
    let db = Db::connect(&cfg.database_url).await?;
    if let Some(why) = db.access().await?.serve_refusal() {
        bail!("ember serve: {why}");
    }
    tracing::info!(database = %db.display_url, backends = cfg.backends.len(), "starting");
    let cancel = tokio_util::sync::CancellationToken::new();
    let drain = cfg.drain_timeout;
    crate::service::systemd::check_watchdog(cfg.report_interval);
    let services = Services::start(cfg, db, cancel.clone()).await?;
    crate::service::systemd::notify_ready_after(services.backends.clone());
    shutdown_signal().await;
    crate::service::systemd::stopping();
    services.shutdown(drain).await;
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
    let db = open_db(g, Some(&cfg), &cfg.database_url).await?;
    if fix {
        db.ensure_writable("repair backend storage (reconcile --fix)")?;
    }
    let owner = cfg.service_owner(&b.name);
    let findings = crate::service::reconcile::reconcile(&db, b, &owner, fix).await?;
    if g.json {
        print_json(&findings)?;
    } else if findings.is_empty() {
        println!("backend {backend}: database and storage agree");
    } else {
        let mut t = table(&["Kind", "Image", "Detail", "Fixed"]);
        for f in &findings {
            let detail = match &f.manageable {
                Some(cmd) if f.fixed.is_none() => format!("{}; manageable: {cmd}", f.detail),
                _ => f.detail.clone(),
            };
            t.add_row(vec![
                f.kind.to_string(),
                f.image.clone(),
                detail,
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
