//! `ember doctor` through the binary: each check breaks the thing it checks for real (a
//! keyring renamed, a monitor stopped, a pool missing, a conf unreadable, a service killed)
//! and must show the failure with the right fix; a healthy setup reports all ok.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::*;

/// Runs `ember doctor --json` (plus `extra`); returns the exit code and the checks by id.
fn doctor(env: &Env, extra: &[&str]) -> (i32, serde_json::Value) {
    let mut args = vec!["doctor", "--json"];
    args.extend_from_slice(extra);
    let o = env.run(&args);
    assert!(!stderr(&o).contains("panicked"), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {} {}", stdout(&o), stderr(&o)));
    (o.status.code().unwrap(), v)
}

fn check<'a>(report: &'a serde_json::Value, id: &str) -> &'a serde_json::Value {
    report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == id)
        .unwrap_or_else(|| panic!("no check {id} in {report}"))
}

fn assert_check(report: &serde_json::Value, id: &str, status: &str, summary: &str, fix: &str) {
    let c = check(report, id);
    assert_eq!(c["status"], status, "{id}: {c}");
    assert!(
        c["summary"].as_str().unwrap().contains(summary),
        "{id} summary lacks {summary:?}: {c}"
    );
    if !fix.is_empty() {
        assert!(
            c["fix"].as_str().unwrap_or("").contains(fix),
            "{id} fix lacks {fix:?}: {c}"
        );
    }
}

#[test]
fn healthy_setup_is_all_ok_and_each_break_shows_its_fix() {
    let Some(ceph) = Ceph::start(true) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let url = fresh_db(Engine::Sqlite, dir.path()).unwrap();
    let backends = format!(
        "{}[backends.file0]\nvolume_driver = \"file\"\n",
        ceph.backend("rbd0", "")
    );
    let env = Env::new(dir.path(), &url, &backends);
    let mut serve = env.serve();
    wait_for("both services up", Duration::from_secs(30), || {
        let l = services(&env.config, &env.url);
        (l.iter().filter(|s| s["state"] == "up").count() == 2).then_some(())
    });

    // Healthy: every check ok (the mgr's pool figures can lag a few seconds: poll).
    let report = wait_for("all ok", Duration::from_secs(30), || {
        let (code, r) = doctor(&env, &[]);
        (code == 0 && r["status"] == "ok").then_some(r)
    });
    for c in report["checks"].as_array().unwrap() {
        assert_eq!(c["status"], "ok", "{c}");
        for key in [
            "id", "scope", "check", "status", "summary", "evidence", "fix", "took_ms",
        ] {
            assert!(c.get(key).is_some(), "check JSON lacks {key}: {c}");
        }
    }
    let ids: Vec<&str> = report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_str().unwrap())
        .collect();
    assert_eq!(
        ids,
        [
            "ember.config",
            "ember.database",
            "ember.hosts",
            "ember.jobs",
            "ember.role",
            "ember.metrics",
            "ember.backup",
            "rbd0.ceph_conf",
            "rbd0.monitors",
            "rbd0.keyring",
            "rbd0.auth_pool",
            "rbd0.health",
            "rbd0.service",
            "rbd0.fencing",
            "rbd0.attachments",
            "file0.storage",
            "file0.service",
            "file0.attachments",
        ],
        "a stable order for scripts"
    );
    // The text form fits 80 columns and never shows a key.
    let o = env.run(&["doctor", "--verbose"]);
    assert_eq!(o.status.code(), Some(0), "{}", stdout(&o));
    let text = stdout(&o);
    assert!(text.lines().all(|l| l.chars().count() <= 80), "{text}");
    let key = std::fs::read_to_string(ceph.keyring("cinder")).unwrap();
    let secret = key
        .lines()
        .find_map(|l| l.trim().strip_prefix("key = "))
        .unwrap();
    assert!(!text.contains(secret));

    // A keyring renamed the on-call way: rbd_user = cinder-x, only cinder's keyring exists.
    // Each variant gets its own config file (same database).
    let sub = |name: &str| {
        let p = dir.path().join(name);
        std::fs::create_dir_all(&p).unwrap();
        p
    };
    let wrong = Env::new(
        &sub("wrong"),
        &url,
        &ceph
            .backend("rbd0", "")
            .replace("\"cinder\"", "\"cinder-x\""),
    );
    let (code, r) = doctor(&wrong, &["--backend", "rbd0"]);
    assert_eq!(code, 2);
    assert_check(
        &r,
        "rbd0.keyring",
        "fail",
        "no keyring for client.cinder-x",
        "holds client.cinder, not client.cinder-x: set rbd_user = cinder",
    );
    assert_eq!(check(&r, "rbd0.auth_pool")["status"], "skip");

    // Backups into an rbd pool as a user with no keyring yet: ember.backup names it and the
    // fix; once the pool and client.cinder-backup exist (`ceph.sh backup-pool`), it passes.
    let top = format!(
        "backup_driver = \"ceph\"\nbackup_ceph_pool = \"backups\"\nbackup_ceph_user = \"cinder-backup\"\n\
         backup_ceph_conf = \"{}\"\n{}",
        ceph.conf.display(),
        ceph.backend("rbd0", "")
    );
    let bk = Env::new(&sub("backup"), &url, &top);
    let (code, r) = doctor(&bk, &["--backend", "rbd0"]);
    assert_eq!(code, 2, "{r}");
    assert_check(
        &r,
        "ember.backup",
        "fail",
        "client.cinder-backup",
        "cinder-backup",
    );
    ceph.backup_target();
    let (code, r) = doctor(&bk, &["--backend", "rbd0"]);
    assert_eq!(code, 0, "{r}");
    assert_check(
        &r,
        "ember.backup",
        "ok",
        "rbd pool backups (client.cinder-backup",
        "",
    );

    // A keyring readable by everyone: a warning, exit 0, or 1 with --strict.
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(
        ceph.keyring("cinder"),
        std::fs::Permissions::from_mode(0o644),
    )
    .unwrap();
    let (code, r) = doctor(&env, &["--backend", "rbd0"]);
    assert_eq!(code, 0, "{r}");
    assert_check(
        &r,
        "rbd0.keyring",
        "warn",
        "readable by every user",
        "chmod 600",
    );
    assert_eq!(doctor(&env, &["--backend", "rbd0", "--strict"]).0, 1);
    std::fs::set_permissions(
        ceph.keyring("cinder"),
        std::fs::Permissions::from_mode(0o600),
    )
    .unwrap();

    // A pool that does not exist.
    let nopool = Env::new(
        &sub("nopool"),
        &url,
        &ceph
            .backend("rbd0", "")
            .replace("rbd_pool = \"volumes\"", "rbd_pool = \"nope\""),
    );
    let (code, r) = doctor(&nopool, &["--backend", "rbd0"]);
    assert_eq!(code, 2);
    assert_check(
        &r,
        "rbd0.auth_pool",
        "fail",
        "pool \"nope\" does not exist",
        "ceph osd pool create nope",
    );

    // A conf that cannot be read (missing, then a directory: root reads any file).
    for (path, why) in [
        (dir.path().join("missing.conf"), "No such file"),
        (dir.path().to_path_buf(), "directory"),
    ] {
        let bad = Env::new(
            &sub("badconf"),
            &url,
            &ceph.backend("rbd0", "").replace(
                &ceph.conf.display().to_string(),
                &path.display().to_string(),
            ),
        );
        let (code, r) = doctor(&bad, &["--backend", "rbd0"]);
        assert_eq!(code, 2);
        assert_check(&r, "rbd0.ceph_conf", "fail", why, "rbd_ceph_conf");
        assert_eq!(check(&r, "rbd0.monitors")["status"], "skip");
    }

    // The monitor stopped: each address refused, with the fix; auth not tried.
    ceph.mon_stop();
    let (code, r) = doctor(&env, &["--backend", "rbd0"]);
    assert_eq!(code, 2);
    assert_check(
        &r,
        "rbd0.monitors",
        "fail",
        "no monitor reachable",
        "start the monitors",
    );
    let ev = check(&r, "rbd0.monitors")["evidence"].to_string();
    assert!(
        ev.contains("v1:127.0.0.1:") && ev.contains("v2:127.0.0.1:"),
        "{ev}"
    );
    assert_eq!(check(&r, "rbd0.auth_pool")["status"], "skip");
    ceph.mon_start();

    // A service killed: no heartbeat past service_down_time (3 s), reported dead with its pid.
    serve.signal("KILL");
    serve.wait(Duration::from_secs(10));
    let r = wait_for("the dead service", Duration::from_secs(20), || {
        let (code, r) = doctor(&env, &["--backend", "file0"]);
        (code == 2 && check(&r, "file0.service")["status"] == "fail").then_some(r)
    });
    assert_check(
        &r,
        "file0.service",
        "fail",
        "the process is dead or hung",
        "restart it",
    );
}

#[test]
fn a_config_that_does_not_load_and_a_database_that_cannot_open_are_findings() {
    let dir = tempfile::tempdir().unwrap();
    let bad = write(
        dir.path(),
        "bad.toml",
        "[backends.x]\nvolume_driver = \"file\"\nbogus = 1\n",
    );
    let o = ember(&["--config", bad.to_str().unwrap(), "doctor", "--json"]);
    assert_eq!(o.status.code(), Some(2));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["checks"][0]["id"], "ember.config");
    assert!(
        v["checks"][0]["summary"]
            .as_str()
            .unwrap()
            .contains("bogus"),
        "{v}"
    );

    let env = Env::new(
        dir.path(),
        "postgres://nobody@127.0.0.1:1/none",
        "[backends.file0]\nvolume_driver = \"file\"\n",
    );
    let (code, r) = doctor(&env, &[]);
    assert_eq!(code, 2);
    assert_check(
        &r,
        "ember.database",
        "fail",
        "cannot open the database",
        "database_url",
    );
    assert_eq!(check(&r, "ember.jobs")["status"], "skip");
    assert_eq!(check(&r, "file0.storage")["status"], "warn", "{r}");
}

#[test]
fn stuck_and_orphaned_jobs_are_reported() {
    let dir = tempfile::tempdir().unwrap();
    let url = fresh_db(Engine::Sqlite, dir.path()).unwrap();
    // 1 MiB/s: a 64 MiB flatten runs for a minute.
    let env = Env::new(
        dir.path(),
        &url,
        "[backends.file0]\nvolume_driver = \"file\"\nvolume_copy_bps_limit = 1048576\n",
    );
    let mut serve = env.serve();
    env.snapshot_with_data("1G", &env.file_dir("file0"), 64, 0x22, &["c"]);
    let job = env.flatten_running("c");
    // Progress moves every second: with a 0 s threshold it is "stuck" only between moves,
    // so look at the orphan case, which is certain: the worker is killed mid-job.
    serve.signal("KILL");
    serve.wait(Duration::from_secs(10));
    let r = wait_for("the orphaned job", Duration::from_secs(20), || {
        let (code, r) = doctor(&env, &[]);
        (code == 2 && check(&r, "ember.jobs")["status"] == "fail").then_some(r)
    });
    assert_check(
        &r,
        "ember.jobs",
        "fail",
        "waiting for",
        "restart ember on that host",
    );
    assert!(
        check(&r, "ember.jobs")["summary"]
            .as_str()
            .unwrap()
            .contains(&job[..8])
    );
    // Restarted, the service takes its job back; with no progress allowed for 0 s, a job
    // whose bytes did not move since the last write is reported stuck.
    let _serve = env.serve();
    wait_for("the job to run again", Duration::from_secs(20), || {
        (env.json(&["job", "show", &job])["state"] == "running").then_some(())
    });
    let r = wait_for("a stuck report", Duration::from_secs(30), || {
        let (_, r) = doctor(&env, &["--stuck-after", "0"]);
        (check(&r, "ember.jobs")["status"] == "warn").then_some(r)
    });
    assert!(
        check(&r, "ember.jobs")["evidence"]
            .to_string()
            .contains("made no progress"),
        "{r}"
    );
}
