//! `ember backup`: through the real binary and service, data compared byte for byte. Five
//! rounds of random writes with a backup after each; every backup restored and compared with
//! the volume as it was; the store's growth per backup; a damaged chunk found by `verify` and
//! refused by a restore; `kill -9` at a random moment of a backup and of a restore (rbd
//! volumes: `backup_rbd.rs`). Seeds are printed; `EMBER_SEED` replays one.
#![allow(clippy::unwrap_used)]

mod common;

use std::path::Path;
use std::time::Duration;

use common::*;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// Random writes into a file volume: runs of random bytes, and sometimes zeros over data.
fn scribble(rng: &mut StdRng, path: &Path, size: u64, max_run: u64) -> Vec<(u64, u64)> {
    use std::os::unix::fs::FileExt;
    let f = std::fs::OpenOptions::new().write(true).open(path).unwrap();
    let mut wrote = vec![];
    for _ in 0..rng.random_range(1..6) {
        let at = rng.random_range(0..size);
        let len = rng.random_range(1..max_run).min(size - at) as usize;
        let mut data = vec![0u8; len];
        if !rng.random_bool(0.15) {
            rng.fill(&mut data[..]);
        }
        f.write_all_at(&data, at).unwrap();
        wrote.push((at, len as u64));
    }
    wrote
}

/// The store's chunks are 4 MiB: a write touches every chunk it overlaps.
const CHUNK: u64 = 4 << 20;

fn chunks_touched(writes: &[(u64, u64)]) -> u64 {
    let mut set = std::collections::BTreeSet::new();
    for (at, len) in writes {
        set.extend(at / CHUNK..=(at + len - 1) / CHUNK);
    }
    set.len() as u64
}

fn write_bytes(path: &Path, at: u64, data: &[u8]) {
    use std::os::unix::fs::FileExt;
    let f = std::fs::OpenOptions::new().write(true).open(path).unwrap();
    f.write_all_at(data, at).unwrap();
}

fn store_bytes(dir: &Path) -> u64 {
    let mut total = 0;
    let Ok(dirs) = std::fs::read_dir(dir.join("data/backup/chunks")) else {
        return 0;
    };
    for d in dirs {
        for c in std::fs::read_dir(d.unwrap().path()).unwrap() {
            total += c.unwrap().metadata().unwrap().len();
        }
    }
    total
}

const TWO_FILES: &str = "\
[backends.file0]
volume_driver = \"file\"

[backends.file1]
volume_driver = \"file\"
";

#[test]
fn five_rounds_of_writes_each_backup_restores_to_the_volume_as_it_was() {
    let seed = seed();
    each_engine(|_, dir, url| {
        let mut rng = StdRng::seed_from_u64(seed);
        let env = Env::new(dir, url, TWO_FILES);
        let _serve = env.serve();
        let size = (128u64 << 20) + rng.random_range(0..(1u64 << 20));
        let v = env.json(&[
            "volume",
            "create",
            "v",
            "--size",
            &format!("{size}B"),
            "--backend",
            "file0",
            "--wait",
        ]);
        let id = v["volume"]["id"].as_str().unwrap().to_string();
        let img = env.image("file0", &id);
        // Round 0 fills most of it; later rounds write a little, as days of a database's life.
        let mut bulk = vec![0u8; (size - (16 << 20)) as usize];
        rng.fill(&mut bulk[..]);
        write_bytes(&img, 0, &bulk);
        drop(bulk);
        let mut kept = vec![];
        for round in 0..5 {
            let touched = if round > 0 {
                chunks_touched(&scribble(&mut rng, &img, size, 64 << 10))
            } else {
                u64::MAX
            };
            let name = format!("b{round}");
            let mut args = vec!["backup", "create", "v", "--name", &name, "--wait"];
            if round > 0 {
                args.push("--incremental");
            }
            let before = store_bytes(dir);
            let b = env.json(&args);
            assert_eq!(b["job"]["state"], "succeeded", "seed {seed}: {b}");
            let grew = store_bytes(dir) - before;
            let shown = env.json(&["backup", "show", &name])[0].clone();
            assert_eq!(shown["stored_bytes"], grew, "seed {seed}: {shown}");
            eprintln!(
                "backup {name}: {} data bytes, the store grew by {grew} bytes",
                shown["data_bytes"]
            );
            // An incremental stores at most the chunks its writes touched.
            assert!(
                grew <= touched.saturating_mul(CHUNK),
                "seed {seed}: {name} stored {grew} bytes for {touched} chunks written"
            );
            kept.push((name, std::fs::read(&img).unwrap(), grew));
        }
        let full = kept[0].2;
        for (name, _, grew) in &kept[1..] {
            // At most 5 small writes, each within one or two 4 MiB chunks, against ~120 MiB.
            assert!(
                *grew * 3 <= full,
                "seed {seed}: incremental {name} stored {grew} bytes, the full one {full}"
            );
        }
        for (n, (name, want, _)) in kept.iter().enumerate() {
            let to = ["file0", "file1"][n % 2];
            let r = env.json(&[
                "backup",
                "restore",
                name,
                "--name",
                &format!("r-{name}"),
                "--backend",
                to,
                "--wait",
            ]);
            assert_eq!(r["job"]["state"], "succeeded", "seed {seed}: {r}");
            let rid = r["volume"]["id"].as_str().unwrap();
            let got = std::fs::read(env.image(to, rid)).unwrap();
            if let Some(i) = (0..want.len()).find(|&i| want.get(i) != got.get(i)) {
                panic!("seed {seed}: restore of {name} differs first at byte {i}");
            }
        }
        // Deleting the oldest keeps every other backup whole.
        env.json(&["backup", "delete", "b0", "--wait"]);
        let (name, want, _) = &kept[4];
        assert!(env.run(&["backup", "verify", name]).status.success());
        let r = env.json(&["backup", "restore", name, "--name", "again", "--wait"]);
        let got = std::fs::read(env.image("file0", r["volume"]["id"].as_str().unwrap())).unwrap();
        assert!(got == *want, "seed {seed}: {name} after b0 was deleted");
    });
}

#[test]
fn a_damaged_chunk_is_named_by_verify_and_refused_by_restore() {
    let dir = tempfile::tempdir().unwrap();
    let url = fresh_db(Engine::Sqlite, dir.path()).unwrap();
    let env = Env::new(dir.path(), &url, TWO_FILES);
    let _serve = env.serve();
    let v = env.json(&[
        "volume",
        "create",
        "v",
        "--size",
        "16M",
        "--backend",
        "file0",
        "--wait",
    ]);
    let id = v["volume"]["id"].as_str().unwrap().to_string();
    write_at(&env.image("file0", &id), 5 << 20, 1 << 20, 0x42);
    env.json(&["backup", "create", "v", "--name", "b", "--wait"]);
    let chunk = std::fs::read_dir(dir.path().join("data/backup/chunks"))
        .unwrap()
        .flat_map(|d| std::fs::read_dir(d.unwrap().path()).unwrap())
        .map(|c| c.unwrap().path())
        .next()
        .unwrap();
    let mut data = std::fs::read(&chunk).unwrap();
    data[7] ^= 0xff;
    std::fs::write(&chunk, data).unwrap();
    let name = chunk.file_name().unwrap().to_str().unwrap().to_string();
    let out = env.run(&["backup", "verify", "b"]);
    assert_eq!(out.status.code(), Some(2), "{}", stdout(&out));
    assert!(stderr(&out).contains(&name) && stderr(&out).contains("damaged"));
    let r = env.run(&["backup", "restore", "b", "--name", "r", "--wait"]);
    assert!(!r.status.success(), "a damaged backup was restored");
    assert!(stderr(&r).contains("damaged"), "{}", stderr(&r));
    let restored = env.volume("r");
    assert_eq!(restored["status"], "error", "{restored}");
}

/// `kill -9` of the service at a random moment of a throttled backup, then of a restore: each
/// job runs again after the restart and ends whole, compared byte for byte.
#[test]
fn kill_9_mid_backup_and_mid_restore_loses_nothing() {
    let seed = seed();
    let mut rng = StdRng::seed_from_u64(seed);
    let dir = tempfile::tempdir().unwrap();
    let url = fresh_db(Engine::Sqlite, dir.path()).unwrap();
    // 16 MiB/s: a 32 MiB volume takes about 2 s to back up and 4 s to restore (write, check).
    let env = Env::new(
        dir.path(),
        &url,
        "[backends.file0]\nvolume_driver = \"file\"\nvolume_copy_bps_limit = 16777216\n",
    );
    let mut serve = env.serve();
    let size = 32u64 << 20;
    let v = env.json(&["volume", "create", "v", "--size", "32M", "--wait"]);
    let id = v["volume"]["id"].as_str().unwrap().to_string();
    scribble(&mut rng, &env.image("file0", &id), size, 16 << 20);
    write_at(&env.image("file0", &id), 0, 24 << 20, 0x17);
    scribble(&mut rng, &env.image("file0", &id), size, 1 << 20);
    let want = std::fs::read(env.image("file0", &id)).unwrap();
    for what in ["backup", "restore"] {
        let delay = rng.random_range(100..2000u64);
        let job = if what == "backup" {
            env.json(&["backup", "create", "v", "--name", "b"])["job_id"].clone()
        } else {
            env.json(&["backup", "restore", "b", "--name", "r"])["job_id"].clone()
        };
        let job = job.as_str().unwrap().to_string();
        wait_for("the job to run", Duration::from_secs(30), || {
            (env.job(&job)["state"] != "queued").then_some(())
        });
        std::thread::sleep(Duration::from_millis(delay));
        let was = env.job(&job);
        eprintln!(
            "seed {seed}: kill -9 {delay} ms into the {what}: at {} of {} ({})",
            was["bytes_done"], was["bytes_total"], was["state"]
        );
        serve.signal("KILL");
        serve.wait(Duration::from_secs(10));
        serve = env.serve();
        let end = env.wait_job(&job, 120);
        assert_eq!(end["state"], "succeeded", "seed {seed}: {what}: {end}");
    }
    assert!(env.run(&["backup", "verify", "b"]).status.success());
    let r = env.volume("r");
    assert_eq!(r["status"], "available");
    let got = std::fs::read(env.image("file0", r["id"].as_str().unwrap())).unwrap();
    if let Some(i) = (0..want.len()).find(|&i| want.get(i) != got.get(i)) {
        panic!("seed {seed}: the restore differs first at byte {i}");
    }
}
