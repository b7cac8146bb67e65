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
    top: &str,
    extra: impl FnOnce(&mut StdRng) -> String,
    size: u64,
    filled: u64,
) -> Option<Case> {
    let ceph = Ceph::start(false)?;
    let seed = seed();
    let mut rng = StdRng::seed_from_u64(seed);
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
        let got = if to == "rbd0" {
            let out = self.dir.path().join(format!("{name}-{to}.img"));
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
            panic!("seed {seed}: restore of {name} to {to} differs first at byte {i}");
        }
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
    let Some(c) = case("", |_| String::new(), 20 << 20, 14 << 20) else {
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
        "backup_ceph_max_snapshots = 2\n",
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
            let size = c.model.len() as u64 + c.rng.random_range(1..2048u64) * 4096;
            let e = c.env.json(&[
                "volume",
                "extend",
                "r",
                "--size",
                &format!("{size}B"),
                "--force",
                "--wait",
            ]);
            assert_eq!(e["job"]["state"], "succeeded", "seed {seed}: {e}");
            c.model.resize(size as usize, 0);
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
/// later writes.
#[test]
fn rbd_kill_9_mid_backup_keeps_its_point_in_time() {
    // 6 to 16 MiB/s: a 32 MiB volume takes 2 to 5 s to back up.
    let mut bps = 0;
    let Some(mut c) = case(
        "",
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
    let delay = c.rng.random_range(0..read_ms / 2);
    let job = c.env.json(&["backup", "create", "r", "--name", "b1"])["job_id"]
        .as_str()
        .unwrap()
        .to_string();
    // Reading has begun (so its snapshot was taken), then a random moment of the read.
    wait_for("the backup to read", Duration::from_secs(60), || {
        (c.env.job(&job)["bytes_done"].as_u64().unwrap_or(0) > 0).then_some(())
    });
    std::thread::sleep(Duration::from_millis(delay));
    let was = c.env.job(&job);
    eprintln!(
        "seed {seed}: kill -9 {delay} ms into the backup at {bps} B/s: at {} of {} ({})",
        was["bytes_done"], was["bytes_total"], was["state"]
    );
    c.serve.signal("KILL");
    c.serve.wait(Duration::from_secs(10));
    // The guest goes on writing while ember is down.
    c.guest_io();
    c.serve = c.env.serve();
    let end = c.env.wait_job(&job, 180);
    assert_eq!(end["state"], "succeeded", "seed {seed}: {end}");
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
}
