//! `volume migrate`: a volume moved between backends through the real binary, its data read
//! back from the storage and compared byte for byte with what it held before; random sizes,
//! data layouts and moments of a cancel or a `kill -9` (seed printed; `EMBER_SEED` replays it).
//! `EMBER_MIGRATE_ROUNDS` sets the file cancel/kill rounds (4 by default: the short form in
//! `.ci/run`; `scripts/faults.sh` runs more), `EMBER_LIVE_ROUNDS` those of an rbd live
//! migration (2).
#![allow(clippy::unwrap_used)]

mod common;

use std::path::Path;
use std::process::Command;

use common::*;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// Random data in a file volume as a guest would leave it: runs of random bytes, runs of
/// written zeros (allocated, all zero), holes, and often the very last bytes.
fn scribble(rng: &mut StdRng, path: &Path, size: u64) {
    for _ in 0..rng.random_range(1..10) {
        let at = rng.random_range(0..size);
        let len = rng.random_range(1..(3u64 << 20)).min(size - at) as usize;
        let data: Vec<u8> = if rng.random_bool(0.2) {
            vec![0; len]
        } else {
            (0..len).map(|_| rng.random()).collect()
        };
        use std::os::unix::fs::FileExt;
        let f = std::fs::OpenOptions::new().write(true).open(path).unwrap();
        f.write_all_at(&data, at).unwrap();
    }
    if rng.random_bool(0.5) {
        write_at(path, size - 1, 1, rng.random_range(1..=255));
    }
}

fn allocated(path: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path).unwrap().blocks() * 512
}

/// A new volume of exactly `size` bytes on `backend`; returns its id.
fn create(env: &Env, name: &str, size: u64, backend: &str) -> String {
    let size = format!("{size}B");
    env.json(&[
        "volume",
        "create",
        name,
        "--size",
        &size,
        "--backend",
        backend,
        "--wait",
    ]);
    env.id_of(name)
}

const TWO_FILES: &str = "\
[backends.file0]
volume_driver = \"file\"

[backends.file1]
volume_driver = \"file\"
";

#[test]
fn file_to_file_keeps_every_byte_and_every_hole() {
    let seed = seed();
    each_engine(|_, dir, url| {
        let mut rng = StdRng::seed_from_u64(seed);
        let env = Env::new(dir, url, TWO_FILES);
        let _serve = env.serve();
        for round in 0..4 {
            let at = format!("seed {seed} round {round}");
            // Sizes that are not a multiple of any block: the copy's last chunk is short.
            let size = rng.random_range(1u64..(40 << 20)) | 1;
            let name = format!("v{round}");
            let id = create(&env, &name, size, "file0");
            let src = env.image("file0", &id);
            scribble(&mut rng, &src, size);
            let before = std::fs::read(&src).unwrap();
            let before_alloc = allocated(&src);
            let out = env.json(&["volume", "migrate", &name, "--to", "file1", "--wait"]);
            assert_eq!(out["job"]["state"], "succeeded", "{at}: {out}");
            let v = env.volume(&name);
            assert_eq!(v["backend"], "file1", "{at}: {v}");
            assert_eq!(v["status"], "available", "{at}: {v}");
            assert_eq!(v["id"], id.as_str(), "{at}: the id is kept");
            assert!(!src.exists(), "{at}: the source image is left on file0");
            let dst = env.image("file1", &id);
            let after = std::fs::read(&dst).unwrap();
            assert_eq!(after.len(), before.len(), "{at}: size");
            if let Some(i) = (0..before.len()).find(|&i| before[i] != after[i]) {
                panic!("{at}: first difference at byte {i} of {size}");
            }
            // Holes stay holes, and written zeros become holes (64 KiB slack per run).
            assert!(
                allocated(&dst) <= before_alloc + (1 << 20),
                "{at}: {} allocated on the target, {} on the source",
                allocated(&dst),
                before_alloc
            );
        }
        let o = env.run(&["volume", "reconcile", "file1", "--json"]);
        assert_eq!(json(&o), serde_json::json!([]), "seed {seed}: reconcile");
    });
}

#[test]
fn a_clone_arrives_flat_and_what_cannot_move_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let url = fresh_db(Engine::Sqlite, dir.path()).unwrap();
    let env = Env::new(dir.path(), &url, TWO_FILES);
    let _serve = env.serve();
    let base = create(&env, "base", 8 << 20, "file0");
    write_at(&env.image("file0", &base), 1 << 20, 3 << 20, 0x5a);
    write_at(&env.image("file0", &base), (8 << 20) - 100, 100, 0xa5);
    let snap = env.json(&[
        "volume", "snapshot", "create", "s", "--volume", "base", "--wait",
    ]);
    let snap_id = snap["snapshot"]["id"].as_str().unwrap().to_string();
    let parent = std::fs::read(env.file_dir("file0").join(format!("snapshot-{snap_id}"))).unwrap();
    env.json(&["volume", "create", "c", "--snapshot", "s", "--wait"]);
    let c = env.id_of("c");

    // A snapshot with a clone cannot go without it: refused, naming both.
    let err = env.fails(&["volume", "migrate", "base", "--to", "file1"], 1);
    assert!(
        err.contains("dependent clones") && err.contains("c"),
        "{err}"
    );
    // The same backend, and a backend nobody configured.
    let err = env.fails(&["volume", "migrate", "c", "--to", "file0"], 1);
    assert!(err.contains("already"), "{err}");
    let err = env.fails(&["volume", "migrate", "c", "--to", "nowhere"], 1);
    assert!(err.contains("nowhere"), "{err}");

    // The clone: said before it starts that it is flattened on the way.
    let out = env.run(&["volume", "migrate", "c", "--to", "file1", "--wait"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let said = format!("{}{}", stdout(&out), stderr(&out));
    assert!(said.contains("flattened on the way"), "{said}");
    let v = env.volume("c");
    assert_eq!(v["backend"], "file1");
    assert!(v["parent"].is_null(), "{v}");
    assert_eq!(v["clone_depth"], 0, "{v}");
    let moved = std::fs::read(env.image("file1", &c)).unwrap();
    assert!(
        moved == parent,
        "the moved clone differs from its parent snapshot"
    );
    // Its parent stays, for the base volume.
    let snaps = env.json(&["volume", "snapshot", "list"]);
    let s = snaps
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "s")
        .unwrap();
    assert_eq!(s["status"], "available", "{s}");

    // Open by someone else: the job refuses, and the volume stays whole where it was.
    let busy = create(&env, "busy", 4 << 20, "file0");
    write_at(&env.image("file0", &busy), 0, 4 << 20, 0x11);
    let holder = Opener::file(&env.image("file0", &busy));
    let job = env.json(&["volume", "migrate", "busy", "--to", "file1"])["job_id"]
        .as_str()
        .unwrap()
        .to_string();
    let j = env.wait_job(&job, 60);
    assert_eq!(j["state"], "failed", "{j}");
    assert!(j["error"].as_str().unwrap().contains("open by"), "{j}");
    drop(holder);
    let v = env.volume("busy");
    assert_eq!(
        (v["backend"].as_str(), v["status"].as_str()),
        (Some("file0"), Some("available"))
    );
    assert!(
        !env.image("file1", &busy).exists(),
        "a partial copy is left on file1"
    );
    assert_eq!(
        read_at(&env.image("file0", &busy), 0, 4 << 20),
        vec![0x11; 4 << 20]
    );
}

/// Takes `n` snapshots of file volume `name` (`id`) on file0, scribbling over it after each
/// (and growing it once, if `grow`); returns each snapshot's id and its content as taken.
fn take_snapshots(
    env: &Env,
    rng: &mut StdRng,
    name: &str,
    id: &str,
    n: usize,
    grow: bool,
) -> Vec<(String, Vec<u8>)> {
    let mut out = vec![];
    for k in 0..n {
        let sname = format!("{name}-s{k}");
        let snap = env.json(&[
            "volume", "snapshot", "create", &sname, "--volume", name, "--wait",
        ]);
        let sid = snap["snapshot"]["id"].as_str().unwrap().to_string();
        let taken = std::fs::read(env.file_dir("file0").join(format!("snapshot-{sid}"))).unwrap();
        assert_eq!(
            taken,
            std::fs::read(env.image("file0", id)).unwrap(),
            "the snapshot {sname} differs from its volume"
        );
        out.push((sid, taken));
        let image = env.image("file0", id);
        if grow && k == 0 {
            let size = std::fs::metadata(&image).unwrap().len();
            let more = format!("{}B", size + rng.random_range(1..(3u64 << 20)));
            env.json(&["volume", "extend", name, "--size", &more, "--wait"]);
        }
        let size = std::fs::metadata(&image).unwrap().len();
        scribble(rng, &image, size);
    }
    out
}

/// The snapshots, each equal byte for byte to its content when taken, on backend `on` only.
fn check_snapshots(env: &Env, snaps: &[(String, Vec<u8>)], on: &str, off: &str, at: &str) {
    for (sid, taken) in snaps {
        let there = env.file_dir(on).join(format!("snapshot-{sid}"));
        let got =
            std::fs::read(&there).unwrap_or_else(|e| panic!("{at}: {}: {e}", there.display()));
        assert_eq!(got.len(), taken.len(), "{at}: snapshot {sid}: size on {on}");
        if let Some(i) = (0..got.len()).find(|&i| got[i] != taken[i]) {
            panic!("{at}: snapshot {sid} on {on}: first difference at byte {i}");
        }
        assert!(
            !env.file_dir(off).join(format!("snapshot-{sid}")).exists(),
            "{at}: snapshot {sid} is left on {off}"
        );
    }
    let listed = env.json(&["volume", "snapshot", "list"]);
    for (sid, _) in snaps {
        let s = listed
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["id"] == sid.as_str())
            .unwrap_or_else(|| panic!("{at}: snapshot {sid} is not listed: {listed}"));
        assert_eq!(s["backend"], on, "{at}: {s}");
        assert_eq!(s["status"], "available", "{at}: {s}");
    }
}

/// A volume with snapshots (seeded writes between them, the volume grown after the first)
/// moved by copy: every snapshot arrives equal to what it held when taken, under its id, and
/// the volume equal to what it holds; a clone of a carried snapshot on the target reads it.
#[test]
fn a_copy_carries_snapshots_oldest_first() {
    let seed = seed();
    let mut rng = StdRng::seed_from_u64(seed);
    let dir = tempfile::tempdir().unwrap();
    let url = fresh_db(Engine::Sqlite, dir.path()).unwrap();
    let env = Env::new(dir.path(), &url, TWO_FILES);
    let _serve = env.serve();
    for round in 0..2 {
        let at = format!("seed {seed} round {round}");
        let size = rng.random_range(1u64..(12 << 20)) | 1;
        let name = format!("s{round}");
        let id = create(&env, &name, size, "file0");
        scribble(&mut rng, &env.image("file0", &id), size);
        let n = rng.random_range(1..=3);
        let snaps = take_snapshots(&env, &mut rng, &name, &id, n, true);
        let before = std::fs::read(env.image("file0", &id)).unwrap();
        let out = env.run(&["volume", "migrate", &name, "--to", "file1", "--wait"]);
        assert!(out.status.success(), "{at}: {}", stderr(&out));
        let said = format!("{}{}", stdout(&out), stderr(&out));
        assert!(said.contains("snapshot(s)"), "{at}: {said}");
        let v = env.volume(&name);
        assert_eq!(v["backend"], "file1", "{at}: {v}");
        assert!(!env.image("file0", &id).exists(), "{at}: left on file0");
        let after = std::fs::read(env.image("file1", &id)).unwrap();
        assert_eq!(after.len(), before.len(), "{at}: size");
        if let Some(i) = (0..before.len()).find(|&i| before[i] != after[i]) {
            panic!("{at}: the volume, first difference at byte {i}");
        }
        check_snapshots(&env, &snaps, "file1", "file0", &at);
        // The carried snapshot is a real one on the target: a clone of it reads it.
        let cname = format!("c{round}");
        let sname = format!("{name}-s0");
        env.json(&["volume", "create", &cname, "--snapshot", &sname, "--wait"]);
        let c = env.volume(&cname);
        assert_eq!(c["backend"], "file1", "{at}: {c}");
        for b in ["file0", "file1"] {
            let o = env.run(&["volume", "reconcile", b, "--json"]);
            assert_eq!(json(&o), serde_json::json!([]), "{at}: reconcile {b}");
        }
    }
}

/// A copy that carries snapshots is one job to its operator: its progress runs once from 0 to
/// the whole job (every state copied and read back), never back to 0 at the next snapshot, so
/// the rate and ETA the console shows hold for the whole move.
#[test]
fn the_progress_runs_once_over_every_snapshot_carried() {
    let seed = seed();
    let mut rng = StdRng::seed_from_u64(seed);
    let dir = tempfile::tempdir().unwrap();
    let url = fresh_db(Engine::Sqlite, dir.path()).unwrap();
    let bps = rng.random_range(16u64..=32) << 20;
    let env = Env::new(dir.path(), &url, &two_files_from_throttled(bps));
    let at = format!("seed {seed} ({bps} B/s)");
    let _serve = env.serve();
    let size = (6u64 << 20) + rng.random_range(0..(4u64 << 20));
    let id = create(&env, "p", size, "file0");
    scribble(&mut rng, &env.image("file0", &id), size);
    let n = rng.random_range(2..=3);
    let snaps = take_snapshots(&env, &mut rng, "p", &id, n, true);
    let states: u64 = snaps.iter().map(|(_, d)| d.len() as u64).sum::<u64>()
        + std::fs::metadata(env.image("file0", &id)).unwrap().len();
    let before = std::fs::read(env.image("file0", &id)).unwrap();
    let job = env.json(&["volume", "migrate", "p", "--to", "file1"])["job_id"]
        .as_str()
        .unwrap()
        .to_string();
    let mut seen: Vec<(u64, u64)> = vec![];
    let end = loop {
        let j = env.job(&job);
        let (done, total) = (
            j["bytes_done"].as_u64().unwrap_or(0),
            j["bytes_total"].as_u64().unwrap_or(0),
        );
        if total > 0 {
            seen.push((done, total));
        }
        if ["succeeded", "failed", "cancelled"].contains(&j["state"].as_str().unwrap_or("")) {
            break j;
        }
        std::thread::sleep(std::time::Duration::from_millis(40));
    };
    assert_eq!(end["state"], "succeeded", "{at}: {end}");
    eprintln!("{at}: {n} snapshot(s), {} samples: {seen:?}", seen.len());
    // Each state is copied, then read back: twice its bytes on the bar.
    for (done, total) in &seen {
        assert_eq!(
            *total,
            2 * states,
            "{at}: the bar is not the whole job: {seen:?}"
        );
        assert!(done <= total, "{at}: {seen:?}");
    }
    for w in seen.windows(2) {
        assert!(w[1].0 >= w[0].0, "{at}: the progress went back: {seen:?}");
    }
    let last_step = 2 * (states - snaps.iter().map(|(_, d)| d.len() as u64).sum::<u64>());
    assert!(
        seen.iter()
            .any(|(d, t)| *d > last_step.min(*t / 2) && d < t),
        "{at}: no sample past the first steps while it ran: {seen:?}"
    );
    let after = std::fs::read(env.image("file1", &id)).unwrap();
    if let Some(i) = (0..before.len().max(after.len())).find(|&i| before.get(i) != after.get(i)) {
        panic!("{at}: on file1, first difference at byte {i}");
    }
    check_snapshots(&env, &snaps, "file1", "file0", &at);
}

/// Cancel or `kill -9` at a random moment of a throttled migration: the volume ends whole on
/// exactly one side, with every byte, and nothing is left behind.
#[test]
fn cancel_or_kill_at_a_random_moment_leaves_it_whole_on_one_side() {
    let seed = seed();
    let rounds: usize = std::env::var("EMBER_MIGRATE_ROUNDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(4);
    let mut rng = StdRng::seed_from_u64(seed);
    let dir = tempfile::tempdir().unwrap();
    let url = fresh_db(Engine::Sqlite, dir.path()).unwrap();
    // 12 to 24 MiB/s (the seed's): a 24 MiB copy and its comparison take 2 to 4 s.
    let bps = rng.random_range(12u64..=24) << 20;
    let env = Env::new(dir.path(), &url, &two_files_from_throttled(bps));
    eprintln!("seed {seed}: volume_copy_bps_limit = {bps}");
    let copy_ms = (48u64 << 20) * 1000 / bps;
    let mut serve = env.serve();
    for round in 0..rounds {
        let kill = rng.random_bool(0.5);
        let delay = rng.random_range(0..copy_ms);
        let at = format!(
            "seed {seed} round {round} ({} after {delay} ms)",
            if kill { "kill -9" } else { "cancel" }
        );
        eprintln!("{at}");
        let name = format!("m{round}");
        let size = (24u64 << 20) + rng.random_range(0..(1u64 << 20));
        let id = create(&env, &name, size, "file0");
        scribble(&mut rng, &env.image("file0", &id), size);
        write_at(&env.image("file0", &id), 0, 20 << 20, 0x3c);
        // Every other round (the seed's) the volume has snapshots to carry: the kill or
        // cancel may land in any of their steps.
        let snaps = if rng.random_bool(0.5) {
            let n = rng.random_range(1..=2);
            take_snapshots(&env, &mut rng, &name, &id, n, false)
        } else {
            vec![]
        };
        eprintln!("{at}: {} snapshot(s) to carry", snaps.len());
        let before = std::fs::read(env.image("file0", &id)).unwrap();
        let moved = interrupt(
            &env,
            &mut serve,
            &[&name, "--to", "file1"],
            kill,
            delay,
            &at,
        );
        let v = env.volume(&name);
        let (on, off) = if moved {
            ("file1", "file0")
        } else {
            ("file0", "file1")
        };
        assert_eq!(v["backend"], on, "{at}: {v}");
        assert!(
            !env.image(off, &id).exists(),
            "{at}: an image is left on {off}"
        );
        let after = std::fs::read(env.image(on, &id)).unwrap();
        if let Some(i) = (0..before.len()).find(|&i| before.get(i) != after.get(i)) {
            panic!("{at}: on {on}, first difference at byte {i}");
        }
        check_snapshots(&env, &snaps, on, off, &at);
        for b in ["file0", "file1"] {
            let o = env.run(&["volume", "reconcile", b, "--json"]);
            assert_eq!(json(&o), serde_json::json!([]), "{at}: reconcile {b}");
        }
    }
}

/// rbd on one cluster to rbd on another (a host-assisted copy: no live migration between
/// clusters), to a file backend and back, on two throwaway clusters: compared with
/// `rbd export` of the source before the move, and its snapshot (taken before more writes)
/// with what it held when taken, on every backend it reaches.
#[test]
fn rbd_across_clusters_and_to_file_and_back() {
    let Some(ceph) = Ceph::start(false) else {
        return;
    };
    let Some(other) = Ceph::start(false) else {
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
            "{}{}[backends.file0]\nvolume_driver = \"file\"\n",
            ceph.backend("rbd0", ""),
            other.backend("rbdx", "")
        ),
    );
    let _serve = env.serve();
    env.wait_backend_up("rbd0", 60);
    env.wait_backend_up("rbdx", 60);
    let size = (16u64 << 20) + rng.random_range(0..(1u64 << 20)) * 512;
    let id = create(&env, "r", size, "rbd0");
    // Random data at random places, written through rbd as a client would.
    let img = dir.path().join("data.img");
    std::fs::File::create(&img).unwrap().set_len(size).unwrap();
    scribble(&mut rng, &img, size);
    ceph.rbd(&["rm", &format!("volumes/volume-{id}")]);
    ceph.rbd(&[
        "import",
        img.to_str().unwrap(),
        &format!("volumes/volume-{id}"),
    ]);
    let before = std::fs::read(&img).unwrap();
    // What `rbd export` reads of the volume (`@snapshot-ID`: of one of its snapshots).
    let export_at = |c: &Ceph, at: &str| {
        let out = dir.path().join("export.img");
        let _ = std::fs::remove_file(&out);
        c.rbd(&[
            "export",
            &format!("volumes/volume-{id}{at}"),
            out.to_str().unwrap(),
        ]);
        std::fs::read(&out).unwrap()
    };
    let export = |c: &Ceph| export_at(c, "");
    assert!(export(&ceph) == before);
    // A snapshot of it, then more data on the volume: the snapshot is carried to each
    // backend with what it held, the volume with what it holds now.
    let snap = env.json(&[
        "volume", "snapshot", "create", "rs", "--volume", "r", "--wait",
    ]);
    let sid = snap["snapshot"]["id"].as_str().unwrap().to_string();
    let at_snap = before.clone();
    ceph.rbd(&[
        "bench",
        "--io-type",
        "write",
        "--io-size",
        "64K",
        "--io-total",
        "2M",
        "--io-pattern",
        "rand",
        &format!("volumes/volume-{id}"),
    ]);
    let before = export(&ceph);
    assert!(before != at_snap, "seed {seed}: rbd bench wrote nothing");
    let export_snap = |c: &Ceph| export_at(c, &format!("@snapshot-{sid}"));
    let gone = |c: &Ceph| {
        !Command::new("rbd")
            .arg("-c")
            .arg(&c.conf)
            .args(["info", &format!("volumes/volume-{id}")])
            .output()
            .unwrap()
            .status
            .success()
    };
    for to in ["rbdx", "file0", "rbd0"] {
        let at = format!("seed {seed}: to {to}");
        let out = env.run(&["volume", "migrate", "r", "--to", to, "--wait"]);
        let said = format!("{}{}", stdout(&out), stderr(&out));
        assert!(out.status.success(), "{at}: {said}");
        assert!(
            said.contains("read back and checked"),
            "{at}: not a copy: {said}"
        );
        assert_eq!(env.volume("r")["backend"], to, "{at}");
        let now = match to {
            "rbdx" => export(&other),
            "file0" => std::fs::read(env.image("file0", &id)).unwrap(),
            _ => export(&ceph),
        };
        assert!(
            now.len() == before.len() && now == before,
            "{at}: the data differs"
        );
        let snap_now = match to {
            "rbdx" => export_snap(&other),
            "file0" => {
                std::fs::read(env.file_dir("file0").join(format!("snapshot-{sid}"))).unwrap()
            }
            _ => export_snap(&ceph),
        };
        assert!(snap_now == at_snap, "{at}: the snapshot differs");
        match to {
            "rbdx" => assert!(gone(&ceph), "{at}: left on the first cluster"),
            "file0" => assert!(gone(&other), "{at}: left on the second cluster"),
            _ => assert!(!env.image("file0", &id).exists(), "{at}: left on file0"),
        }
        assert!(
            to == "file0"
                || !env
                    .file_dir("file0")
                    .join(format!("snapshot-{sid}"))
                    .exists(),
            "{at}: the snapshot is left on file0"
        );
    }
}

/// A copy between two clusters carrying snapshots, cancelled or killed (`kill -9`) at a
/// seeded moment of a throttled run: the volume and each snapshot end whole on exactly one
/// cluster (compared byte for byte with `rbd export`, the snapshot at its point in time), the
/// other cluster holds nothing of it, and reconcile finds nothing to say on either.
#[test]
fn rbd_copy_carrying_snapshots_survives_cancel_and_kill() {
    let Some(ceph) = Ceph::start(false) else {
        return;
    };
    let Some(other) = Ceph::start(false) else {
        return;
    };
    let seed = seed();
    let mut rng = StdRng::seed_from_u64(seed);
    let dir = tempfile::tempdir().unwrap();
    let url = fresh_db(Engine::Sqlite, dir.path()).unwrap();
    // 8 to 16 MiB/s (the seed's): the snapshots, the volume and their comparisons take
    // seconds, so the interruption lands in any step.
    let bps = rng.random_range(8u64..=16) << 20;
    let env = Env::new(
        dir.path(),
        &url,
        &format!(
            "{}{}",
            ceph.backend("rbd0", &format!("volume_copy_bps_limit = {bps}")),
            other.backend("rbdx", "")
        ),
    );
    eprintln!("seed {seed}: volume_copy_bps_limit = {bps}");
    let mut serve = env.serve();
    env.wait_backend_up("rbd0", 60);
    env.wait_backend_up("rbdx", 60);
    let export_at = |c: &Ceph, spec: &str| {
        let out = dir.path().join("export.img");
        let _ = std::fs::remove_file(&out);
        c.rbd(&["export", &format!("volumes/{spec}"), out.to_str().unwrap()]);
        std::fs::read(&out).unwrap()
    };
    let exists = |c: &Ceph, image: &str| {
        Command::new("rbd")
            .arg("-c")
            .arg(&c.conf)
            .args(["info", &format!("volumes/{image}")])
            .output()
            .unwrap()
            .status
            .success()
    };
    for round in 0..2 {
        let kill = rng.random_bool(0.5);
        let name = format!("k{round}");
        let size = (12u64 << 20) + rng.random_range(0..2048u64) * 512;
        let id = create(&env, &name, size, "rbd0");
        let image = format!("volume-{id}");
        let mut model = vec![0u8; size as usize];
        let writes = |rng: &mut StdRng, model: &mut [u8]| {
            let ops: Vec<ClientOp> = (0..rng.random_range(2..6))
                .map(|_| {
                    let at = rng.random_range(0..size);
                    let mut data =
                        vec![0u8; rng.random_range(1..(2u64 << 20)).min(size - at) as usize];
                    rng.fill(&mut data[..]);
                    ClientOp::Data(at, data)
                })
                .collect();
            ceph.client_write(&image, &ops, model);
        };
        writes(&mut rng, &mut model);
        let mut snaps = vec![];
        for k in 0..rng.random_range(1..=2) {
            let s = env.json(&[
                "volume",
                "snapshot",
                "create",
                &format!("{name}-s{k}"),
                "--volume",
                &name,
                "--wait",
            ]);
            snaps.push((
                s["snapshot"]["id"].as_str().unwrap().to_string(),
                model.clone(),
            ));
            writes(&mut rng, &mut model);
        }
        // About the whole run (every snapshot and the volume copied, then read back from both
        // sides; the read-back is not throttled): measured 2.4 s for 12 MiB and one snapshot
        // at 15 MiB/s.
        let copy_ms = (snaps.len() as u64 + 1) * size * 1000 / bps;
        let delay = rng.random_range(0..copy_ms);
        let at = format!(
            "seed {seed} round {round} ({} after {delay} ms, {} snapshot(s))",
            if kill { "kill -9" } else { "cancel" },
            snaps.len()
        );
        eprintln!("{at}");
        let moved = interrupt(&env, &mut serve, &[&name, "--to", "rbdx"], kill, delay, &at);
        let (on, off, backend) = if moved {
            (&other, &ceph, "rbdx")
        } else {
            (&ceph, &other, "rbd0")
        };
        assert_eq!(env.volume(&name)["backend"], backend, "{at}");
        assert!(
            export_at(on, &image) == model,
            "{at}: the volume differs on {backend}"
        );
        for (sid, taken) in &snaps {
            let got = export_at(on, &format!("{image}@snapshot-{sid}"));
            assert!(got == *taken, "{at}: snapshot {sid} differs on {backend}");
        }
        assert!(
            !exists(off, &image),
            "{at}: an image is left on the other cluster"
        );
        for b in ["rbd0", "rbdx"] {
            let o = env.run(&["volume", "reconcile", b, "--json"]);
            assert_eq!(json(&o), serde_json::json!([]), "{at}: reconcile {b}");
        }
    }
}

/// Two pools of one cluster: librbd's live migration, snapshots and parent kept; then a
/// cancel or a `kill -9` at a random moment of one, and the volume whole on exactly one side.
#[test]
fn rbd_live_migration_keeps_snapshots_and_survives_cancel_and_kill() {
    let Some(ceph) = Ceph::start(false) else {
        return;
    };
    let seed = seed();
    let mut rng = StdRng::seed_from_u64(seed);
    let dir = tempfile::tempdir().unwrap();
    let url = fresh_db(Engine::Sqlite, dir.path()).unwrap();
    let rbd1 = ceph.second_pool("rbd1");
    // 64 MiB/s on the source: a 192 MiB migration takes about 3 s, long enough to be hit.
    let env = Env::new(
        dir.path(),
        &url,
        &format!(
            "{}{rbd1}",
            ceph.backend("rbd0", "volume_copy_bps_limit = 67108864")
        ),
    );
    let mut serve = env.serve();
    env.wait_backend_up("rbd0", 60);
    env.wait_backend_up("rbd1", 60);
    let export = |spec: &str| {
        let out = dir.path().join("export.img");
        let _ = std::fs::remove_file(&out);
        ceph.rbd(&["export", spec, out.to_str().unwrap()]);
        std::fs::read(&out).unwrap()
    };
    let exists = |spec: &str| {
        Command::new("rbd")
            .arg("-c")
            .arg(&ceph.conf)
            .args(["info", spec])
            .output()
            .unwrap()
            .status
            .success()
    };
    // Random data through rbd, a snapshot of it, then more data on the volume.
    let import = |id: &str, size: u64, rng: &mut StdRng| {
        let img = dir.path().join("data.img");
        let _ = std::fs::remove_file(&img);
        std::fs::File::create(&img).unwrap().set_len(size).unwrap();
        scribble(rng, &img, size);
        ceph.rbd(&["rm", &format!("volumes/volume-{id}")]);
        ceph.rbd(&[
            "import",
            img.to_str().unwrap(),
            &format!("volumes/volume-{id}"),
        ]);
        std::fs::read(&img).unwrap()
    };
    let size = (24u64 << 20) + rng.random_range(0..(1u64 << 20)) * 512;
    let id = create(&env, "l", size, "rbd0");
    let at_snap = import(&id, size, &mut rng);
    let snap = env.json(&[
        "volume", "snapshot", "create", "ls", "--volume", "l", "--wait",
    ]);
    let sid = snap["snapshot"]["id"].as_str().unwrap().to_string();
    ceph.rbd(&[
        "bench",
        "--io-type",
        "write",
        "--io-size",
        "64K",
        "--io-pattern",
        "rand",
        "--io-total",
        "4M",
        &format!("volumes/volume-{id}"),
    ]);
    let head = export(&format!("volumes/volume-{id}"));
    let out = env.run(&["volume", "migrate", "l", "--to", "rbd1", "--wait"]);
    let said = format!("{}{}", stdout(&out), stderr(&out));
    assert!(out.status.success(), "seed {seed}: {said}");
    assert!(said.contains("live migration"), "{said}");
    assert_eq!(env.volume("l")["backend"], "rbd1");
    assert!(
        export(&format!("volumes2/volume-{id}")) == head,
        "seed {seed}: head differs"
    );
    assert!(
        export(&format!("volumes2/volume-{id}@snapshot-{sid}")) == at_snap,
        "seed {seed}: the snapshot differs"
    );
    assert!(!exists(&format!("volumes/volume-{id}")), "left in volumes");
    let snaps = env.json(&["volume", "snapshot", "list"]);
    let s = snaps
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "ls")
        .unwrap();
    assert_eq!(s["backend"], "rbd1", "{s}");
    for b in ["rbd0", "rbd1"] {
        let o = env.run(&["volume", "reconcile", b, "--json"]);
        assert_eq!(
            json(&o),
            serde_json::json!([]),
            "seed {seed}: reconcile {b}"
        );
    }

    // Cancel or kill -9 at a random moment of a larger one (EMBER_LIVE_ROUNDS, 2 by default:
    // the second is always a kill).
    let rounds: usize = std::env::var("EMBER_LIVE_ROUNDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(2);
    for round in 0..rounds {
        let kill = round % 2 == 1 || rng.random_bool(0.5);
        let delay = rng.random_range(0..3000u64);
        let at = format!(
            "seed {seed} live round {round} ({} after {delay} ms)",
            if kill { "kill -9" } else { "cancel" }
        );
        let name = format!("big{round}");
        let size = 192u64 << 20;
        let id = create(&env, &name, size, "rbd0");
        let before = import(&id, size, &mut rng);
        let moved = interrupt(&env, &mut serve, &[&name, "--to", "rbd1"], kill, delay, &at);
        let v = env.volume(&name);
        let (on, off) = if moved {
            ("volumes2", "volumes")
        } else {
            ("volumes", "volumes2")
        };
        assert_eq!(
            v["backend"],
            if on == "volumes" { "rbd0" } else { "rbd1" },
            "{at}"
        );
        assert!(
            !exists(&format!("{off}/volume-{id}")),
            "{at}: left in {off}"
        );
        assert!(
            export(&format!("{on}/volume-{id}")) == before,
            "{at}: data differs"
        );
    }
}
