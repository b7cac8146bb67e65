//! `ember backup`: through the real binary and service, data compared byte for byte. Five
//! rounds of random writes with a backup after each; every backup restored and compared with
//! the volume as it was; the store's growth per backup; a damaged chunk found by `verify` and
//! refused by a restore; `kill -9` at a random moment of a backup and of a restore; rbd
//! volumes backed up and restored to rbd and to a file backend. Seeds are printed;
//! `EMBER_SEED` replays one.
#![allow(clippy::unwrap_used)]

mod common;

use std::path::Path;
use std::process::Stdio;
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

/// An rbd volume backed up (read through librbd), restored to rbd and to a file backend.
#[test]
fn rbd_volume_backed_up_and_restored_to_rbd_and_to_a_file() {
    let Some(ceph) = Ceph::start(false) else {
        return;
    };
    let seed = seed();
    let mut rng = StdRng::seed_from_u64(seed);
    let dir = tempfile::tempdir().unwrap();
    let url = fresh_db(Engine::Sqlite, dir.path()).unwrap();
    let env = Env::new(
        dir.path(),
        &url,
        &format!(
            "{}[backends.file0]\nvolume_driver = \"file\"\n",
            ceph.backend("rbd0", "")
        ),
    );
    let _serve = env.serve();
    env.wait_backend_up("rbd0", 60);
    let size = (20u64 << 20) + rng.random_range(0..2048u64) * 512;
    let v = env.json(&[
        "volume",
        "create",
        "r",
        "--size",
        &format!("{size}B"),
        "--backend",
        "rbd0",
        "--wait",
    ]);
    let id = v["volume"]["id"].as_str().unwrap().to_string();
    let img = dir.path().join("data.img");
    std::fs::File::create(&img).unwrap().set_len(size).unwrap();
    scribble(&mut rng, &img, size, 6 << 20);
    ceph.rbd(&["rm", &format!("volumes/volume-{id}")]);
    ceph.rbd(&[
        "import",
        img.to_str().unwrap(),
        &format!("volumes/volume-{id}"),
    ]);
    let want = std::fs::read(&img).unwrap();
    let b = env.json(&["backup", "create", "r", "--name", "rb", "--wait"]);
    assert_eq!(b["job"]["state"], "succeeded", "{b}");
    for to in ["rbd0", "file0"] {
        let r = env.json(&[
            "backup",
            "restore",
            "rb",
            "--name",
            &format!("to-{to}"),
            "--backend",
            to,
            "--wait",
        ]);
        assert_eq!(r["job"]["state"], "succeeded", "seed {seed}: {r}");
        let rid = r["volume"]["id"].as_str().unwrap();
        let got = if to == "rbd0" {
            let out = dir.path().join("export.img");
            ceph.rbd(&[
                "export",
                &format!("volumes/volume-{rid}"),
                out.to_str().unwrap(),
            ]);
            std::fs::read(&out).unwrap()
        } else {
            std::fs::read(env.image("file0", rid)).unwrap()
        };
        assert!(got == want, "seed {seed}: restored to {to} differs");
    }
}

/// Backup snapshots (`backup.<id>.snap.<time>`) on an rbd volume's image, oldest first.
fn backup_snaps(ceph: &Ceph, image: &str) -> Vec<String> {
    let out = ceph.rbd(&[
        "snap",
        "ls",
        "--format",
        "json",
        &format!("volumes/{image}"),
    ]);
    let list: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    list.iter()
        .filter_map(|s| s["name"].as_str())
        .filter(|n| n.starts_with("backup."))
        .map(str::to_string)
        .collect()
}

/// Random guest I/O through librbd: data, zeros written, and discards of whole objects.
fn guest_io(rng: &mut StdRng, size: u64) -> Vec<ClientOp> {
    let mut ops = vec![];
    for _ in 0..rng.random_range(1..4) {
        let at = rng.random_range(0..size);
        let len = rng.random_range(1..256u64 << 10).min(size - at);
        ops.push(match rng.random_range(0..10) {
            0 if size / CHUNK > 0 => {
                let obj = rng.random_range(0..size / CHUNK);
                ClientOp::Discard(obj * CHUNK, CHUNK)
            }
            1 => ClientOp::Zero(at, len),
            _ => {
                let mut data = vec![0u8; len as usize];
                rng.fill(&mut data[..]);
                ClientOp::Data(at, data)
            }
        });
    }
    ops
}

fn touched_by(ops: &[ClientOp]) -> u64 {
    let writes: Vec<(u64, u64)> = ops
        .iter()
        .map(|op| match op {
            ClientOp::Data(at, d) => (*at, d.len() as u64),
            ClientOp::Zero(at, len) | ClientOp::Discard(at, len) => (*at, *len),
        })
        .collect();
    chunks_touched(&writes)
}

/// rbd: every backup reads a snapshot of the volume (so a client may have it open), and
/// `--incremental` reads only what changed since the previous backup's snapshot: writes, zeros
/// and discards made through librbd. `backup_ceph_max_snapshots = 2` bounds the snapshots left
/// on the image; an extend makes the next backup read the whole volume; deleting a backup
/// removes its snapshot, and the next incremental diffs from the one before. Every backup
/// restored (to rbd and to a file) equals the volume as it was when it was taken.
#[test]
fn rbd_incremental_backups_read_only_what_changed_since_the_last_snapshot() {
    let Some(ceph) = Ceph::start(false) else {
        return;
    };
    let seed = seed();
    let mut rng = StdRng::seed_from_u64(seed);
    let dir = tempfile::tempdir().unwrap();
    let url = fresh_db(Engine::Sqlite, dir.path()).unwrap();
    let env = Env::new(
        dir.path(),
        &url,
        &format!(
            "backup_ceph_max_snapshots = 2\n{}[backends.file0]\nvolume_driver = \"file\"\n",
            ceph.backend("rbd0", "")
        ),
    );
    let _serve = env.serve();
    env.wait_backend_up("rbd0", 60);
    let mut size = (64u64 << 20) + rng.random_range(0..4096u64) * 512;
    let v = env.json(&[
        "volume",
        "create",
        "r",
        "--size",
        &format!("{size}B"),
        "--backend",
        "rbd0",
        "--wait",
    ]);
    let image = format!("volume-{}", v["volume"]["id"].as_str().unwrap());
    let mut model = vec![0u8; size as usize];
    let mut bulk = vec![0u8; (size - (4 << 20)) as usize];
    rng.fill(&mut bulk[..]);
    ceph.client_write(&image, &[ClientOp::Data(0, bulk)], &mut model);
    // A client has the image open throughout: backups read snapshots, so they may run.
    let _guest = Opener::rbd_watch(&ceph, &format!("volumes/{image}"), Stdio::null());
    let mut kept: Vec<(String, Vec<u8>)> = vec![];
    let mut ids: Vec<String> = vec![];
    let mut last_touched = 0;
    for round in 0..6 {
        let mut touched = u64::MAX;
        if round > 0 {
            let ops = guest_io(&mut rng, size);
            touched = touched_by(&ops);
            ceph.client_write(&image, &ops, &mut model);
        }
        if round == 3 {
            size += rng.random_range(1..2048u64) * 4096;
            let e = env.json(&[
                "volume",
                "extend",
                "r",
                "--size",
                &format!("{size}B"),
                "--force",
                "--wait",
            ]);
            assert_eq!(e["job"]["state"], "succeeded", "seed {seed}: {e}");
            model.resize(size as usize, 0);
        }
        let name = format!("b{round}");
        let mut args = vec!["backup", "create", "r", "--name", &name, "--wait"];
        if round > 0 {
            args.push("--incremental");
        }
        let b = env.json(&args);
        assert_eq!(b["job"]["state"], "succeeded", "seed {seed}: {b}");
        let shown = env.json(&["backup", "show", &name])[0].clone();
        let (read, data) = (
            shown["read_bytes"].as_u64().unwrap(),
            shown["data_bytes"].as_u64().unwrap(),
        );
        eprintln!(
            "seed {seed}: {name}: read {read} bytes, {data} of data, {touched} chunks written"
        );
        if round == 0 || round == 3 {
            // Full, or the size changed since the last snapshot: everything is read.
            assert!(read >= data, "seed {seed}: {name} read {read} < {data}");
        } else {
            // At most 3 writes of up to 256 KiB, 6 chunks, against 60 MiB of data.
            assert!(
                read <= touched * CHUNK && touched * CHUNK < data,
                "seed {seed}: {name} read {read} bytes for {touched} chunks written ({data} of data)"
            );
        }
        let id = shown["id"].as_str().unwrap().to_string();
        let snaps = backup_snaps(&ceph, &image);
        assert!(
            snaps.len() <= 2 && snaps.iter().any(|s| s.contains(&id)),
            "seed {seed}: after {name} the image holds {snaps:?}"
        );
        ids.push(id);
        kept.push((name, model.clone()));
        last_touched = touched;
    }
    let restore = |name: &str, to: &str, want: &[u8]| {
        let r = env.json(&[
            "backup",
            "restore",
            name,
            "--name",
            &format!("{name}-{to}"),
            "--backend",
            to,
            "--wait",
        ]);
        assert_eq!(r["job"]["state"], "succeeded", "seed {seed}: {r}");
        let rid = r["volume"]["id"].as_str().unwrap();
        let got = if to == "rbd0" {
            let out = dir.path().join("export.img");
            let _ = std::fs::remove_file(&out);
            ceph.rbd(&[
                "export",
                &format!("volumes/volume-{rid}"),
                out.to_str().unwrap(),
            ]);
            std::fs::read(&out).unwrap()
        } else {
            std::fs::read(env.image("file0", rid)).unwrap()
        };
        if let Some(i) = (0..want.len().max(got.len())).find(|&i| want.get(i) != got.get(i)) {
            panic!("seed {seed}: restore of {name} to {to} differs first at byte {i}");
        }
    };
    for (n, (name, want)) in kept.iter().enumerate() {
        restore(name, ["rbd0", "file0"][n % 2], want);
    }
    // The newest backup deleted: its snapshot goes, and the next incremental diffs from b4's
    // (so it reads what b5's round wrote too).
    let touched_by_since_b4 = last_touched;
    env.json(&["backup", "delete", "b5", "--wait"]);
    let snaps = backup_snaps(&ceph, &image);
    assert!(
        !snaps.iter().any(|s| s.contains(&ids[5])) && snaps.iter().any(|s| s.contains(&ids[4])),
        "seed {seed}: after deleting b5 the image holds {snaps:?}"
    );
    let ops = guest_io(&mut rng, size);
    let touched = touched_by(&ops) + touched_by_since_b4;
    ceph.client_write(&image, &ops, &mut model);
    let b = env.json(&[
        "backup",
        "create",
        "r",
        "--name",
        "b6",
        "--incremental",
        "--wait",
    ]);
    assert_eq!(b["job"]["state"], "succeeded", "seed {seed}: {b}");
    let shown = env.json(&["backup", "show", "b6"])[0].clone();
    assert_eq!(shown["parent_id"], ids[4].as_str(), "seed {seed}: {shown}");
    assert!(
        shown["read_bytes"].as_u64().unwrap() <= touched * CHUNK,
        "seed {seed}: {shown}"
    );
    restore("b6", "rbd0", &model);
}

/// rbd, `kill -9` at a random moment of a backup while a guest writes: the guest writes more
/// while ember is down, and the backup, run again after the restart, still holds the volume as
/// it was when the backup began (the same snapshot, taken once); the next incremental holds
/// the later writes; a failed backup's snapshot does not stay.
#[test]
fn rbd_kill_9_mid_backup_keeps_its_point_in_time() {
    let Some(ceph) = Ceph::start(false) else {
        return;
    };
    let seed = seed();
    let mut rng = StdRng::seed_from_u64(seed);
    let dir = tempfile::tempdir().unwrap();
    let url = fresh_db(Engine::Sqlite, dir.path()).unwrap();
    // 8 MiB/s: a 32 MiB volume takes about 4 s to back up.
    let env = Env::new(
        dir.path(),
        &url,
        &ceph.backend("rbd0", "volume_copy_bps_limit = 8388608"),
    );
    let mut serve = env.serve();
    env.wait_backend_up("rbd0", 60);
    let size = (32u64 << 20) + rng.random_range(0..2048u64) * 512;
    let v = env.json(&[
        "volume",
        "create",
        "r",
        "--size",
        &format!("{size}B"),
        "--backend",
        "rbd0",
        "--wait",
    ]);
    let image = format!("volume-{}", v["volume"]["id"].as_str().unwrap());
    let mut model = vec![0u8; size as usize];
    let mut bulk = vec![0u8; (size - (2 << 20)) as usize];
    rng.fill(&mut bulk[..]);
    ceph.client_write(&image, &[ClientOp::Data(1 << 20, bulk)], &mut model);
    let at_start = model.clone();
    let delay = rng.random_range(0..2500u64);
    let job = env.json(&["backup", "create", "r", "--name", "b1"])["job_id"]
        .as_str()
        .unwrap()
        .to_string();
    // Reading has begun (so its snapshot was taken), then a random moment of the ~4 s read.
    wait_for("the backup to read", Duration::from_secs(60), || {
        (env.job(&job)["bytes_done"].as_u64().unwrap_or(0) > 0).then_some(())
    });
    std::thread::sleep(Duration::from_millis(delay));
    let was = env.job(&job);
    eprintln!(
        "seed {seed}: kill -9 {delay} ms into the backup: at {} of {} ({})",
        was["bytes_done"], was["bytes_total"], was["state"]
    );
    serve.signal("KILL");
    serve.wait(Duration::from_secs(10));
    // The guest goes on writing while ember is down.
    let ops = guest_io(&mut rng, size);
    ceph.client_write(&image, &ops, &mut model);
    let _serve = env.serve();
    let end = env.wait_job(&job, 180);
    assert_eq!(end["state"], "succeeded", "seed {seed}: {end}");
    let b1 = env.json(&["backup", "show", "b1"])[0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let snaps = backup_snaps(&ceph, &image);
    assert_eq!(
        snaps.iter().filter(|s| s.contains(&b1)).count(),
        1,
        "seed {seed}: {snaps:?}"
    );
    let b = env.json(&[
        "backup",
        "create",
        "r",
        "--name",
        "b2",
        "--incremental",
        "--wait",
    ]);
    assert_eq!(b["job"]["state"], "succeeded", "seed {seed}: {b}");
    for (name, want) in [("b1", &at_start), ("b2", &model)] {
        let r = env.json(&[
            "backup",
            "restore",
            name,
            "--name",
            &format!("{name}-r"),
            "--wait",
        ]);
        assert_eq!(r["job"]["state"], "succeeded", "seed {seed}: {r}");
        let out = dir.path().join(format!("{name}.img"));
        ceph.rbd(&[
            "export",
            &format!("volumes/volume-{}", r["volume"]["id"].as_str().unwrap()),
            out.to_str().unwrap(),
        ]);
        let got = std::fs::read(&out).unwrap();
        if let Some(i) = (0..want.len().max(got.len())).find(|&i| want.get(i) != got.get(i)) {
            panic!("seed {seed}: restore of {name} differs first at byte {i}");
        }
    }
}
