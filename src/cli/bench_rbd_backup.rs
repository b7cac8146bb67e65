//! `ember bench rbd-backup`: an rbd volume backed up into a directory store, written to, and
//! backed up again (incremental: only what changed since the first backup's snapshot is
//! read), then the second backup restored into a new rbd volume, as the jobs run them (the
//! driver's `backup_read`, `backup::Store`), beside the `rbd` CLI on the same image in the
//! same round: `rbd snap create` + `rbd export-diff` into a file + `sync` (whole, then
//! `--from-snap`: the diffs Cinder's Ceph backup driver ships), and `rbd create` +
//! `rbd import-diff` of both files into a new image. ember's restore also checks every chunk
//! it wrote (hashed by the OSD that stores it, `rados_checksum`); `import-diff` checks
//! nothing. Every restored image, ember's and the CLI's, is compared byte for byte with the
//! volume (not timed).
//!
//! With `--to-pool POOL` ember backs up into that rbd pool (`backup_driver = "ceph"`: a base
//! image per volume, a snapshot per backup) and the CLI does what Cinder's Ceph backup driver
//! does: `rbd export-diff ... - | rbd import-diff - POOL/base` (the whole image, then
//! `--from-snap`), and restores with `rbd create` + `rbd export-diff POOL/base@snap - | rbd
//! import-diff -`.

use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use rand::Rng;

use super::args::Global;
use super::bench::median;
use super::bench_rbd::{fill, rbd_cli, run};
use super::output::{human_bytes, print_json};
use crate::backup::{Store, StoreError, Target};
use crate::config::{BackendConfig, DriverConfig, RbdConfig};
use crate::driver::rbd::{RbdBackupStore, RbdDriver};
use crate::driver::verify::compare_for;
use crate::driver::{DriverError, NoProgress, VolumeDriver, volume_image};
use crate::service::bench::time;

fn store_err(e: StoreError) -> DriverError {
    DriverError::Io {
        backend: "bench".into(),
        op: "backup",
        message: e.to_string(),
    }
}

/// What one round measured.
#[derive(Default)]
struct Round {
    full: Duration,
    inc: Duration,
    restore: Duration,
    cli_full: Duration,
    cli_inc: Duration,
    cli_restore: Duration,
    inc_stored: u64,
    cli_inc_bytes: u64,
}

/// The volume's size, how much of it holds data, and how much is written between the backups.
pub struct Sizes {
    pub size: u64,
    pub data: u64,
    pub change: u64,
}

/// `a | b`, timed from the start of both to the end of both.
fn piped(
    mut a: std::process::Command,
    mut b: std::process::Command,
    what: &str,
) -> anyhow::Result<Duration> {
    use std::process::Stdio;
    let (res, t) = time(|| -> anyhow::Result<()> {
        let mut first = a
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("cannot run {what} (is ceph-common installed?)"))?;
        let out = first.stdout.take().context("no pipe")?;
        let second = b.stdin(out).stderr(Stdio::piped()).output();
        let first = first.wait_with_output()?;
        let second = second.with_context(|| format!("cannot run {what}"))?;
        for o in [&first, &second] {
            if !o.status.success() {
                bail!(
                    "{what} failed: {}",
                    String::from_utf8_lossy(&o.stderr).trim()
                );
            }
        }
        Ok(())
    });
    res?;
    Ok(t)
}

pub fn backup(
    g: &Global,
    b: &BackendConfig,
    dir: &Path,
    sizes: Sizes,
    rounds: usize,
    to_pool: Option<&str>,
) -> anyhow::Result<ExitCode> {
    let Sizes { size, data, change } = sizes;
    let DriverConfig::Rbd(r) = &b.driver else {
        bail!("backend {} is not an rbd backend", b.name);
    };
    let drv = RbdDriver::new(&b.name, r.clone(), 0);
    drv.check_setup()?;
    let work = tempfile::Builder::new()
        .prefix("ember-bench-")
        .tempdir_in(dir)
        .with_context(|| format!("cannot make a temp dir in {}", dir.display()))?;
    let (seed, mut rng) = crate::driver::seeded_rng();
    let tag = uuid::Uuid::new_v4().simple().to_string();
    let id = |n: &str| format!("{}-0000-4000-8000-{}{n:0>4}", &tag[..8], &tag[..8]);
    let spec = |i: &str| format!("{}/{}", r.pool, volume_image(i));
    let cmd = |args: &[&str]| {
        let mut c = rbd_cli(r);
        c.arg("--no-progress").args(args);
        c
    };
    let cli = |args: &[&str], what: &str| run(cmd(args), what);
    // The CLI's backup image in the backup pool (--to-pool), per round.
    let cli_base = |round: usize| to_pool.map(|p| format!("{p}/{}-cli-base-{round}", &tag[..8]));
    let mut made: Vec<String> = vec![];
    let mut measured = vec![];
    let result = (|| -> anyhow::Result<()> {
        for round in 0..rounds {
            let (v, er, cr) = (
                id(&format!("v{round}")),
                id(&format!("r{round}")),
                id(&format!("c{round}")),
            );
            made.extend([v.clone(), er.clone(), cr.clone()]);
            drv.create_volume(&v, size)?;
            fill(r, &spec(&v), data)?;
            let store: Box<dyn Target> = match to_pool {
                Some(p) => Box::new(RbdBackupStore::new(RbdConfig {
                    pool: p.to_string(),
                    ..r.clone()
                })),
                None => Box::new(Store::open(&work.path().join(format!("store{round}")))?),
            };
            let ours = |name: &str, base: Option<&str>| -> anyhow::Result<(Duration, u64)> {
                let mut stored = 0;
                let (res, t) = time(|| {
                    drv.backup_read(&v, name, base, &mut |rd, how| {
                        let (_, s) = store
                            .backup(name, &v, rd, how, base, 0, &NoProgress)
                            .map_err(store_err)?
                            .ok_or_else(|| store_err(StoreError::Volume("stopped".into())))?;
                        stored = s.stored_bytes;
                        Ok(())
                    })
                });
                res?;
                Ok((t, stored))
            };
            let diff = |n: usize| work.path().join(format!("diff{round}-{n}"));
            let theirs = |n: usize| -> anyhow::Result<Duration> {
                let snap = format!("{}@cli{n}", spec(&v));
                let out = diff(n);
                let out = out.to_str().context("temp path")?;
                let mut t = cli(&["snap", "create", &snap], "rbd snap create")?;
                let from = format!("cli{}", n - 1);
                let mut export = vec!["export-diff"];
                if n > 1 {
                    export.extend(["--from-snap", &from]);
                }
                export.push(&snap);
                if let Some(base) = cli_base(round) {
                    // Cinder's way: straight into the backup pool's image.
                    if n == 1 {
                        t += cli(
                            &["create", "--size", &format!("{size}B"), &base],
                            "rbd create",
                        )?;
                    }
                    let what = "rbd export-diff | rbd import-diff";
                    t += piped(
                        cmd(&[&export[..], &["-"]].concat()),
                        cmd(&["import-diff", "-", &base]),
                        what,
                    )?;
                    // The diff's size, untimed.
                    export.push(out);
                    cli(&export, "rbd export-diff")?;
                    return Ok(t);
                }
                export.push(out);
                t += cli(&export, "rbd export-diff")?;
                let mut sync = std::process::Command::new("sync");
                sync.arg(out);
                Ok(t + run(sync, "sync")?)
            };
            let mut m = Round::default();
            // Alternate who goes first: the second reads a warmer cluster.
            if round % 2 == 0 {
                m.full = ours("full", None)?.0;
                m.cli_full = theirs(1)?;
            } else {
                m.cli_full = theirs(1)?;
                m.full = ours("full", None)?.0;
            }
            // Between the backups: a few writes at seeded offsets, `change` bytes in all.
            drv.with_volume(&v, true, &mut |w| {
                let piece = (4u64 << 20).min(change.max(1));
                let mut left = change;
                while left > 0 {
                    let n = piece.min(left);
                    let at = rng.random_range(0..=(size - n)) & !4095;
                    let mut buf = vec![0u8; n as usize];
                    rng.fill(&mut buf[..]);
                    w.write_at(&buf, at)
                        .map_err(|e| store_err(StoreError::Volume(e)))?;
                    left -= n;
                }
                w.flush().map_err(|e| store_err(StoreError::Volume(e)))
            })?;
            if round % 2 == 0 {
                (m.inc, m.inc_stored) = ours("inc", Some("full"))?;
                m.cli_inc = theirs(2)?;
            } else {
                m.cli_inc = theirs(2)?;
                (m.inc, m.inc_stored) = ours("inc", Some("full"))?;
            }
            m.cli_inc_bytes = std::fs::metadata(diff(2))?.len();
            let manifest = store.manifest("inc")?;
            let (res, t) = time(|| -> Result<(), DriverError> {
                drv.create_volume(&er, size)?;
                drv.with_volume(&er, true, &mut |w| {
                    store
                        .restore(&manifest, w, 0, &NoProgress)
                        .map_err(store_err)?;
                    Ok(())
                })
            });
            res?;
            m.restore = t;
            let size_arg = format!("{size}B");
            m.cli_restore = cli(&["create", "--size", &size_arg, &spec(&cr)], "rbd create")?;
            if let Some(base) = cli_base(round) {
                let at = format!("{base}@cli2");
                m.cli_restore += piped(
                    cmd(&["export-diff", &at, "-"]),
                    cmd(&["import-diff", "-", &spec(&cr)]),
                    "rbd export-diff | rbd import-diff",
                )?;
            } else {
                for n in 1..=2 {
                    let f = diff(n);
                    let f = f.to_str().context("temp path")?;
                    m.cli_restore += cli(&["import-diff", f, &spec(&cr)], "rbd import-diff")?;
                }
            }
            // Both restores hold what the volume held at the second backup (nothing wrote
            // since): compared byte for byte, untimed.
            for restored in [&er, &cr] {
                let diff_at = same(&drv, &v, restored)?;
                if let Some(at) = diff_at {
                    bail!("seed {seed}: restored {restored} differs from the volume at byte {at}");
                }
            }
            measured.push(m);
            for i in [&er, &cr] {
                let _ = cli(&["snap", "purge", &spec(i)], "rbd snap purge");
                drv.delete_volume(i, &NoProgress)?;
            }
            let _ = drv.prune_backup_snapshots(&v, &[]);
            let _ = cli(&["snap", "purge", &spec(&v)], "rbd snap purge");
            drv.delete_volume(&v, &NoProgress)?;
            made.clear();
            for name in ["full", "inc"] {
                store.delete(name).map_err(store_err)?;
            }
            if let Some(base) = cli_base(round) {
                cli(&["snap", "purge", &base], "rbd snap purge")?;
                cli(&["rm", &base], "rbd rm")?;
            }
        }
        Ok(())
    })();
    for i in &made {
        let _ = drv.prune_backup_snapshots(i, &[]);
        let _ = cli(&["snap", "purge", &spec(i)], "rbd snap purge");
        let _ = drv.delete_volume(i, &NoProgress);
    }
    result?;
    let med = |f: fn(&Round) -> Duration| median(measured.iter().map(f).collect());
    let (full, inc, restore) = (med(|m| m.full), med(|m| m.inc), med(|m| m.restore));
    let (cfull, cinc, crestore) = (
        med(|m| m.cli_full),
        med(|m| m.cli_inc),
        med(|m| m.cli_restore),
    );
    let last = measured
        .last()
        .map_or((0, 0), |m| (m.inc_stored, m.cli_inc_bytes));
    let speed = |ours: Duration, theirs: Duration| theirs.as_secs_f64() / ours.as_secs_f64();
    if g.json {
        print_json(&serde_json::json!({
            "backend": b.name, "size_bytes": size, "data_bytes": data, "changed_bytes": change,
            "rounds": rounds, "seed": seed,
            "full_backup_s": full.as_secs_f64(), "cli_full_s": cfull.as_secs_f64(),
            "incremental_backup_s": inc.as_secs_f64(), "cli_incremental_s": cinc.as_secs_f64(),
            "incremental_stored_bytes": last.0, "cli_incremental_diff_bytes": last.1,
            "restore_checked_s": restore.as_secs_f64(), "cli_restore_s": crestore.as_secs_f64(),
        }))?;
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "backup of an rbd volume ({}, pool {}) into {}: {} holding {}, {} written between the backups, seed {seed} (median of {rounds})",
        b.name,
        r.pool,
        to_pool.map_or("a directory".to_string(), |p| format!("rbd pool {p}")),
        human_bytes(size as i64),
        human_bytes(data as i64),
        human_bytes(change as i64),
    );
    let line = |what: &str, ours: Duration, base: &str, theirs: Duration| {
        println!(
            "  {what:<30} {:>7.3} s   {base:<47} {:>7.3} s   {:.2}x",
            ours.as_secs_f64(),
            theirs.as_secs_f64(),
            speed(ours, theirs)
        )
    };
    let [lf, li, lr] = if to_pool.is_some() {
        [
            "snap create + export-diff | import-diff",
            "snap create + same --from-snap",
            "create + export-diff | import-diff",
        ]
    } else {
        [
            "snap create + export-diff > file + sync",
            "snap create + export-diff --from-snap + sync",
            "create + import-diff x2",
        ]
    };
    line("full backup", full, lf, cfull);
    line("incremental backup", inc, li, cinc);
    line(
        "restore (written, checked)",
        restore,
        &format!("{lr} (unchecked)"),
        crestore,
    );
    println!(
        "  incremental: ember stored {} (whole 4 MiB chunks), the CLI's diff holds {}",
        human_bytes(last.0 as i64),
        human_bytes(last.1 as i64)
    );
    println!("  (x: ember's speed relative to the CLI's; goal >= 0.9)");
    Ok(ExitCode::SUCCESS)
}

/// The first byte where volumes `a` and `b` differ (None: equal), as `volume verify` compares.
fn same(drv: &RbdDriver, a: &str, b: &str) -> anyhow::Result<Option<u64>> {
    let mut found = None;
    drv.with_volume(a, false, &mut |ra| {
        drv.with_volume(b, false, &mut |rb| {
            let report = compare_for("bench", ra, rb, 0, &NoProgress, |e| {
                store_err(StoreError::Volume(e))
            })?;
            found = report.first_difference;
            Ok(())
        })
    })?;
    Ok(found)
}
