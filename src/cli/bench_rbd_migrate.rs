//! `ember bench rbd-migrate`: a volume moved between two rbd backends' pools, ember beside the
//! `rbd` CLI on identical images in the same run. Within one cluster: ember's live migration
//! (the driver's `live_migrate`) against `rbd migration prepare/execute/commit`. As a copy
//! through this host (what ember does between clusters): ember's copy and check against
//! `rbd export | rbd import` and `rbd export-diff | rbd import-diff`.

use std::process::{ExitCode, Stdio};
use std::time::Duration;

use anyhow::{Context, bail};

use super::args::Global;
use super::bench_rbd::{fill, median, rbd_cli, run};
use super::output::{human_bytes, print_json};
use crate::config::{BackendConfig, DriverConfig, RbdConfig};
use crate::driver::rbd::RbdDriver;
use crate::driver::transfer::{copy, copy_verified};
use crate::driver::{DriverError, NoProgress, VolumeDriver, volume_image};
use crate::service::bench::time;

fn rbd_of(b: &BackendConfig) -> anyhow::Result<&RbdConfig> {
    match &b.driver {
        DriverConfig::Rbd(r) => Ok(r),
        _ => bail!("backend {} is not an rbd backend", b.name),
    }
}

/// `rbd export SRC - | rbd import[-diff] - DST` (diff: `export-diff`/`import-diff`).
fn pipe(r: &RbdConfig, src: &str, dst: &str, diff: bool) -> anyhow::Result<Duration> {
    let (export, import) = if diff {
        ("export-diff", "import-diff")
    } else {
        ("export", "import")
    };
    let (res, t) = time(|| -> anyhow::Result<()> {
        let mut out = rbd_cli(r)
            .args(["--no-progress", export, src, "-"])
            .stdout(Stdio::piped())
            .spawn()
            .context("cannot run rbd export")?;
        let stdout = out.stdout.take().context("rbd export's output")?;
        let st = rbd_cli(r)
            .args(["--no-progress", import, "-", dst])
            .stdin(stdout)
            .status()
            .context("cannot run rbd import")?;
        let st2 = out.wait()?;
        if !st.success() || !st2.success() {
            bail!("rbd {export} | rbd {import} failed");
        }
        Ok(())
    });
    res?;
    Ok(t)
}

pub fn migrate(
    g: &Global,
    from: &BackendConfig,
    to: &BackendConfig,
    size: u64,
    data: u64,
    rounds: usize,
) -> anyhow::Result<ExitCode> {
    let (rf, rt) = (rbd_of(from)?, rbd_of(to)?);
    // No copy limit: the bench measures the move itself.
    let src = RbdDriver::new(&from.name, rf.clone(), 0);
    let dst = RbdDriver::new(&to.name, rt.clone(), 0);
    src.check_setup()?;
    dst.check_setup()?;
    let target = dst
        .live_target()
        .context("the target's cluster does not answer")?;
    let live = src
        .live_target()
        .is_some_and(|t| t.cluster == target.cluster);
    let tag = uuid::Uuid::new_v4().simple().to_string();
    let id = |n: &str| format!("{}-0000-4000-8000-{}{n:0>4}", &tag[..8], &tag[..8]);
    let spec = |pool: &str, i: &str| format!("{pool}/{}", volume_image(i));
    // A volume with `data` bytes written, in the source pool.
    let made = |i: &str| -> anyhow::Result<()> {
        src.create_volume(i, size)?;
        fill(rf, &spec(&rf.pool, i), data)
    };
    let mut made_ids = vec![];
    let result = (|| -> anyhow::Result<_> {
        let (mut e_live, mut c_live) = (vec![], vec![]);
        let (mut e_copy, mut e_copy_only, mut c_exp, mut c_diff) = (vec![], vec![], vec![], vec![]);
        for round in 0..rounds {
            let ids: Vec<String> = ["e", "c", "h", "o", "x", "d"]
                .iter()
                .map(|n| id(&format!("{n}{round}")))
                .collect();
            for i in &ids {
                made(i)?;
                made_ids.push(i.clone());
            }
            let (e, c, h, o, x, d) = (&ids[0], &ids[1], &ids[2], &ids[3], &ids[4], &ids[5]);
            if live {
                let ours = || -> anyhow::Result<Duration> {
                    let (r, t) = time(|| src.live_migrate(e, &target, &NoProgress));
                    r?;
                    Ok(t)
                };
                let theirs = || -> anyhow::Result<Duration> {
                    let mut total = Duration::ZERO;
                    for step in ["prepare", "execute", "commit"] {
                        let mut c2 = rbd_cli(rf);
                        c2.args(["migration", step]);
                        if step == "prepare" {
                            c2.arg(spec(&rf.pool, c)).arg(spec(&rt.pool, c));
                        } else {
                            c2.arg(spec(&rt.pool, c));
                        }
                        total += run(c2, &format!("rbd migration {step}"))?;
                    }
                    Ok(total)
                };
                if round % 2 == 0 {
                    e_live.push(ours()?);
                    c_live.push(theirs()?);
                } else {
                    c_live.push(theirs()?);
                    e_live.push(ours()?);
                }
            }
            // Through this host: ember's copy and check, its copy alone, and the CLI pipes.
            let ember = |i: &str, checked: bool| -> anyhow::Result<Duration> {
                let (r, t) = time(|| -> Result<(), DriverError> {
                    dst.create_volume(i, size)?;
                    src.with_volume(i, false, &mut |r| {
                        dst.with_volume(i, true, &mut |w| {
                            let fail = |m: String| DriverError::Io {
                                backend: "bench".into(),
                                op: "migrate",
                                message: m,
                            };
                            if checked {
                                copy_verified("bench", r, w, 0, &NoProgress, fail)?;
                            } else {
                                copy(r, w, 0, &NoProgress).map_err(fail)?;
                            }
                            Ok(())
                        })
                    })
                });
                r?;
                Ok(t)
            };
            e_copy.push(ember(h, true)?);
            e_copy_only.push(ember(o, false)?);
            c_exp.push(pipe(rf, &spec(&rf.pool, x), &spec(&rt.pool, x), false)?);
            let mut create = rbd_cli(rt);
            create
                .arg("create")
                .arg("--size")
                .arg(format!("{}B", size))
                .arg(spec(&rt.pool, d));
            run(create, "rbd create")?;
            c_diff.push(pipe(rf, &spec(&rf.pool, d), &spec(&rt.pool, d), true)?);
            for i in &ids {
                let _ = src.delete_volume(i, &NoProgress);
                let _ = dst.delete_volume(i, &NoProgress);
            }
            made_ids.clear();
        }
        Ok((e_live, c_live, e_copy, e_copy_only, c_exp, c_diff))
    })();
    for i in &made_ids {
        let _ = src.delete_volume(i, &NoProgress);
        let _ = dst.delete_volume(i, &NoProgress);
    }
    let (e_live, c_live, e_copy, e_copy_only, c_exp, c_diff) = result?;
    let m = |v: &Vec<Duration>| (!v.is_empty()).then(|| median(v.clone()).as_secs_f64());
    let (el, cl) = (m(&e_live), m(&c_live));
    let (ec, eo, ce, cd) = (m(&e_copy), m(&e_copy_only), m(&c_exp), m(&c_diff));
    let ratio = |ours: Option<f64>, theirs: Option<f64>| Some(theirs? / ours?);
    if g.json {
        print_json(&serde_json::json!({
            "from": from.name, "to": to.name, "size_bytes": size, "data_bytes": data, "rounds": rounds,
            "same_cluster": live,
            "ember_live_s": el, "rbd_migration_s": cl, "live_vs_rbd_migration": ratio(el, cl),
            "ember_copy_checked_s": ec, "ember_copy_s": eo,
            "rbd_export_import_s": ce, "rbd_export_diff_import_diff_s": cd,
            "copy_checked_vs_export_import": ratio(ec, ce),
            "copy_vs_export_import": ratio(eo, ce),
            "copy_vs_export_diff_import_diff": ratio(eo, cd),
        }))?;
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "rbd migrate {} (pool {}) -> {} (pool {}): {} volume holding {}, median of {rounds} rounds",
        from.name,
        rf.pool,
        to.name,
        rt.pool,
        human_bytes(size as i64),
        human_bytes(data as i64)
    );
    let line = |what: &str, t: Option<f64>| {
        if let Some(t) = t {
            println!("  {what:<46} {t:>8.3} s");
        }
    };
    let speed = |what: &str, r: Option<f64>, goal: &str| {
        if let Some(r) = r {
            println!("  {what:<46} {r:>8.2}x   {goal}");
        }
    };
    if live {
        line("ember live migration (prepare, execute, commit)", el);
        line("rbd migration prepare + execute + commit (CLI)", cl);
        speed(
            "ember speed / rbd migration",
            ratio(el, cl),
            "(goal >= 0.9)",
        );
    } else {
        println!("  (different clusters: no live migration to compare)");
    }
    line("ember copy through this host, checked", ec);
    line("ember copy alone", eo);
    line("rbd export | rbd import", ce);
    line("rbd export-diff | rbd import-diff", cd);
    speed(
        "ember copy alone / export|import",
        ratio(eo, ce),
        "(goal >= 0.9)",
    );
    speed(
        "ember copy alone / export-diff|import-diff",
        ratio(eo, cd),
        "(goal >= 0.9)",
    );
    speed(
        "ember checked copy / export|import",
        ratio(ec, ce),
        "(ember also reads back)",
    );
    Ok(ExitCode::SUCCESS)
}
