//! Crashes and concurrency: `ember serve` killed with SIGKILL mid-job, two services sharing
//! one PostgreSQL database, and heartbeats while 32 jobs block their threads.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::*;
use ember::config;
use ember::db::Db;
use ember::service::jobs::{Request, enqueue};

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Runtime::new().unwrap()
}

fn job_state(env: &Env, id: &str) -> String {
    env.json(&["job", "show", id])["state"]
        .as_str()
        .unwrap()
        .to_string()
}

fn wait_job(env: &Env, id: &str, secs: u64) -> String {
    wait_for(
        &format!("job {id} to end"),
        Duration::from_secs(secs),
        || {
            let s = job_state(env, id);
            matches!(s.as_str(), "succeeded" | "failed" | "cancelled").then_some(s)
        },
    )
}

#[test]
fn sigkill_in_the_middle_of_a_flatten_and_a_delete_then_restart() {
    each_engine(|_, dir, url| {
        // One slot, 8 MiB/s: the flatten runs for seconds, the delete waits behind it.
        let env = Env::new(
            dir,
            url,
            "host = \"node-a\"\n[backends.file0]\nvolume_driver = \"file\"\nvolume_copy_bps_limit = 8388608\nbackend_native_threads_pool_size = 1\n",
        );
        let mut serve = env.serve();
        env.json(&["volume", "create", "src", "--size", "256M", "--wait"]);
        let s = env.json(&[
            "volume", "snapshot", "create", "s", "--volume", "src", "--wait",
        ]);
        let snap_file = env.file_dir("file0").join(format!(
            "snapshot-{}",
            s["snapshot"]["id"].as_str().unwrap()
        ));
        write_at(&snap_file, 0, 48 << 20, 0x5A);
        let c = env.json(&["volume", "create", "c", "--snapshot", "s", "--wait"]);
        let c_id = c["volume"]["id"].as_str().unwrap().to_string();
        let d = env.json(&["volume", "create", "d", "--size", "64M", "--wait"]);
        let d_id = d["volume"]["id"].as_str().unwrap().to_string();

        let flatten = env.json(&["volume", "flatten", "c"])["job_id"]
            .as_str()
            .unwrap()
            .to_string();
        wait_for(
            "the flatten to be half-way",
            Duration::from_secs(20),
            || {
                (env.json(&["job", "show", &flatten])["bytes_done"]
                    .as_i64()
                    .unwrap()
                    >= 8 << 20)
                    .then_some(())
            },
        );
        let delete = env.json(&["volume", "delete", "d"])["job_id"]
            .as_str()
            .unwrap()
            .to_string();
        assert_eq!(env.volume(&d_id)["status"], "deleting");
        serve.signal("KILL");
        serve.wait(Duration::from_secs(10));
        assert_eq!(job_state(&env, &flatten), "running", "killed mid-flatten");

        // Restart: the flatten is handed back and finishes (copying only what is left), then
        // the delete runs. Nothing stays stuck.
        let _again = env.serve();
        assert_eq!(wait_job(&env, &flatten, 60), "succeeded");
        assert_eq!(wait_job(&env, &delete, 60), "succeeded");
        let c = env.volume(&c_id);
        assert_eq!(
            (c["status"].as_str(), c["parent"].is_null()),
            (Some("available"), true)
        );
        assert!(
            read_at(&env.image("file0", &c_id), 0, 48 << 20)
                .iter()
                .all(|b| *b == 0x5A)
        );
        assert!(
            !env.file_dir("file0")
                .join(format!("volume-{c_id}.parent"))
                .exists()
        );
        assert!(!env.image("file0", &d_id).exists());
        let events = env.json(&["events", "--limit", "500"]);
        assert!(
            events
                .as_array()
                .unwrap()
                .iter()
                .any(|e| e["kind"] == "job_requeued" && e["target"] == c_id.as_str()),
            "{events}"
        );
        // Database and files agree.
        let r = env.run(&["volume", "reconcile", "file0"]);
        assert!(r.status.success(), "{}", stdout(&r));
    });
}

#[test]
fn a_delete_left_running_by_a_dead_service_is_finished_on_restart() {
    each_engine(|_, dir, url| {
        let env = Env::new(
            dir,
            url,
            "host = \"node-a\"\n[backends.file0]\nvolume_driver = \"file\"\n",
        );
        let serve = env.serve();
        let v = env.json(&["volume", "create", "v", "--size", "64M", "--wait"]);
        let v_id = v["volume"]["id"].as_str().unwrap().to_string();
        drop(serve); // SIGKILL
        // The state a SIGKILL during a delete leaves: the job claimed and running, the volume
        // `deleting`, the image still on disk. (A file delete is too quick to kill mid-way.)
        let cfg = config::load(&env.config).unwrap();
        rt().block_on(async {
            let db = Db::connect(url).await.unwrap();
            enqueue(
                &db,
                &cfg,
                Request::Delete {
                    volume: v_id.clone(),
                    cascade: false,
                    force: false,
                },
                "test",
            )
            .await
            .unwrap();
            let claimed = db
                .claim_job(&["node-a@file0"], "node-a@file0")
                .await
                .unwrap()
                .unwrap();
            assert_eq!(claimed.state, ember::db::JobState::Running);
            // And a volume left `creating` with no job at all.
            db.insert_volume(&ember::db::volumes::NewVolume {
                id: "99999999-9999-9999-9999-999999999999",
                name: "orphan-create",
                size_bytes: 1 << 20,
                status: ember::db::Status::Creating,
                backend: "file0",
                host: "node-a@file0",
                source_snapshot_id: None,
                source_volume_id: None,
                clone_depth: 0,
                multiattach: false,
            })
            .await
            .unwrap();
            db.close().await;
        });
        assert!(env.image("file0", &v_id).exists());
        let _again = env.serve();
        wait_for("the delete to finish", Duration::from_secs(30), || {
            (env.run(&["volume", "show", &v_id]).status.code() == Some(1)).then_some(())
        });
        assert!(!env.image("file0", &v_id).exists());
        let o = env.volume("orphan-create");
        assert_eq!(
            o["status"], "error",
            "creating with no job left: error, not stuck"
        );
    });
}

#[test]
fn two_cluster_members_on_one_postgres_run_each_of_200_jobs_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let Some(url) = fresh_db(Engine::Postgres, dir.path()) else {
        return;
    };
    let backend = "[backends.fake0]\nvolume_driver = \"fake\"\nfake_latency_ms = 50\nfake_blocking = true\nbackend_native_threads_pool_size = 4\n";
    let a_dir = dir.path().join("a");
    let b_dir = dir.path().join("b");
    std::fs::create_dir_all(&a_dir).unwrap();
    std::fs::create_dir_all(&b_dir).unwrap();
    // One cluster: its volumes belong to c1@fake0, and either member may run their jobs.
    let a = Env::new(
        &a_dir,
        &url,
        &format!("host = \"node-a\"\ncluster = \"c1\"\n{backend}"),
    );
    let b = Env::new(
        &b_dir,
        &url,
        &format!("host = \"node-b\"\ncluster = \"c1\"\n{backend}"),
    );
    let cfg = config::load(&a.config).unwrap();
    let ids: Vec<String> = rt().block_on(async {
        let db = Db::connect(&url).await.unwrap();
        let mut ids = vec![];
        for i in 0..200 {
            let req = Request::Create {
                multiattach: false,
                name: format!("v{i}"),
                size: Some(1 << 30),
                backend: None,
                snapshot: None,
                source: None,
            };
            ids.push(enqueue(&db, &cfg, req, "test").await.unwrap().job_id);
        }
        db.close().await;
        ids
    });
    // Both start on a full queue: they race for every job.
    // 50 ms per job on 4 slots: one service alone would need 2.5 s, so both get work.
    let _sa = Serve::start(&a.config, &a.url, &a.dir);
    let _sb = Serve::start(&b.config, &b.url, &b.dir);
    wait_for("200 jobs to finish", Duration::from_secs(120), || {
        let jobs = a.json(&["job", "list", "--limit", "1000"]);
        jobs.as_array()
            .unwrap()
            .iter()
            .all(|j| j["state"] == "succeeded")
            .then_some(())
    });
    let jobs = a.json(&["job", "list", "--limit", "1000"]);
    let mut by_host: HashMap<String, usize> = HashMap::new();
    for j in jobs.as_array().unwrap() {
        *by_host
            .entry(j["claimed_by"].as_str().unwrap().to_string())
            .or_default() += 1;
    }
    assert_eq!(by_host.values().sum::<usize>(), 200);
    assert!(
        by_host.contains_key("node-a@fake0") && by_host.contains_key("node-b@fake0"),
        "both services took jobs: {by_host:?}"
    );
    // Each job started exactly once: one job_started event per job.
    let events = a.json(&["events", "--limit", "5000"]);
    let mut starts: HashMap<String, usize> = HashMap::new();
    for e in events
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["kind"] == "job_started")
    {
        let msg = e["message"].as_str().unwrap();
        let id = ids
            .iter()
            .find(|id| msg.contains(id.as_str()))
            .unwrap_or_else(|| panic!("unknown job in {msg}"));
        *starts.entry(id.clone()).or_default() += 1;
    }
    assert_eq!(starts.len(), 200, "every job started");
    assert!(
        starts.values().all(|n| *n == 1),
        "a job ran twice: {:?}",
        starts.iter().filter(|(_, n)| **n > 1).collect::<Vec<_>>()
    );
    let vols = a.json(&["volume", "list"]);
    assert_eq!(
        vols.as_array()
            .unwrap()
            .iter()
            .filter(|v| v["status"] == "available")
            .count(),
        200
    );
}

/// 32 jobs at once, each call blocking its thread 1 s (as a librbd call does): heartbeats go
/// on, every one under 500 ms late (a blocked reactor would be >= 1 s late, or miss beats).
#[test]
fn heartbeats_stay_on_time_while_32_jobs_block() {
    each_engine(|_, dir, url| {
        let env = Env::new(
            dir,
            url,
            "[backends.fake0]\nvolume_driver = \"fake\"\nfake_latency_ms = 1000\nfake_blocking = true\nbackend_native_threads_pool_size = 32\n",
        );
        let _serve = env.serve();
        let cfg = config::load(&env.config).unwrap();
        let started = std::time::Instant::now();
        rt().block_on(async {
            let db = Db::connect(url).await.unwrap();
            for round in ["create", "extend", "delete"] {
                let mut jobs = vec![];
                for i in 0..32 {
                    let req = match round {
                        "create" => Request::Create {
                            multiattach: false,
                            name: format!("v{i}"),
                            size: Some(1 << 30),
                            backend: None,
                            snapshot: None,
                            source: None,
                        },
                        "extend" => Request::Extend {
                            volume: format!("v{i}"),
                            size: 2 << 30,
                            force: false,
                        },
                        _ => Request::Delete {
                            volume: format!("v{i}"),
                            cascade: false,
                            force: false,
                        },
                    };
                    jobs.push(enqueue(&db, &cfg, req, "test").await.unwrap().job_id);
                }
                for id in jobs {
                    loop {
                        let j = db.get_job(&id).await.unwrap().unwrap();
                        if !j.state.is_active() {
                            assert_eq!(j.state, ember::db::JobState::Succeeded, "{j:?}");
                            break;
                        }
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                }
            }
            db.close().await;
        });
        let elapsed = started.elapsed();
        let list = services(&env.config, &env.url);
        let s = service(&list, "fake0").unwrap();
        let lat = &s["lateness_ms"];
        assert!(
            lat["max"].as_f64().unwrap() < 500.0,
            "a heartbeat was {} ms late: {s}",
            lat["max"]
        );
        assert!(
            elapsed >= Duration::from_secs(3),
            "the jobs really blocked ({elapsed:?})"
        );
        // Beats kept coming during the blocking: at least one per second of it, minus one.
        assert!(
            lat["count"].as_u64().unwrap() >= elapsed.as_secs().saturating_sub(1),
            "{s} over {elapsed:?}"
        );
    });
}
