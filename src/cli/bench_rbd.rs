//! `ember bench rbd-flatten`: ember's rbd flatten beside the `rbd flatten` CLI, on identical
//! clones of one parent, in the same run (issue goal: ember / rbd <= 1.05).
//!
//! Both flatten through librbd on the same cluster; what is measured is whatever ember adds
//! (its progress callback, its connection handling). The CLI's time includes its process
//! start and cluster connect, so that fixed cost (`rbd info` of the same image) is measured
//! too and shown, and the ratio is given both raw and net of it.

use std::process::{Command, ExitCode};
use std::time::Duration;

use anyhow::{Context, bail};

use crate::config::{BackendConfig, DriverConfig, RbdConfig};
use crate::driver::{NoProgress, VolumeDriver, snapshot_image, volume_image};
use crate::service::bench::time;

use super::args::Global;
use super::output::{human_bytes, print_json};

/// The `rbd` CLI with the backend's cluster, user and keyring.
fn rbd_cli(r: &RbdConfig) -> Command {
    let mut c = Command::new("rbd");
    c.arg("--cluster").arg(&r.cluster_name);
    if let Some(conf) = &r.ceph_conf {
        c.arg("-c").arg(conf);
    }
    if let Some(user) = &r.user {
        c.arg("--id").arg(user);
    }
    if let Some(k) = &r.keyring_conf {
        c.arg("--keyring").arg(k);
    }
    c
}

fn run(mut c: Command, what: &str) -> anyhow::Result<Duration> {
    let (out, t) = time(|| c.output());
    let out = out.with_context(|| format!("cannot run {what} (is ceph-common installed?)"))?;
    if !out.status.success() {
        bail!(
            "{what} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(t)
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

pub fn flatten(
    g: &Global,
    b: &BackendConfig,
    size: u64,
    data: u64,
    rounds: usize,
) -> anyhow::Result<ExitCode> {
    let DriverConfig::Rbd(r) = &b.driver else {
        bail!("backend {} is not an rbd backend", b.name);
    };
    // No copy limit: the bench measures the flatten itself.
    let drv = crate::driver::rbd::RbdDriver::new(&b.name, r.clone(), 0);
    drv.check_setup()?;
    let tag = uuid::Uuid::new_v4().simple().to_string();
    let id = |n: &str| format!("{}-0000-4000-8000-{}{n:0>4}", &tag[..8], &tag[..8]);
    let (base, snap) = (id("b"), id("s"));
    let spec = |img: &str| format!("{}/{img}", r.pool);
    drv.create_volume(&base, size)?;
    let result = (|| -> anyhow::Result<_> {
        let mut fill = rbd_cli(r);
        fill.args([
            "bench",
            "--io-type",
            "write",
            "--io-size",
            "4M",
            "--io-pattern",
            "seq",
        ])
        .arg("--io-total")
        .arg(data.to_string())
        .arg(spec(&volume_image(&base)));
        run(fill, "rbd bench (filling the parent)")?;
        drv.create_snapshot(&snap, &base, &NoProgress)?;
        let parent = format!("{}@{}", spec(&volume_image(&base)), snapshot_image(&snap));
        let (mut ember_ts, mut cli_ts, mut fixed_ts) = (vec![], vec![], vec![]);
        for round in 0..rounds {
            let (a, bb) = (id(&format!("a{round}")), id(&format!("c{round}")));
            drv.clone_snapshot(&snap, &base, &a, size)?;
            let mut c = rbd_cli(r);
            c.arg("clone").arg(&parent).arg(spec(&volume_image(&bb)));
            run(c, "rbd clone")?;
            let mut info = rbd_cli(r);
            info.arg("info").arg(spec(&volume_image(&bb)));
            fixed_ts.push(run(info, "rbd info")?);
            // Alternate who goes first, so that neither always meets a warmer cluster.
            let ours = || -> anyhow::Result<Duration> {
                let (res, t) = time(|| drv.flatten(&a, &NoProgress));
                res?;
                Ok(t)
            };
            let theirs = || {
                let mut c = rbd_cli(r);
                c.arg("--no-progress")
                    .arg("flatten")
                    .arg(spec(&volume_image(&bb)));
                run(c, "rbd flatten")
            };
            if round % 2 == 0 {
                ember_ts.push(ours()?);
                cli_ts.push(theirs()?);
            } else {
                cli_ts.push(theirs()?);
                ember_ts.push(ours()?);
            }
            drv.delete_volume(&a, &NoProgress)?;
            drv.delete_volume(&bb, &NoProgress)?;
        }
        Ok((median(ember_ts), median(cli_ts), median(fixed_ts)))
    })();
    // Clean up whatever the rounds left, even after a failure.
    let _ = drv.delete_snapshot(&snap, &base, false);
    let _ = drv.delete_volume(&base, &NoProgress);
    let (ember_t, cli_t, fixed_t) = result?;
    let net = cli_t.saturating_sub(fixed_t);
    let ratio = ember_t.as_secs_f64() / cli_t.as_secs_f64();
    let ratio_net = ember_t.as_secs_f64() / net.as_secs_f64().max(1e-6);
    if g.json {
        print_json(&serde_json::json!({
            "backend": b.name, "pool": r.pool, "size_bytes": size, "data_bytes": data, "rounds": rounds,
            "ember_flatten_s": ember_t.as_secs_f64(), "rbd_flatten_s": cli_t.as_secs_f64(),
            "rbd_cli_fixed_s": fixed_t.as_secs_f64(),
            "ratio": ratio, "ratio_net_of_cli_start": ratio_net,
        }))?;
    } else {
        println!(
            "rbd flatten on backend {} (pool {}): {} clone of a parent holding {}, median of {rounds} alternating rounds",
            b.name,
            r.pool,
            human_bytes(size as i64),
            human_bytes(data as i64)
        );
        println!(
            "  ember driver flatten            {:>8.3} s",
            ember_t.as_secs_f64()
        );
        println!(
            "  rbd flatten (CLI)               {:>8.3} s",
            cli_t.as_secs_f64()
        );
        println!(
            "  rbd CLI start + connect         {:>8.3} s  (rbd info of the same image)",
            fixed_t.as_secs_f64()
        );
        println!("  ember / rbd                     {ratio:>8.2}x   (goal <= 1.05)");
        println!("  ember / (rbd - CLI start)       {ratio_net:>8.2}x");
    }
    Ok(ExitCode::SUCCESS)
}
