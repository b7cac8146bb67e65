//! `bench backup`: a file volume backed up into a fresh store, backed up again after a small
//! change, and restored, as the jobs run them (the driver's `with_volume` and `backup::Store`),
//! beside `cp --sparse=always` + `sync` (a full copy, the baseline of a full backup) and the
//! same + `cmp` (a checked copy, the baseline of a restore that reads back), interleaved.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;

use super::args::Global;
use super::bench::{ROUNDS, cp, median, settle};
use super::bench_migrate::cp_checked;
use super::output::print_json;
use crate::backup::{Store, Target};
use crate::driver::file::FileDriver;
use crate::driver::{BackupRead, DriverError, NoProgress, VolumeDriver, volume_image};
use crate::service::bench::{fill_volume, time};

fn store_err(e: crate::backup::StoreError) -> DriverError {
    DriverError::Io {
        backend: "bench".into(),
        op: "backup",
        message: e.to_string(),
    }
}

pub fn run(g: &Global, dir: &std::path::Path, size: u64, data: u64) -> anyhow::Result<ExitCode> {
    let work = tempfile::Builder::new()
        .prefix("ember-bench-")
        .tempdir_in(dir)
        .with_context(|| format!("cannot make a temp dir in {}", dir.display()))?;
    let vols = work.path().join("volumes");
    let drv = FileDriver::new("bench", vols.clone(), 0);
    drv.check_setup()?;
    let id = "00000000-0000-0000-0000-00000000back";
    drv.create_volume(id, size)?;
    let src = vols.join(volume_image(id));
    fill_volume(&src, size, data)?;
    let (mut full_ts, mut inc_ts, mut restore_ts, mut cp_ts, mut cmp_ts) =
        (vec![], vec![], vec![], vec![], vec![]);
    let mut inc_stored = 0;
    for round in 0..ROUNDS {
        let root = work.path().join(format!("store{round}"));
        let store = Store::open(&root)?;
        let backup = |name: &str| -> anyhow::Result<(Duration, u64)> {
            let mut stored = 0;
            settle();
            let (r, t) = time(|| {
                drv.with_volume(id, false, &mut |r| {
                    let (_, s) = store
                        .backup(name, id, r, BackupRead::Whole, None, 0, &NoProgress)
                        .map_err(store_err)?
                        .ok_or_else(|| {
                            store_err(crate::backup::StoreError::Volume(
                                "the backup stopped".into(),
                            ))
                        })?;
                    stored = s.stored_bytes;
                    Ok(())
                })
            });
            r?;
            Ok((t, stored))
        };
        full_ts.push(backup("full")?.0);
        // A small change (one 64 KiB write in the data) and the backup after it.
        {
            use std::os::unix::fs::FileExt;
            let f = std::fs::OpenOptions::new().write(true).open(&src)?;
            f.write_all_at(&[round as u8 + 1; 64 << 10], (data / 2) & !0xffff)?;
        }
        let (t, s) = backup("inc")?;
        inc_ts.push(t);
        inc_stored = s;
        let rid = format!("00000000-0000-0000-0000-0000restor{round:02}");
        let m = store.manifest("inc")?;
        settle();
        let (r, t) = time(|| -> Result<(), DriverError> {
            drv.create_volume(&rid, size)?;
            drv.with_volume(&rid, true, &mut |w| {
                store.restore(&m, w, 0, &NoProgress).map_err(store_err)?;
                Ok(())
            })
        });
        r?;
        restore_ts.push(t);
        drv.delete_volume(&rid, &NoProgress)?;
        std::fs::remove_dir_all(&root)?;
        settle();
        cp_ts.push(cp(&src, work.path(), true)?);
        settle();
        cmp_ts.push(cp_checked(&src, work.path())?);
    }
    let (full, inc, restore, c, cc) = (
        median(full_ts),
        median(inc_ts),
        median(restore_ts),
        median(cp_ts),
        median(cmp_ts),
    );
    let mib = data as f64 / (1 << 20) as f64;
    let rate = |d: Duration| mib / d.as_secs_f64();
    if g.json {
        print_json(&serde_json::json!({
            "size_bytes": size, "data_bytes": data,
            "full_backup_s": full.as_secs_f64(), "incremental_backup_s": inc.as_secs_f64(),
            "incremental_stored_bytes": inc_stored,
            "restore_checked_s": restore.as_secs_f64(),
            "cp_sync_s": c.as_secs_f64(), "cp_sync_cmp_s": cc.as_secs_f64(),
            "full_vs_cp_sync": rate(full) / rate(c),
            "restore_vs_cp_sync_cmp": rate(restore) / rate(cc),
        }))?;
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "backup, file volume: {} holding {}, in {} (median of {ROUNDS} interleaved rounds)",
        super::output::human_bytes(size as i64),
        super::output::human_bytes(data as i64),
        dir.display()
    );
    let line = |what: &str, d: Duration| {
        println!(
            "  {what:<44} {:>8.3} s  {:>7.0} MiB/s",
            d.as_secs_f64(),
            rate(d)
        )
    };
    line("full backup into an empty store", full);
    line("backup after a 64 KiB write (reads all)", inc);
    println!("  {:<44} {:>8} bytes added to the store", "", inc_stored);
    line("restore (write, read back, check)", restore);
    line("cp --sparse=always + sync", c);
    line("cp --sparse=always + sync + cmp", cc);
    println!(
        "  full backup / (cp + sync)                    {:>8.2}x   (goal >= 0.9)",
        rate(full) / rate(c)
    );
    println!(
        "  restore / (cp + sync + cmp)                  {:>8.2}x   (goal >= 0.9)",
        rate(restore) / rate(cc)
    );
    Ok(ExitCode::SUCCESS)
}
