//! Several hosts on one PostgreSQL database, as real processes: ownership, one process per
//! service, takeover in a cluster (kill -9 and SIGSTOP), fencing tokens, jobs of a host that
//! is not clustered waiting for it, `service remove`, disable, and racing submissions.
//!
//! Each "host" is an `ember serve` with its own config (`host = "a"`) and data directory on
//! this machine. A cluster of file backends shares one directory declared shared storage
//! (`file_shared_storage = true`), as NFS would be.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, Instant};

use common::*;

/// A host's config on the shared database: `host = "name"`, then `extra` top-level lines and
/// a file backend `file0` with `backend` lines.
fn host(root: &Path, url: &str, name: &str, extra: &str, backend: &str) -> Env {
    let dir = root.join(name);
    std::fs::create_dir_all(&dir).unwrap();
    Env::new(
        &dir,
        url,
        &format!(
            "host = \"{name}\"\n{extra}\n[backends.file0]\nvolume_driver = \"file\"\n{backend}\n"
        ),
    )
}

fn pg(dir: &Path) -> Option<String> {
    fresh_db(Engine::Postgres, dir)
}

fn id(v: &serde_json::Value) -> String {
    v["volume"]["id"]
        .as_str()
        .or(v["job_id"].as_str())
        .unwrap()
        .to_string()
}

fn events(env: &Env) -> Vec<serde_json::Value> {
    env.json(&["events", "--limit", "5000"])
        .as_array()
        .unwrap()
        .clone()
}

fn serve_up(env: &Env, service: &str) -> Serve {
    let s = Serve::start(&env.config, &env.url, &env.dir);
    env.wait_up(service, 30);
    s
}

#[test]
fn two_hosts_each_own_their_local_volumes_through_every_job_kind() {
    let root = tempfile::tempdir().unwrap();
    let Some(url) = pg(root.path()) else { return };
    let a = host(root.path(), &url, "a", "", "");
    let b = host(root.path(), &url, "b", "", "");
    let _sa = serve_up(&a, "a@file0");
    let _sb = serve_up(&b, "b@file0");

    // 20 volumes, created from either host's CLI, without naming a host: placed by capacity.
    let mut vols = vec![];
    for i in 0..20 {
        let env = if i % 2 == 0 { &a } else { &b };
        let out = env.run(&[
            "volume",
            "create",
            &format!("v{i}"),
            "--size",
            "8M",
            "--backend",
            "file0",
            "--json",
        ]);
        let v = json(&out);
        vols.push((
            v["volume"]["id"].as_str().unwrap().to_string(),
            v["job_id"].as_str().unwrap().to_string(),
        ));
        assert!(v["owner"] == "a@file0" || v["owner"] == "b@file0", "{v}");
    }
    for (_, j) in &vols {
        assert_eq!(a.wait_job(j, 60)["state"], "succeeded");
    }
    let by_host = |env: &Env| -> HashMap<String, String> {
        env.json(&["volume", "list"])
            .as_array()
            .unwrap()
            .iter()
            .map(|v| {
                (
                    v["id"].as_str().unwrap().to_string(),
                    v["host"].as_str().unwrap().to_string(),
                )
            })
            .collect()
    };
    let owners = by_host(&a);
    // Every file lies only under its owner's file_dir.
    for (vid, owner) in &owners {
        let (mine, other) = if owner == "a@file0" {
            (&a, &b)
        } else {
            (&b, &a)
        };
        assert!(mine.image("file0", vid).exists(), "{vid} under {owner}");
        assert!(
            !other.image("file0", vid).exists(),
            "{vid} not on the other host"
        );
    }
    // `volume list --host` narrows to one owner; a bare host name works too.
    let only_a = a.json(&["volume", "list", "--host", "a"]);
    assert!(
        only_a
            .as_array()
            .unwrap()
            .iter()
            .all(|v| v["host"] == "a@file0")
    );
    assert_eq!(
        only_a.as_array().unwrap().len(),
        owners.values().filter(|o| *o == "a@file0").count()
    );

    // Snapshot, clone, flatten, extend, delete of each: every job runs on its owner.
    let mut queued = vec![];
    for (i, (vid, _)) in vols.iter().enumerate() {
        let env = if i % 2 == 0 { &b } else { &a }; // asked from the other host's CLI
        let s = env.json(&[
            "volume",
            "snapshot",
            "create",
            &format!("s{i}"),
            "--volume",
            vid,
            "--wait",
        ]);
        assert_eq!(s["job"]["state"], "succeeded", "{s}");
        assert_eq!(
            s["snapshot"]["host"],
            owners[vid.as_str()].as_str(),
            "a snapshot belongs to its volume's owner"
        );
        let c = env.json(&[
            "volume",
            "create",
            &format!("c{i}"),
            "--snapshot",
            &format!("s{i}"),
        ]);
        queued.push((id(&c), c["job_id"].as_str().unwrap().to_string()));
    }
    for (cid, j) in &queued {
        let done = a.wait_job(j, 60);
        assert_eq!(done["state"], "succeeded", "{done}");
        let owner = &by_host(&a)[cid];
        assert_eq!(
            done["claimed_by"],
            owner.as_str(),
            "the clone ran on its source's owner"
        );
    }
    for (i, (cid, _)) in queued.iter().enumerate() {
        let env = if i % 2 == 0 { &a } else { &b };
        let f = env.json(&["volume", "flatten", cid, "--wait"]);
        assert_eq!(f["job"]["state"], "succeeded", "{f}");
        let e = env.json(&["volume", "extend", cid, "--size", "16M", "--wait"]);
        assert_eq!(e["job"]["state"], "succeeded", "{e}");
        let d = env.json(&["volume", "delete", cid, "--wait"]);
        assert_eq!(d["job"]["state"], "succeeded", "{d}");
    }
    for (i, (vid, _)) in vols.iter().enumerate() {
        let env = if i % 2 == 0 { &b } else { &a };
        let d = env.json(&["volume", "delete", vid, "--cascade", "--wait"]);
        assert_eq!(d["job"]["state"], "succeeded", "{d}");
    }
    assert!(a.json(&["volume", "list"]).as_array().unwrap().is_empty());
    for env in [&a, &b] {
        let left: Vec<_> = std::fs::read_dir(env.file_dir("file0"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert!(left.is_empty(), "files left: {left:?}");
    }
}

#[test]
fn a_second_process_for_the_same_service_is_refused_and_the_first_is_undisturbed() {
    each_engine(|_, dir, url| {
        let env = host(dir, url, "a", "", "");
        let _first = serve_up(&env, "a@file0");
        let before = services(&env.config, url)[0].clone();
        let started = Instant::now();
        let mut second = Serve::start(&env.config, url, &env.dir);
        let code = second.wait(Duration::from_secs(10));
        assert!(started.elapsed() < Duration::from_secs(10));
        assert_eq!(code, Some(1), "{}", second.log_text());
        let log = second.log_text();
        let pid = before["pid"].as_i64().unwrap().to_string();
        assert!(
            log.contains("already served by another ember") && log.contains(&pid),
            "names the other process: {log}"
        );
        // The first keeps its row and keeps heartbeating.
        let n = before["report_count"].as_i64().unwrap();
        wait_for("the first to keep beating", Duration::from_secs(10), || {
            let r = services(&env.config, url)[0].clone();
            (r["report_count"].as_i64().unwrap() > n + 1).then_some(r)
        });
        let after = services(&env.config, url)[0].clone();
        assert_eq!(after["pid"], before["pid"]);
        assert_eq!(after["state"], "up");
        assert_eq!(after["stopped"], false);
    });
}

/// Three members of one cluster on shared storage, a flatten slowed by volume_copy_bps_limit.
struct Cluster {
    _root: tempfile::TempDir,
    shared: std::path::PathBuf,
    hosts: Vec<Env>,
    serves: HashMap<String, Serve>,
}

fn cluster(url_root: tempfile::TempDir, url: &str) -> Cluster {
    let shared = url_root.path().join("shared");
    std::fs::create_dir_all(&shared).unwrap();
    let backend = format!(
        "file_dir = \"{}\"\nfile_shared_storage = true\nvolume_copy_bps_limit = 16777216\n",
        shared.display()
    );
    let hosts: Vec<Env> = ["a", "b", "c"]
        .iter()
        .map(|n| host(url_root.path(), url, n, "cluster = \"c1\"", &backend))
        .collect();
    let mut serves = HashMap::new();
    for (h, n) in hosts.iter().zip(["a", "b", "c"]) {
        serves.insert(format!("{n}@file0"), serve_up(h, &format!("{n}@file0")));
    }
    Cluster {
        _root: url_root,
        shared,
        hosts,
        serves,
    }
}

impl Cluster {
    /// A clone of a snapshot with 96 MiB of data: its flatten takes ~6 s at 16 MiB/s.
    fn slow_flatten(&self) -> (String, String) {
        let a = &self.hosts[0];
        let v = a.json(&["volume", "create", "src", "--size", "128M", "--wait"]);
        assert_eq!(
            v["volume"]["host"], "c1@file0",
            "a clustered volume belongs to the cluster"
        );
        let s = a.json(&[
            "volume", "snapshot", "create", "s", "--volume", "src", "--wait",
        ]);
        let snap_file = self.shared.join(format!(
            "snapshot-{}",
            s["snapshot"]["id"].as_str().unwrap()
        ));
        write_at(&snap_file, 0, 96 << 20, 0xA5);
        let c = a.json(&["volume", "create", "c", "--snapshot", "s", "--wait"]);
        let cid = id(&c);
        let f = a.json(&["volume", "flatten", &cid]);
        let jid = f["job_id"].as_str().unwrap().to_string();
        (cid, jid)
    }

    /// Waits until the job runs somewhere with some bytes copied; returns the runner.
    fn runner(&self, jid: &str) -> String {
        wait_for("the flatten to run", Duration::from_secs(30), || {
            let j = &self.hosts[0].job(jid);
            (j["state"] == "running" && j["bytes_done"].as_i64().unwrap() > 0)
                .then(|| j["claimed_by"].as_str().unwrap().to_string())
        })
    }

    fn shared_image(&self, vid: &str) -> std::path::PathBuf {
        self.shared.join(format!("volume-{vid}"))
    }
}

#[test]
fn a_killed_cluster_member_s_flatten_is_taken_over_and_finished_once() {
    let root = tempfile::tempdir().unwrap();
    let Some(url) = pg(root.path()) else { return };
    let mut c = cluster(root, &url);
    let (cid, jid) = c.slow_flatten();
    let runner = c.runner(&jid);
    let killed = Instant::now();
    c.serves.get_mut(&runner).unwrap().signal("KILL");
    let env = &c.hosts[0];
    let done = env.wait_job(&jid, 60);
    let took = killed.elapsed();
    assert_eq!(done["state"], "succeeded", "{done}");
    assert_ne!(done["claimed_by"], runner.as_str(), "a peer finished it");
    assert!(done["claim_token"].as_i64().unwrap() >= 2, "{done}");
    // service_down_time (3 s) + the takeover check (1 s) + the rest of the copy (~6 s), with room.
    assert!(took < Duration::from_secs(40), "took {took:?}");
    let evs = events(env);
    let takeover: Vec<_> = evs
        .iter()
        .filter(|e| e["kind"] == "job_taken_over" && e["message"].as_str().unwrap().contains(&jid))
        .collect();
    assert_eq!(takeover.len(), 1, "{takeover:?}");
    // It names the dead host and the member that took the job over (any live member may
    // then be the one that claims and runs it).
    let msg = takeover[0]["message"].as_str().unwrap();
    let by = msg
        .split("taken over by ")
        .nth(1)
        .and_then(|r| r.split(' ').next())
        .unwrap();
    assert!(
        msg.contains(&format!("from {runner}")) && by != runner,
        "{msg}"
    );
    let succeeded = evs
        .iter()
        .filter(|e| e["kind"] == "job_succeeded" && e["message"].as_str().unwrap().contains(&jid))
        .count();
    assert_eq!(succeeded, 1, "finished once");
    let v = env.volume(&cid);
    assert_eq!(v["status"], "available");
    assert!(v["parent"].is_null(), "flattened: {v}");
    assert_eq!(read_at(&c.shared_image(&cid), 0, 4096), vec![0xA5; 4096]);
    assert!(
        !c.shared_image(&cid)
            .with_file_name(format!("volume-{cid}.parent"))
            .exists()
    );
}

#[test]
fn a_frozen_member_that_wakes_up_is_fenced_and_writes_nothing_for_the_job() {
    let root = tempfile::tempdir().unwrap();
    let Some(url) = pg(root.path()) else { return };
    let mut c = cluster(root, &url);
    let (cid, jid) = c.slow_flatten();
    let runner = c.runner(&jid);
    let frozen = c.serves.get_mut(&runner).unwrap();
    frozen.signal("STOP");
    let env = &c.hosts[0];
    // A peer takes it over once the frozen one has been silent for service_down_time.
    let taken = wait_for("a takeover", Duration::from_secs(30), || {
        let j = env.job(&jid);
        (j["claim_token"].as_i64().unwrap() >= 2).then_some(j)
    });
    assert_ne!(taken["claimed_by"], runner.as_str());
    let done = env.wait_job(&jid, 60);
    assert_eq!(done["state"], "succeeded");
    let frozen = c.serves.get_mut(&runner).unwrap();
    frozen.signal("CONT");
    // Woken: its progress write is refused, it stops the copy and writes nothing more.
    wait_for(
        "the woken worker to notice",
        Duration::from_secs(15),
        || {
            events(env)
                .iter()
                .any(|e| e["kind"] == "job_lease_lost" && e["host"] == runner.as_str())
                .then_some(())
        },
    );
    let after = env.job(&jid);
    assert_eq!(
        after["state"], "succeeded",
        "not flipped by the woken worker"
    );
    assert_eq!(after["claimed_by"], done["claimed_by"]);
    assert_eq!(env.volume(&cid)["status"], "available");
    let finishes = events(env)
        .iter()
        .filter(|e| {
            matches!(
                e["kind"].as_str(),
                Some("job_succeeded" | "job_failed" | "job_cancelled" | "job_requeued")
            ) && e["message"].as_str().unwrap().contains(&jid)
        })
        .count();
    assert_eq!(finishes, 1, "one end recorded, by the peer");
    // And the woken host is a live member again.
    env.wait_up(&runner, 10);
}

#[test]
fn a_dead_host_outside_a_cluster_keeps_its_jobs_until_it_is_removed() {
    let root = tempfile::tempdir().unwrap();
    let Some(url) = pg(root.path()) else { return };
    let a = host(root.path(), &url, "a", "", "");
    let b = host(root.path(), &url, "b", "", "");
    let mut sa = serve_up(&a, "a@file0");
    let _sb = serve_up(&b, "b@file0");
    let v = b.json(&[
        "volume",
        "create",
        "va",
        "--size",
        "8M",
        "--backend",
        "a@file0",
        "--wait",
    ]);
    assert_eq!(v["volume"]["host"], "a@file0");
    let vid = id(&v);
    // Refused while a is up.
    let err = b.fails(&["service", "remove", "a@file0"], 1);
    assert!(err.contains("a@file0 is up"), "{err}");

    sa.signal("KILL");
    sa.wait(Duration::from_secs(10));
    wait_for("a down", Duration::from_secs(15), || {
        services(&b.config, &b.url)
            .iter()
            .any(|s| s["host"] == "a@file0" && s["state"] == "down")
            .then_some(())
    });
    let ext = b.json(&["volume", "extend", &vid, "--size", "16M"]);
    let jid = ext["job_id"].as_str().unwrap().to_string();
    std::thread::sleep(Duration::from_secs(4));
    let j = &b.job(&jid);
    assert_eq!(j["state"], "queued", "b never runs a's job: {j}");
    let waiting = j["waiting"].as_str().unwrap_or_default();
    assert!(
        waiting.contains("waiting for a@file0 to return")
            && waiting.contains("ember service remove a@file0"),
        "{j}"
    );
    let doctor = b.run(&["doctor", "--json"]);
    let text = stdout(&doctor);
    assert!(
        text.contains("waiting for a@file0 to return")
            && text.contains("ember service remove HOST"),
        "{text}"
    );

    let out = b.json(&["service", "remove", "a@file0"]);
    assert_eq!(out["failed_jobs"].as_array().unwrap().len(), 1, "{out}");
    let j = &b.job(&jid);
    assert_eq!(j["state"], "failed");
    assert!(
        j["error"].as_str().unwrap().contains("was removed by"),
        "{j}"
    );
    assert_eq!(b.volume(&vid)["status"], "error_extending");
    assert!(
        !services(&b.config, &b.url)
            .iter()
            .any(|s| s["host"] == "a@file0"),
        "row gone"
    );
}

#[test]
fn a_disabled_service_claims_nothing_and_gets_no_new_volume() {
    let root = tempfile::tempdir().unwrap();
    let Some(url) = pg(root.path()) else { return };
    let a = host(root.path(), &url, "a", "", "");
    let b = host(root.path(), &url, "b", "", "");
    let _sa = serve_up(&a, "a@file0");
    let _sb = serve_up(&b, "b@file0");
    let out = a.json(&["service", "disable", "b@file0", "--reason", "disk swap"]);
    assert_eq!(out["disabled"], true);
    let list = services(&a.config, &a.url);
    let brow = list.iter().find(|s| s["host"] == "b@file0").unwrap();
    assert_eq!(brow["status"], "disabled");
    assert_eq!(brow["disabled_reason"], "disk swap");
    for i in 0..4 {
        let v = b.json(&[
            "volume",
            "create",
            &format!("n{i}"),
            "--size",
            "4M",
            "--backend",
            "file0",
            "--wait",
        ]);
        assert_eq!(
            v["volume"]["host"], "a@file0",
            "never placed on the disabled b: {v}"
        );
    }
    // A job that only b may run waits while b is disabled (b heartbeats: it is up).
    let vb = a.json(&[
        "volume",
        "create",
        "vb",
        "--size",
        "4M",
        "--backend",
        "b@file0",
    ]);
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(&a.job(vb["job_id"].as_str().unwrap())["state"], "queued");
    a.json(&["service", "enable", "b@file0"]);
    assert_eq!(
        a.wait_job(vb["job_id"].as_str().unwrap(), 30)["state"],
        "succeeded"
    );
    let kinds: Vec<String> = events(&a)
        .iter()
        .map(|e| e["kind"].as_str().unwrap().to_string())
        .collect();
    assert!(
        kinds.contains(&"service_disabled".into()) && kinds.contains(&"service_enabled".into())
    );
}

#[test]
fn sigterm_drains_a_running_job_before_stopping() {
    let root = tempfile::tempdir().unwrap();
    let Some(url) = pg(root.path()) else { return };
    let a = host(
        root.path(),
        &url,
        "a",
        "drain_timeout = 20",
        "volume_copy_bps_limit = 16777216",
    );
    let mut sa = serve_up(&a, "a@file0");
    a.json(&["volume", "create", "src", "--size", "64M", "--wait"]);
    let s = a.json(&[
        "volume", "snapshot", "create", "s", "--volume", "src", "--wait",
    ]);
    let snap_file = a.file_dir("file0").join(format!(
        "snapshot-{}",
        s["snapshot"]["id"].as_str().unwrap()
    ));
    write_at(&snap_file, 0, 48 << 20, 0x11);
    let c = a.json(&["volume", "create", "c", "--snapshot", "s", "--wait"]);
    let f = a.json(&["volume", "flatten", &id(&c)]);
    let jid = f["job_id"].as_str().unwrap().to_string();
    wait_for("the flatten to run", Duration::from_secs(20), || {
        (&a.job(&jid)["state"] == "running").then_some(())
    });
    sa.signal("TERM");
    assert_eq!(sa.wait(Duration::from_secs(30)), Some(0));
    // ~3 s of copying left: it finished inside the 20 s drain instead of being handed back.
    assert_eq!(&a.job(&jid)["state"], "succeeded", "{}", sa.log_text());
    assert!(sa.log_text().contains("draining"), "{}", sa.log_text());
}

#[test]
fn placement_and_config_check_follow_cinder() {
    let root = tempfile::tempdir().unwrap();
    // A clustered file backend on local storage is refused, with the reason and the fix.
    let local = host(root.path(), "sqlite::memory:", "x", "cluster = \"c1\"", "");
    let out = local.run(&["config", "check"]);
    let text = format!("{}{}", stdout(&out), stderr(&out));
    assert!(
        text.contains("cannot be clustered") && text.contains("file_shared_storage = true"),
        "{text}"
    );
    let Some(url) = pg(root.path()) else { return };
    // PostgreSQL notices never reach the terminal.
    let a = host(root.path(), &url, "a", "", "");
    for _ in 0..2 {
        let o = a.run(&["volume", "list"]);
        assert!(o.status.success());
        assert!(!stderr(&o).contains("already exists"), "{}", stderr(&o));
    }
    // An unknown HOST@NAME is refused by name.
    let err = a.fails(
        &[
            "volume",
            "create",
            "x",
            "--size",
            "1M",
            "--backend",
            "zz@file0",
        ],
        1,
    );
    assert!(err.contains("zz@file0"), "{err}");
}

/// Two hosts submit and claim at the same moment, 500 rounds, on one volume: the database
/// never lets two unfinished jobs exist for it, so never two run.
#[test]
fn racing_submissions_from_two_hosts_never_run_two_jobs_on_one_volume() {
    use ember::config;
    use ember::db::Db;
    use ember::service::jobs::{Request, enqueue};

    let root = tempfile::tempdir().unwrap();
    let Some(url) = pg(root.path()) else { return };
    let a = host(
        root.path(),
        &url,
        "a",
        "cluster = \"c1\"",
        "file_shared_storage = true",
    );
    let b = host(
        root.path(),
        &url,
        "b",
        "cluster = \"c1\"",
        "file_shared_storage = true",
    );
    let (ca, cb) = (
        config::load(&a.config).unwrap(),
        config::load(&b.config).unwrap(),
    );
    let rounds: usize = std::env::var("EMBER_RACE_ROUNDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(500);
    tokio::runtime::Runtime::new().unwrap().block_on(async {
        let (da, db) = (
            Db::connect(&url).await.unwrap(),
            Db::connect(&url).await.unwrap(),
        );
        // The volume, made available directly (no service runs in this test).
        let v = enqueue(
            &da,
            &ca,
            Request::Create {
                multiattach: false,
                name: "v".into(),
                size: Some(1 << 30),
                backend: Some("file0".into()),
                snapshot: None,
                source: None,
            },
            "test",
        )
        .await
        .unwrap();
        let vid = v.volume.unwrap().id;
        let settle = |d: &Db, j: &ember::db::JobRow| {
            let (d, j) = (d.clone(), j.clone());
            async move {
                assert!(
                    d.finish_job(&j.id, j.claim_token, ember::db::JobState::Succeeded, None)
                        .await
                        .unwrap()
                );
                d.set_volume_status(&j.target_id, &[], ember::db::Status::Available, None)
                    .await
                    .unwrap();
            }
        };
        let first = da
            .claim_job(&["c1@file0"], "a@file0")
            .await
            .unwrap()
            .unwrap();
        settle(&da, &first).await;
        let mut written = 0;
        for round in 0..rounds {
            let req = |i: usize| match (round + i) % 4 {
                0 => Request::Flatten {
                    volume: vid.clone(),
                },
                1 => Request::Extend {
                    volume: vid.clone(),
                    size: (2 << 30) + round as u64,
                    force: false,
                },
                2 => Request::SnapshotCreate {
                    name: format!("s{round}-{i}"),
                    volume: vid.clone(),
                },
                _ => Request::Delete {
                    volume: vid.clone(),
                    cascade: true,
                    force: false,
                },
            };
            let (ra, rb) = tokio::join!(
                enqueue(&da, &ca, req(0), "host-a"),
                enqueue(&db, &cb, req(1), "host-b")
            );
            let ok = [ra.is_ok(), rb.is_ok()].iter().filter(|x| **x).count();
            // A snapshot job targets its new snapshot row, but works on the volume.
            let on_volume: Vec<_> = sqlx::query_scalar::<_, String>(
                "SELECT id FROM jobs WHERE volume_id = $1 AND state IN ('queued', 'running')",
            )
            .bind(&vid)
            .fetch_all(&da.pool)
            .await
            .unwrap();
            assert!(
                on_volume.len() <= 1,
                "round {round}: {} unfinished jobs on the volume",
                on_volume.len()
            );
            written += ok;
            // Both claim at once: at most one job per target may be running.
            let (x, y) = tokio::join!(
                da.claim_job(&["c1@file0"], "a@file0"),
                db.claim_job(&["c1@file0"], "b@file0")
            );
            let claimed: Vec<_> = [x.unwrap(), y.unwrap()].into_iter().flatten().collect();
            let mut targets: Vec<&str> = claimed
                .iter()
                .map(|j| j.volume_id.as_deref().unwrap())
                .collect();
            targets.sort_unstable();
            targets.dedup();
            assert_eq!(
                targets.len(),
                claimed.len(),
                "round {round}: two running jobs on one target"
            );
            for j in &claimed {
                if j.kind == ember::db::JobKind::Delete {
                    // Keep the volume: put it back instead of deleting it.
                    assert!(
                        da.finish_job(
                            &j.id,
                            j.claim_token,
                            ember::db::JobState::Cancelled,
                            Some("test")
                        )
                        .await
                        .unwrap()
                    );
                    da.set_volume_status(&vid, &[], ember::db::Status::Available, None)
                        .await
                        .unwrap();
                } else {
                    settle(&da, j).await;
                }
            }
            // Anything still queued (claimed next round) stays one per target.
        }
        assert!(
            written >= rounds,
            "most submissions went through: {written}"
        );
        // A stale worker's writes are refused once the claim moved.
        // Whatever is still queued from the last round goes first.
        while let Some(j) = da.claim_job(&["c1@file0"], "a@file0").await.unwrap() {
            settle(&da, &j).await;
        }
        da.set_volume_status(&vid, &[], ember::db::Status::Available, None)
            .await
            .unwrap();
        enqueue(
            &da,
            &ca,
            Request::Extend {
                volume: vid.clone(),
                size: 10 << 30,
                force: false,
            },
            "t",
        )
        .await
        .unwrap();
        {
            let c = da
                .claim_job(&["c1@file0"], "a@file0")
                .await
                .unwrap()
                .unwrap();
            assert!(da.take_over_job(&c.id, c.claim_token).await.unwrap());
            assert_eq!(
                da.job_progress(&c.id, c.claim_token, 1, 2).await.unwrap(),
                ember::db::jobs::Lease::Lost
            );
            assert!(
                !da.finish_job(&c.id, c.claim_token, ember::db::JobState::Succeeded, None)
                    .await
                    .unwrap()
            );
            let fenced = da.fenced(&c.id, c.claim_token);
            assert!(matches!(
                fenced
                    .set_volume_status(&vid, &[], ember::db::Status::Error, Some("stale"))
                    .await,
                Err(ember::db::DbError::Fenced { .. })
            ));
            assert_ne!(
                da.get_volume(&vid).await.unwrap().unwrap().status,
                ember::db::Status::Error
            );
        }
    });
}

/// One member reaches PostgreSQL through a proxy the test cuts. A cut shorter than
/// `service_down_time` costs nothing: the job finishes on the same claim. A longer one hands
/// the job to the peer; when the link returns, the cut-off member writes nothing for it.
#[test]
fn a_member_cut_off_from_the_database_keeps_a_short_outage_and_loses_a_long_one() {
    let root = tempfile::tempdir().unwrap();
    let Some(url) = pg(root.path()) else { return };
    let proxy = proxy::Proxy::start(proxy::Proxy::upstream_of(&url));
    let shared = root.path().join("shared");
    std::fs::create_dir_all(&shared).unwrap();
    let text = |name: &str| {
        format!(
            "host = \"{name}\"\ncluster = \"c1\"\nreport_interval = 1\nservice_down_time = 8\n\
             periodic_interval = 1\nperiodic_fuzzy_delay = 0\n[backends.file0]\nvolume_driver = \"file\"\n\
             file_dir = \"{}\"\nfile_shared_storage = true\nvolume_copy_bps_limit = 16777216\n",
            shared.display()
        )
    };
    let mk = |name: &str, url: &str| {
        let d = root.path().join(name);
        std::fs::create_dir_all(&d).unwrap();
        Env::with_text(&d, url, &text(name))
    };
    let a = mk("a", &proxy.url(&url));
    let b = mk("b", &url);
    let _sa = serve_up(&a, "a@file0");
    let _sb = serve_up(&b, "b@file0");
    b.json(&["volume", "create", "src", "--size", "128M", "--wait"]);
    let s = b.json(&[
        "volume", "snapshot", "create", "s", "--volume", "src", "--wait",
    ]);
    write_at(
        &shared.join(format!(
            "snapshot-{}",
            s["snapshot"]["id"].as_str().unwrap()
        )),
        0,
        96 << 20,
        0x3C,
    );
    // Starts a ~6 s flatten of a new clone on a (b disabled until a has claimed it).
    let flatten_on_a = |name: &str| -> String {
        let c = b.json(&["volume", "create", name, "--snapshot", "s", "--wait"]);
        b.json(&[
            "service",
            "disable",
            "b@file0",
            "--reason",
            "test: let a claim",
        ]);
        std::thread::sleep(Duration::from_millis(1500)); // b reads it at its next heartbeat
        let j = b.json(&["volume", "flatten", &id(&c)])["job_id"]
            .as_str()
            .unwrap()
            .to_string();
        wait_for("a to run the flatten", Duration::from_secs(20), || {
            let r = &b.job(&j);
            (r["state"] == "running" && r["bytes_done"].as_i64().unwrap() > 0).then_some(())
        });
        assert_eq!(&b.job(&j)["claimed_by"], "a@file0");
        b.json(&["service", "enable", "b@file0"]);
        j
    };

    // 1. A 3 s outage (service_down_time is 8 s): nothing is lost, nothing taken over.
    let j1 = flatten_on_a("c1");
    proxy.cut(true);
    std::thread::sleep(Duration::from_secs(3));
    proxy.cut(false);
    let done = b.wait_job(&j1, 60);
    assert_eq!(done["state"], "succeeded", "{done}");
    assert_eq!(done["claimed_by"], "a@file0");
    assert_eq!(done["claim_token"], 1, "no takeover for a short outage");
    assert!(events(&b).iter().all(|e| e["kind"] != "job_taken_over"));

    // 2. Cut for longer than service_down_time: b takes the job over and finishes it.
    let j2 = flatten_on_a("c2");
    proxy.cut(true);
    let done = b.wait_job(&j2, 60);
    assert_eq!(done["state"], "succeeded", "{done}");
    assert_eq!(done["claimed_by"], "b@file0");
    proxy.cut(false);
    // The link is back: a learns it lost the job and writes nothing more for it.
    wait_for(
        "a to notice its lost claim",
        Duration::from_secs(20),
        || {
            events(&b)
                .iter()
                .any(|e| e["kind"] == "job_lease_lost" && e["host"] == "a@file0")
                .then_some(())
        },
    );
    let after = &b.job(&j2);
    assert_eq!(after["state"], "succeeded");
    assert_eq!(after["claimed_by"], "b@file0");
    b.wait_up("a@file0", 15);
}

/// `backend list` aggregates every service of a backend, as the console does: from host a,
/// a clustered backend whose only live member is b is up. It read a's own row alone (none
/// here: a never ran), so it said down while the console said up.
#[test]
fn backend_list_and_the_console_agree_on_a_clustered_backend() {
    let root = tempfile::tempdir().unwrap();
    let Some(url) = pg(root.path()) else { return };
    let shared = root.path().join("shared");
    let backend = format!(
        "file_dir = \"{}\"\nfile_shared_storage = true\n",
        shared.display()
    );
    let a = host(root.path(), &url, "a", "cluster = \"c1\"", &backend);
    let b = host(root.path(), &url, "b", "cluster = \"c1\"", &backend);
    let _b = serve_up(&b, "b@file0");
    let list = a.json(&["backend", "list"]);
    let file0 = list
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["name"] == "file0")
        .unwrap()
        .clone();
    assert_eq!(file0["state"], "up", "{file0}");
    assert_eq!(file0["services_up"], 1, "{file0}");
    assert!(file0["total_bytes"].as_i64().unwrap_or(0) > 0, "{file0}");
    let text = stdout(&a.run(&["backend", "list"]));
    assert!(text.contains("1 up, 0 down"), "{text}");
}
