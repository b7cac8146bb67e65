//! Randomized copy rounds (issue 22): every round draws what the design assumed — the rate
//! limit (mostly not block-aligned, so neither is the chunk it gives), the data layout (writes
//! at any offset and length, holes, unaligned tails, clones larger than their parents, chains
//! of depth 1–5), the copy (a flatten, or a `--source` clone flattened at once past the clone
//! depth), the interruption (kill -9, cancel then `job retry`, a full disk then `job retry`,
//! or none) and its moment. After each round the copy's data equals, byte for byte, what an
//! in-memory model of every write says it must hold; `volume verify` agrees, and then finds a
//! block zeroed behind ember's back at the offset the test knows.
//!
//! `EMBER_COPY_ROUNDS` (30 by default: the `.ci/run` form; `scripts/faults.sh` runs 1,000) and
//! `EMBER_COPY_ROUNDS_RBD` (10) set the rounds; `EMBER_COPY_PARALLEL` runs that many file
//! rounds at once (2). Each round prints its seed; `EMBER_COPY_SEED=S EMBER_COPY_ROUNDS=1`
//! replays round S alone.
#![allow(clippy::unwrap_used)]

mod common;

use std::io::Write as _;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::time::{Duration, Instant};

use common::*;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const MIB: u64 = 1 << 20;

/// How the copy is interrupted.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Interrupt {
    None,
    Kill,
    CancelRetry,
    DiskFull,
    /// SIGSTOP of the member running the copy, past `service_down_time`: a peer takes the job
    /// over and finishes it; the frozen one wakes up afterwards (cluster rounds only).
    Freeze,
}

/// The copy a round makes.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Copy {
    /// `volume flatten` of the deepest clone.
    Flatten,
    /// `volume create --source` of the deepest clone, past the clone depth: snapshot, clone
    /// and flatten in one job.
    SourceClone,
}

/// Where the round's images live.
enum Store<'a> {
    File,
    Rbd(&'a Ceph),
}

impl Store<'_> {
    fn name(&self) -> &'static str {
        match self {
            Store::File => "file",
            Store::Rbd(_) => "rbd",
        }
    }

    fn backend_text(&self, bps: u64, max_depth: u32, file_dir: &Path) -> String {
        match self {
            Store::File => format!(
                "[backends.b0]\nvolume_driver = \"file\"\nfile_dir = \"{}\"\nvolume_copy_bps_limit = {bps}\nrbd_max_clone_depth = {max_depth}\n",
                file_dir.display()
            ),
            Store::Rbd(ceph) => ceph.backend(
                "b0",
                &format!("volume_copy_bps_limit = {bps}\nrbd_max_clone_depth = {max_depth}"),
            ),
        }
    }

    /// Writes `data` at `off` into a volume as a guest would (file: straight into its file;
    /// rbd: through librbd, with `rbd import-diff`).
    fn write(&self, file_dir: &Path, volume: &str, off: u64, data: &[u8]) {
        match self {
            Store::File => {
                let f = std::fs::OpenOptions::new()
                    .write(true)
                    .open(file_dir.join(format!("volume-{volume}")))
                    .unwrap();
                f.write_all_at(data, off).unwrap();
                f.sync_data().unwrap();
            }
            Store::Rbd(ceph) => {
                // rbd diff v1: header, one write record, end.
                let mut diff = b"rbd diff v1\n".to_vec();
                diff.push(b'w');
                diff.extend_from_slice(&off.to_le_bytes());
                diff.extend_from_slice(&(data.len() as u64).to_le_bytes());
                diff.extend_from_slice(data);
                diff.push(b'e');
                let mut child = std::process::Command::new("rbd")
                    .arg("-c")
                    .arg(&ceph.conf)
                    .args([
                        "import-diff",
                        "--no-progress",
                        "-",
                        &format!("volumes/volume-{volume}"),
                    ])
                    .stdin(std::process::Stdio::piped())
                    .stdout(std::process::Stdio::piped())
                    .stderr(std::process::Stdio::piped())
                    .spawn()
                    .unwrap();
                child.stdin.take().unwrap().write_all(&diff).unwrap();
                let o = child.wait_with_output().unwrap();
                assert!(o.status.success(), "rbd import-diff: {}", stderr(&o));
            }
        }
    }

    /// The volume's data as the storage holds it (file: the raw file, which a flat volume is;
    /// rbd: `rbd export`).
    fn read(&self, file_dir: &Path, volume: &str) -> Vec<u8> {
        match self {
            Store::File => std::fs::read(file_dir.join(format!("volume-{volume}"))).unwrap(),
            Store::Rbd(ceph) => {
                ceph.rbd(&[
                    "export",
                    "--no-progress",
                    &format!("volumes/volume-{volume}"),
                    "-",
                ])
                .stdout
            }
        }
    }
}

/// What one round draws.
#[derive(Debug)]
struct Plan {
    bps: u64,
    depth: usize,
    copy: Copy,
    interrupt: Interrupt,
    /// Where in the copy's expected time the interruption lands (0..1.3).
    moment: f64,
    /// Wait for the job to be claimed before the delay (else the kill may land before it).
    after_claim: bool,
}

fn draw_plan(r: &mut StdRng, store: &Store<'_>, site: Site, can_fill_disk: bool) -> Plan {
    let mut kinds = vec![
        Interrupt::None,
        Interrupt::Kill,
        Interrupt::Kill,
        Interrupt::CancelRetry,
    ];
    if can_fill_disk && matches!(store, Store::File) {
        kinds.push(Interrupt::DiskFull);
    }
    if site == Site::Cluster {
        kinds = vec![Interrupt::Freeze];
    }
    Plan {
        bps: 0, // set once the data is known
        depth: r.random_range(1..=5),
        copy: if r.random_bool(0.3) {
            Copy::SourceClone
        } else {
            Copy::Flatten
        },
        interrupt: kinds[r.random_range(0..kinds.len())],
        // A freeze after the end would test nothing: it lands within the copy.
        moment: r.random_range(0.0..if site == Site::Cluster { 0.7 } else { 1.3 }),
        after_claim: r.random_bool(0.6) || site == Site::Cluster,
    }
}

/// One service, or two members of a cluster sharing the file directory.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Site {
    Single,
    Cluster,
}

/// The round's running services, each with its own config (and host name in a cluster).
struct Hosts {
    names: Vec<&'static str>,
    envs: Vec<Env>,
    serves: Vec<Serve>,
}

impl Hosts {
    fn start(dir: &Path, url: &str, site: Site, backend: &str) -> Hosts {
        let names: &[&'static str] = match site {
            Site::Single => &[""],
            Site::Cluster => &["a", "b"],
        };
        let mut envs = vec![];
        let mut serves = vec![];
        for n in names {
            if n.is_empty() {
                let env = Env::new(dir, url, backend);
                serves.push(env.serve());
                envs.push(env);
                continue;
            }
            let d = dir.join(n);
            std::fs::create_dir_all(&d).unwrap();
            let env = Env::new(
                &d,
                url,
                &format!("host = \"{n}\"\ncluster = \"c1\"\n{backend}file_shared_storage = true\n"),
            );
            let serve = Serve::start(&env.config, &env.url, &env.dir);
            let pid = serve.child.id();
            let host = format!("{n}@b0");
            wait_for(&format!("{host} up"), Duration::from_secs(30), || {
                services(&env.config, &env.url)
                    .iter()
                    .any(|r| r["host"] == host.as_str() && r["state"] == "up" && r["pid"] == pid)
                    .then_some(())
            });
            serves.push(serve);
            envs.push(env);
        }
        Hosts {
            names: names.to_vec(),
            envs,
            serves,
        }
    }

    /// The first member's config, to run commands with.
    fn env(&self) -> Env {
        let e = &self.envs[0];
        Env {
            dir: e.dir.clone(),
            config: e.config.clone(),
            url: e.url.clone(),
        }
    }

    /// The member whose service claimed the job (`a@b0`), as an index.
    fn runner(&self, job: &serde_json::Value) -> usize {
        let by = job["claimed_by"].as_str().unwrap_or_default();
        self.names
            .iter()
            .position(|n| by.starts_with(&format!("{n}@")))
            .unwrap_or(0)
    }

    fn logs(&self) -> String {
        self.serves
            .iter()
            .map(|s| s.log_text())
            .collect::<Vec<_>>()
            .join("\n")
    }
}

/// A size with an unaligned tail: whole MiB plus any number of 512-byte sectors.
fn draw_size(r: &mut StdRng, min: u64) -> u64 {
    let s = r.random_range(1..=12) * MIB + r.random_range(0..2048u64) * 512;
    s.max(min)
}

/// Random writes into a volume of `size` (any offset and length, or 4 KiB-aligned for a
/// layered file volume, whose blocks are its own once written: see the notes in README).
fn draw_writes(r: &mut StdRng, size: u64, aligned: bool) -> Vec<(u64, Vec<u8>)> {
    let n = r.random_range(0..=5);
    (0..n)
        .map(|_| {
            let mut off = r.random_range(0..size);
            let mut len = r.random_range(1..=(2 * MIB).min(size - off));
            if aligned {
                off &= !4095;
                len = (len + 4095) & !4095;
                len = len.min(size - off) & !4095;
                if len == 0 {
                    len = 4096.min(size - off);
                }
            }
            let mut data = vec![0u8; len as usize];
            r.fill(&mut data[..]);
            // Some writes are zeros: data that reads like a hole but is not one.
            if r.random_bool(0.1) {
                data.fill(0);
            }
            (off, data)
        })
        .collect()
}

fn id_of(v: &serde_json::Value) -> String {
    v["volume"]["id"].as_str().unwrap().to_string()
}

fn first_difference(a: &[u8], b: &[u8]) -> Option<usize> {
    if a.len() != b.len() {
        return Some(a.len().min(b.len()));
    }
    a.iter().zip(b).position(|(x, y)| x != y)
}

/// One round, from its seed alone. Panics with the seed on any loss.
fn round(seed: u64, store: &Store<'_>, site: Site, root: &Path, url: Option<&str>) -> String {
    let mut r = StdRng::seed_from_u64(seed);
    let can_fill_disk = nix::unistd::getuid().is_root() && matches!(store, Store::File);
    let mut plan = draw_plan(&mut r, store, site, can_fill_disk);
    let dir = root.join(format!("round-{seed}"));
    std::fs::create_dir_all(&dir).unwrap();
    let url = url
        .map(str::to_string)
        .unwrap_or_else(|| fresh_db(Engine::Sqlite, &dir).unwrap());
    let file_dir = dir.join("images");
    let tmpfs = (plan.interrupt == Interrupt::DiskFull)
        .then(|| Tmpfs::mount(&file_dir, 512 * MIB))
        .flatten();
    let p = |s: &str| format!("s{seed}-{s}");
    let at = format!("{} round seed {seed}", store.name());

    // Layout first, with a generous rate; the copy's own rate is set before it starts.
    let max_depth = match plan.copy {
        Copy::Flatten => 8,
        Copy::SourceClone => plan.depth as u32,
    };
    let mut hosts = Hosts::start(
        &dir,
        &url,
        site,
        &store.backend_text(0, max_depth, &file_dir),
    );
    let env = hosts.env();
    let mut size = draw_size(&mut r, 0);
    let v0 = env.json(&[
        "volume",
        "create",
        &p("v0"),
        "--size",
        &format!("{size}B"),
        "--wait",
    ]);
    let mut cur = id_of(&v0);
    let mut model = vec![0u8; size as usize];
    let mut copied_bytes = 0u64;
    for level in 0..=plan.depth {
        let last = level == plan.depth;
        // Guest writes into the current volume (not into the flatten's target: it must read
        // exactly its parent, for verify to compare with).
        if !(last && plan.copy == Copy::Flatten) {
            let aligned = level > 0 && matches!(store, Store::File);
            for (off, data) in draw_writes(&mut r, size, aligned) {
                store.write(&file_dir, &cur, off, &data);
                model[off as usize..off as usize + data.len()].copy_from_slice(&data);
                copied_bytes += data.len() as u64;
            }
        }
        if last {
            break;
        }
        let vname = if level == 0 {
            p("v0")
        } else {
            p(&format!("c{level}"))
        };
        let snap = p(&format!("s{level}"));
        env.json(&[
            "volume", "snapshot", "create", &snap, "--volume", &vname, "--wait",
        ]);
        let grow = if r.random_bool(0.4) {
            draw_size(&mut r, 0) / 4
        } else {
            0
        };
        size += grow;
        model.resize(size as usize, 0);
        let c = env.json(&[
            "volume",
            "create",
            &p(&format!("c{}", level + 1)),
            "--snapshot",
            &snap,
            "--size",
            &format!("{size}B"),
            "--wait",
        ]);
        cur = id_of(&c);
    }
    let deepest = p(&format!("c{}", plan.depth));

    // The copy's rate: about 0.3–1.5 s for what it copies, any number of bytes per second.
    let secs = r.random_range(0.3..1.5);
    plan.bps = if r.random_bool(0.1) {
        0
    } else {
        ((copied_bytes.max(MIB) as f64 / secs) as u64).max(1_000_000) + r.random_range(0..4096)
    };
    drop(hosts);
    if let Some(fs) = &tmpfs {
        // Room for the layout and a random part of the copy.
        let room = fs.used() + (copied_bytes as f64 * r.random_range(0.05..0.8)) as u64;
        fs.resize(room);
    }
    hosts = Hosts::start(
        &dir,
        &url,
        site,
        &store.backend_text(plan.bps, max_depth, &file_dir),
    );
    let env = hosts.env();
    let expected = Duration::from_secs_f64(match plan.bps {
        0 => 0.2,
        bps => copied_bytes as f64 / bps as f64 + 0.1,
    });
    let (target_name, args): (String, Vec<String>) = match plan.copy {
        Copy::Flatten => (
            deepest.clone(),
            vec!["volume".into(), "flatten".into(), deepest.clone()],
        ),
        Copy::SourceClone => {
            let n = p("full");
            (
                n.clone(),
                vec![
                    "volume".into(),
                    "create".into(),
                    n,
                    "--source".into(),
                    deepest.clone(),
                ],
            )
        }
    };
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut job = env.json(&refs)["job_id"].as_str().unwrap().to_string();
    eprintln!("{at}: {plan:?}, {copied_bytes} bytes written in the chain");
    if plan.after_claim {
        wait_for("the job to be claimed", Duration::from_secs(20), || {
            (env.job(&job)["state"] != "queued").then_some(())
        });
    }
    std::thread::sleep(expected.mul_f64(plan.moment));
    match plan.interrupt {
        Interrupt::None => {}
        Interrupt::Kill => {
            hosts.serves[0].signal("KILL");
            hosts.serves[0].wait(Duration::from_secs(10));
            hosts.serves[0] = env.serve();
        }
        Interrupt::Freeze => {
            let j = env.job(&job);
            if j["state"] == "running" {
                let frozen = hosts.runner(&j);
                hosts.serves[frozen].signal("STOP");
                let ended = env.wait_job(&job, 120);
                hosts.serves[frozen].signal("CONT");
                eprintln!(
                    "{at}: froze {}; the job ended {} by {} (claim {})",
                    j["claimed_by"], ended["state"], ended["claimed_by"], ended["claim_token"]
                );
                // Woken: it notices the lost claim at its next write and stops.
                std::thread::sleep(Duration::from_secs(3));
            }
        }
        Interrupt::CancelRetry => {
            let _ = env.run(&["job", "cancel", &job]);
            let ended = env.wait_job(&job, 60);
            if ended["state"] == "cancelled" {
                // Sometimes the operator grows the clone before running the flatten again.
                if plan.copy == Copy::Flatten && r.random_bool(0.3) {
                    let grown = model.len() as u64 + r.random_range(1..=4096u64) * 512;
                    env.json(&[
                        "volume",
                        "extend",
                        &target_name,
                        "--size",
                        &format!("{grown}B"),
                        "--wait",
                    ]);
                    model.resize(grown as usize, 0);
                    eprintln!("{at}: extended to {grown} bytes before the retry");
                }
                job = if env.run(&["volume", "show", &target_name]).status.success() {
                    env.json(&["job", "retry", &job])["job_id"].clone()
                } else {
                    // A create cancelled before any worker took it leaves nothing to retry.
                    env.json(&refs)["job_id"].clone()
                }
                .as_str()
                .unwrap()
                .to_string();
            }
        }
        Interrupt::DiskFull => {
            let ended = env.wait_job(&job, 60);
            if ended["state"] == "failed" {
                let e = ended["error"].as_str().unwrap_or_default();
                assert!(
                    e.to_lowercase().contains("no space left"),
                    "{at}: failed otherwise: {ended}"
                );
                tmpfs.as_ref().unwrap().resize(512 * MIB);
                job = env.json(&["job", "retry", &job])["job_id"]
                    .as_str()
                    .unwrap()
                    .to_string();
            }
        }
    }
    let ended = env.wait_job(&job, 120);
    assert_eq!(
        ended["state"],
        "succeeded",
        "{at}: {ended}\n{}",
        hosts.logs()
    );
    let v = env.volume(&target_name);
    assert_eq!(v["status"], "available", "{at}: {v}");
    assert!(v["parent"].is_null(), "{at}: still layered: {v}");
    let vid = v["id"].as_str().unwrap().to_string();
    if matches!(store, Store::File) {
        assert!(
            !file_dir.join(format!("volume-{vid}.flatten")).exists(),
            "{at}: the flatten journal stayed"
        );
    }

    // Byte for byte: the copy holds what the model says.
    let got = store.read(&file_dir, &vid);
    if let Some(i) = first_difference(&got, &model) {
        let zeros = got
            .get(i..(i + 4096).min(got.len()))
            .is_some_and(|s| s.iter().all(|b| *b == 0));
        panic!(
            "{at}: DATA LOST: the copy differs from its source at byte {i} (got {} bytes, want {}; zeros there: {zeros})\n{}",
            got.len(),
            model.len(),
            hosts.logs()
        );
    }

    // verify agrees, then finds a block zeroed behind ember's back, at its offset.
    if plan.copy == Copy::Flatten {
        let o = env.run(&[
            "volume",
            "verify",
            &target_name,
            "--bps-limit",
            "0",
            "--wait",
        ]);
        assert!(
            o.status.success(),
            "{at}: verify of a good copy: {} {}",
            stdout(&o),
            stderr(&o)
        );
        if let Some(block) = (0..model.len() / 4096)
            .map(|_| r.random_range(0..model.len() / 4096))
            .take(64)
            .find(|b| model[b * 4096..(b + 1) * 4096].iter().any(|x| *x != 0))
        {
            let want = block * 4096 + model[block * 4096..].iter().position(|x| *x != 0).unwrap();
            store.write(&file_dir, &vid, block as u64 * 4096, &[0u8; 4096]);
            let o = env.run(&[
                "volume",
                "verify",
                &target_name,
                "--bps-limit",
                "0",
                "--wait",
            ]);
            let text = format!("{}{}", stdout(&o), stderr(&o));
            assert!(
                !o.status.success(),
                "{at}: verify missed a zeroed block at {want}: {text}"
            );
            assert!(
                text.contains(&format!("first at byte {want} ")),
                "{at}: verify named another offset than {want}: {text}"
            );
        }
    }
    drop(hosts);
    drop(tmpfs);
    if matches!(store, Store::File) {
        let _ = std::fs::remove_dir_all(&dir);
    }
    format!(
        "{at}: ok ({:?}, {:?}, depth {}, {} B/s)",
        plan.copy, plan.interrupt, plan.depth, plan.bps
    )
}

fn env_num(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn master_seed() -> u64 {
    let seed = env_num("EMBER_COPY_SEED", rand::rng().random::<u64>() >> 1);
    eprintln!(
        "copy rounds: first seed {seed} (round i has seed {seed}+i; EMBER_COPY_SEED=S EMBER_COPY_ROUNDS=1 replays one)"
    );
    seed
}

#[test]
fn interrupted_copies_lose_no_byte_on_the_file_backend() {
    let root = tempfile::tempdir().unwrap();
    let rounds = env_num("EMBER_COPY_ROUNDS", 30);
    let parallel = env_num("EMBER_COPY_PARALLEL", 2).max(1);
    let first = master_seed();
    let started = Instant::now();
    let next = std::sync::atomic::AtomicU64::new(0);
    std::thread::scope(|s| {
        for _ in 0..parallel {
            s.spawn(|| {
                loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    if i >= rounds {
                        break;
                    }
                    let line = round(
                        first.wrapping_add(i),
                        &Store::File,
                        Site::Single,
                        root.path(),
                        None,
                    );
                    eprintln!("{line}");
                }
            });
        }
    });
    eprintln!(
        "copy rounds: {rounds} file rounds clean in {:.0} s",
        started.elapsed().as_secs_f64()
    );
}

#[test]
fn interrupted_copies_lose_no_byte_on_rbd() {
    let Some(ceph) = Ceph::start(false) else {
        return;
    };
    let root = tempfile::tempdir().unwrap();
    let url = fresh_db(Engine::Sqlite, root.path()).unwrap();
    let rounds = env_num("EMBER_COPY_ROUNDS_RBD", 10);
    let first = master_seed();
    let started = Instant::now();
    for i in 0..rounds {
        let line = round(
            first.wrapping_add(i),
            &Store::Rbd(&ceph),
            Site::Single,
            root.path(),
            Some(&url),
        );
        eprintln!("{line}");
    }
    eprintln!(
        "copy rounds: {rounds} rbd rounds clean in {:.0} s",
        started.elapsed().as_secs_f64()
    );
}

/// SIGSTOP of the member running the copy, past `service_down_time`: a peer takes it over
/// and finishes it, the frozen one wakes up and writes nothing more (PostgreSQL: a cluster).
#[test]
fn a_copy_frozen_past_a_takeover_loses_no_byte_in_a_cluster() {
    let root = tempfile::tempdir().unwrap();
    if fresh_db(Engine::Postgres, root.path()).is_none() {
        return;
    }
    let rounds = env_num("EMBER_COPY_ROUNDS_CLUSTER", 3);
    let first = master_seed();
    let started = Instant::now();
    for i in 0..rounds {
        let url = fresh_db(Engine::Postgres, root.path()).unwrap();
        let line = round(
            first.wrapping_add(i),
            &Store::File,
            Site::Cluster,
            root.path(),
            Some(&url),
        );
        eprintln!("{line}");
    }
    eprintln!(
        "copy rounds: {rounds} cluster rounds clean in {:.0} s",
        started.elapsed().as_secs_f64()
    );
}
