//! Faults an operator meets, with real processes: stopping ember while its database is away.
//! (The rbd faults are in rbd_faults.rs and ceph_health.rs; the cluster's in multihost.rs.)
#![allow(clippy::unwrap_used)]

mod common;

use std::time::{Duration, Instant};

use common::*;

/// Measured before the fix: `ember serve` took 28 s to exit after SIGTERM with PostgreSQL
/// unreachable (one pool timeout after another). It must take seconds, say what it could not
/// record, and the next start must settle it: the job it held runs to the end.
#[test]
fn stopping_during_a_database_outage_takes_seconds_and_the_next_start_settles_it() {
    let dir = tempfile::tempdir().unwrap();
    let Some(url) = fresh_db(Engine::Postgres, dir.path()) else {
        return;
    };
    let proxy = proxy::Proxy::start(proxy::Proxy::upstream_of(&url));
    let env = Env::new(
        dir.path(),
        &proxy.url(&url),
        "[backends.file0]\nvolume_driver = \"file\"\nvolume_copy_bps_limit = 16777216\n",
    );
    let mut serve = env.serve();
    env.json(&["volume", "create", "src", "--size", "1G", "--wait"]);
    let s = env.json(&[
        "volume", "snapshot", "create", "s", "--volume", "src", "--wait",
    ]);
    let snap_file = env.file_dir("file0").join(format!(
        "snapshot-{}",
        s["snapshot"]["id"].as_str().unwrap()
    ));
    write_at(&snap_file, 0, 160 << 20, 0x3c);
    env.json(&["volume", "create", "c", "--snapshot", "s", "--wait"]);
    let job = env.json(&["volume", "flatten", "c"])["job_id"]
        .as_str()
        .unwrap()
        .to_string();
    wait_for("the flatten to run", Duration::from_secs(20), || {
        (env.job(&job)["state"] == "running").then_some(())
    });

    proxy.cut(true);
    std::thread::sleep(Duration::from_millis(500));
    let t = Instant::now();
    serve.signal("TERM");
    let code = serve.wait(Duration::from_secs(30));
    let took = t.elapsed();
    eprintln!("stop with the database unreachable took {took:?}");
    assert_eq!(code, Some(0), "{}", serve.log_text());
    assert!(
        took < Duration::from_secs(8),
        "stop took {took:?}: {}",
        serve.log_text()
    );
    let log = serve.log_text();
    assert!(
        log.contains("database unreachable at stop") && log.contains("not recorded"),
        "says what it could not record: {log}"
    );

    // The database returns; the next start settles the row and runs the job to its end.
    proxy.cut(false);
    let _again = env.serve();
    let done = env.wait_job(&job, 60);
    assert_eq!(done["state"], "succeeded", "{done}");
    let c = env.volume("c");
    assert_eq!(c["status"], "available", "{c}");
    assert!(c["parent"].is_null(), "flattened: {c}");
    let data = read_at(&env.image("file0", c["id"].as_str().unwrap()), 0, 1 << 20);
    assert!(
        data.iter().all(|b| *b == 0x3c),
        "the clone reads the parent's data"
    );
}

/// A small tmpfs mounted for one test, unmounted on drop.
struct Tmpfs(std::path::PathBuf);

impl Tmpfs {
    /// None (with a notice) when this user may not mount.
    fn mount(dir: &std::path::Path, mib: u32) -> Option<Tmpfs> {
        std::fs::create_dir_all(dir).unwrap();
        let o = std::process::Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={mib}m,mode=700"),
                "tmpfs",
            ])
            .arg(dir)
            .output()
            .unwrap();
        if !o.status.success() {
            if nix::unistd::getuid().is_root() {
                panic!("mount tmpfs failed as root: {}", stderr(&o));
            }
            eprintln!("NOTICE: disk-full test skipped: mounting a tmpfs needs root");
            return None;
        }
        Some(Tmpfs(dir.to_path_buf()))
    }

    fn resize(&self, mib: u32) {
        let o = std::process::Command::new("mount")
            .args(["-o", &format!("remount,size={mib}m")])
            .arg(&self.0)
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", stderr(&o));
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.0)
            .status();
    }
}

/// A flatten that fills its filesystem fails saying where and how much more it needs; the
/// clone stays layered and its data intact; once there is room, running it again completes.
#[test]
fn a_full_disk_fails_a_flatten_with_what_it_needs_and_a_rerun_completes() {
    let dir = tempfile::tempdir().unwrap();
    let small = dir.path().join("small");
    let Some(fs) = Tmpfs::mount(&small, 48) else {
        return;
    };
    let url = fresh_db(Engine::Sqlite, dir.path()).unwrap();
    let env = Env::new(
        dir.path(),
        &url,
        &format!(
            "[backends.file0]\nvolume_driver = \"file\"\nfile_dir = \"{}\"\n",
            small.display()
        ),
    );
    let _serve = env.serve();
    env.json(&["volume", "create", "src", "--size", "512M", "--wait"]);
    let s = env.json(&[
        "volume", "snapshot", "create", "s", "--volume", "src", "--wait",
    ]);
    let snap_file = small.join(format!(
        "snapshot-{}",
        s["snapshot"]["id"].as_str().unwrap()
    ));
    write_at(&snap_file, 0, 32 << 20, 0x6b);
    let c = env.json(&["volume", "create", "c", "--snapshot", "s", "--wait"]);
    let cid = c["volume"]["id"].as_str().unwrap().to_string();

    // 32 MiB to copy into the clone, about 16 MiB free.
    let o = env.run(&["volume", "flatten", "c", "--wait", "--json"]);
    let job = &serde_json::from_slice::<serde_json::Value>(&o.stdout).unwrap()["job"];
    assert_eq!(job["state"], "failed", "{job}");
    let err = job["error"].as_str().unwrap();
    assert!(
        err.contains(&format!("no space left on {}", small.display()))
            && err.contains("more")
            && err.contains("free"),
        "{err}"
    );
    let c = env.volume("c");
    assert_eq!(c["status"], "available", "{c}");
    assert!(c["parent"].is_string(), "still layered: {c}");
    // What the flatten did copy is the parent's data (the rest still reads through).
    let copied = read_at(&small.join(format!("volume-{cid}")), 0, 1 << 20);
    assert!(copied.iter().all(|b| *b == 0x6b || *b == 0), "no garbage");

    fs.resize(256);
    let again = env.json(&["volume", "flatten", "c", "--wait"]);
    assert_eq!(again["job"]["state"], "succeeded", "{again}");
    let c = env.volume("c");
    assert!(c["parent"].is_null(), "{c}");
    let data = read_at(
        &small.join(format!("volume-{cid}")),
        (32 << 20) - (1 << 20),
        1 << 20,
    );
    assert!(
        data.iter().all(|b| *b == 0x6b),
        "the whole parent's data is in the clone"
    );
}
