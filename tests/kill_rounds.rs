//! kill -9 at random moments: each round starts one job (create, snapshot, clone, flatten,
//! extend or delete) and kills `ember serve` after a random delay from 0 to the job's expected
//! length (two thirds of the time counted from its claim, so kills land before, during and
//! after the work). Then it starts serve again and checks that nothing is lost: the job ends
//! (crash recovery runs it again), `volume reconcile` finds nothing, no volume or snapshot is
//! left in a transitional state, and every volume's data is what it should be (a flattened
//! clone holds its parent's).
//!
//! `EMBER_KILL_ROUNDS` sets the rounds (6 by default, one of each kind: the fast form in
//! `.ci/run`; `scripts/faults.sh` runs 20). The seed is printed; `EMBER_FUZZ_SEED` replays it.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::*;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const KINDS: [&str; 6] = ["create", "snapshot", "clone", "flatten", "extend", "delete"];

fn digest(path: &std::path::Path, len: u64) -> u64 {
    use std::hash::{Hash, Hasher};
    let data = read_at(path, 0, len as usize);
    let mut h = std::collections::hash_map::DefaultHasher::new();
    data.hash(&mut h);
    h.finish()
}

fn id(v: &serde_json::Value, key: &str) -> String {
    v[key]["id"].as_str().unwrap().to_string()
}

#[test]
fn kill_9_at_random_moments_loses_nothing() {
    let rounds: usize = std::env::var("EMBER_KILL_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(6);
    let seed = std::env::var("EMBER_FUZZ_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| rand::rng().random::<u64>());
    eprintln!("kill rounds: {rounds}, seed {seed} (EMBER_FUZZ_SEED={seed} replays it)");
    let mut r = StdRng::seed_from_u64(seed);
    let dir = tempfile::tempdir().unwrap();
    let url = fresh_db(Engine::Sqlite, dir.path()).unwrap();
    // 32 MiB/s: a flatten of 64 MiB takes about 2 s, so a kill lands inside it.
    let env = Env::new(
        dir.path(),
        &url,
        "[backends.file0]\nvolume_driver = \"file\"\nvolume_copy_bps_limit = 33554432\n",
    );
    const MIB64: u64 = 64 << 20;
    let mut serve = env.serve();
    for round in 0..rounds {
        // Cover every kind in the first rounds, then at random.
        let kind = match KINDS.get(round) {
            Some(k) => *k,
            None => KINDS[r.random_range(0..KINDS.len())],
        };
        let n = |s: &str| format!("r{round}-{s}");
        // What the job works on, made while the service is up.
        let src = env.json(&["volume", "create", &n("src"), "--size", "64M", "--wait"]);
        let src_id = id(&src, "volume");
        let byte = 0x11 + round as u8;
        write_at(&env.image("file0", &src_id), 0, MIB64 as usize, byte);
        let want_src = digest(&env.image("file0", &src_id), MIB64);
        let (args, expected_ms): (Vec<String>, u64) = match kind {
            "create" => (
                vec![
                    "volume".into(),
                    "create".into(),
                    n("new"),
                    "--size".into(),
                    "64M".into(),
                ],
                200,
            ),
            "snapshot" => (
                vec![
                    "volume".into(),
                    "snapshot".into(),
                    "create".into(),
                    n("snap"),
                    "--volume".into(),
                    n("src"),
                ],
                300,
            ),
            "clone" | "flatten" => {
                env.json(&[
                    "volume",
                    "snapshot",
                    "create",
                    &n("s"),
                    "--volume",
                    &n("src"),
                    "--wait",
                ]);
                if kind == "clone" {
                    (
                        vec![
                            "volume".into(),
                            "create".into(),
                            n("clone"),
                            "--snapshot".into(),
                            n("s"),
                        ],
                        300,
                    )
                } else {
                    env.json(&[
                        "volume",
                        "create",
                        &n("clone"),
                        "--snapshot",
                        &n("s"),
                        "--wait",
                    ]);
                    (vec!["volume".into(), "flatten".into(), n("clone")], 2_500)
                }
            }
            "extend" => (
                vec![
                    "volume".into(),
                    "extend".into(),
                    n("src"),
                    "--size".into(),
                    "128M".into(),
                ],
                300,
            ),
            _ => (vec!["volume".into(), "delete".into(), n("src")], 300),
        };
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        let job = env.json(&refs)["job_id"].as_str().unwrap().to_string();
        // A third of the kills land before the job is claimed, the rest while it runs.
        if r.random_range(0..3) > 0 {
            wait_for("the job to be claimed", Duration::from_secs(10), || {
                (env.job(&job)["state"] != "queued").then_some(())
            });
        }
        let delay = r.random_range(0..=expected_ms);
        std::thread::sleep(Duration::from_millis(delay));
        serve.signal("KILL");
        serve.wait(Duration::from_secs(10));
        let state_at_kill = env.job(&job)["state"].clone();
        eprintln!("round {round}: {kind}, kill -9 after {delay} ms (job {state_at_kill})");
        serve = env.serve();

        // The job ends, and succeeds: crash recovery ran it again.
        let ended = env.wait_job(&job, 60);
        assert_eq!(
            ended["state"], "succeeded",
            "round {round} ({kind}): {ended}"
        );
        // Nothing is left half-done.
        let o = env.run(&["volume", "reconcile", "file0", "--json"]);
        assert!(
            o.status.success(),
            "round {round} ({kind}): reconcile: {} {}",
            stdout(&o),
            stderr(&o)
        );
        assert_eq!(
            json(&o),
            serde_json::json!([]),
            "round {round} ({kind}): reconcile found something"
        );
        for v in env.json(&["volume", "list"]).as_array().unwrap() {
            assert!(
                matches!(v["status"].as_str(), Some("available" | "in-use")),
                "round {round} ({kind}): volume left {v}"
            );
        }
        for s in env
            .json(&["volume", "snapshot", "list", "--all"])
            .as_array()
            .unwrap()
        {
            assert_eq!(
                s["status"], "available",
                "round {round} ({kind}): snapshot left {s}"
            );
        }
        // The data is what it should be.
        match kind {
            "create" => {
                let v = env.volume(&n("new"));
                let p = env.image("file0", v["id"].as_str().unwrap());
                assert_eq!(std::fs::metadata(&p).unwrap().len(), MIB64);
                assert!(read_at(&p, 0, 1 << 20).iter().all(|b| *b == 0));
            }
            "snapshot" => {
                let s = env.json(&["volume", "snapshot", "list", "--all"]);
                let snap = s
                    .as_array()
                    .unwrap()
                    .iter()
                    .find(|x| x["name"] == n("snap").as_str())
                    .unwrap()
                    .clone();
                let p = env
                    .file_dir("file0")
                    .join(format!("snapshot-{}", snap["id"].as_str().unwrap()));
                assert_eq!(
                    digest(&p, MIB64),
                    want_src,
                    "round {round}: the snapshot's data"
                );
            }
            "clone" => {
                let c = env.volume(&n("clone"));
                assert!(c["parent"].is_string(), "round {round}: {c}");
                // Flattening it now must give the source's data.
                let f = env.json(&["volume", "flatten", &n("clone"), "--wait"]);
                assert_eq!(f["job"]["state"], "succeeded");
                let p = env.image("file0", c["id"].as_str().unwrap());
                assert_eq!(
                    digest(&p, MIB64),
                    want_src,
                    "round {round}: the clone reads its parent's data"
                );
            }
            "flatten" => {
                let c = env.volume(&n("clone"));
                assert!(c["parent"].is_null(), "round {round}: {c}");
                let p = env.image("file0", c["id"].as_str().unwrap());
                assert_eq!(
                    digest(&p, MIB64),
                    want_src,
                    "round {round}: the flattened clone holds its parent's data"
                );
            }
            "extend" => {
                let p = env.image("file0", &src_id);
                assert_eq!(std::fs::metadata(&p).unwrap().len(), 2 * MIB64);
                assert_eq!(
                    digest(&p, MIB64),
                    want_src,
                    "round {round}: extend kept the data"
                );
            }
            _ => {
                assert!(
                    !env.image("file0", &src_id).exists(),
                    "round {round}: the deleted volume's file"
                );
                let o = env.run(&["volume", "show", &n("src")]);
                assert!(
                    !o.status.success(),
                    "round {round}: the deleted volume is still listed"
                );
            }
        }
    }
}
