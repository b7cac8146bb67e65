//! `ember backup` of rbd volumes, on a throwaway cluster, through the real binary and service;
//! the guest's writes go through librbd (`tests/common/rbd_client.py`) into the image in place,
//! and every restore is compared byte for byte with the test's copy of the volume as it was.
//! Each backup reads a snapshot of its own; `--incremental` reads only what changed since the
//! previous backup's snapshot. Seeds are printed; `EMBER_SEED` replays one.
#![allow(clippy::unwrap_used)]

mod common;

use std::process::Stdio;
use std::time::Duration;

use common::*;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// The store's chunks are 4 MiB: a write touches every chunk it overlaps.
const CHUNK: u64 = 4 << 20;

/// A cluster, a service running `top` (top-level keys) with rbd0 (`extra`'s lines in its
/// section, made with the round's generator) and file0, and a volume `r` on rbd0 of about
/// `size` bytes, `filled` from 1 MiB on with random data.
struct Case {
    ceph: Ceph,
    dir: tempfile::TempDir,
    env: Env,
    serve: Serve,
    image: String,
    /// What the volume holds, as the test wrote it.
    model: Vec<u8>,
    rng: StdRng,
    seed: u64,
}

fn case(
    top: impl FnOnce(&Ceph, &mut StdRng) -> String,
    extra: impl FnOnce(&mut StdRng) -> String,
    size: u64,
    filled: u64,
) -> Option<Case> {
    let ceph = Ceph::start(false)?;
    let seed = seed();
    let mut rng = StdRng::seed_from_u64(seed);
    let top = top(&ceph, &mut rng);
    let extra = extra(&mut rng);
    let dir = tempfile::tempdir().unwrap();
    let url = fresh_db(Engine::Sqlite, dir.path()).unwrap();
    let env = Env::new(
        dir.path(),
        &url,
        &format!(
            "{top}{}[backends.file0]\nvolume_driver = \"file\"\n",
            ceph.backend("rbd0", &extra)
        ),
    );
    let serve = env.serve();
    env.wait_backend_up("rbd0", 60);
    let size = size + rng.random_range(0..2048u64) * 512;
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
    let mut bulk = vec![0u8; filled.min(size - (1 << 20)) as usize];
    rng.fill(&mut bulk[..]);
    ceph.client_write(&image, &[ClientOp::Data(1 << 20, bulk)], &mut model);
    Some(Case {
        ceph,
        dir,
        env,
        serve,
        image,
        model,
        rng,
        seed,
    })
}

impl Case {
    /// `backup create r --name NAME --wait` (`--incremental` when asked): the backup's row.
    fn backup(&self, name: &str, incremental: bool) -> serde_json::Value {
        let mut args = vec!["backup", "create", "r", "--name", name, "--wait"];
        if incremental {
            args.push("--incremental");
        }
        let b = self.env.json(&args);
        assert_eq!(b["job"]["state"], "succeeded", "seed {}: {b}", self.seed);
        self.env.json(&["backup", "show", name])[0].clone()
    }

    /// Restores backup `name` to a new volume on `to` and checks it byte for byte against `want`.
    fn restore_equals(&self, name: &str, to: &str, want: &[u8]) {
        let seed = self.seed;
        let r = self.env.json(&[
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
        self.volume_equals(rid, to, want, &format!("restore of {name} to {to}"));
        // How the written chunks were checked: by the OSDs that store them on rbd (none read
        // back through this host), read back on a file backend.
        let job = r["job"]["id"].as_str().unwrap();
        let said = self.env.job(job)["result"]
            .as_str()
            .unwrap_or("")
            .to_string();
        if to.starts_with("rbd") {
            assert!(
                said.contains(", 0 read back)") && !said.contains("(0 chunk(s) hashed"),
                "seed {seed}: {said}"
            );
        } else {
            assert!(
                said.contains("(0 chunk(s) hashed where stored"),
                "seed {seed}: {said}"
            );
        }
    }

    /// Once job `job` has moved its first bytes, `kill -9` of the service at a seeded moment
    /// in the next `most_ms`; `while_down` runs before the service starts again; the job, run
    /// again, must succeed.
    fn kill_mid(
        &mut self,
        job: &str,
        what: &str,
        most_ms: u64,
        while_down: impl FnOnce(&mut Case),
    ) {
        let seed = self.seed;
        wait_for(
            &format!("the {what} to start"),
            Duration::from_secs(60),
            || (self.env.job(job)["bytes_done"].as_u64().unwrap_or(0) > 0).then_some(()),
        );
        let delay = self.rng.random_range(0..most_ms.max(1));
        std::thread::sleep(Duration::from_millis(delay));
        let was = self.env.job(job);
        eprintln!(
            "seed {seed}: kill -9 {delay} ms into the {what}: at {} of {} ({})",
            was["bytes_done"], was["bytes_total"], was["state"]
        );
        self.serve.signal("KILL");
        self.serve.wait(Duration::from_secs(10));
        while_down(self);
        self.serve = self.env.serve();
        let end = self.env.wait_job(job, 180);
        assert_eq!(end["state"], "succeeded", "seed {seed}: {what}: {end}");
    }

    /// Volume `rid` on `to` (rbd0 or a file backend) holds `want`, byte for byte.
    fn volume_equals(&self, rid: &str, to: &str, want: &[u8], what: &str) {
        let seed = self.seed;
        let got = if to == "rbd0" {
            let out = self.dir.path().join(format!("{rid}.img"));
            self.ceph.rbd(&[
                "export",
                &format!("volumes/volume-{rid}"),
                out.to_str().unwrap(),
            ]);
            std::fs::read(&out).unwrap()
        } else {
            std::fs::read(self.env.image(to, rid)).unwrap()
        };
        if let Some(i) = (0..want.len().max(got.len())).find(|&i| want.get(i) != got.get(i)) {
            panic!("seed {seed}: {what} differs first at byte {i}");
        }
    }

    /// `volume extend r --force` by a seeded few KiB-pages, the model too.
    fn extend(&mut self) {
        let size = self.model.len() as u64 + self.rng.random_range(1..2048u64) * 4096;
        let e = self.env.json(&[
            "volume",
            "extend",
            "r",
            "--size",
            &format!("{size}B"),
            "--force",
            "--wait",
        ]);
        assert_eq!(e["job"]["state"], "succeeded", "seed {}: {e}", self.seed);
        self.model.resize(size as usize, 0);
    }

    /// Random guest I/O through librbd, applied to the model too; the chunks it touched.
    fn guest_io(&mut self) -> u64 {
        let size = self.model.len() as u64;
        let mut ops = vec![];
        let mut touched = std::collections::BTreeSet::new();
        for _ in 0..self.rng.random_range(1..4) {
            let at = self.rng.random_range(0..size);
            let len = self.rng.random_range(1..256u64 << 10).min(size - at);
            let op = match self.rng.random_range(0..10) {
                // Whole objects: librbd may skip a partial discard.
                0 if size / CHUNK > 0 => {
                    let obj = self.rng.random_range(0..size / CHUNK);
                    ClientOp::Discard(obj * CHUNK, CHUNK)
                }
                1 => ClientOp::Zero(at, len),
                _ => {
                    let mut data = vec![0u8; len as usize];
                    self.rng.fill(&mut data[..]);
                    ClientOp::Data(at, data)
                }
            };
            let (at, len) = match &op {
                ClientOp::Data(at, d) => (*at, d.len() as u64),
                ClientOp::Zero(at, len) | ClientOp::Discard(at, len) => (*at, *len),
            };
            touched.extend(at / CHUNK..=(at + len - 1) / CHUNK);
            ops.push(op);
        }
        self.ceph.client_write(&self.image, &ops, &mut self.model);
        touched.len() as u64
    }

    /// Backup snapshots (`backup.<id>.snap.<time>`) on the volume's image.
    fn backup_snaps(&self) -> Vec<String> {
        let spec = format!("volumes/{}", self.image);
        let out = self.ceph.rbd(&["snap", "ls", "--format", "json", &spec]);
        let list: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
        list.iter()
            .filter_map(|s| s["name"].as_str())
            .filter(|n| n.starts_with("backup."))
            .map(str::to_string)
            .collect()
    }
}

fn bytes(row: &serde_json::Value, key: &str) -> u64 {
    row[key].as_u64().unwrap()
}

/// One backup (read through librbd, from its snapshot), restored to rbd and to a file backend.
#[test]
fn an_rbd_volume_backed_up_and_restored_to_rbd_and_to_a_file() {
    let Some(c) = case(|_, _| String::new(), |_| String::new(), 20 << 20, 14 << 20) else {
        return;
    };
    c.backup("rb", false);
    for to in ["rbd0", "file0"] {
        c.restore_equals("rb", to, &c.model);
    }
}

/// Every backup reads a snapshot of the volume (so a client may have it open), and
/// `--incremental` reads only what changed since the previous backup's snapshot: writes, zeros
/// and discards made through librbd. `backup_ceph_max_snapshots = 2` bounds the snapshots left
/// on the image; an extend makes the next backup read the whole volume; deleting a backup
/// removes its snapshot, and the next incremental diffs from the one before. Every backup
/// restored (to rbd and to a file) equals the volume as it was when it was taken.
#[test]
fn rbd_incremental_backups_read_only_what_changed_since_the_last_snapshot() {
    let Some(mut c) = case(
        |_, _| "backup_ceph_max_snapshots = 2\n".into(),
        |_| String::new(),
        64 << 20,
        60 << 20,
    ) else {
        return;
    };
    let seed = c.seed;
    // A client has the image open throughout: backups read snapshots, so they may run.
    let _guest = Opener::rbd_watch(&c.ceph, &format!("volumes/{}", c.image), Stdio::null());
    let mut kept: Vec<(String, Vec<u8>)> = vec![];
    let mut ids: Vec<String> = vec![];
    let mut last_touched = 0;
    for round in 0..6 {
        let touched = if round > 0 { c.guest_io() } else { u64::MAX };
        if round == 3 {
            c.extend();
        }
        let name = format!("b{round}");
        let shown = c.backup(&name, round > 0);
        let (read, data) = (bytes(&shown, "read_bytes"), bytes(&shown, "data_bytes"));
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
        let snaps = c.backup_snaps();
        assert!(
            snaps.len() <= 2 && snaps.iter().any(|s| s.contains(&id)),
            "seed {seed}: after {name} the image holds {snaps:?}"
        );
        ids.push(id);
        kept.push((name, c.model.clone()));
        last_touched = touched;
    }
    for (n, (name, want)) in kept.iter().enumerate() {
        c.restore_equals(name, ["rbd0", "file0"][n % 2], want);
    }
    // The newest backup deleted: its snapshot goes, and the next incremental diffs from b4's
    // (so it reads what b5's round wrote too).
    c.env.json(&["backup", "delete", "b5", "--wait"]);
    let snaps = c.backup_snaps();
    assert!(
        !snaps.iter().any(|s| s.contains(&ids[5])) && snaps.iter().any(|s| s.contains(&ids[4])),
        "seed {seed}: after deleting b5 the image holds {snaps:?}"
    );
    let touched = c.guest_io() + last_touched;
    let shown = c.backup("b6", true);
    assert_eq!(shown["parent_id"], ids[4].as_str(), "seed {seed}: {shown}");
    assert!(
        bytes(&shown, "read_bytes") <= touched * CHUNK,
        "seed {seed}: {shown}"
    );
    c.restore_equals("b6", "rbd0", &c.model);
}

/// `kill -9` at a random moment of a backup while a guest writes: the guest writes more while
/// ember is down, and the backup, run again after the restart, still holds the volume as it
/// was when the backup began (the same snapshot, taken once); the next incremental holds the
/// later writes. Then `kill -9` at a random moment of a restore of the first: run again, it
/// ends equal to it.
#[test]
fn rbd_kill_9_mid_backup_keeps_its_point_in_time() {
    // 6 to 16 MiB/s: a 32 MiB volume takes 2 to 5 s to back up.
    let mut bps = 0;
    let Some(mut c) = case(
        // Into the directory store or, for half the seeds, into an rbd pool (a crash there
        // leaves a base image half written, which the run after the restart must not trust).
        |ceph, rng| {
            if rng.random_bool(0.5) {
                eprintln!("backups go into rbd pool `backups`");
                ceph.backup_target()
            } else {
                eprintln!("backups go into the directory store");
                String::new()
            }
        },
        |rng| {
            bps = rng.random_range(6u64..=16) << 20;
            format!("volume_copy_bps_limit = {bps}")
        },
        32 << 20,
        30 << 20,
    ) else {
        return;
    };
    let seed = c.seed;
    let at_start = c.model.clone();
    let read_ms = c.model.len() as u64 * 1000 / bps;
    eprintln!("seed {seed}: volume_copy_bps_limit = {bps}");
    let job = c.env.json(&["backup", "create", "r", "--name", "b1"])["job_id"]
        .as_str()
        .unwrap()
        .to_string();
    // Reading has begun (so its snapshot was taken), then a random moment of the read; the
    // guest goes on writing while ember is down.
    c.kill_mid(&job, "backup", read_ms / 2, |c| {
        c.guest_io();
    });
    let b1 = c.env.json(&["backup", "show", "b1"])[0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let snaps = c.backup_snaps();
    assert_eq!(
        snaps.iter().filter(|s| s.contains(&b1)).count(),
        1,
        "seed {seed}: {snaps:?}"
    );
    c.backup("b2", true);
    c.restore_equals("b1", "rbd0", &at_start);
    c.restore_equals("b2", "rbd0", &c.model);

    // kill -9 at a seeded moment of a restore of b1 (throttled by rbd0's limit, from the
    // pool or the directory as above): run again after the restart, it ends equal to b1.
    let r = c.env.json(&[
        "backup",
        "restore",
        "b1",
        "--name",
        "again",
        "--backend",
        "rbd0",
    ]);
    let job = r["job_id"].as_str().unwrap().to_string();
    c.kill_mid(&job, "restore", read_ms / 2, |_| {});
    let rid = c.env.volume("again")["id"].as_str().unwrap().to_string();
    c.volume_equals(&rid, "rbd0", &at_start, "the restore of b1 killed mid-way");
}

/// `rbd ls`-style names of the backup pool's snapshots of volume `vid`'s base image.
fn base_snaps(ceph: &Ceph, vid: &str) -> Vec<String> {
    let spec = format!("backups/volume-{vid}.backup.base");
    let out = ceph.rbd(&["snap", "ls", "--format", "json", &spec]);
    let list: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    list.iter()
        .filter_map(|s| s["name"].as_str().map(str::to_string))
        .collect()
}

/// The backup target is an rbd pool on another cluster (`backup_driver = "ceph"`, Cinder's
/// layout: one base image per volume, a snapshot per backup). A full backup, then five rounds
/// of guest writes (one with an extend) each backed up `--incremental`: each stores only the
/// chunks that changed, far less than the full one; every backup restored (to rbd and to a
/// file) equals the volume as it was, and `rbd export` of its snapshot on the backup cluster
/// gives the same bytes without ember. Deleting a backup in the middle and the newest keeps
/// the others whole, and the next incremental applies to the one before (the base image's
/// head is rolled back to it). A manifest altered in the pool is caught by `backup verify` and
/// fails its restore. A file volume backs up into the same pool, read whole, storing only what
/// changed the second time.
#[test]
fn backups_into_an_rbd_pool_on_another_cluster() {
    let Some(other) = Ceph::start(false) else {
        return;
    };
    let Some(mut c) = case(
        |_, _| other.backup_target(),
        |_| String::new(),
        96 << 20,
        90 << 20,
    ) else {
        return;
    };
    let seed = c.seed;
    let vid = c.image.strip_prefix("volume-").unwrap().to_string();
    let mut kept: Vec<(String, Vec<u8>)> = vec![];
    let mut full_stored = 0;
    for round in 0..6 {
        let touched = if round > 0 { c.guest_io() } else { 0 };
        if round == 2 {
            c.extend();
        }
        let name = format!("b{round}");
        let shown = c.backup(&name, round > 0);
        let stored = bytes(&shown, "stored_bytes");
        eprintln!(
            "seed {seed}: {name}: read {}, stored {stored} bytes in the pool ({touched} chunks written by the guest)",
            bytes(&shown, "read_bytes")
        );
        if round == 0 {
            full_stored = stored;
            assert!(
                stored >= 40 << 20,
                "seed {seed}: full backup stored {stored}"
            );
        } else {
            // An extend makes the old last chunk longer (a new hash): one more.
            let grew = u64::from(round == 2);
            assert!(
                stored <= (touched + grew) * CHUNK && stored * 2 < full_stored,
                "seed {seed}: {name} stored {stored} for {touched} chunks ({full_stored} full)"
            );
        }
        kept.push((name, c.model.clone()));
    }
    let snaps = base_snaps(&other, &vid);
    assert_eq!(snaps.len(), 6, "seed {seed}: {snaps:?}");
    // Cinder's layout, readable without ember: the newest snapshot is the volume now.
    let out = c.dir.path().join("export.img");
    let last = snaps.last().unwrap();
    other.rbd(&[
        "export",
        &format!("backups/volume-{vid}.backup.base@{last}"),
        out.to_str().unwrap(),
    ]);
    assert!(
        std::fs::read(&out).unwrap() == c.model,
        "seed {seed}: rbd export of {last} differs"
    );
    for (n, (name, want)) in kept.iter().enumerate() {
        let v = c.env.run(&["backup", "verify", name]);
        assert!(
            v.status.success(),
            "seed {seed}: verify {name}: {}",
            stderr(&v)
        );
        c.restore_equals(name, ["rbd0", "file0"][n % 2], want);
    }
    // b2 and the newest (b5) deleted: their snapshots go, the rest stay whole.
    for name in ["b2", "b5"] {
        let d = c.env.json(&["backup", "delete", name, "--wait"]);
        assert_eq!(d["job"]["state"], "succeeded", "seed {seed}: {d}");
    }
    assert_eq!(base_snaps(&other, &vid).len(), 4, "seed {seed}");
    c.restore_equals("b3", "file0", &kept[3].1);
    // The head holds b5's state; the next incremental diffs from b4: rolled back first.
    c.guest_io();
    let shown = c.backup("b6", true);
    assert_eq!(
        shown["parent_id"],
        c.env.json(&["backup", "show", "b4"])[0]["id"],
        "seed {seed}: {shown}"
    );
    c.restore_equals("b6", "rbd0", &c.model);
    c.restore_equals("b4", "file0", &kept[4].1);

    // A manifest altered in the pool: verify names the chunk, the restore fails.
    let b4 = c.env.json(&["backup", "show", "b4"])[0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let object = format!("backup.{b4}.manifest");
    let file = c.dir.path().join("manifest.json");
    let rados = |args: &[&str]| {
        let o = std::process::Command::new("rados")
            .arg("-c")
            .arg(&other.conf)
            .args(["-p", "backups"])
            .args(args)
            .output()
            .unwrap();
        assert!(o.status.success(), "rados {args:?}: {}", stderr(&o));
    };
    rados(&["get", &object, file.to_str().unwrap()]);
    let mut m: serde_json::Value = serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
    let chunks = m["chunks"].as_array_mut().unwrap();
    let pick = c.rng.random_range(0..chunks.len());
    let index = chunks[pick][0].as_u64().unwrap();
    chunks[pick][1] = serde_json::Value::from("00".repeat(32));
    std::fs::write(&file, serde_json::to_vec(&m).unwrap()).unwrap();
    rados(&["put", &object, file.to_str().unwrap()]);
    let err = c.env.fails(&["backup", "verify", "b4"], 2);
    assert!(
        err.contains(&format!("volume bytes {}..", index * CHUNK)) && err.contains("damaged"),
        "seed {seed}: {err}"
    );
    let r = c
        .env
        .run(&["backup", "restore", "b4", "--name", "bad", "--wait"]);
    assert!(
        !r.status.success(),
        "seed {seed}: an altered backup was restored"
    );
    assert!(
        stderr(&r).contains("damaged"),
        "seed {seed}: {}",
        stderr(&r)
    );

    // A file volume into the same pool: read whole each time, stored only where it changed.
    let size = (8u64 << 20) + c.rng.random_range(0..1024u64) * 512;
    let f = c.env.json(&[
        "volume",
        "create",
        "f",
        "--size",
        &format!("{size}B"),
        "--backend",
        "file0",
        "--wait",
    ]);
    let fid = f["volume"]["id"].as_str().unwrap().to_string();
    let path = c.env.image("file0", &fid);
    let mut data = vec![0u8; size as usize];
    c.rng.fill(&mut data[..]);
    std::fs::write(&path, &data).unwrap();
    let f1 = c
        .env
        .json(&["backup", "create", "f", "--name", "f1", "--wait"]);
    assert_eq!(f1["job"]["state"], "succeeded", "seed {seed}: {f1}");
    let at = c.rng.random_range(0..size - 4096) as usize;
    c.rng.fill(&mut data[at..at + 4096]);
    std::fs::write(&path, &data).unwrap();
    let f2 = c
        .env
        .json(&["backup", "create", "f", "--name", "f2", "--wait"]);
    assert_eq!(f2["job"]["state"], "succeeded", "seed {seed}: {f2}");
    let shown = c.env.json(&["backup", "show", "f2"])[0].clone();
    assert!(
        bytes(&shown, "read_bytes") >= size && bytes(&shown, "stored_bytes") <= 2 * CHUNK,
        "seed {seed}: {shown}"
    );
    let r = c.env.json(&[
        "backup",
        "restore",
        "f2",
        "--name",
        "f2r",
        "--backend",
        "file0",
        "--wait",
    ]);
    assert_eq!(r["job"]["state"], "succeeded", "seed {seed}: {r}");
    let got = std::fs::read(c.env.image("file0", r["volume"]["id"].as_str().unwrap())).unwrap();
    assert!(got == data, "seed {seed}: restore of f2 differs");
}
