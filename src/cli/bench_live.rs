//! `ember bench console-live`: the console as an operator runs it, measured. A database holds
//! N volumes and N snapshots; the real publisher loop (the same `spawn_publisher` the console
//! runs: LISTEN on PostgreSQL, polling on SQLite) feeds the real render of the Volumes view at
//! 120x36. First idle, then with a second `ember` process creating a volume every 2 s. Printed:
//! CPU % of this process, RSS, rows read per refresh, and change-to-screen latency (from the
//! new row's `created_at` to the frame that shows it), each beside the
//! same loop reloading everything on every refresh. An `ember serve` runs beside it, as in
//! production: its heartbeats, and the jobs of the new volumes, are changes too. Last, the
//! "terminal" row: the real `ember console --attach` in tmux, its own process measured.

use std::process::{Command, ExitCode, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use tokio_util::sync::CancellationToken;

use crate::config;
use crate::db::Db;
use crate::service::snapshot::{Reader, spawn_publisher_with};

use super::args::Global;
use super::output::print_json;

/// The console's SQLite poll period (cli/console.rs REFRESH).
const POLL: Duration = Duration::from_secs(2);
/// One change every this often, from a second process.
const CHANGE_EVERY: Duration = Duration::from_secs(2);

/// CPU seconds (user + system) a process has used, from /proc (ticks of 1/100 s); `pid` is a
/// number or `self`.
fn proc_cpu_s(pid: &str) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which may hold spaces): state is field 3.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    let tick = |i: usize| f.get(i).and_then(|x| x.parse::<f64>().ok()).unwrap_or(0.0);
    (tick(11) + tick(12)) / 100.0
}

fn proc_rss_mb(pid: &str) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        })
        .unwrap_or(0.0)
        / 1024.0
}

fn cpu_s() -> f64 {
    proc_cpu_s("self")
}

/// A child process killed and reaped when the bench lets go of it.
struct Kill(std::process::Child);

impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `ember serve` on `url`, as in production beside a console.
fn serve(cfg_path: &std::path::Path, url: &str) -> anyhow::Result<Kill> {
    Ok(Kill(
        Command::new(std::env::current_exe()?)
            .arg("--config")
            .arg(cfg_path)
            .args(["--database-url", url, "serve"])
            .env("EMBER_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?,
    ))
}

/// The change stream: a shell loop running `ember volume create PREFIX-N` every
/// [`CHANGE_EVERY`] (no fork from this process, which may be the console being measured).
fn writer(cfg_path: &std::path::Path, url: &str, prefix: &str) -> anyhow::Result<Kill> {
    let script = format!(
        "i=0; while :; do \"$0\" --config \"$1\" --database-url \"$2\" volume create {prefix}-$i --size 1G --backend file0 >/dev/null 2>&1; i=$((i+1)); sleep {}; done",
        CHANGE_EVERY.as_secs()
    );
    Ok(Kill(
        Command::new("sh")
            .arg("-c")
            .arg(&script)
            .arg(std::env::current_exe()?)
            .arg(cfg_path)
            .arg(url)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?,
    ))
}

/// What the render side saw: each frame drawn, with the volume count it showed and, when that
/// count grew, how long ago (ms) the newest volume was created.
#[derive(Default)]
struct Screen {
    frames: Vec<(Instant, i64, Option<i64>)>,
    refreshes: usize,
    rows_read: usize,
}

#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct Figures {
    engine: String,
    volumes: usize,
    mode: String,
    idle_cpu_pct: f64,
    idle_rows_per_refresh: f64,
    change_cpu_pct: f64,
    change_rows_per_refresh: f64,
    latency_p50_ms: f64,
    latency_p99_ms: f64,
    rss_mb: f64,
}

fn pct(v: &mut [f64], p: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    v[((v.len() - 1) as f64 * p).round() as usize]
}

#[allow(clippy::too_many_arguments)]
async fn run(
    engine: &str,
    url: &str,
    cfg_path: &std::path::Path,
    n: usize,
    full: bool,
    seconds: u64,
) -> anyhow::Result<Figures> {
    use crate::tui::{keymap::Keymap, state::App, state::View, theme::Theme, views};
    use ratatui::{Terminal, backend::TestBackend};

    let cfg = Arc::new(config::load(cfg_path)?);
    let db = Db::connect(url).await?;
    // `ember serve` beside the console, as in production: heartbeats, and the jobs of the
    // volumes the writer creates run (several updates per change).
    let _serve = serve(cfg_path, url)?;
    let cancel = CancellationToken::new();
    let mut reader = Reader::default();
    reader.full_every_time = full;
    let (mut rx, _poke) =
        spawn_publisher_with(db.clone(), cfg.clone(), POLL, cancel.clone(), reader, None);
    let screen = Arc::new(Mutex::new(Screen::default()));
    let s2 = screen.clone();
    let render = tokio::spawn(async move {
        let mut app = App::new(
            Keymap::default_map(),
            Theme::monochrome(),
            false,
            false,
            "bench".into(),
        );
        app.view = View::Volumes;
        let Ok(mut term) = Terminal::new(TestBackend::new(120, 36));
        let mut shown = 0;
        while rx.changed().await.is_ok() {
            let snap = rx.borrow_and_update().clone();
            let rows = snap.rows_read;
            // -1 until the rows are loaded (the first frame only knows how many there are).
            let count = if snap.volumes_loaded {
                snap.volume_count
            } else {
                -1
            };
            let newest = (count > shown && shown > 0)
                .then(|| snap.volumes.iter().map(|v| v.created_at).max())
                .flatten();
            shown = count;
            app.set_snapshot(snap);
            let _ = term.draw(|f| views::draw(f, &app, crate::db::now_ms()));
            let latency = newest.map(|c| crate::db::now_ms() - c);
            let mut s = s2.lock().unwrap_or_else(|p| p.into_inner());
            s.frames.push((Instant::now(), count, latency));
            s.refreshes += 1;
            s.rows_read += rows;
        }
    });
    // Until the table is loaded and drawn.
    let loaded = Instant::now();
    loop {
        if screen
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .frames
            .last()
            .is_some_and(|f| f.1 >= n as i64)
        {
            break;
        }
        anyhow::ensure!(
            loaded.elapsed() < Duration::from_secs(300),
            "the table never loaded"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let window = |s: &Mutex<Screen>| {
        let g = s.lock().unwrap_or_else(|p| p.into_inner());
        (g.refreshes, g.rows_read)
    };

    // Idle.
    let (r0, w0) = window(&screen);
    let (c0, t0) = (cpu_s(), Instant::now());
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    let idle_cpu = (cpu_s() - c0) / t0.elapsed().as_secs_f64() * 100.0;
    let (r1, w1) = window(&screen);
    let idle_rows = (w1 - w0) as f64 / (r1 - r0).max(1) as f64;

    // One change every 2 s from a second process: a shell loop running `ember volume create`
    // (no fork from this process, which is the console being measured). Latency: from the new
    // row's created_at (this machine's clock, set just before the writer commits) to the
    // frame that shows it.
    let (c0, t0) = (cpu_s(), Instant::now());
    let first_frame = screen
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .frames
        .len();
    let writer = writer(cfg_path, url, "chg")?;
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    drop(writer);
    let latencies: Vec<f64> = screen.lock().unwrap_or_else(|p| p.into_inner()).frames
        [first_frame..]
        .iter()
        .filter_map(|f| f.2.map(|ms| ms as f64))
        .collect();
    let change_cpu = (cpu_s() - c0) / t0.elapsed().as_secs_f64() * 100.0;
    let (r2, w2) = window(&screen);
    let change_rows = (w2 - w1) as f64 / (r2 - r1).max(1) as f64;
    let rss = proc_rss_mb("self");
    cancel.cancel();
    render.abort();
    Ok(Figures {
        engine: engine.to_string(),
        volumes: n,
        mode: if full { "full reload" } else { "incremental" }.to_string(),
        idle_cpu_pct: idle_cpu,
        idle_rows_per_refresh: idle_rows,
        change_cpu_pct: change_cpu,
        change_rows_per_refresh: change_rows,
        latency_p50_ms: pct(&mut latencies.clone(), 0.5),
        latency_p99_ms: pct(&mut latencies.clone(), 0.99),
        rss_mb: rss,
    })
}

/// The real binary in a real terminal, as an operator meets it: `ember console --attach` in
/// tmux at 120x36 on the Volumes view, `ember serve` beside it, the same writer. Its CPU is
/// read from /proc: the event loop, the refresh, the filter and sort, the diffing renderer and
/// the terminal writes all count. (Rows and latency are the in-process rows' figures.)
async fn run_terminal(
    engine: &str,
    url: &str,
    cfg_path: &std::path::Path,
    n: usize,
    seconds: u64,
) -> anyhow::Result<Figures> {
    let tmux = |args: &[&str]| Command::new("tmux").args(args).output();
    anyhow::ensure!(
        tmux(&["-V"]).is_ok_and(|o| o.status.success()),
        "tmux is not installed: the terminal row needs it (apt-get install tmux)"
    );
    let exe = std::env::current_exe()?;
    let _serve = serve(cfg_path, url)?;
    let session = format!("ember-bench-{}", std::process::id());
    struct Session(String);
    impl Drop for Session {
        fn drop(&mut self) {
            let _ = Command::new("tmux")
                .args(["kill-session", "-t", &self.0])
                .output();
        }
    }
    let console = format!(
        "exec '{}' --config '{}' --database-url '{url}' console --attach",
        exe.display(),
        cfg_path.display()
    );
    let out = tmux(&[
        "new-session",
        "-d",
        "-s",
        &session,
        "-x",
        "120",
        "-y",
        "36",
        &console,
    ])?;
    anyhow::ensure!(
        out.status.success(),
        "tmux: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let _session = Session(session.clone());
    let pane = tmux(&["list-panes", "-t", &session, "-F", "#{pane_pid}"])?;
    let pid = String::from_utf8_lossy(&pane.stdout).trim().to_string();
    anyhow::ensure!(
        pid.parse::<u32>().is_ok(),
        "the console's pid: tmux said {pid:?}"
    );
    let pid = pid.as_str();
    // Until it has loaded and drawn the table: its CPU falls quiet.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let _ = tmux(&["send-keys", "-t", &session, "3"]);
    let started = Instant::now();
    loop {
        let c = proc_cpu_s(pid);
        tokio::time::sleep(Duration::from_secs(1)).await;
        if proc_cpu_s(pid) - c < 0.05 && started.elapsed() > Duration::from_secs(3) {
            break;
        }
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(300),
            "the console never settled"
        );
    }
    let measure = |secs: u64| async move {
        let (c0, t0) = (proc_cpu_s(pid), Instant::now());
        tokio::time::sleep(Duration::from_secs(secs)).await;
        (proc_cpu_s(pid) - c0) / t0.elapsed().as_secs_f64() * 100.0
    };
    // A console that exited (a refused flag, a database error) reads as 0 % CPU: a figure
    // that looks like a success. Its pid must still be there before and after each phase.
    let alive = || {
        anyhow::ensure!(
            std::path::Path::new(&format!("/proc/{pid}")).exists(),
            "the console (pid {pid}) exited before it was measured"
        );
        Ok(())
    };
    alive()?;
    let idle_cpu = measure(seconds).await;
    let writer = writer(cfg_path, url, "tchg")?;
    let change_cpu = measure(seconds).await;
    drop(writer);
    alive()?;
    Ok(Figures {
        engine: engine.to_string(),
        volumes: n,
        mode: "terminal".to_string(),
        idle_cpu_pct: idle_cpu,
        idle_rows_per_refresh: f64::NAN,
        change_cpu_pct: change_cpu,
        change_rows_per_refresh: f64::NAN,
        latency_p50_ms: f64::NAN,
        latency_p99_ms: f64::NAN,
        rss_mb: proc_rss_mb(pid),
    })
}

/// One statement on the admin database, on a plain connection (no migrations there).
async fn admin_sql(admin: &str, sql: &str) -> anyhow::Result<()> {
    use sqlx::{Connection, Executor};
    sqlx::any::install_default_drivers();
    let mut c = sqlx::AnyConnection::connect(admin)
        .await
        .context("connect to the admin database")?;
    c.execute(sqlx::AssertSqlSafe(sql.to_string()))
        .await
        .with_context(|| format!("`{sql}`"))?;
    let _ = c.close().await;
    Ok(())
}

/// A fresh database of `engine` with `n` volumes and `n` snapshots: (url, drop it after).
async fn seeded(
    admin: Option<&str>,
    dir: &std::path::Path,
    n: usize,
) -> anyhow::Result<(String, Option<String>)> {
    let (url, drop) = match admin {
        None => (
            format!("sqlite://{}", dir.join(format!("live-{n}.db")).display()),
            None,
        ),
        Some(admin) => {
            let name = format!("ember_bench_live_{}", uuid::Uuid::new_v4().simple());
            admin_sql(admin, &format!("CREATE DATABASE {name}")).await?;
            let base = admin.rsplit_once('/').map(|(b, _)| b).unwrap_or(admin);
            (format!("{base}/{name}"), Some(name))
        }
    };
    let db = Db::connect(&url).await?;
    db.bench_fill_volumes_and_snapshots(n).await?;
    db.close().await;
    Ok((url, drop))
}

/// One configuration, in this process: `[url, n, full|incremental]`; prints its figures.
pub async fn one(g: &Global, one: &[String], seconds: u64) -> anyhow::Result<ExitCode> {
    let [url, n, mode] = one else {
        anyhow::bail!("--one takes URL N full|incremental");
    };
    let cfg_path = g.config.clone().context("--one needs --config")?;
    let engine = if url.starts_with("postgres") {
        "postgres"
    } else {
        "sqlite"
    };
    let f = run(engine, url, &cfg_path, n.parse()?, mode == "full", seconds).await?;
    print_json(&f)?;
    Ok(ExitCode::SUCCESS)
}

pub async fn console_live(g: &Global, counts: &[usize], seconds: u64) -> anyhow::Result<ExitCode> {
    let dir = tempfile::tempdir()?;
    let cfg_path = dir.path().join("bench.toml");
    std::fs::write(
        &cfg_path,
        format!(
            "data_dir = \"{}\"\nhost = \"bench\"\nreport_interval = 10\nperiodic_interval = 60\n[backends.file0]\nvolume_driver = \"file\"\n",
            dir.path().join("data").display()
        ),
    )?;
    let mut engines: Vec<Option<&str>> = vec![None];
    if let Some(url) = g.database_url.as_deref() {
        anyhow::ensure!(
            url.starts_with("postgres://") || url.starts_with("postgresql://"),
            "--database-url must be PostgreSQL (an admin URL: the bench creates its databases)"
        );
        engines.push(Some(url));
    }
    if !g.json {
        println!(
            "console-live: Volumes view at 120x36, N volumes + N snapshots, {seconds} s idle then {seconds} s with one change every 2 s from another process"
        );
        println!(
            "goals at 100k: idle < 0.5 % CPU and < 120 MB; changes < 2 % CPU; on screen within 1 s p99 (PostgreSQL), within a refresh period (SQLite, {} s)",
            POLL.as_secs()
        );
        println!(
            "{:<9} {:>8} {:<12} {:>9} {:>10} {:>9} {:>10} {:>9} {:>9} {:>8}",
            "engine",
            "volumes",
            "mode",
            "idle CPU%",
            "idle rows",
            "chg CPU%",
            "chg rows",
            "p50 ms",
            "p99 ms",
            "RSS MB"
        );
    }
    let mut all = vec![];
    for admin in engines {
        for &n in counts {
            let (url, drop) = seeded(admin, dir.path(), n).await?;
            for full in [false, true] {
                // Each configuration in a process of its own: RSS is then its own.
                let out = Command::new(std::env::current_exe()?)
                    .arg("--config")
                    .arg(&cfg_path)
                    .args([
                        "--json",
                        "bench",
                        "console-live",
                        "--seconds",
                        &seconds.to_string(),
                        "--one",
                        &url,
                        &n.to_string(),
                    ])
                    .arg(if full { "full" } else { "incremental" })
                    .stderr(Stdio::inherit())
                    .output()?;
                anyhow::ensure!(
                    out.status.success(),
                    "bench run failed: {}",
                    String::from_utf8_lossy(&out.stdout)
                );
                let f: Figures = serde_json::from_slice(&out.stdout).context("bench run output")?;
                if !g.json {
                    println!(
                        "{:<9} {:>8} {:<12} {:>9.2} {:>10.1} {:>9.2} {:>10.1} {:>9.0} {:>9.0} {:>8.0}",
                        f.engine,
                        f.volumes,
                        f.mode,
                        f.idle_cpu_pct,
                        f.idle_rows_per_refresh,
                        f.change_cpu_pct,
                        f.change_rows_per_refresh,
                        f.latency_p50_ms,
                        f.latency_p99_ms,
                        f.rss_mb
                    );
                }
                all.push(f);
            }
            let engine = if admin.is_some() {
                "postgres"
            } else {
                "sqlite"
            };
            match run_terminal(engine, &url, &cfg_path, n, seconds).await {
                Ok(f) => {
                    if !g.json {
                        println!(
                            "{:<9} {:>8} {:<12} {:>9.2} {:>10} {:>9.2} {:>10} {:>9} {:>9} {:>8.0}",
                            f.engine,
                            f.volumes,
                            f.mode,
                            f.idle_cpu_pct,
                            "-",
                            f.change_cpu_pct,
                            "-",
                            "-",
                            "-",
                            f.rss_mb
                        );
                    }
                    all.push(f);
                }
                Err(e) => eprintln!("terminal row skipped: {e:#}"),
            }
            if let (Some(admin), Some(name)) = (admin, drop) {
                let a = Db::connect(admin).await?;
                let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
                    "DROP DATABASE {name} WITH (FORCE)"
                )))
                .execute(&a.pool)
                .await;
                a.close().await;
            }
        }
    }
    if g.json {
        print_json(&all)?;
    }
    Ok(ExitCode::SUCCESS)
}
