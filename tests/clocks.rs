//! One clock for every age: the database's. A host whose clock drifts is neither shown down
//! while alive nor shows others down, and the drift is a doctor finding naming the host and
//! its size. And no false DOWN at start: a service still on its first setup check is
//! `starting`, and one backend's slow storage does not hold back another's first heartbeat.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::{Duration, Instant};

use common::*;

const SKEW: &str = "EMBER_FAULT_CLOCK_SKEW_MS";

fn host_env(root: &std::path::Path, url: &str, host: &str) -> Env {
    let dir = root.join(host);
    std::fs::create_dir_all(&dir).unwrap();
    Env::new(
        &dir,
        url,
        &format!("host = \"{host}\"\n[backends.file0]\nvolume_driver = \"file\"\n"),
    )
}

/// `service list --json` as seen by a process whose clock is off by `skew_ms`.
fn list_seen_with(env: &Env, skew_ms: i64) -> Vec<serde_json::Value> {
    let skew = skew_ms.to_string();
    let o = ember_env(
        &[
            "--config",
            env.config.to_str().unwrap(),
            "--database-url",
            &env.url,
            "service",
            "list",
            "--json",
        ],
        &[(SKEW, &skew)],
    );
    json(&o).as_array().unwrap().clone()
}

#[test]
fn a_drifting_clock_shows_no_one_down_and_is_named_by_the_doctor() {
    each_engine(|_, root, url| {
        let a = host_env(root, url, "a");
        let b = host_env(root, url, "b");
        let _serve_a = Serve::start(&a.config, url, &a.dir);
        // b's clock runs two minutes fast: far beyond service_down_time (3 s).
        let _serve_b = Serve::start_env(&b.config, url, &b.dir, &[(SKEW, "120000")]);
        a.wait_up("a@file0", 30);
        a.wait_up("b@file0", 30);

        // Seen from a correct clock, from b's, and from one two minutes slow: both up, and
        // every heartbeat age a few seconds at most (never minutes, never negative).
        for skew in [0, 120_000, -120_000] {
            let seen = wait_for(
                &format!("both up as seen with skew {skew} ms"),
                Duration::from_secs(10),
                || {
                    let l = list_seen_with(&a, skew);
                    (l.iter().filter(|s| s["state"] == "up").count() == 2).then_some(l)
                },
            );
            for s in &seen {
                let age = s["heartbeat_age_s"].as_f64().unwrap();
                assert!((-0.5..3.5).contains(&age), "skew {skew}: {s}");
            }
        }

        // The doctor names the drifting host and the size of its drift.
        let report = wait_for("the skew finding", Duration::from_secs(10), || {
            let r = json(&a.run(&["doctor", "--json"]));
            let hosts = r["checks"]
                .as_array()
                .unwrap()
                .iter()
                .find(|c| c["id"] == "ember.hosts")
                .cloned()
                .unwrap();
            (hosts["status"] == "warn").then_some(hosts)
        });
        let summary = report["summary"].as_str().unwrap();
        assert!(
            summary.contains("b's clock is 120.0 s ahead of the database's"),
            "{report}"
        );
        assert!(!summary.contains("a's clock"), "{report}");
        assert!(
            report["fix"].as_str().unwrap().contains("chrony"),
            "{report}"
        );
    });
}

#[test]
fn a_slow_backend_holds_back_no_other_and_shows_starting_not_down() {
    let dir = tempfile::tempdir().unwrap();
    let url = fresh_db(Engine::Sqlite, dir.path()).unwrap();
    // An rbd backend whose monitor address answers nothing: its setup check takes the whole
    // 4 s connect timeout.
    let conf = write(
        dir.path(),
        "ceph.conf",
        &format!(
            "[global]\nmon host = 127.0.0.1:1\n[client]\nkeyring = {}/ceph.client.cinder.keyring\n",
            dir.path().display()
        ),
    );
    let keyring = write(
        dir.path(),
        "ceph.client.cinder.keyring",
        "[client.cinder]\n\tkey = AQBrFzVmAAAAABAAbbbbbbbbbbbbbbbbbbbbbb==\n",
    );
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&keyring, std::fs::Permissions::from_mode(0o600)).unwrap();
    let env = Env::new(
        dir.path(),
        &url,
        &format!(
            "[backends.rbd0]\nvolume_driver = \"rbd\"\nrbd_pool = \"volumes\"\nrbd_user = \"cinder\"\n\
             rbd_ceph_conf = \"{}\"\nrados_connect_timeout = 4\n\
             [backends.file0]\nvolume_driver = \"file\"\n",
            conf.display()
        ),
    );
    let started = Instant::now();
    let _serve = Serve::start(&env.config, &env.url, &env.dir);
    let mut file_up_at = None;
    let mut rbd_states = vec![];
    while started.elapsed() < Duration::from_secs(12) {
        let l = services(&env.config, &env.url);
        if let Some(f) = service(&l, "file0") {
            assert_ne!(f["state"], "down", "file0 shown down at start: {f}");
            if f["state"] == "up" && file_up_at.is_none() {
                file_up_at = Some(started.elapsed());
            }
        }
        if let Some(r) = service(&l, "rbd0") {
            let st = r["state"].as_str().unwrap().to_string();
            // Down only with its reason, once the connect timeout has passed.
            if st == "down" {
                assert!(
                    r["error"]
                        .as_str()
                        .unwrap_or("")
                        .contains("no monitor answered"),
                    "{r}"
                );
                if rbd_states.last() != Some(&st) {
                    rbd_states.push(st);
                }
                break;
            }
            if rbd_states.last() != Some(&st) {
                rbd_states.push(st);
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let file_up_at = file_up_at.expect("file0 never came up");
    assert!(
        file_up_at < Duration::from_secs(3),
        "file0 waited behind rbd0: up after {file_up_at:?}"
    );
    assert_eq!(rbd_states, ["starting", "down"], "rbd0's states");
}
