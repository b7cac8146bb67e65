//! A cluster of three hosts serving one rbd backend on a throwaway Ceph cluster, sharing one
//! PostgreSQL: a member killed mid-flatten is taken over and its client fenced; a member frozen
//! past `service_down_time` (SIGSTOP) is fenced on the OSD blocklist, and once woken writes
//! nothing for the job it lost and comes back with a new librados client.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use common::*;

fn events_about(env: &Env, kind: &str, needle: &str) -> Vec<serde_json::Value> {
    env.json(&["events", "--limit", "5000"])
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["kind"] == kind && e["message"].as_str().unwrap().contains(needle))
        .cloned()
        .collect()
}

fn service_row(env: &Env, host: &str) -> serde_json::Value {
    services(&env.config, &env.url)
        .into_iter()
        .find(|s| s["host"] == host)
        .unwrap()
}

/// Starts a flatten of a fresh 1 GiB clone of `snap`; returns (volume id, job id, runner).
fn start_flatten(env: &Env, name: &str, snap: &str) -> (String, String, String) {
    let c = env.json(&["volume", "create", name, "--snapshot", snap, "--wait"]);
    let vid = c["volume"]["id"].as_str().unwrap().to_string();
    let jid = env.json(&["volume", "flatten", &vid])["job_id"]
        .as_str()
        .unwrap()
        .to_string();
    let runner = wait_for("the flatten to run", Duration::from_secs(30), || {
        let j = env.job(&jid);
        (j["state"] == "running" && j["bytes_done"].as_i64().unwrap() > 0)
            .then(|| j["claimed_by"].as_str().unwrap().to_string())
    });
    (vid, jid, runner)
}

#[test]
fn rbd_cluster_members_take_over_a_killed_or_frozen_member_s_flatten_and_fence_it() {
    let root = tempfile::tempdir().unwrap();
    let Some(url) = fresh_db(Engine::Postgres, root.path()) else {
        return;
    };
    let Some(ceph) = Ceph::start(false) else {
        return;
    };
    // 128 MiB/s: a 1 GiB flatten takes about 8 s.
    let backend = ceph.backend("rbd0", "volume_copy_bps_limit = 134217728");
    let hosts: Vec<Env> = ["a", "b", "c"]
        .iter()
        .map(|n| {
            let d = root.path().join(n);
            std::fs::create_dir_all(&d).unwrap();
            Env::new(
                &d,
                &url,
                &format!("host = \"{n}\"\ncluster = \"c1\"\n{backend}"),
            )
        })
        .collect();
    let mut serves: HashMap<String, Serve> = HashMap::new();
    for (h, n) in hosts.iter().zip(["a", "b", "c"]) {
        serves.insert(format!("{n}@rbd0"), Serve::start(&h.config, &h.url, &h.dir));
    }
    let env = &hosts[0];
    wait_for("three members up", Duration::from_secs(60), || {
        let l = services(&env.config, &env.url);
        (l.iter()
            .filter(|s| s["state"] == "up" && !s["client_address"].is_null())
            .count()
            == 3)
            .then_some(())
    });
    // The doctor checks that the client may fence a peer (profile rbd may).
    let fencing = |e: &Env| -> serde_json::Value {
        let o = e.run(&["doctor", "--json", "--backend", "rbd0"]);
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        v["checks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["id"] == "rbd0.fencing")
            .cloned()
            .unwrap_or_else(|| panic!("no fencing check: {v}"))
    };
    assert_eq!(fencing(env)["status"], "ok", "{}", fencing(env));
    // A client without the `osd blocklist` capability is told what to grant.
    ceph.ceph(&[
        "auth",
        "get-or-create",
        "client.nofence",
        "mon",
        "allow r",
        "osd",
        "profile rbd pool=volumes",
        "-o",
        ceph.keyring("nofence").to_str().unwrap(),
    ]);
    let d = root.path().join("nofence");
    std::fs::create_dir_all(&d).unwrap();
    let nofence = Env::new(
        &d,
        &url,
        &format!(
            "host = \"x\"\ncluster = \"c1\"\n{}",
            backend.replace("rbd_user = \"cinder\"", "rbd_user = \"nofence\"")
        ),
    );
    let f = fencing(&nofence);
    assert_eq!(f["status"], "fail", "{f}");
    assert!(
        f["fix"]
            .as_str()
            .unwrap()
            .contains("ceph auth caps client.nofence"),
        "{f}"
    );

    let p = env.json(&["volume", "create", "parent", "--size", "1G", "--wait"]);
    assert_eq!(p["volume"]["host"], "c1@rbd0");
    let pid = p["volume"]["id"].as_str().unwrap().to_string();
    ceph.fill(&format!("volume-{pid}"), 256);
    env.json(&[
        "volume", "snapshot", "create", "s", "--volume", "parent", "--wait",
    ]);

    // 1. kill -9 of the member running the flatten: a peer fences it and finishes the job once.
    let (v1, j1, runner1) = start_flatten(env, "c1", "s");
    let killed = Instant::now();
    serves.get_mut(&runner1).unwrap().signal("KILL");
    let done = env.wait_job(&j1, 90);
    eprintln!(
        "kill -9 to flatten done on a peer: {:.1} s",
        killed.elapsed().as_secs_f64()
    );
    assert_eq!(done["state"], "succeeded", "{done}");
    assert_ne!(done["claimed_by"], runner1.as_str());
    let taken = events_about(env, "job_taken_over", &j1);
    assert_eq!(taken.len(), 1, "{taken:?}");
    let msg = taken[0]["message"].as_str().unwrap();
    assert!(
        msg.contains(&runner1) && msg.contains("blocklisted"),
        "{msg}"
    );
    assert_eq!(
        events_about(env, "job_succeeded", &j1).len(),
        1,
        "finished once"
    );
    let info = ceph.info(&format!("volume-{v1}"));
    assert!(info["parent"].is_null(), "flattened: {info}");

    // 2. SIGSTOP of the member running the next flatten, past service_down_time.
    let (v2, j2, runner2) = start_flatten(env, "c2", "s");
    let old_addr = service_row(env, &runner2)["client_address"]
        .as_str()
        .unwrap()
        .to_string();
    // A throttled flatten paces on a librados client of its own, recorded in the job before
    // it writes: the takeover fences that one too.
    let own_addr = env.job(&j2)["client_address"]
        .as_str()
        .unwrap_or_else(|| {
            panic!(
                "the throttled flatten's own client is recorded: {}",
                env.job(&j2)
            )
        })
        .to_string();
    assert_ne!(own_addr, old_addr, "a client of its own");
    serves.get_mut(&runner2).unwrap().signal("STOP");
    let taken = wait_for("a takeover", Duration::from_secs(30), || {
        let j = env.job(&j2);
        (j["claimed_by"].as_str().is_some_and(|c| c != runner2)
            || j["claim_token"].as_i64().unwrap() >= 2)
            .then_some(j)
    });
    assert!(taken["claim_token"].as_i64().unwrap() >= 2, "{taken}");
    let blocklist = ceph.ceph(&["osd", "blocklist", "ls"]);
    for addr in [&old_addr, &own_addr] {
        let bare = addr.trim_start_matches("v2:").trim_start_matches("v1:");
        assert!(blocklist.contains(bare), "{addr} in:\n{blocklist}");
    }
    let done = env.wait_job(&j2, 90);
    assert_eq!(done["state"], "succeeded", "{done}");
    serves.get_mut(&runner2).unwrap().signal("CONT");
    wait_for(
        "the woken member to notice",
        Duration::from_secs(20),
        || (!events_about(env, "job_lease_lost", &j2).is_empty()).then_some(()),
    );
    let after = env.job(&j2);
    assert_eq!(
        after["state"], "succeeded",
        "not flipped by the woken member"
    );
    assert_eq!(after["claimed_by"], done["claimed_by"]);
    assert_eq!(env.volume(&v2)["status"], "available");
    let ends = [
        "job_succeeded",
        "job_failed",
        "job_cancelled",
        "job_requeued",
    ]
    .iter()
    .map(|k| events_about(env, k, &j2).len())
    .sum::<usize>();
    assert_eq!(ends, 1, "one end, recorded by the peer");
    // Up again, with a new librados client, within two report intervals (1 s each) and margin.
    let woke = Instant::now();
    wait_for(
        "a new client on the woken member",
        Duration::from_secs(15),
        || {
            let r = service_row(env, &runner2);
            (r["state"] == "up" && r["client_address"].as_str().is_some_and(|a| a != old_addr))
                .then_some(())
        },
    );
    eprintln!(
        "woken member up with a new client {:.1} s after it noticed",
        woke.elapsed().as_secs_f64()
    );
    let info = ceph.info(&format!("volume-{v2}"));
    assert!(info["parent"].is_null(), "flattened: {info}");
    // It still works: a new volume placed on the cluster is created.
    let v = env.json(&["volume", "create", "after", "--size", "64M", "--wait"]);
    assert_eq!(v["job"]["state"], "succeeded");
    drop(serves);
}
