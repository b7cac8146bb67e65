//! `backend evacuate`: a backend emptied into another with the real binary and service, paused
//! (Ctrl-C) and the service killed -9 at random moments, then carried on to the end; every
//! volume compared byte for byte with what it held before, by id. Seed printed; `EMBER_SEED`
//! replays it.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeMap;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

#[test]
fn evacuate_paused_and_killed_moves_every_byte_and_says_what_cannot_move() {
    let seed = seed();
    let mut rng = StdRng::seed_from_u64(seed);
    let dir = tempfile::tempdir().unwrap();
    let url = fresh_db(Engine::Sqlite, dir.path()).unwrap();
    // 32 MiB/s: the evacuation takes a few seconds, long enough to be interrupted.
    let env = Env::new(
        dir.path(),
        &url,
        "[backends.file0]\nvolume_driver = \"file\"\nvolume_copy_bps_limit = 33554432\n\
         [backends.file1]\nvolume_driver = \"file\"\n",
    );
    let mut serve = env.serve();
    let count = rng.random_range(3..6);
    for i in 0..count {
        let size = (8u64 << 20) + rng.random_range(0..(16u64 << 20));
        env.json(&[
            "volume",
            "create",
            &format!("v{i}"),
            "--size",
            &format!("{size}B"),
            "--backend",
            "file0",
            "--wait",
        ]);
        let img = env.image("file0", &env.id_of(&format!("v{i}")));
        let at = rng.random_range(0..size / 2);
        write_at(
            &img,
            at,
            rng.random_range(1..(4usize << 20)),
            rng.random_range(1..=255),
        );
    }
    // A chain: v0 <- c1 <- c2 (`--source`: each reads from a snapshot ember took), which
    // moves as one family and stays layered on file1, a volume with a snapshot of its own,
    // which the copy carries, and an attached volume, which stays.
    env.json(&["volume", "create", "c1", "--source", "v0", "--wait"]);
    env.json(&["volume", "create", "c2", "--source", "c1", "--wait"]);
    env.json(&[
        "volume",
        "create",
        "keep",
        "--size",
        "4M",
        "--backend",
        "file0",
        "--wait",
    ]);
    write_at(&env.image("file0", &env.id_of("keep")), 0, 1 << 20, 0x6b);
    let ks = env.json(&[
        "volume", "snapshot", "create", "ks", "--volume", "keep", "--wait",
    ])["snapshot"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let ks_data = std::fs::read(env.file_dir("file0").join(format!("snapshot-{ks}"))).unwrap();
    write_at(
        &env.image("file0", &env.id_of("keep")),
        2 << 20,
        1 << 20,
        0x4b,
    );
    env.json(&[
        "volume",
        "create",
        "stuck",
        "--size",
        "1M",
        "--backend",
        "file0",
        "--wait",
    ]);
    env.json(&["volume", "attach", "stuck", "--host", "compute-9"]);
    // c2 writes over what it reads from c1's snapshot of v0.
    write_at(
        &env.image("file0", &env.id_of("c2")),
        1 << 20,
        64 << 10,
        0xc2,
    );
    // What every volume reads as now, by id (the clones through their parents).
    let mut before = BTreeMap::new();
    for v in env.json(&["volume", "list"]).as_array().unwrap() {
        let id = v["id"].as_str().unwrap().to_string();
        let name = v["name"].as_str().unwrap();
        let data = read_through(&env.file_dir("file0"), &format!("volume-{id}"));
        before.insert(id, (name.to_string(), data, v["clone_depth"].clone()));
    }
    let parallel = rng.random_range(1..4).to_string();
    let args = |env: &Env| -> Vec<String> {
        vec![
            "--config".into(),
            env.config.display().to_string(),
            "--database-url".into(),
            env.url.clone(),
            "backend".into(),
            "evacuate".into(),
            "file0".into(),
            "--to".into(),
            "file1".into(),
            "--parallel".into(),
            parallel.clone(),
        ]
    };
    // Pause it (Ctrl-C) and kill the service at random moments, twice, then let it finish.
    for round in 0..2 {
        let mut child = Command::new(env!("CARGO_BIN_EXE_ember"))
            .args(args(&env))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let delay = rng.random_range(200..2500u64);
        std::thread::sleep(Duration::from_millis(delay));
        let _ = Command::new("kill")
            .args(["-INT", &child.id().to_string()])
            .status();
        let code = child.wait().unwrap().code();
        eprintln!("seed {seed} round {round}: Ctrl-C after {delay} ms: exit {code:?}");
        assert!(matches!(code, Some(130) | Some(1) | Some(0)), "{code:?}");
        if rng.random_bool(0.5) {
            serve.signal("KILL");
            serve.wait(Duration::from_secs(10));
            serve = env.serve();
            eprintln!("seed {seed} round {round}: ember serve killed -9 and started again");
        }
    }
    let refs: Vec<String> = args(&env);
    let refs: Vec<&str> = refs.iter().map(String::as_str).collect();
    let out = ember(&refs);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}{}",
        stdout(&out),
        stderr(&out)
    );
    let said = stdout(&out);
    assert!(
        said.contains("not moved: stuck") && said.contains("attach"),
        "{said}"
    );
    let carried = std::fs::read(env.file_dir("file1").join(format!("snapshot-{ks}"))).unwrap();
    assert!(
        carried == ks_data,
        "seed {seed}: snapshot ks differs on file1"
    );
    for (id, (name, data, depth)) in &before {
        let v = env.volume(id);
        let (on, status) = if name == "stuck" {
            ("file0", "in-use")
        } else {
            ("file1", "available")
        };
        assert_eq!(v["status"], status, "seed {seed}: {name}: {v}");
        assert_eq!(v["backend"], on, "seed {seed}: {name}");
        // The clones kept their layering: same depth, read through their parents there.
        assert_eq!(&v["clone_depth"], depth, "seed {seed}: {name}: {v}");
        let got = read_through(&env.file_dir(on), &format!("volume-{id}"));
        if let Some(i) = (0..data.len()).find(|&i| data.get(i) != got.get(i)) {
            panic!("seed {seed}: {name} differs first at byte {i}");
        }
    }
    // Draining: no new volume there until it is undone.
    let err = env.fails(
        &[
            "volume",
            "create",
            "n",
            "--size",
            "1M",
            "--backend",
            "file0",
        ],
        1,
    );
    assert!(err.contains("draining"), "{err}");
    let listed = env.json(&["backend", "list"]);
    let f0 = listed
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["name"] == "file0")
        .unwrap();
    assert_eq!(f0["draining"], true, "{f0}");
    env.run(&["backend", "drain", "file0", "--off"]);
    env.json(&[
        "volume",
        "create",
        "n",
        "--size",
        "1M",
        "--backend",
        "file0",
        "--wait",
    ]);
    for b in ["file0", "file1"] {
        let o = env.run(&["volume", "reconcile", b, "--json"]);
        assert_eq!(
            json(&o),
            serde_json::json!([]),
            "seed {seed}: reconcile {b}"
        );
    }
}
