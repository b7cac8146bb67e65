//! `metrics_listen`: a real scrape of the real service, read by promtool (apt's prometheus)
//! as Prometheus reads it; the alert rules checked and each alert proven to fire on a series
//! made for it (`promtool test rules`).
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;

/// promtool, or None when it is not installed (a failure in CI: see `tools_present`).
fn promtool() -> Option<&'static str> {
    tools_present(&["promtool"], "metrics test").then_some("promtool")
}

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn the_alert_rules_check_and_each_alert_fires_on_its_series() {
    let Some(p) = promtool() else {
        return;
    };
    let check = Command::new(p)
        .args(["check", "rules"])
        .arg(root().join("config/prometheus/ember-alerts.yml"))
        .output()
        .unwrap();
    assert!(
        check.status.success(),
        "{}{}",
        stdout(&check),
        stderr(&check)
    );
    let test = Command::new(p)
        .args(["test", "rules", "ember-alerts.test.yml"])
        .current_dir(root().join("tests/prometheus"))
        .output()
        .unwrap();
    assert!(test.status.success(), "{}{}", stdout(&test), stderr(&test));
}

/// One scrape over plain HTTP/1.0 (the test's own client: nothing to install).
fn scrape(addr: &str) -> String {
    use std::io::Read;
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(s, "GET /metrics HTTP/1.0\r\nHost: {addr}\r\n\r\n").unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    assert!(
        head.starts_with("HTTP/1.0 200") || head.starts_with("HTTP/1.1 200"),
        "{head}"
    );
    body.to_string()
}

/// The samples of a scrape: `name{labels}` to value.
fn samples(text: &str) -> BTreeMap<String, f64> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|l| {
            let (k, v) = l.rsplit_once(' ')?;
            Some((k.to_string(), v.parse().ok()?))
        })
        .collect()
}

fn check_metrics(p: &str, text: &str) {
    let mut c = Command::new(p)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    c.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    let out = c.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool check metrics: {}{}\n{text}",
        stdout(&out),
        stderr(&out)
    );
}

/// Scrapes during a throttled flatten: promtool accepts every scrape, the flatten's bytes
/// counter moves between two of them while it runs, the heartbeat goes on (its lateness is
/// counted and stays low), the cluster's figures are there, and the job's end is counted.
#[test]
fn a_scrape_during_a_flatten_shows_it_moving_and_the_heartbeat_on_time() {
    let Some(p) = promtool() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let url = fresh_db(Engine::Sqlite, dir.path()).unwrap();
    let addr = format!("127.0.0.1:{}", free_port());
    let env = Env::new(
        dir.path(),
        &url,
        &format!(
            "metrics_listen = \"{addr}\"\n[backends.file0]\nvolume_driver = \"file\"\nvolume_copy_bps_limit = 16777216\n"
        ),
    );
    let _serve = env.serve();
    env.snapshot_with_data("1G", &env.file_dir("file0"), 96, 0x3c, &["c"]);
    let job = env.flatten_running("c");
    let copied = "ember_job_copied_bytes_total{kind=\"flatten\"}";
    let first = scrape(&addr);
    check_metrics(p, &first);
    std::thread::sleep(Duration::from_millis(1500));
    let second = scrape(&addr);
    check_metrics(p, &second);
    let (a, b) = (samples(&first), samples(&second));
    assert!(
        b.get(copied).copied().unwrap_or(0.0) > a.get(copied).copied().unwrap_or(0.0),
        "the flatten's bytes did not move between two scrapes:\n{second}"
    );
    assert_eq!(
        b.get("ember_jobs{kind=\"flatten\",state=\"running\"}"),
        Some(&1.0),
        "{second}"
    );
    let svc = "backend=\"file0\",service=";
    let beats = |m: &BTreeMap<String, f64>| {
        m.iter()
            .find(|(k, _)| {
                k.starts_with("ember_heartbeat_lateness_seconds_count{") && k.contains(svc)
            })
            .map(|(_, v)| *v)
            .unwrap_or(0.0)
    };
    assert!(
        beats(&b) > beats(&a),
        "no heartbeat between two scrapes:\n{second}"
    );
    // Every heartbeat during the flatten fired within 0.512 s of its time (a wide margin:
    // it is a starved reactor this catches, not a slow machine).
    let within = b
        .iter()
        .find(|(k, _)| {
            k.contains("le=\"0.512\"") && k.contains("heartbeat_lateness") && k.contains(svc)
        })
        .map(|(_, v)| *v)
        .unwrap();
    assert_eq!(
        within,
        beats(&b),
        "late heartbeats during the flatten:\n{second}"
    );
    assert!(
        b.keys()
            .any(|k| k.starts_with("ember_service_up{") && k.contains(svc))
    );
    assert!(
        b.contains_key("ember_backend_capacity_total_bytes{backend=\"file0\"}"),
        "{second}"
    );
    let end = env.wait_job(&job, 120);
    assert_eq!(end["state"], "succeeded", "{end}");
    let last = samples(&scrape(&addr));
    assert_eq!(
        last.get("ember_jobs_ended_total{kind=\"flatten\",state=\"succeeded\"}"),
        Some(&1.0)
    );
    assert!(last.get(copied).copied().unwrap_or(0.0) >= (96u64 << 20) as f64);
    // The doctor ran in the service (at its start) and its findings are counted.
    assert!(
        last.keys()
            .any(|k| k.starts_with("ember_doctor_findings{scope=\"ember\",severity=\"ok\"}")),
        "{last:?}"
    );
}

/// A bad `metrics_listen` is refused with the file, line and what was expected.
#[test]
fn a_bad_metrics_address_names_the_line() {
    let dir = tempfile::tempdir().unwrap();
    let url = fresh_db(Engine::Sqlite, dir.path()).unwrap();
    let env = Env::new(
        dir.path(),
        &url,
        "metrics_listen = \"localhost:nine\"\n[backends.file0]\nvolume_driver = \"file\"\n",
    );
    let err = env.fails(&["volume", "list"], 1);
    assert!(
        err.contains("metrics_listen")
            && err.contains("ember.toml:6:")
            && err.contains("127.0.0.1:9477"),
        "{err}"
    );
}

/// `log_format = "json"`: every line the service writes is one JSON object, with its time,
/// level, target and message, and the event's fields (a job's id where a job speaks).
#[test]
fn json_logs_are_one_object_per_line_with_the_job() {
    let dir = tempfile::tempdir().unwrap();
    let url = fresh_db(Engine::Sqlite, dir.path()).unwrap();
    let env = Env::new(
        dir.path(),
        &url,
        "log_format = \"json\"\n[backends.file0]\nvolume_driver = \"file\"\n",
    );
    let mut serve = env.serve();
    env.json(&["volume", "create", "v", "--size", "16M", "--wait"]);
    env.json(&["volume", "delete", "v", "--wait"]);
    serve.signal("TERM");
    serve.wait(Duration::from_secs(30));
    let text = serve.log_text();
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    assert!(lines.len() > 3, "{text}");
    for l in &lines {
        for key in ["host", "timestamp", "level", "target", "message"] {
            assert!(l.get(key).is_some(), "no {key}: {l}");
        }
    }
    assert!(
        lines
            .iter()
            .any(|l| l.get("job").is_some() && l.get("backend").is_some()),
        "no line names a job and its backend:\n{text}"
    );
}
