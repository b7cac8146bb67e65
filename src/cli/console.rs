//! `ember` with no command: the console, running the services in the same process unless
//! attached. If an `ember serve` on this host already runs the backends, the console attaches
//! instead of registering a second service under the same name.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::db::services::is_up;
use crate::db::{Db, now_ms};
use crate::service::Services;
use crate::service::handle::Handle;
use crate::service::snapshot::{Reader, spawn_publisher_with};
use crate::tui;

use super::args::{ConsoleArgs, Global};
use super::load_config;

/// How often the console re-reads the database (in-process changes also poke it at once).
const REFRESH: Duration = Duration::from_secs(2);

/// Console logs go to the log view and to `<data_dir>/ember.log`, never to the screen.
fn init_logging(
    log_file: &std::path::Path,
    format: crate::config::LogFormat,
    host: &str,
) -> anyhow::Result<()> {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    if let Some(dir) = log_file.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log_file)?;
    // Not tui_logger::init_logger: its mover thread wakes 100 times a second, which was most of
    // the idle console's CPU (measured per thread). The console moves events itself, once a
    // second and before each frame.
    tui_logger::set_default_level(tui_logger::LevelFilter::Info);
    tui_logger::set_hot_buffer_depth(10_000);
    let writer = std::sync::Mutex::new(file);
    let (text, json) = if format == crate::config::LogFormat::Json {
        let layer = tracing_subscriber::fmt::layer()
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_writer(super::json_log::HostStamped::new(host, writer));
        (None, Some(layer))
    } else {
        let layer = tracing_subscriber::fmt::layer()
            .with_writer(writer)
            .with_ansi(false)
            .with_target(false);
        (Some(layer), None)
    };
    tracing_subscriber::registry()
        .with(super::log_filter())
        .with(tui_logger::TuiTracingSubscriberLayer)
        .with(crate::tui::logbook::LogBookLayer)
        .with(text)
        .with(json)
        .try_init()
        .map_err(|e| anyhow::anyhow!("logging: {e}"))?;
    Ok(())
}

pub async fn run(g: &Global, args: &ConsoleArgs, no_worker: bool) -> anyhow::Result<ExitCode> {
    let mut cfg = load_config(g)?;
    cfg.read_only |= args.read_only;
    init_logging(&cfg.data_dir.join("ember.log"), cfg.log_format, &cfg.host)?;
    let db = Db::connect(&cfg.database_url).await?;
    let cfg = Arc::new(cfg);
    let mut notice = None;
    let mut worker = !(args.attach || no_worker);
    // A login that may not run services watches the ones that run elsewhere.
    if worker && let Some(why) = db.access().await?.serve_refusal() {
        worker = false;
        notice = Some(format!("attached: {why}"));
    }
    if worker {
        // Another ember on this host already serving these backends? Attach to it.
        let down = cfg.service_down_time.as_millis() as i64;
        let me = i64::from(std::process::id());
        let hosts: Vec<String> = cfg
            .backends
            .iter()
            .map(|b| cfg.service_host(&b.name))
            .collect();
        if let Some(other) = db
            .list_services()
            .await?
            .into_iter()
            .find(|s| hosts.contains(&s.host) && is_up(s, now_ms(), down) && s.pid != Some(me))
        {
            worker = false;
            notice = Some(format!(
                "attached: {} is already served by pid {} (ember serve?)",
                other.host,
                other.pid.unwrap_or(0)
            ));
        }
    }
    let cancel = CancellationToken::new();
    let services = if worker {
        match Services::start(cfg.clone(), db.clone(), cancel.clone()).await {
            Ok(s) => Some(s),
            Err(e) => {
                notice = Some(format!("no service started here: {e}"));
                None
            }
        }
    } else {
        None
    };
    // The embedded worker's jobs post their progress straight to this console.
    let (rx, poke) = spawn_publisher_with(
        db.clone(),
        cfg.clone(),
        REFRESH,
        cancel.clone(),
        Reader::default(),
        services.as_ref().map(|s| s.board.clone()),
    );
    // What the operator changes goes through a handle the database itself keeps read-only
    // when asked; the services above write through their own.
    let operator_db = if cfg.read_only {
        Db::connect_read_only(&cfg.database_url).await?
    } else {
        db
    };
    let handle = Arc::new(Handle::new(
        operator_db,
        cfg.clone(),
        rx,
        poke,
        services
            .as_ref()
            .map(|s| s.backends.clone())
            .unwrap_or_default(),
        cfg.read_only,
    ));
    let host = cfg.backend_host.clone().unwrap_or_else(|| cfg.host.clone());
    let result = tui::run(
        handle,
        tui::Options {
            theme: args.theme.clone(),
            notice,
        },
        host,
    )
    .await;
    if let Some(s) = services {
        // The operator confirmed: running jobs go back to the queue at once, for another
        // worker or the next start.
        s.shutdown(Duration::ZERO).await;
    }
    cancel.cancel();
    result?;
    Ok(ExitCode::SUCCESS)
}
