//! The rbd driver when Ceph is not as configured: a wrong `rbd_user`, a missing keyring, a
//! stopped monitor. Each must give the operator the cause and the fix within the timeout,
//! while the process keeps heartbeating (the reactor is never blocked by the failing
//! connect), and the backend must come back by itself once the cluster does.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::{Duration, Instant};

use common::*;

fn state(env: &Env, backend: &str) -> serde_json::Value {
    service(&services(&env.config, &env.url), backend)
        .cloned()
        .unwrap_or_default()
}

/// The service has heartbeated within 3 s and no beat was late by more than 500 ms: the
/// reactor was not starved by the failing storage.
fn heartbeating(s: &serde_json::Value) -> bool {
    s["heartbeat_age_s"].as_f64().is_some_and(|a| a < 3.0)
        && s["lateness_ms"]["max"].as_f64().is_some_and(|m| m < 500.0)
}

/// Starts serve and waits for `backend` to report an error containing `needle` (a row left
/// by an earlier serve on the same database may still carry that run's error).
fn error_of(env: &Env, backend: &str, needle: &str, within: Duration) -> (Serve, String, Duration) {
    let started = Instant::now();
    let serve = Serve::start(&env.config, &env.url, &env.dir);
    let err = wait_for("the backend's error", within, || {
        state(env, backend)["error"]
            .as_str()
            .filter(|e| e.contains(needle))
            .map(str::to_string)
    });
    (serve, err, started.elapsed())
}

#[test]
fn wrong_user_and_missing_keyring_say_which_keyring_to_fix() {
    let Some(ceph) = Ceph::start(false) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let url = fresh_db(Engine::Sqlite, dir.path()).unwrap();
    // The on-call story: rbd_user = cinder-x while only ceph.client.cinder.keyring exists.
    let backends = format!(
        "{}[backends.file0]\nvolume_driver = \"file\"\n",
        ceph.backend("rbd0", "")
            .replace("\"cinder\"", "\"cinder-x\"")
    );
    let env = Env::new(dir.path(), &url, &backends);
    let (serve, err, took) = error_of(&env, "rbd0", "client.cinder-x", Duration::from_secs(20));
    assert!(
        err.contains("no keyring for client.cinder-x")
            && err.contains("ceph.client.cinder-x.keyring"),
        "{err}"
    );
    assert!(
        err.contains("ceph.client.cinder.keyring holds client.cinder")
            && err.contains("rbd_user = cinder"),
        "{err}"
    );
    assert!(took < Duration::from_secs(10), "took {took:?}");
    wait_for("heartbeats go on", Duration::from_secs(10), || {
        let s = state(&env, "rbd0");
        (s["state"] == "down" && heartbeating(&s) && s["report_count"].as_i64() > Some(2))
            .then_some(())
    });
    assert_eq!(state(&env, "file0")["state"], "up");
    drop(serve);

    // The keyring gone altogether (only the admin key is left, which is never the fix).
    std::fs::rename(ceph.keyring("cinder"), ceph.dir.join("cinder.key.moved")).unwrap();
    let env = Env::new(dir.path(), &url, &ceph.backend("rbd0", ""));
    let (serve, err, _) = error_of(&env, "rbd0", "client.cinder ", Duration::from_secs(20));
    assert!(err.contains("no keyring for client.cinder "), "{err}");
    assert!(err.contains("put the key of client.cinder in"), "{err}");
    assert!(!err.contains("rbd_user = admin"), "{err}");
    // Putting it back is picked up by the periodic retry, without a restart.
    std::fs::rename(ceph.dir.join("cinder.key.moved"), ceph.keyring("cinder")).unwrap();
    wait_for("recovery", Duration::from_secs(30), || {
        (state(&env, "rbd0")["state"] == "up").then_some(())
    });
    assert!(!serve.log_text().contains("panicked"));
}

#[test]
fn stopped_monitor_times_out_with_heartbeats_going_on_then_reconnects() {
    let Some(ceph) = Ceph::start(false) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let url = fresh_db(Engine::Sqlite, dir.path()).unwrap();
    let backends = format!(
        "{}[backends.file0]\nvolume_driver = \"file\"\n",
        ceph.backend("rbd0", "")
            .replace("rados_connect_timeout = 5", "rados_connect_timeout = 3")
    );
    let env = Env::new(dir.path(), &url, &backends);

    // 1. Start with the monitor down: a clear error after the 3 s connect timeout, not a hang.
    ceph.mon_stop();
    let (serve, err, took) = error_of(&env, "rbd0", "no monitor", Duration::from_secs(20));
    assert!(err.contains("no monitor answered within 3 s"), "{err}");
    assert!(
        err.contains("127.0.0.1:"),
        "names the monitor addresses: {err}"
    );
    assert!(took < Duration::from_secs(12), "took {took:?}");
    wait_for(
        "file0 up and rbd0 heartbeating",
        Duration::from_secs(10),
        || {
            (state(&env, "file0")["state"] == "up" && heartbeating(&state(&env, "rbd0")))
                .then_some(())
        },
    );

    // 2. The monitor comes back: the backend reconnects by itself and works.
    ceph.mon_start();
    wait_for("reconnect", Duration::from_secs(30), || {
        let s = state(&env, "rbd0");
        (s["state"] == "up" && s["error"].is_null()).then_some(())
    });
    let v = env.json(&[
        "volume",
        "create",
        "v",
        "--size",
        "64M",
        "--backend",
        "rbd0",
        "--wait",
    ]);
    assert_eq!(v["job"]["state"], "succeeded");

    // 3. The monitor stops under an established connection: the periodic check notices
    //    within the timeout, heartbeats go on, and the backend comes back again.
    ceph.mon_stop();
    let t = Instant::now();
    let err = wait_for("the failure", Duration::from_secs(30), || {
        state(&env, "rbd0")["error"].as_str().map(str::to_string)
    });
    assert!(err.contains("no monitor answered"), "{err}");
    assert!(
        t.elapsed() < Duration::from_secs(15),
        "took {:?}",
        t.elapsed()
    );
    std::thread::sleep(Duration::from_secs(2));
    let s = state(&env, "rbd0");
    assert!(heartbeating(&s), "{s}");
    assert_eq!(state(&env, "file0")["state"], "up");
    ceph.mon_start();
    wait_for("reconnect", Duration::from_secs(30), || {
        (state(&env, "rbd0")["state"] == "up").then_some(())
    });
    let v = env.json(&["volume", "delete", "v", "--wait"]);
    assert_eq!(v["job"]["state"], "succeeded");
    assert!(!serve.log_text().contains("panicked"));
}

#[test]
fn a_panic_in_the_progress_callback_fails_the_job_not_the_process() {
    let Some(ceph) = Ceph::start(false) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let url = fresh_db(Engine::Sqlite, dir.path()).unwrap();
    let env = Env::new(dir.path(), &url, &ceph.backend("rbd0", ""));
    // The fault: ember's progress code panics inside librbd's callback, on librbd's thread.
    // Unwinding into C would abort the process; the panic must become the job's error.
    let mut serve = Serve::start_env(
        &env.config,
        &env.url,
        &env.dir,
        &[("EMBER_FAULT_PANIC_IN_PROGRESS", "1")],
    );
    env.wait_backend_up("rbd0", 30);
    let src = env.json(&["volume", "create", "src", "--size", "64M", "--wait"]);
    ceph.fill(
        &format!("volume-{}", src["volume"]["id"].as_str().unwrap()),
        8,
    );
    env.json(&[
        "volume", "snapshot", "create", "s", "--volume", "src", "--wait",
    ]);
    env.json(&["volume", "create", "c", "--snapshot", "s", "--wait"]);
    let o = env.run(&["volume", "flatten", "c", "--wait", "--json"]);
    let job = &serde_json::from_slice::<serde_json::Value>(&o.stdout).unwrap()["job"];
    assert_eq!(job["state"], "failed", "{job}");
    let err = job["error"].as_str().unwrap();
    assert!(
        err.contains("progress callback panicked") && err.contains("injected fault"),
        "{err}"
    );
    // The process lives on: it heartbeats and runs the next job.
    assert!(
        serve.child.try_wait().unwrap().is_none(),
        "ember serve died"
    );
    let s = state(&env, "rbd0");
    assert!(heartbeating(&s) && s["state"] == "up", "{s}");
    let v = env.json(&["volume", "create", "after", "--size", "8M", "--wait"]);
    assert_eq!(v["job"]["state"], "succeeded");
    // The clone is still layered and readable: the flatten stopped, nothing was lost.
    let info = ceph.info(&format!(
        "volume-{}",
        env.volume("c")["id"].as_str().unwrap()
    ));
    assert!(info["parent"].is_object(), "{info}");
}

/// Ceph gone (monitor and OSD frozen) past the op timeout in the middle of a flatten. Within
/// the timeout the job either fails with the reason (librbd's op timed out) or, paused inside
/// librbd, says why it waits (`job show`'s `waiting`); heartbeats go on. When Ceph returns, a
/// paused flatten goes on by itself, and a failed one completes when run again.
#[test]
fn ceph_gone_mid_flatten_fails_or_pauses_with_the_reason_and_completes_after() {
    let Some(ceph) = Ceph::start(false) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let url = fresh_db(Engine::Sqlite, dir.path()).unwrap();
    // 8 MiB/s: the flatten of a 256 MiB image runs for about 32 s (the pace counts the
    // whole image).
    let env = Env::new(
        dir.path(),
        &url,
        &ceph.backend("rbd0", "volume_copy_bps_limit = 8388608"),
    );
    let _serve = env.serve();
    let src = env.json(&["volume", "create", "src", "--size", "256M", "--wait"]);
    ceph.fill(
        &format!("volume-{}", src["volume"]["id"].as_str().unwrap()),
        128,
    );
    env.json(&[
        "volume", "snapshot", "create", "s", "--volume", "src", "--wait",
    ]);
    let c = env.json(&["volume", "create", "c", "--snapshot", "s", "--wait"]);
    let image = format!("volume-{}", c["volume"]["id"].as_str().unwrap());
    let job = env.json(&["volume", "flatten", "c"])["job_id"]
        .as_str()
        .unwrap()
        .to_string();
    wait_for("the flatten to move", Duration::from_secs(30), || {
        (env.job(&job)["bytes_done"].as_i64().unwrap_or(0) > 0).then_some(())
    });

    // Ceph goes away: OSD and monitor frozen (the OSD marked down first).
    ceph.osd_freeze();
    ceph.mon_freeze(true);
    let gone = Instant::now();
    let mut beats_seen = 0;
    let seen = wait_for(
        "the job to fail or say why it waits",
        Duration::from_secs(75),
        || {
            if heartbeating(&state(&env, "rbd0")) {
                beats_seen += 1;
            }
            let j = env.job(&job);
            if j["state"] == "failed" {
                return Some(j["error"].as_str().unwrap_or("").to_string());
            }
            assert_eq!(j["state"], "running", "{j}");
            j["waiting"].as_str().map(String::from)
        },
    );
    eprintln!("after {:?}: {seen}", gone.elapsed());
    assert!(
        seen.starts_with("paused:") && seen.contains("storage is failing")
            || seen.contains("did not answer in time")
            || seen.contains("no answer within"),
        "the reason: {seen}"
    );
    assert!(beats_seen > 3, "heartbeats went on while Ceph was gone");
    assert!(env.volume("c")["parent"].is_string(), "still layered");

    // Ceph returns: a paused flatten goes on by itself, a failed one completes when run again.
    ceph.mon_freeze(false);
    ceph.osd_thaw();
    let ended = env.wait_job(&job, 120);
    if ended["state"] != "succeeded" {
        assert_eq!(ended["state"], "failed", "{ended}");
        wait_for("the backend to recover", Duration::from_secs(90), || {
            (state(&env, "rbd0")["state"] == "up").then_some(())
        });
        let again = env.json(&["volume", "flatten", "c"])["job_id"]
            .as_str()
            .unwrap()
            .to_string();
        assert_eq!(env.wait_job(&again, 120)["state"], "succeeded");
    }
    assert!(
        ceph.info(&image)["parent"].is_null(),
        "rbd info still shows a parent"
    );
    assert!(env.volume("c")["parent"].is_null());
}
