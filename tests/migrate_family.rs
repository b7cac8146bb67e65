//! `volume migrate --with-clones`: a volume moves with the clones that read from its
//! snapshots (and theirs), in one job, and they keep their layering on the target: each is
//! made there as a clone of the same snapshot, and only what differs from it is written. Every
//! volume and snapshot of the family is read back as a client reads it (`read_through`, the
//! layering rule written out in the tests) and compared byte for byte with what it held before;
//! random sizes, data, chain shapes and moments of a cancel or a `kill -9` (seed printed;
//! `EMBER_SEED` replays it). `EMBER_MIGRATE_ROUNDS` sets the cancel/kill rounds (2 by default).
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeMap;
use std::path::Path;

use common::*;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// Random guest writes into a file image: random bytes, written zeros (over a parent's data
/// in a clone: they must stay zeros), short or long.
fn scribble(rng: &mut StdRng, path: &Path, most: u64) {
    use std::os::unix::fs::FileExt;
    let size = std::fs::metadata(path).unwrap().len();
    let f = std::fs::OpenOptions::new().write(true).open(path).unwrap();
    for _ in 0..rng.random_range(1..5) {
        let at = rng.random_range(0..size);
        let len = rng.random_range(1..most).min(size - at) as usize;
        let data: Vec<u8> = if rng.random_bool(0.25) {
            vec![0; len]
        } else {
            (0..len).map(|_| rng.random()).collect()
        };
        f.write_all_at(&data, at).unwrap();
    }
}

/// The bytes a file image holds itself: its data extents (`SEEK_DATA`), not its allocated
/// blocks (which count the filesystem's own extent-tree blocks too).
fn own_bytes(path: &Path) -> u64 {
    use nix::unistd::{Whence, lseek};
    let f = std::fs::File::open(path).unwrap();
    let len = f.metadata().unwrap().len() as i64;
    let (mut at, mut sum) = (0, 0);
    while at < len {
        let Ok(data) = lseek(&f, at, Whence::SeekData) else {
            break;
        };
        let hole = lseek(&f, data, Whence::SeekHole).unwrap_or(len).min(len);
        sum += (hole - data) as u64;
        at = hole;
    }
    sum
}

/// A family on file0: volume `v0` with snapshot `s1`; `c1` a clone of `s1` (sometimes larger)
/// with its own writes and snapshot `cs`; `c2` a clone of `cs`; `c3` a `--source` clone of
/// `v0` (its hidden snapshot goes with it). Returns the volume names, and every image as a
/// client reads it now: `volume-ID` and `snapshot-ID` by image name.
fn family(env: &Env, rng: &mut StdRng) -> (Vec<&'static str>, BTreeMap<String, Vec<u8>>) {
    let size = (6u64 << 20) + rng.random_range(0..(10u64 << 20));
    env.json(&[
        "volume",
        "create",
        "v0",
        "--size",
        &format!("{size}B"),
        "--backend",
        "file0",
        "--wait",
    ]);
    let dir = env.file_dir("file0");
    let image = |name: &str| env.image("file0", &env.id_of(name));
    write_at(
        &image("v0"),
        0,
        (size / 2) as usize,
        rng.random_range(1..=255),
    );
    scribble(rng, &image("v0"), 3 << 20);
    env.json(&[
        "volume", "snapshot", "create", "s1", "--volume", "v0", "--wait",
    ]);
    scribble(rng, &image("v0"), 1 << 20);
    let mut c1 = vec!["volume", "create", "c1", "--snapshot", "s1", "--wait"];
    let bigger = format!("{}B", size + rng.random_range(1..(2u64 << 20)));
    if rng.random_bool(0.5) {
        c1.extend(["--size", &bigger]);
    }
    env.json(&c1);
    scribble(rng, &image("c1"), 512 << 10);
    env.json(&[
        "volume", "snapshot", "create", "cs", "--volume", "c1", "--wait",
    ]);
    scribble(rng, &image("c1"), 256 << 10);
    env.json(&["volume", "create", "c2", "--snapshot", "cs", "--wait"]);
    scribble(rng, &image("c2"), 256 << 10);
    env.json(&["volume", "create", "c3", "--source", "v0", "--wait"]);
    scribble(rng, &image("c3"), 256 << 10);
    let names = vec!["v0", "c1", "c2", "c3"];
    let before = images(env, &dir, &names);
    (names, before)
}

/// The images of the volumes `names`: each volume's, and each of its snapshots'.
fn image_names(env: &Env, names: &[&str]) -> Vec<String> {
    let snaps = env.json(&["volume", "snapshot", "list", "--all"]);
    let mut out = vec![];
    for n in names {
        let id = env.id_of(n);
        out.push(format!("volume-{id}"));
        for s in snaps
            .as_array()
            .unwrap()
            .iter()
            .filter(|s| s["volume_id"] == id.as_str())
        {
            out.push(format!("snapshot-{}", s["id"].as_str().unwrap()));
        }
    }
    out
}

/// Every image of the volumes `names` as a client reads it, from the file backend directory
/// `dir`, by image name.
fn images(env: &Env, dir: &Path, names: &[&str]) -> BTreeMap<String, Vec<u8>> {
    image_names(env, names)
        .into_iter()
        .map(|image| {
            let data = read_through(dir, &image);
            (image, data)
        })
        .collect()
}

/// Every image of `before` is on backend `on` only, reading as it did.
fn all_on(env: &Env, before: &BTreeMap<String, Vec<u8>>, on: &str, off: &str, at: &str) {
    for (image, data) in before {
        let got = read_through(&env.file_dir(on), image);
        assert_eq!(got.len(), data.len(), "{at}: {image} size on {on}");
        if let Some(i) = (0..data.len()).find(|&i| got[i] != data[i]) {
            panic!("{at}: {image} on {on}: first difference at byte {i}");
        }
        assert!(
            !env.file_dir(off).join(image).exists(),
            "{at}: {image} is left on {off}"
        );
    }
    for b in ["file0", "file1"] {
        let o = env.run(&["volume", "reconcile", b, "--json"]);
        assert_eq!(json(&o), serde_json::json!([]), "{at}: reconcile {b}");
    }
}

/// What the database says of the volumes' layering: (parent snapshot, depth) by name.
fn layering(env: &Env, names: &[&str]) -> BTreeMap<String, (serde_json::Value, serde_json::Value)> {
    names
        .iter()
        .map(|n| {
            let v = env.volume(n);
            (
                n.to_string(),
                (v["parent"].clone(), v["clone_depth"].clone()),
            )
        })
        .collect()
}

#[test]
fn a_volume_moves_with_its_clones_and_they_stay_layered() {
    let seed = seed();
    let mut rng = StdRng::seed_from_u64(seed);
    let dir = tempfile::tempdir().unwrap();
    let url = fresh_db(Engine::Sqlite, dir.path()).unwrap();
    // Both at 16 MiB/s: each move takes a few seconds, long enough to be cancelled, or asked
    // for what it forbids meanwhile.
    let env = Env::new(
        dir.path(),
        &url,
        "[backends.file0]\nvolume_driver = \"file\"\nvolume_copy_bps_limit = 16777216\n\
         [backends.file1]\nvolume_driver = \"file\"\nvolume_copy_bps_limit = 16777216\n",
    );
    let _serve = env.serve();
    let (names, before) = family(&env, &mut rng);
    let layered = layering(&env, &names);
    let at = format!("seed {seed}");

    // Without --with-clones: refused, saying how to move them together.
    let err = env.fails(&["volume", "migrate", "v0", "--to", "file1"], 1);
    assert!(err.contains("--with-clones"), "{at}: {err}");
    // A clone of the family attached elsewhere: refused, naming it; nothing moves.
    env.json(&["volume", "attach", "c2", "--host", "compute-7"]);
    let err = env.fails(
        &["volume", "migrate", "v0", "--to", "file1", "--with-clones"],
        1,
    );
    assert!(err.contains("c2") && err.contains("attach"), "{at}: {err}");
    env.run(&["volume", "detach", "c2", "--force"]);
    assert_eq!(env.volume("c2")["status"], "available", "{at}");

    // What each clone holds of its own on file0 (its data extents).
    let own_before: BTreeMap<&str, u64> = ["c1", "c2", "c3"]
        .into_iter()
        .map(|n| (n, own_bytes(&env.image("file0", &env.id_of(n)))))
        .collect();
    // Asked and cancelled at once (file0 at 16 MiB/s: it cannot be done yet): the whole
    // family is still on file0.
    let out = env.run(&["volume", "migrate", "v0", "--to", "file1", "--with-clones"]);
    let said = format!("{}{}", stdout(&out), stderr(&out));
    assert!(out.status.success(), "{at}: {said}");
    assert!(said.contains("clone(s) move with it"), "{at}: {said}");
    let job = env.json(&["job", "list"])[0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    env.run(&["job", "cancel", &job]);
    assert_eq!(env.wait_job(&job, 120)["state"], "cancelled", "{at}");
    all_on(&env, &before, "file0", "file1", &at);
    // A retry moves the family it was asked for: refused once another clone reads from it.
    env.json(&["volume", "create", "c9", "--snapshot", "s1", "--wait"]);
    let err = env.fails(&["job", "retry", &job], 1);
    assert!(err.contains("changed"), "{at}: {err}");
    env.json(&["volume", "delete", "c9", "--wait"]);
    let out = env.run(&["job", "retry", &job, "--wait"]);
    assert!(
        out.status.success(),
        "{at}: {}{}",
        stdout(&out),
        stderr(&out)
    );
    for n in &names {
        let v = env.volume(n);
        assert_eq!(v["backend"], "file1", "{at}: {n}: {v}");
        assert_eq!(v["status"], "available", "{at}: {n}: {v}");
    }
    assert_eq!(
        layering(&env, &names),
        layered,
        "{at}: the layering changed"
    );
    all_on(&env, &before, "file1", "file0", &at);
    // Still clones on file1: a parent link each, and only their own data in their files.
    for n in ["c1", "c2", "c3"] {
        let image = env.image("file1", &env.id_of(n));
        assert!(
            image.with_extension("parent").exists(),
            "{at}: {n} has no parent link on file1"
        );
        let (own, size) = (own_bytes(&image), std::fs::metadata(&image).unwrap().len());
        eprintln!(
            "{at}: {n}: {own} bytes of its own on file1 ({} on file0) of {size}",
            own_before[n]
        );
        assert!(
            own <= own_before[n],
            "{at}: {n} holds {own} bytes of its own on file1, {} on file0",
            own_before[n]
        );
    }

    // c1 alone with its clone, back to file0: c1's parent s1 stays on file1, so c1 arrives
    // flat, and c2 still reads from c1's snapshot cs.
    let out = env.run(&["volume", "migrate", "c1", "--to", "file0", "--with-clones"]);
    let said = format!("{}{}", stdout(&out), stderr(&out));
    assert!(out.status.success(), "{at}: {said}");
    assert!(said.contains("flattened on the way"), "{at}: {said}");
    let job = env.json(&["job", "list"])[0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    // While it moves, a clone of a moving snapshot or its deletion is refused (they would be
    // left behind, or pulled from under the copy), and so is another job on a clone.
    let state = env.job(&job)["state"].clone();
    for (what, args) in [
        (
            "a clone of cs",
            vec!["volume", "create", "x", "--snapshot", "cs"],
        ),
        ("deleting cs", vec!["volume", "snapshot", "delete", "cs"]),
        ("a flatten of c2", vec!["volume", "flatten", "c2"]),
    ] {
        let o = env.run(&args);
        let err = stderr(&o);
        eprintln!("{at}: {what} while the job was {state}: {err}");
        if state == "queued" || state == "running" {
            assert!(!o.status.success(), "{at}: {what} was not refused");
            assert!(
                err.contains("migrat") || err.contains("maintenance"),
                "{at}: {what}: {err}"
            );
        }
    }
    assert_eq!(env.wait_job(&job, 120)["state"], "succeeded", "{at}");
    let c1 = env.volume("c1");
    assert!(c1["parent"].is_null(), "{at}: {c1}");
    assert_eq!(c1["clone_depth"], 0, "{at}: {c1}");
    assert_eq!(env.volume("c2")["parent"], layered["c2"].0, "{at}");
    assert_eq!(env.volume("c2")["backend"], "file0", "{at}");
    let moved: BTreeMap<String, Vec<u8>> = image_names(&env, &["c1", "c2"])
        .into_iter()
        .map(|image| {
            let data = before[&image].clone();
            (image, data)
        })
        .collect();
    assert_eq!(moved.len(), 3, "{at}: c1, cs and c2");
    all_on(&env, &moved, "file0", "file1", &at);
}

#[test]
fn cancel_or_kill_leaves_the_whole_family_on_one_side() {
    let seed = seed();
    let rounds: usize = std::env::var("EMBER_MIGRATE_ROUNDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(2);
    let mut rng = StdRng::seed_from_u64(seed);
    // 8 to 24 MiB/s (the seed's): the family's copy and its checks take a few seconds.
    let bps = rng.random_range(8u64..=24) << 20;
    eprintln!("seed {seed}: volume_copy_bps_limit = {bps}");
    for round in 0..rounds {
        let dir = tempfile::tempdir().unwrap();
        let url = fresh_db(Engine::Sqlite, dir.path()).unwrap();
        let env = Env::new(dir.path(), &url, &two_files_from_throttled(bps));
        let mut serve = env.serve();
        let (names, before) = family(&env, &mut rng);
        let layered = layering(&env, &names);
        let total: u64 = before.values().map(|d| d.len() as u64).sum();
        let kill = rng.random_bool(0.5);
        let delay = rng.random_range(0..(2 * total * 1000 / bps).max(1));
        let at = format!(
            "seed {seed} round {round} ({} after {delay} ms)",
            if kill { "kill -9" } else { "cancel" }
        );
        let moved = interrupt(
            &env,
            &mut serve,
            &["v0", "--to", "file1", "--with-clones"],
            kill,
            delay,
            &at,
        );
        let on = if moved { "file1" } else { "file0" };
        let off = if on == "file1" { "file0" } else { "file1" };
        for n in &names {
            let v = env.volume(n);
            assert_eq!(v["backend"], on, "{at}: {n}: {v}");
            assert_eq!(v["status"], "available", "{at}: {n}: {v}");
        }
        assert_eq!(
            layering(&env, &names),
            layered,
            "{at}: the layering changed"
        );
        all_on(&env, &before, on, off, &at);
        drop(serve);
    }
}

/// Seeded guest writes into `pool/image` through librbd (`rbd bench`, random 64 KiB writes).
fn bench(ceph: &Ceph, spec: &str, rng: &mut StdRng) {
    let total = format!("{}K", 64 * rng.random_range(4..24));
    ceph.rbd(&[
        "bench",
        "--io-type",
        "write",
        "--io-size",
        "64K",
        "--io-total",
        &total,
        "--io-pattern",
        "rand",
        spec,
    ]);
}

/// Three rbd backends on two throwaway clusters: rbd0 (`volumes`) and rbd1 (`volumes2`) on
/// one, rbdx on the other; on rbd0 a family as in the file test, written through librbd: `v0`
/// with snapshot `s1`, `c1` a clone of it with its own writes and written zeros over its
/// parent's data, its snapshot `cs`, `c2` a clone of that.
struct RbdFamily {
    ceph: Ceph,
    other: Ceph,
    dir: tempfile::TempDir,
    env: Env,
    serve: Serve,
    seed: u64,
    rng: StdRng,
    /// Every image of the family (`volume-ID`, `volume-ID@snapshot-SID`) as `rbd export` read
    /// it before any move.
    before: BTreeMap<String, Vec<u8>>,
    layered: BTreeMap<String, (serde_json::Value, serde_json::Value)>,
}

const RBD_NAMES: [&str; 3] = ["v0", "c1", "c2"];

impl RbdFamily {
    /// `rbd0_extra`: more lines for rbd0's section (a copy rate), drawn from the seed's
    /// generator first.
    fn start(rbd0_extra: impl FnOnce(&mut StdRng) -> String) -> Option<RbdFamily> {
        let ceph = Ceph::start(false)?;
        let other = Ceph::start(false)?;
        let seed = seed();
        let mut rng = StdRng::seed_from_u64(seed);
        let dir = tempfile::tempdir().unwrap();
        let url = fresh_db(Engine::Sqlite, dir.path()).unwrap();
        let rbd1 = ceph.second_pool("rbd1");
        let extra = rbd0_extra(&mut rng);
        let env = Env::new(
            dir.path(),
            &url,
            &format!(
                "{}{rbd1}{}",
                ceph.backend("rbd0", &extra),
                other.backend("rbdx", "")
            ),
        );
        let serve = env.serve();
        for b in ["rbd0", "rbd1", "rbdx"] {
            env.wait_backend_up(b, 60);
        }
        let size = (8u64 << 20) + rng.random_range(0..16384u64) * 512;
        env.json(&[
            "volume",
            "create",
            "v0",
            "--size",
            &format!("{size}B"),
            "--backend",
            "rbd0",
            "--wait",
        ]);
        let spec = |n: &str| format!("volumes/volume-{}", env.id_of(n));
        ceph.fill(&format!("volume-{}", env.id_of("v0")), 4);
        bench(&ceph, &spec("v0"), &mut rng);
        env.json(&[
            "volume", "snapshot", "create", "s1", "--volume", "v0", "--wait",
        ]);
        bench(&ceph, &spec("v0"), &mut rng);
        env.json(&["volume", "create", "c1", "--snapshot", "s1", "--wait"]);
        bench(&ceph, &spec("c1"), &mut rng);
        // Zeros written over the parent's data: they must stay zeros in the moved clone.
        let at = rng.random_range(0..(3u64 << 20));
        let mut model = vec![0u8; size as usize];
        ceph.client_write(
            &format!("volume-{}", env.id_of("c1")),
            &[ClientOp::Zero(at, 100 << 10)],
            &mut model,
        );
        env.json(&[
            "volume", "snapshot", "create", "cs", "--volume", "c1", "--wait",
        ]);
        bench(&ceph, &spec("c1"), &mut rng);
        env.json(&["volume", "create", "c2", "--snapshot", "cs", "--wait"]);
        bench(&ceph, &spec("c2"), &mut rng);
        let snaps = env.json(&["volume", "snapshot", "list", "--all"]);
        let images: Vec<String> = image_names(&env, &RBD_NAMES)
            .into_iter()
            .map(|i| match i.strip_prefix("snapshot-") {
                Some(sid) => {
                    let s = snaps
                        .as_array()
                        .unwrap()
                        .iter()
                        .find(|s| s["id"] == sid)
                        .unwrap();
                    format!("volume-{}@snapshot-{sid}", s["volume_id"].as_str().unwrap())
                }
                None => i,
            })
            .collect();
        let layered = layering(&env, &RBD_NAMES);
        let mut f = RbdFamily {
            ceph,
            other,
            dir,
            env,
            serve,
            seed,
            rng,
            before: BTreeMap::new(),
            layered,
        };
        f.before = images
            .into_iter()
            .map(|i| {
                let data = f.export("rbd0", &i);
                (i, data)
            })
            .collect();
        Some(f)
    }

    /// The cluster and pool of backend `b`.
    fn place(&self, b: &str) -> (&Ceph, &'static str) {
        match b {
            "rbd0" => (&self.ceph, "volumes"),
            "rbd1" => (&self.ceph, "volumes2"),
            _ => (&self.other, "volumes"),
        }
    }

    /// `rbd export` of `image` on backend `b`.
    fn export(&self, b: &str, image: &str) -> Vec<u8> {
        let (c, pool) = self.place(b);
        let out = self.dir.path().join("export.img");
        let _ = std::fs::remove_file(&out);
        c.rbd(&["export", &format!("{pool}/{image}"), out.to_str().unwrap()]);
        std::fs::read(&out).unwrap()
    }

    /// The family is whole on backend `on` and nowhere else: its rows there, `available`, the
    /// layering rows as before and in the images (`rbd info`'s parent of each clone in the
    /// same pool), every image equal to what it held, the other pools empty, reconcile quiet.
    fn whole_on(&self, on: &str, at: &str) {
        let env = &self.env;
        for n in RBD_NAMES {
            let v = env.volume(n);
            assert_eq!(v["backend"], on, "{at}: {n}: {v}");
            assert_eq!(v["status"], "available", "{at}: {n}: {v}");
        }
        assert_eq!(
            layering(env, &RBD_NAMES),
            self.layered,
            "{at}: the layering changed"
        );
        let (c, pool) = self.place(on);
        for (clone, parent) in [("c1", "v0"), ("c2", "c1")] {
            let spec = format!("{pool}/volume-{}", env.id_of(clone));
            let info = c.rbd(&["info", "--format", "json", &spec]);
            let v: serde_json::Value = serde_json::from_slice(&info.stdout).unwrap();
            assert_eq!(
                (v["parent"]["pool"].as_str(), v["parent"]["image"].as_str()),
                (
                    Some(pool),
                    Some(format!("volume-{}", env.id_of(parent)).as_str())
                ),
                "{at}: {clone} is no clone of {parent}'s snapshot on {on}: {v}"
            );
        }
        for (image, data) in &self.before {
            let got = self.export(on, image);
            assert_eq!(got.len(), data.len(), "{at}: {image}: size");
            if let Some(i) = (0..data.len()).find(|&i| got[i] != data[i]) {
                panic!("{at}: {image} on {on} differs first at byte {i}");
            }
        }
        for b in ["rbd0", "rbd1", "rbdx"].into_iter().filter(|b| *b != on) {
            let (c, pool) = self.place(b);
            let left = c.rbd(&["ls", pool]);
            assert!(
                stdout(&left).trim().is_empty(),
                "{at}: left on {b}: {}",
                stdout(&left)
            );
        }
        for b in ["rbd0", "rbd1", "rbdx"] {
            let o = env.run(&["volume", "reconcile", b, "--json"]);
            assert_eq!(json(&o), serde_json::json!([]), "{at}: reconcile {b}");
        }
    }
}

/// An rbd family moved by copy to another pool of its cluster (a family is never live
/// migrated), then to another cluster: every volume and snapshot compared by `rbd export` with
/// what it held before, each clone still a clone of the same snapshot in its new pool, nothing
/// left behind.
#[test]
fn rbd_family_moves_to_another_pool_then_across_clusters_and_stays_layered() {
    let Some(f) = RbdFamily::start(|_| String::new()) else {
        return;
    };
    for to in ["rbd1", "rbdx"] {
        let at = format!("seed {}: to {to}", f.seed);
        let out = f.env.run(&[
            "volume",
            "migrate",
            "v0",
            "--to",
            to,
            "--with-clones",
            "--wait",
        ]);
        let said = format!("{}{}", stdout(&out), stderr(&out));
        assert!(out.status.success(), "{at}: {said}");
        // A copy, also between the two pools of one cluster (no live migration for a family).
        assert!(said.contains("read back and checked"), "{at}: {said}");
        assert!(!said.contains("live migration"), "{at}: {said}");
        f.whole_on(to, &at);
    }
}

/// The family's copy to the other pool of its cluster or to the other cluster, as the seed
/// says, throttled on rbd0, cancelled or killed (`kill -9`) at a seeded moment: it ends whole
/// on exactly one side, layered, every image equal.
#[test]
fn rbd_family_move_survives_cancel_and_kill() {
    // 16 to 32 MiB/s on rbd0 (the seed's): the family's move takes a few seconds.
    let bps = std::cell::Cell::new(0);
    let Some(mut f) = RbdFamily::start(|rng| {
        bps.set(rng.random_range(16u64..=32) << 20);
        format!("volume_copy_bps_limit = {}", bps.get())
    }) else {
        return;
    };
    let bps = bps.get();
    let seed = f.seed;
    let to = if f.rng.random_bool(0.5) {
        "rbd1"
    } else {
        "rbdx"
    };
    let kill = f.rng.random_bool(0.5);
    let total: u64 = f.before.values().map(|d| d.len() as u64).sum();
    let delay = f.rng.random_range(0..(total * 1000 / bps).max(1));
    let at = format!(
        "seed {seed}: to {to} at {bps} B/s, {} after {delay} ms",
        if kill { "kill -9" } else { "cancel" }
    );
    eprintln!("{at}");
    let moved = interrupt(
        &f.env,
        &mut f.serve,
        &["v0", "--to", to, "--with-clones"],
        kill,
        delay,
        &at,
    );
    f.whole_on(if moved { to } else { "rbd0" }, &at);
}
