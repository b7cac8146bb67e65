//! Cinder's RBD options that ember honours, seen working through the binary:
//! `rbd_concurrent_flatten_operations` caps the flattens running at once,
//! `rbd_store_chunk_size` sets the object size of new images (`rbd info` order), and
//! `rbd_exclusive_cinder_pool` / `report_dynamic_total_capacity` decide the capacity figures
//! as Cinder's driver does.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::{Duration, Instant};

use common::*;

/// Jobs moving bytes right now (a flatten waiting for a permit has moved none).
fn copying(env: &Env) -> usize {
    env.json(&["job", "list"])
        .as_array()
        .unwrap()
        .iter()
        .filter(|j| {
            j["kind"] == "flatten"
                && j["state"] == "running"
                && j["bytes_done"].as_i64().unwrap() > 0
                && j["bytes_done"] != j["bytes_total"]
        })
        .count()
}

#[test]
fn no_more_flattens_at_once_than_rbd_concurrent_flatten_operations() {
    let dir = tempfile::tempdir().unwrap();
    let url = fresh_db(Engine::Sqlite, dir.path()).unwrap();
    // 16 MiB/s: each flatten of 32 MiB takes about 2 s; 8 storage threads, 2 flatten permits.
    let env = Env::new(
        dir.path(),
        &url,
        "[backends.file0]\nvolume_driver = \"file\"\nvolume_copy_bps_limit = 16777216\n\
         backend_native_threads_pool_size = 8\nrbd_concurrent_flatten_operations = 2\n",
    );
    let _serve = env.serve();
    let clones = ["c1", "c2", "c3", "c4", "c5"];
    env.snapshot_with_data("32M", &env.file_dir("file0"), 32, 0x6b, &clones);
    let jobs = env.flatten_all(&clones);
    let (mut most, deadline) = (0, Instant::now() + Duration::from_secs(120));
    loop {
        most = most.max(copying(&env));
        let done = jobs.iter().all(|j| env.job(j)["state"] == "succeeded");
        if done {
            break;
        }
        assert!(Instant::now() < deadline, "flattens did not end in 120 s");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(most <= 2, "{most} flattens copied at once; the limit is 2");
    assert_eq!(most, 2, "two flattens should have run side by side");
    for c in clones {
        assert!(env.volume(c)["parent"].is_null(), "{c} still layered");
    }
}

#[test]
fn chunk_size_and_capacity_options_on_a_real_pool() {
    let Some(ceph) = Ceph::start(true) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let url = fresh_db(Engine::Sqlite, dir.path()).unwrap();
    // Someone else's 1 GiB image in the pool, not ember's.
    ceph.rbd(&["create", "--size", "1G", "volumes/foreign"]);
    let backends = format!(
        "{}{}",
        ceph.backend("rbd0", "rbd_store_chunk_size = 8"),
        ceph.backend(
            "rbd1",
            "rbd_exclusive_cinder_pool = false\nreport_dynamic_total_capacity = false"
        )
    );
    let env = Env::new(dir.path(), &url, &backends);
    let _serve = env.serve();
    env.wait_backend_up("rbd0", 60);
    env.wait_backend_up("rbd1", 60);
    let v = env.json(&[
        "volume",
        "create",
        "big",
        "--size",
        "256M",
        "--backend",
        "rbd0",
        "--wait",
    ]);
    let id = v["volume"]["id"].as_str().unwrap();
    let info = ceph.info(&format!("volume-{id}"));
    assert_eq!(info["order"], 23, "8 MiB objects: {info}");
    assert_eq!(info["object_size"], 8 << 20, "{info}");

    // Provisioned: the database's sum for the exclusive pool (rbd0), every image's size for
    // the shared one (rbd1, the foreign image included).
    let figures = |name: &str| {
        env.json(&["backend", "list"])
            .as_array()
            .unwrap()
            .iter()
            .find(|b| b["name"] == name)
            .cloned()
            .unwrap()
    };
    let (r0, r1) = wait_for("capacity figures", Duration::from_secs(90), || {
        let (a, b) = (figures("rbd0"), figures("rbd1"));
        // Pool figures come from the manager's first report.
        let ready = a["provisioned_bytes"] == 256 << 20
            && b["provisioned_bytes"].as_i64() == Some((256 << 20) + (1 << 30))
            && a["total_bytes"].as_i64().unwrap_or(0) > 0
            && b["total_bytes"].as_i64().unwrap_or(0) > 0;
        ready.then_some((a, b))
    });
    // Dynamic total (rbd0): stored + free. Static (rbd1, no quota): the cluster's size, which
    // is more than what the pool can still take.
    let total0 = r0["total_bytes"].as_i64().unwrap();
    let total1 = r1["total_bytes"].as_i64().unwrap();
    assert!(total1 > total0, "static {total1} vs dynamic {total0}");
    let raw = ceph.ceph(&["df", "--format", "json"]);
    let raw: serde_json::Value = serde_json::from_str(&raw).unwrap();
    assert_eq!(
        total1,
        raw["stats"]["total_bytes"].as_i64().unwrap(),
        "{raw}"
    );
}

/// `rados_connection_retries` / `rados_connection_interval`: a job's connect that times out
/// (the monitor is away) is tried again and succeeds once the monitor is back; an operator's
/// command (`open_once`) tries once and names the cause at once.
#[test]
fn a_storage_call_connects_again_while_the_monitor_comes_back() {
    let Some(ceph) = Ceph::start(false) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let url = fresh_db(Engine::Sqlite, dir.path()).unwrap();
    let env = Env::new(
        dir.path(),
        &url,
        &ceph
            .backend(
                "rbd0",
                "rados_connection_retries = 4\nrados_connection_interval = 1",
            )
            .replace("rados_connect_timeout = 5", "rados_connect_timeout = 2"),
    );
    let cfg = ember::config::load(&env.config).unwrap();
    let b = cfg.backend("rbd0").unwrap().clone();

    ceph.mon_stop();
    let once = ember::driver::open_once(&b).unwrap();
    let t = Instant::now();
    let err = once
        .create_volume("00000000-0000-4000-8000-00000000000a", 64 << 20)
        .unwrap_err()
        .to_string();
    assert!(err.contains("no monitor answered"), "{err}");
    assert!(
        t.elapsed() < Duration::from_secs(6),
        "one attempt: {:?}",
        t.elapsed()
    );

    let drv = ember::driver::open(&b).unwrap();
    let t = Instant::now();
    let call = std::thread::spawn(move || {
        drv.create_volume("00000000-0000-4000-8000-00000000000b", 64 << 20)
    });
    std::thread::sleep(Duration::from_secs(3)); // the first attempt has timed out
    ceph.mon_start();
    let done = call.join().unwrap();
    assert!(done.is_ok(), "{done:?}");
    assert!(t.elapsed() > Duration::from_secs(3), "{:?}", t.elapsed());
    let info = ceph.info("volume-00000000-0000-4000-8000-00000000000b");
    assert_eq!(info["size"], 64 << 20);
}
