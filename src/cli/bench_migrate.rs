//! `bench migrate`: a file-to-file migration's copy, as its job runs it (both drivers'
//! `with_volume`, `transfer::copy_verified`), against `cp --sparse=always` + `sync` and the
//! same followed by `cmp` (a copy checked, as ember's is), on the same data, interleaved.
//! `transfer::copy` alone is timed too, beside `cp` + `sync`.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};

use super::args::Global;
use super::bench::{ROUNDS, cp, median};
use super::output::print_json;
use crate::driver::file::FileDriver;
use crate::driver::transfer::{copy, copy_verified};
use crate::driver::{DriverError, NoProgress, VolumeDriver, volume_image};
use crate::service::bench::{fill_volume, time};

/// One ember copy from `a` to `b` of volume `id`: made empty on `b`, copied (and compared
/// when `verified`), then removed from `b` again.
fn ember_copy(
    a: &FileDriver,
    b: &FileDriver,
    id: &str,
    size: u64,
    verified: bool,
) -> anyhow::Result<Duration> {
    let (r, t) = time(|| -> Result<(), DriverError> {
        b.create_volume(id, size)?;
        a.with_volume(id, false, &mut |src| {
            b.with_volume(id, true, &mut |dst| {
                let fail = |m: String| DriverError::Io {
                    backend: "bench".into(),
                    op: "migrate",
                    message: m,
                };
                if verified {
                    copy_verified("bench", src, dst, 0, &NoProgress, fail)?;
                } else {
                    copy(src, dst, 0, &NoProgress).map_err(fail)?;
                }
                Ok(())
            })
        })
    });
    r?;
    b.delete_volume(id, &NoProgress)?;
    Ok(t)
}

/// `cp --sparse=always` + `sync`, then `cmp` of the two files.
pub(super) fn cp_checked(src: &std::path::Path, dir: &std::path::Path) -> anyhow::Result<Duration> {
    let dst = dir.join("cp-checked");
    let (st, t) = time(|| -> anyhow::Result<()> {
        for (cmd, args) in [
            (
                "cp",
                vec!["--sparse=always".into(), src.into(), dst.clone()],
            ),
            ("sync", vec![dst.clone()]),
            ("cmp", vec![src.into(), dst.clone()]),
        ] {
            let ok = std::process::Command::new(cmd)
                .args(&args)
                .status()
                .with_context(|| format!("cannot run {cmd}"))?
                .success();
            if !ok {
                bail!("{cmd} failed");
            }
        }
        Ok(())
    });
    st?;
    std::fs::remove_file(&dst)?;
    Ok(t)
}

pub fn file(g: &Global, dir: &std::path::Path, size: u64, data: u64) -> anyhow::Result<ExitCode> {
    let work = tempfile::Builder::new()
        .prefix("ember-bench-")
        .tempdir_in(dir)
        .with_context(|| format!("cannot make a temp dir in {}", dir.display()))?;
    let (da, db) = (work.path().join("a"), work.path().join("b"));
    let a = FileDriver::new("a", da.clone(), 0);
    let b = FileDriver::new("b", db.clone(), 0);
    a.check_setup()?;
    b.check_setup()?;
    let id = "00000000-0000-0000-0000-0000migrate0";
    a.create_volume(id, size)?;
    let src = da.join(volume_image(id));
    fill_volume(&src, size, data)?;
    let (mut ember_ts, mut ember_copy_ts, mut cp_ts, mut cmp_ts) = (vec![], vec![], vec![], vec![]);
    for _ in 0..ROUNDS {
        ember_ts.push(ember_copy(&a, &b, id, size, true)?);
        ember_copy_ts.push(ember_copy(&a, &b, id, size, false)?);
        cp_ts.push(cp(&src, &db, true)?);
        cmp_ts.push(cp_checked(&src, &db)?);
    }
    let (e, ec, c, cc) = (
        median(ember_ts),
        median(ember_copy_ts),
        median(cp_ts),
        median(cmp_ts),
    );
    let mib = data as f64 / (1 << 20) as f64;
    let rate = |d: Duration| mib / d.as_secs_f64();
    if g.json {
        print_json(&serde_json::json!({
            "size_bytes": size, "data_bytes": data, "dir": dir,
            "migrate_s": e.as_secs_f64(), "migrate_copy_only_s": ec.as_secs_f64(),
            "cp_sync_s": c.as_secs_f64(), "cp_sync_cmp_s": cc.as_secs_f64(),
            "migrate_vs_cp_sync": rate(e) / rate(c),
            "migrate_vs_cp_sync_cmp": rate(e) / rate(cc),
            "copy_only_vs_cp_sync": rate(ec) / rate(c),
        }))?;
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "migrate, file to file: {} volume holding {} of data, in {} (median of {ROUNDS} interleaved rounds)",
        super::output::human_bytes(size as i64),
        super::output::human_bytes(data as i64),
        dir.display()
    );
    let line = |what: &str, d: Duration| {
        println!(
            "  {what:<40} {:>8.3} s  {:>7.0} MiB/s",
            d.as_secs_f64(),
            rate(d)
        )
    };
    line("ember migrate (copy, read back, check)", e);
    line("ember's copy alone (no check)", ec);
    line("cp --sparse=always + sync", c);
    line("cp --sparse=always + sync + cmp", cc);
    println!(
        "  migrate / (cp + sync + cmp)              {:>8.2}x   (goal >= 0.9: both copy and check)",
        rate(e) / rate(cc)
    );
    println!(
        "  copy alone / (cp + sync)                 {:>8.2}x   (goal >= 0.9)",
        rate(ec) / rate(c)
    );
    println!(
        "  migrate / (cp + sync)                    {:>8.2}x   (ember also reads the target back)",
        rate(e) / rate(c)
    );
    Ok(ExitCode::SUCCESS)
}
