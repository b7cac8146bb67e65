//! `ember bench`: prints figures, each beside its baseline measured in the same run.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};

use crate::driver::file::FileDriver;
use crate::driver::{NoProgress, VolumeDriver, volume_image};
use crate::service::bench::{self, Strategy, fill_volume, time};

use super::args::Global;
use super::output::print_json;

pub async fn heartbeat(
    g: &Global,
    jobs: &[usize],
    seconds: u64,
    threads: usize,
) -> anyhow::Result<ExitCode> {
    let dur = Duration::from_secs(seconds);
    let mut rows = vec![];
    if !g.json {
        println!(
            "heartbeat lateness: a 100 ms timer on the runtime, {seconds} s per run, while N jobs copy memory flat out"
        );
        println!(
            "{} cores; ember = storage pool of {threads} threads (SCHED_BATCH, nice 19); baseline = one spawn_blocking per job; pool+scraped = the same with /metrics served and scraped every second",
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(0)
        );
        println!(
            "{:>5}  {:<14} {:>8} {:>8} {:>8} {:>12}",
            "jobs", "run by", "p50 ms", "p99 ms", "max ms", "copied MiB/s"
        );
    }
    for &n in jobs {
        for (label, strategy, metrics) in [
            ("spawn_blocking", Strategy::SpawnBlocking, false),
            ("ember pool", Strategy::Pool { threads }, false),
            ("pool+scraped", Strategy::Pool { threads }, true),
        ] {
            if n == 0 && strategy == Strategy::SpawnBlocking {
                continue; // no jobs: nothing to compare
            }
            let (r, scrapes) = bench::heartbeat(n, dur, strategy, metrics).await?;
            if metrics && scrapes == 0 {
                bail!("the metrics endpoint answered no scrape in {seconds} s");
            }
            if !g.json {
                let l = r.lateness_ms;
                println!(
                    "{:>5}  {:<14} {:>8.2} {:>8.2} {:>8.2} {:>12.0}",
                    n,
                    if n == 0 && !metrics { "-" } else { label },
                    l.p50,
                    l.p99,
                    l.max,
                    r.copied_mib_s
                );
            }
            rows.push(serde_json::json!({ "jobs": n, "run_by": label, "metrics_scrapes": scrapes, "lateness_ms": r.lateness_ms, "copied_mib_s": r.copied_mib_s }));
        }
    }
    if g.json {
        print_json(&rows)?;
    } else {
        println!("goal: with 64 jobs through ember's pool, p99 < 10 ms and max < 50 ms");
    }
    Ok(ExitCode::SUCCESS)
}

pub(super) const ROUNDS: usize = 5;

/// Before each timed run, ember's or a baseline's, so that every run starts alike: what the
/// run before wrote is on disk (its writeback does not land in the next run's time), and the
/// memory it freed has been idle for longer than the 2 s after which a VM with virtio-balloon
/// free page reporting (as the test machine has) hands it back to the host. Without it the
/// baselines ran right after the deletes of ember's restore and store.
pub(super) fn settle() {
    nix::unistd::sync();
    std::thread::sleep(Duration::from_secs(3));
}

pub(super) fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

/// The baselines: `cp --sparse=always` alone (it returns before the data is on disk), and
/// followed by `sync FILE` (on disk), which is what flatten guarantees before it drops the link.
pub(super) fn cp(
    src: &std::path::Path,
    dir: &std::path::Path,
    durable: bool,
) -> anyhow::Result<Duration> {
    let dst = dir.join("cp-copy");
    let (st, t) = time(|| -> anyhow::Result<()> {
        if !std::process::Command::new("cp")
            .arg("--sparse=always")
            .arg(src)
            .arg(&dst)
            .status()
            .context("cannot run cp")?
            .success()
        {
            bail!("cp failed");
        }
        if durable
            && !std::process::Command::new("sync")
                .arg(&dst)
                .status()
                .context("cannot run sync")?
                .success()
        {
            bail!("sync failed");
        }
        Ok(())
    });
    st?;
    std::fs::remove_file(&dst)?;
    Ok(t)
}

pub fn flatten(
    g: &Global,
    dir: &std::path::Path,
    size: u64,
    data: u64,
) -> anyhow::Result<ExitCode> {
    let work = tempfile::Builder::new()
        .prefix("ember-bench-")
        .tempdir_in(dir)
        .with_context(|| format!("cannot make a temp dir in {}", dir.display()))?;
    let drv = FileDriver::new("bench", work.path().to_path_buf(), 0);
    drv.check_setup()?;
    let base = "00000000-0000-0000-0000-00000000base";
    drv.create_volume(base, size)?;
    fill_volume(&work.path().join(volume_image(base)), size, data)?;
    let snap = "00000000-0000-0000-0000-00000000snap";
    let (made, snap_t) = time(|| drv.create_snapshot(snap, base, &NoProgress));
    made?;
    let snap_file = work.path().join(format!("snapshot-{snap}"));
    if !snap_file.exists() {
        bail!("snapshot was not made in {}", work.path().display());
    }
    // Rounds interleave the three so that page-cache and writeback state favour none.
    let (mut clone_ts, mut flatten_ts, mut cp_ts, mut cp_sync_ts) =
        (vec![], vec![], vec![], vec![]);
    for round in 0..ROUNDS {
        let id = format!("00000000-0000-0000-0000-{round:012}");
        let (cloned, ct) = time(|| drv.clone_snapshot(snap, base, &id, size));
        cloned?;
        let (flat, ft) = time(|| drv.flatten(&id, &NoProgress));
        flat?;
        drv.delete_volume(&id, &NoProgress)?;
        clone_ts.push(ct);
        flatten_ts.push(ft);
        cp_ts.push(cp(&snap_file, work.path(), false)?);
        cp_sync_ts.push(cp(&snap_file, work.path(), true)?);
    }
    let (clone_t, flatten_t, cp_t, cp_sync_t) = (
        median(clone_ts),
        median(flatten_ts),
        median(cp_ts),
        median(cp_sync_ts),
    );
    let mib = data as f64 / (1 << 20) as f64;
    let rate = |d: Duration| mib / d.as_secs_f64();
    let ratio = rate(flatten_t) / rate(cp_sync_t);
    if g.json {
        print_json(&serde_json::json!({
            "size_bytes": size, "data_bytes": data, "dir": dir,
            "clone_ms": clone_t.as_secs_f64() * 1000.0,
            "snapshot_s": snap_t.as_secs_f64(),
            "flatten_s": flatten_t.as_secs_f64(), "flatten_mib_s": rate(flatten_t),
            "cp_s": cp_t.as_secs_f64(), "cp_mib_s": rate(cp_t),
            "cp_sync_s": cp_sync_t.as_secs_f64(), "cp_sync_mib_s": rate(cp_sync_t),
            "flatten_vs_cp_sync": ratio,
        }))?;
    } else {
        println!(
            "file driver: {} volume holding {} of data, in {} (median of 5 interleaved rounds)",
            super::output::human_bytes(size as i64),
            super::output::human_bytes(data as i64),
            dir.display()
        );
        println!(
            "  clone from snapshot (layering)  {:>9.2} ms",
            clone_t.as_secs_f64() * 1000.0
        );
        println!(
            "  snapshot (sparse copy)          {:>9.3} s  {:>7.0} MiB/s",
            snap_t.as_secs_f64(),
            rate(snap_t)
        );
        println!(
            "  flatten of the clone            {:>9.3} s  {:>7.0} MiB/s",
            flatten_t.as_secs_f64(),
            rate(flatten_t)
        );
        println!(
            "  cp --sparse=always              {:>9.3} s  {:>7.0} MiB/s  (returns before the data is on disk)",
            cp_t.as_secs_f64(),
            rate(cp_t)
        );
        println!(
            "  cp --sparse=always + sync FILE  {:>9.3} s  {:>7.0} MiB/s  (the baseline: on disk, as flatten leaves it)",
            cp_sync_t.as_secs_f64(),
            rate(cp_sync_t)
        );
        println!("  flatten / (cp + sync)           {ratio:>9.2}x   (goal >= 0.95)");
    }
    Ok(ExitCode::SUCCESS)
}

/// Resident memory of this process (kB), from /proc.
fn rss_kb() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

/// Console speed with many volumes: a frame of the Volumes view, a filter keystroke, and the
/// first frame read from SQLite, at each size.
pub async fn console(g: &Global, counts: &[usize]) -> anyhow::Result<ExitCode> {
    use crate::service::snapshot::Reader;
    use crate::tui::{keymap::Keymap, state::App, state::View, theme::Theme, views};
    use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
    use ratatui::{Terminal, backend::TestBackend};
    use std::sync::Arc;

    let mut rows = vec![];
    if !g.json {
        println!(
            "console, Volumes view at 120x36 (release build); goals at 100k: frame < 2 ms, keystroke < 10 ms, first frame < 300 ms, RSS < 100 MB"
        );
        println!(
            "{:>8} {:>10} {:>14} {:>16} {:>16} {:>14} {:>10}",
            "volumes",
            "frame ms",
            "keystroke ms",
            "first frame ms",
            "table ready ms",
            "(row read ms)",
            "RSS MB"
        );
    }
    for &n in counts {
        let dir = tempfile::tempdir()?;
        let url = format!("sqlite://{}", dir.path().join("bench.db").display());
        let db = crate::db::Db::connect(&url).await?;
        db.bench_fill_volumes(n).await?;
        db.close().await;
        let rss_before = rss_kb();

        // As the console starts: connect, read all but the volume rows, draw the Overview
        // (the first frame); then read the volume rows and draw the Volumes view.
        let t0 = std::time::Instant::now();
        let db = crate::db::Db::connect(&url).await?;
        let cfg = crate::config::from_str(
            std::path::Path::new("bench.toml"),
            "[backends.file0]\nvolume_driver = \"file\"\n",
        )?;
        let mut reader = Reader::default();
        let snap = reader.read(&db, &cfg, &Default::default(), false).await;
        let mut app = App::new(
            Keymap::default_map(),
            Theme::load(Some("dark")).unwrap_or_else(|_| Theme::monochrome()),
            false,
            false,
            "bench".into(),
        );
        app.set_snapshot(Arc::new(snap));
        let mut term = Terminal::new(TestBackend::new(120, 36))?;
        let now = crate::db::now_ms();
        term.draw(|f| views::draw(f, &app, now))?;
        let first = t0.elapsed();
        let t_read = std::time::Instant::now();
        let snap = reader.read(&db, &cfg, &app.snap, true).await;
        let db_read = t_read.elapsed();
        app.view = View::Volumes;
        app.set_snapshot(Arc::new(snap));
        term.draw(|f| views::draw(f, &app, now))?;
        let table_ready = t0.elapsed();

        let frames = 200;
        let t1 = std::time::Instant::now();
        for i in 0..frames {
            app.selected = [0; crate::tui::state::View::ALL.len()];
            app.selected[2] = i % n.max(1);
            term.draw(|f| views::draw(f, &app, now))?;
        }
        let frame = t1.elapsed() / frames as u32;

        app.handle_key(KeyEvent::new(KeyCode::Char('/'), KeyModifiers::NONE));
        let typed = "vol-1";
        let t2 = std::time::Instant::now();
        for c in typed.chars() {
            app.handle_key(KeyEvent::new(KeyCode::Char(c), KeyModifiers::NONE));
            term.draw(|f| views::draw(f, &app, now))?;
        }
        let key = t2.elapsed() / typed.len() as u32;
        let rss_mb = rss_kb().max(rss_before) as f64 / 1024.0;
        if !g.json {
            println!(
                "{n:>8} {:>10.3} {:>14.3} {:>16.1} {:>16.1} {:>14.1} {rss_mb:>10.1}",
                ms(frame),
                ms(key),
                ms(first),
                ms(table_ready),
                ms(db_read)
            );
        }
        rows.push(serde_json::json!({"volumes": n, "frame_ms": ms(frame), "keystroke_ms": ms(key), "first_frame_ms": ms(first), "table_ready_ms": ms(table_ready), "row_read_ms": ms(db_read), "rss_mb": rss_mb}));
        db.close().await;
    }
    if g.json {
        print_json(&rows)?;
    }
    Ok(ExitCode::SUCCESS)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}
