//! `ember serve` as systemd would run it: registration, heartbeats, a broken backend beside a
//! healthy one, clean stop on signals, down after a crash, heartbeats while storage blocks.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::*;

fn cfg(dir: &std::path::Path, body: &str) -> std::path::PathBuf {
    let text = format!(
        "data_dir = \"{}\"\nreport_interval = 1\nservice_down_time = 3\nperiodic_interval = 1\nperiodic_fuzzy_delay = 0\n{body}",
        dir.join("data").display()
    );
    write(dir, "ember.toml", &text)
}

fn report_count(list: &[serde_json::Value], backend: &str) -> i64 {
    service(list, backend)
        .and_then(|s| s["report_count"].as_i64())
        .unwrap_or(0)
}

#[test]
fn healthy_backend_heartbeats_while_broken_ones_are_listed_with_their_reason() {
    each_engine(|_, dir, url| {
        let config = cfg(
            dir,
            "enabled_backends = [\"file0\", \"bad\", \"ghost\"]\n\
             [backends.file0]\nvolume_driver = \"file\"\n\
             [backends.bad]\nvolume_driver = \"file\"\nrbd_pol = \"x\"\n",
        );
        let mut serve = Serve::start(&config, url, dir);
        let list = wait_for("3 heartbeats of file0", Duration::from_secs(20), || {
            let l = services(&config, url);
            (report_count(&l, "file0") >= 3).then_some(l)
        });
        let file0 = service(&list, "file0").unwrap();
        assert_eq!(file0["state"], "up");
        assert_eq!(file0["binary"], "ember-volume");
        assert!(file0["host"].as_str().unwrap().ends_with("@file0"));
        assert!(file0["heartbeat_age_s"].as_f64().unwrap() < 3.0);
        assert!(
            file0["lateness_ms"]["count"].as_u64().unwrap() >= 3,
            "{file0}"
        );

        let bad = service(&list, "bad").unwrap();
        assert_eq!(bad["state"], "down");
        let reason = bad["error"].as_str().unwrap();
        assert!(
            reason.contains("unknown key \"rbd_pol\"")
                && reason.contains("did you mean \"rbd_pool\""),
            "{reason}"
        );
        let ghost = service(&list, "ghost").unwrap();
        assert_eq!(ghost["state"], "down");
        assert!(
            ghost["error"].as_str().unwrap().contains(
                "enabled_backends names \"ghost\" but there is no [backends.ghost] section"
            )
        );

        // Capacity of the file backend is its filesystem's.
        let o = ember(&[
            "--config",
            config.to_str().unwrap(),
            "--database-url",
            url,
            "backend",
            "list",
            "--json",
        ]);
        let backends = json(&o);
        let b0 = backends
            .as_array()
            .unwrap()
            .iter()
            .find(|b| b["name"] == "file0")
            .unwrap();
        assert!(b0["total_bytes"].as_i64().unwrap() > 0, "{b0}");
        assert_eq!(b0["state"], "up");

        serve.signal("TERM");
        assert_eq!(
            serve.wait(Duration::from_secs(15)),
            Some(0),
            "log:\n{}",
            serve.log_text()
        );
        let list = services(&config, url);
        let file0 = service(&list, "file0").unwrap();
        assert_eq!(file0["stopped"], true);
        assert_eq!(
            file0["state"], "down",
            "a cleanly stopped service is down at once"
        );

        let o = ember(&[
            "--config",
            config.to_str().unwrap(),
            "--database-url",
            url,
            "events",
            "--json",
        ]);
        let kinds: Vec<String> = json(&o)
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["kind"].as_str().unwrap().to_string())
            .collect();
        for k in ["backend_failed", "service_started", "service_stopped"] {
            assert!(kinds.iter().any(|x| x == k), "no {k} event in {kinds:?}");
        }
    });
}

#[test]
fn sigint_stops_cleanly_and_a_restart_reuses_the_row() {
    each_engine(|_, dir, url| {
        let config = cfg(dir, "[backends.file0]\nvolume_driver = \"file\"\n");
        let mut serve = Serve::start(&config, url, dir);
        wait_for("first heartbeat", Duration::from_secs(20), || {
            (report_count(&services(&config, url), "file0") >= 1).then_some(())
        });
        serve.signal("INT");
        assert_eq!(serve.wait(Duration::from_secs(15)), Some(0));
        let before = service(&services(&config, url), "file0").unwrap()["report_count"]
            .as_i64()
            .unwrap();

        let mut again = Serve::start(&config, url, dir);
        let list = wait_for("heartbeats after restart", Duration::from_secs(20), || {
            let l = services(&config, url);
            (report_count(&l, "file0") > before).then_some(l)
        });
        assert_eq!(list.len(), 1, "one row per host@backend: {list:?}");
        assert_eq!(service(&list, "file0").unwrap()["stopped"], false);
        again.signal("TERM");
        assert_eq!(again.wait(Duration::from_secs(15)), Some(0));
    });
}

#[test]
fn a_killed_service_turns_down_after_service_down_time() {
    each_engine(|_, dir, url| {
        let config = cfg(dir, "[backends.file0]\nvolume_driver = \"file\"\n");
        let mut serve = Serve::start(&config, url, dir);
        wait_for("up", Duration::from_secs(20), || {
            (service(&services(&config, url), "file0").map(|s| s["state"] == "up") == Some(true))
                .then_some(())
        });
        serve.signal("KILL");
        serve.wait(Duration::from_secs(10));
        let list = services(&config, url);
        assert_eq!(
            service(&list, "file0").unwrap()["stopped"],
            false,
            "a crash is not a clean stop"
        );
        // service_down_time is 3 s: down within a few seconds, never before 2 s have passed.
        wait_for("down after the crash", Duration::from_secs(15), || {
            (service(&services(&config, url), "file0").unwrap()["state"] == "down").then_some(())
        });
    });
}

#[test]
fn no_backend_able_to_start_exits_non_zero_with_the_reasons() {
    let dir = tempfile::tempdir().unwrap();
    let url = fresh_db(Engine::Sqlite, dir.path()).unwrap();
    let config = cfg(dir.path(), "[backends.a]\nvolume_driver = \"nope\"\n");
    let mut serve = Serve::start(&config, &url, dir.path());
    let code = serve.wait(Duration::from_secs(20));
    assert_eq!(code, Some(1));
    let log = serve.log_text();
    assert!(log.contains("no backend could start"), "{log}");
    assert!(log.contains("unknown volume_driver \"nope\""), "{log}");
    assert!(!log.contains("panicked"), "{log}");
}

/// The point of ember: a storage call that blocks for seconds must not delay heartbeats.
/// The fake backend blocks its thread 2 s on every call (setup, each capacity refresh every
/// second, on 2 slots); heartbeats every second must all fire well under 500 ms late (a
/// blocked reactor would be >= 2 s late, and would miss beats).
#[test]
fn heartbeats_stay_on_time_while_storage_calls_block() {
    each_engine(|_, dir, url| {
        let config = cfg(
            dir,
            "[backends.slow]\nvolume_driver = \"fake\"\nfake_latency_ms = 2000\nfake_blocking = true\nbackend_native_threads_pool_size = 2\n\
             [backends.file0]\nvolume_driver = \"file\"\n",
        );
        let mut serve = Serve::start(&config, url, dir);
        let list = wait_for(
            "6 heartbeats of the blocking backend",
            Duration::from_secs(40),
            || {
                let l = services(&config, url);
                (report_count(&l, "slow") >= 6).then_some(l)
            },
        );
        for b in ["slow", "file0"] {
            let s = service(&list, b).unwrap();
            assert_eq!(s["state"], "up", "{s}");
            let max = s["lateness_ms"]["max"].as_f64().unwrap();
            assert!(
                max < 500.0,
                "{b}: a heartbeat fired {max} ms late while storage blocked: {s}"
            );
        }
        serve.signal("TERM");
        assert_eq!(
            serve.wait(Duration::from_secs(20)),
            Some(0),
            "{}",
            serve.log_text()
        );
    });
}
