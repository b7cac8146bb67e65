//! The doctor reads Ceph's own health checks and explains them for the volume service. Each
//! test induces checks for real on a throwaway cluster (a pool over its quota, the pause
//! flags, a frozen OSD), then: the doctor names each with its fix within 60 s, answers within
//! its timeout, a create during the condition ends within its timeout (never hangs) and a
//! failed one names the standing condition, and heartbeats go on throughout.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::{Duration, Instant};

use common::*;

/// A create job's longest honest run while the OSDs do not answer: the 30 s OSD op timeout
/// of the cluster's conf, plus reading the standing condition, plus slack for a busy host.
const CREATE_BOUND: Duration = Duration::from_secs(55);

fn setup(ceph: &Ceph, dir: &std::path::Path) -> Env {
    let url = fresh_db(Engine::Sqlite, dir).unwrap();
    let backends = format!(
        "{}[backends.file0]\nvolume_driver = \"file\"\n",
        ceph.backend("rbd0", "")
    );
    Env::new(dir, &url, &backends)
}

/// `ember serve`, once rbd0 is up (its first setup check done while the cluster is well).
fn serve(env: &Env) -> Serve {
    let s = env.serve();
    env.wait_backend_up("rbd0", 30);
    s
}

/// `doctor --json --backend rbd0`, with how long it took. It must end within the connect
/// timeout plus its slack twice (monitors, then OSDs), however sick the cluster.
fn doctor(env: &Env) -> serde_json::Value {
    let started = Instant::now();
    let o = env.run(&["doctor", "--json", "--backend", "rbd0"]);
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "doctor took {:?}",
        started.elapsed()
    );
    assert!(!stderr(&o).contains("panicked"), "{}", stderr(&o));
    serde_json::from_slice(&o.stdout).unwrap()
}

/// Waits (up to 60 s) until the doctor reports a check whose id ends with `.CODE` with
/// `status`; returns it.
fn named(env: &Env, code: &str, status: &str) -> serde_json::Value {
    let suffix = format!(".{code}");
    wait_for(
        &format!("doctor to name {code} ({status})"),
        Duration::from_secs(60),
        || {
            doctor(env)["checks"]
                .as_array()
                .unwrap()
                .iter()
                .find(|c| c["id"].as_str().unwrap().ends_with(&suffix) && c["status"] == status)
                .cloned()
        },
    )
}

/// `volume create NAME --size 16M --backend rbd0 --wait --json`, and how long it took.
fn run_create(env: &Env, name: &str) -> (std::process::Output, Duration) {
    let started = Instant::now();
    let o = env.run(&[
        "volume",
        "create",
        name,
        "--size",
        "16M",
        "--backend",
        "rbd0",
        "--wait",
        "--json",
    ]);
    (o, started.elapsed())
}

/// Creates a 16 MiB volume on rbd0 and waits; returns the job and how long it took.
fn create(env: &Env, name: &str) -> (serde_json::Value, Duration) {
    let (o, took) = run_create(env, name);
    assert!(!stderr(&o).contains("panicked"), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {} {}", stdout(&o), stderr(&o)));
    (v["job"].clone(), took)
}

/// A create while `code` stands: either the job runs and fails within its timeout naming
/// `code`, or (once the service's own check has failed on the same cause) it is refused at
/// once, and the refusal names `code` too. Never a hang.
fn create_during(env: &Env, name: &str, code: &str) {
    let (o, took) = run_create(env, name);
    let err = stderr(&o);
    assert!(!err.contains("panicked"), "{err}");
    assert!(took < CREATE_BOUND, "create took {took:?}");
    assert!(!o.status.success(), "a create succeeded while {code} stood");
    if o.stdout.is_empty() {
        assert!(
            err.contains("storage is failing"),
            "{err}\nservices: {:?}",
            services(&env.config, &env.url)
        );
        assert!(err.contains(code), "the refusal names {code}: {err}");
        assert!(
            took < std::time::Duration::from_secs(10),
            "refused after {took:?}"
        );
    } else {
        let job = &serde_json::from_slice::<serde_json::Value>(&o.stdout).unwrap()["job"];
        assert_eq!(job["state"], "failed", "{job}");
        assert!(
            job["error"].as_str().unwrap().contains(code),
            "the standing condition is named: {job}"
        );
    }
}

/// The rbd0 service heartbeated within the last 3 s.
fn heartbeating(env: &Env) {
    let s = services(&env.config, &env.url);
    let rbd0 = service(&s, "rbd0").unwrap();
    assert!(
        rbd0["heartbeat_age_s"].as_f64().unwrap() < 3.0,
        "heartbeats stopped: {rbd0}"
    );
}

#[test]
fn a_full_pool_fails_the_backend_another_pools_are_information() {
    let Some(ceph) = Ceph::start(true) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let env = setup(&ceph, dir.path());
    let _serve = serve(&env);

    // Another pool over its quota (and without an application): information under the
    // cluster, never this backend's failure.
    ceph.ceph(&[
        "osd",
        "pool",
        "create",
        "other",
        "8",
        "8",
        "replicated",
        "--size",
        "1",
    ]);
    ceph.ceph(&["osd", "pool", "set-quota", "other", "max_objects", "1"]);
    for o in ["a", "b"] {
        let out = std::process::Command::new("rados")
            .args([
                "-c",
                ceph.conf.to_str().unwrap(),
                "-p",
                "other",
                "put",
                o,
                "/etc/hostname",
            ])
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", stderr(&out));
    }
    let other = named(&env, "POOL_FULL", "info");
    assert!(
        other["scope"].as_str().unwrap().starts_with("ceph-"),
        "{other}"
    );
    assert!(
        other["summary"]
            .as_str()
            .unwrap()
            .contains("pool other is full"),
        "{other}"
    );
    assert!(
        other["fix"].as_str().unwrap().contains("set-quota other "),
        "{other}"
    );
    let report = doctor(&env);
    assert!(
        report["checks"]
            .as_array()
            .unwrap()
            .iter()
            .all(|c| c["scope"] != "rbd0" || c["status"] != "fail"),
        "another pool's condition failed this backend: {report}"
    );

    // This backend's pool over a 20 MiB quota: FAIL with the quota and the command.
    ceph.ceph(&["osd", "pool", "set-quota", "other", "max_objects", "0"]);
    ceph.ceph(&[
        "osd",
        "pool",
        "set-quota",
        "volumes",
        "max_bytes",
        "20971520",
    ]);
    ceph.rbd(&["create", "--size", "64M", "volumes/filler"]);
    ceph.fill("filler", 28);
    let full = named(&env, "POOL_FULL", "fail");
    assert_eq!(full["id"], "rbd0.POOL_FULL", "{full}");
    assert!(
        full["summary"]
            .as_str()
            .unwrap()
            .contains("pool volumes is full (quota 20 MiB)"),
        "{full}"
    );
    assert!(
        full["fix"]
            .as_str()
            .unwrap()
            .contains("ceph osd pool set-quota volumes max_bytes"),
        "{full}"
    );

    // A create while it stands ends within its timeout and names it.
    let (job, took) = create(&env, "during-full");
    assert!(took < CREATE_BOUND, "create took {took:?}");
    assert_eq!(job["state"], "failed", "{job}");
    let err = job["error"].as_str().unwrap();
    assert!(
        err.starts_with("pool volumes is full (quota 20 MiB)"),
        "{err}"
    );
    assert!(err.contains("POOL_FULL"), "{err}");
    heartbeating(&env);

    // The quota raised: the finding clears and a create works.
    ceph.ceph(&["osd", "pool", "set-quota", "volumes", "max_bytes", "0"]);
    wait_for("POOL_FULL to clear", Duration::from_secs(60), || {
        let r = doctor(&env);
        (!r.to_string().contains("rbd0.POOL_FULL")).then_some(())
    });
    let (job, _) = create(&env, "after-full");
    assert_eq!(job["state"], "succeeded", "{job}");
}

#[test]
fn paused_osds_fail_the_backend_and_a_create_ends_within_its_timeout() {
    let Some(ceph) = Ceph::start(false) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let env = setup(&ceph, dir.path());
    let _serve = serve(&env);

    // `noout` (maintenance) is information; `pause` stops every write: FAIL.
    ceph.ceph(&["osd", "set", "noout"]);
    let noout = named(&env, "OSDMAP_FLAGS", "info");
    assert!(
        noout["summary"].as_str().unwrap().contains("noout"),
        "{noout}"
    );
    ceph.ceph(&["osd", "unset", "noout"]);
    ceph.ceph(&["osd", "set", "pause"]);
    let paused = named(&env, "OSDMAP_FLAGS", "fail");
    assert_eq!(paused["id"], "rbd0.OSDMAP_FLAGS");
    assert!(
        paused["summary"]
            .as_str()
            .unwrap()
            .contains("pauserd,pausewr"),
        "{paused}"
    );
    assert!(
        paused["fix"].as_str().unwrap().contains("ceph osd unset"),
        "{paused}"
    );

    create_during(&env, "during-pause", "OSDMAP_FLAGS");
    heartbeating(&env);

    ceph.ceph(&["osd", "unset", "pause"]);
    wait_for("the backend to recover", Duration::from_secs(60), || {
        let s = services(&env.config, &env.url);
        (service(&s, "rbd0").unwrap()["state"] == "up").then_some(())
    });
    let (job, _) = create(&env, "after-pause");
    assert_eq!(job["state"], "succeeded", "{job}");
}

#[test]
fn a_frozen_osd_is_named_with_the_osd_to_start() {
    let Some(ceph) = Ceph::start(false) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let env = setup(&ceph, dir.path());
    let _serve = serve(&env);

    ceph.osd_freeze();
    // The only OSD: its host and its CRUSH root are down too, and with the root down no
    // placement group of the pool has an OSD: FAIL. The doctor reads this from the monitors
    // while listing the pool times out.
    let root = named(&env, "OSD_ROOT_DOWN", "fail");
    assert_eq!(root["id"], "rbd0.OSD_ROOT_DOWN");
    let report = doctor(&env);
    let by_id = |id: &str| {
        report["checks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["id"] == id)
            .cloned()
            .unwrap_or_else(|| panic!("no {id} in {report}"))
    };
    let down = by_id("rbd0.OSD_DOWN");
    assert_eq!(down["status"], "warn", "{down}");
    assert!(
        down["fix"].as_str().unwrap().contains("start osd.0"),
        "{down}"
    );
    let listing = by_id("rbd0.auth_pool");
    assert_eq!(listing["status"], "fail", "{listing}");
    assert!(
        listing["fix"]
            .as_str()
            .unwrap()
            .contains("OSDs do not answer"),
        "{listing}"
    );

    create_during(&env, "during-freeze", "OSD_ROOT_DOWN");
    heartbeating(&env);
    // The service's own error names the cause too, once its check has failed on it.
    let err = wait_for("the service's error", Duration::from_secs(60), || {
        let s = services(&env.config, &env.url);
        service(&s, "rbd0").unwrap()["error"]
            .as_str()
            .map(String::from)
    });
    assert!(err.contains("OSD_ROOT_DOWN"), "{err}");

    ceph.osd_thaw();
    wait_for("the backend to recover", Duration::from_secs(60), || {
        let s = services(&env.config, &env.url);
        (service(&s, "rbd0").unwrap()["state"] == "up").then_some(())
    });
    let (job, _) = create(&env, "after-freeze");
    assert_eq!(job["state"], "succeeded", "{job}");
}
