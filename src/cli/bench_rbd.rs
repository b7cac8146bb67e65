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

/// Progress that a thread can stop.
struct Stoppable(std::sync::atomic::AtomicBool);

impl crate::driver::Progress for Stoppable {
    fn update(&self, _done: u64, _total: u64) -> bool {
        !self.0.load(std::sync::atomic::Ordering::SeqCst)
    }
}

/// An unthrottled flatten timed while a throttled flatten of the same backend (the same
/// driver) runs, first with the throttle pacing on the shared librados client (how ember did
/// it before issue 23), then on a client of its own (now). Returns both times and the rate.
fn beside(
    drv: &crate::driver::rbd::RbdDriver,
    snap: &str,
    base: &str,
    size: u64,
    data: u64,
    alone: Duration,
    id: &dyn Fn(&str) -> String,
) -> anyhow::Result<(Duration, Duration, u64)> {
    // Slow enough to run through the whole unthrottled flatten, several times over.
    let bps = ((data as f64 / (alone.as_secs_f64() * 6.0).max(0.5)) as u64).max(1 << 20);
    let mut times = vec![];
    for (n, shared) in [(0, true), (1, false)] {
        drv.pace_on_shared_client(shared);
        let (slow, fast) = (id(&format!("t{n}")), id(&format!("u{n}")));
        drv.clone_snapshot(snap, base, &slow, size)?;
        drv.clone_snapshot(snap, base, &fast, size)?;
        let stop = Stoppable(std::sync::atomic::AtomicBool::new(false));
        let t = std::thread::scope(|s| -> anyhow::Result<Duration> {
            let throttled = s.spawn(|| drv.flatten_paced(&slow, bps, &stop));
            // Let it start pacing first.
            std::thread::sleep(Duration::from_millis(500));
            let (res, t) = time(|| drv.flatten_paced(&fast, 0, &NoProgress));
            stop.0.store(true, std::sync::atomic::Ordering::SeqCst);
            let _ = throttled.join();
            res?;
            Ok(t)
        })?;
        times.push(t);
        drv.delete_volume(&slow, &NoProgress)?;
        drv.delete_volume(&fast, &NoProgress)?;
    }
    drv.pace_on_shared_client(false);
    Ok((times[0], times[1], bps))
}

/// The `rbd` CLI with the backend's cluster, user and keyring.
pub(super) fn rbd_cli(r: &RbdConfig) -> Command {
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

/// Writes `data` bytes at the start of the image `spec` (`rbd bench`, 4 MiB sequential writes).
pub(super) fn fill(r: &RbdConfig, spec: &str, data: u64) -> anyhow::Result<()> {
    let mut c = rbd_cli(r);
    c.args([
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
    .arg(spec);
    run(c, "rbd bench (filling an image)").map(drop)
}

pub(super) fn run(mut c: Command, what: &str) -> anyhow::Result<Duration> {
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

pub(super) fn median(mut v: Vec<Duration>) -> Duration {
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
        fill(r, &spec(&volume_image(&base)), data)?;
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
        let alone = median(ember_ts.clone());
        let beside = beside(&drv, &snap, &base, size, data, alone, &id)?;
        Ok((median(ember_ts), median(cli_ts), median(fixed_ts), beside))
    })();
    // Clean up whatever the rounds left, even after a failure.
    let _ = drv.delete_snapshot(&snap, &base, false);
    let _ = drv.delete_volume(&base, &NoProgress);
    let (ember_t, cli_t, fixed_t, (shared_t, own_t, bps)) = result?;
    let net = cli_t.saturating_sub(fixed_t);
    let ratio = ember_t.as_secs_f64() / cli_t.as_secs_f64();
    let ratio_net = ember_t.as_secs_f64() / net.as_secs_f64().max(1e-6);
    if g.json {
        print_json(&serde_json::json!({
            "backend": b.name, "pool": r.pool, "size_bytes": size, "data_bytes": data, "rounds": rounds,
            "ember_flatten_s": ember_t.as_secs_f64(), "rbd_flatten_s": cli_t.as_secs_f64(),
            "rbd_cli_fixed_s": fixed_t.as_secs_f64(),
            "ratio": ratio, "ratio_net_of_cli_start": ratio_net,
            "beside_throttled_bps": bps,
            "flatten_beside_throttled_on_shared_client_s": shared_t.as_secs_f64(),
            "flatten_beside_throttled_on_own_client_s": own_t.as_secs_f64(),
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
        println!(
            "an unthrottled flatten beside a throttled one ({}/s) of the same backend:",
            human_bytes(bps as i64)
        );
        println!(
            "  alone                           {:>8.3} s",
            ember_t.as_secs_f64()
        );
        println!(
            "  throttle paced on shared client {:>8.3} s  (as before issue 23)",
            shared_t.as_secs_f64()
        );
        println!(
            "  throttle paced on its own client{:>8.3} s  (now)",
            own_t.as_secs_f64()
        );
    }
    Ok(ExitCode::SUCCESS)
}
