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
    assert!(c["parent_id"].is_null(), "flattened: {c}");
    let data = read_at(&env.image("file0", c["id"].as_str().unwrap()), 0, 1 << 20);
    assert!(
        data.iter().all(|b| *b == 0x3c),
        "the clone reads the parent's data"
    );
}
