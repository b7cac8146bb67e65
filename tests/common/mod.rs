//! Test helpers: run the real `ember` binary as an operator would, on a fresh database of
//! either engine.
#![allow(dead_code, clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub mod proxy;

pub const EMBER: &str = env!("CARGO_BIN_EXE_ember");

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Engine {
    Sqlite,
    Postgres,
}

/// A fresh database URL for one test, or None (with a printed notice) when PostgreSQL is not
/// available outside CI. In CI (`EMBER_REQUIRE_PG` or `CI`), a missing PostgreSQL is a failure.
pub fn fresh_db(engine: Engine, dir: &Path) -> Option<String> {
    match engine {
        Engine::Sqlite => Some(format!("sqlite://{}", dir.join("ember.db").display())),
        Engine::Postgres => {
            let Ok(admin) = std::env::var("EMBER_TEST_DATABASE_URL") else {
                if std::env::var_os("EMBER_REQUIRE_PG").is_some()
                    || std::env::var_os("CI").is_some()
                {
                    panic!(
                        "EMBER_TEST_DATABASE_URL is not set: run the tests with scripts/test.sh"
                    );
                }
                eprintln!(
                    "NOTICE: PostgreSQL variant skipped: EMBER_TEST_DATABASE_URL not set (scripts/test.sh sets it)"
                );
                return None;
            };
            let name = format!("t_{}", uuid::Uuid::new_v4().simple());
            let out = Command::new("psql")
                .args([admin.as_str(), "-qAtc", &format!("CREATE DATABASE {name}")])
                .output()
                .expect("psql runs");
            assert!(
                out.status.success(),
                "create database: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            let base = admin.rsplit_once('/').map(|(b, _)| b).unwrap();
            Some(format!("{base}/{name}"))
        }
    }
}

/// Runs `f` once per engine with a fresh temp dir and database.
pub fn each_engine(mut f: impl FnMut(Engine, &Path, &str)) {
    for engine in [Engine::Sqlite, Engine::Postgres] {
        let dir = tempfile::tempdir().unwrap();
        if let Some(url) = fresh_db(engine, dir.path()) {
            eprintln!("--- {engine:?}");
            f(engine, dir.path(), &url);
        }
    }
}

/// A round's random seed: `EMBER_SEED` replays one, else a new one; printed either way.
pub fn seed() -> u64 {
    let seed = std::env::var("EMBER_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(rand::random);
    eprintln!("seed {seed} (EMBER_SEED={seed} replays it)");
    seed
}

pub fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

/// Runs ember to completion with a hard timeout (a hang fails the test, never CI's clock).
pub fn ember(args: &[&str]) -> Output {
    ember_env(args, &[])
}

pub fn ember_env(args: &[&str], env: &[(&str, &str)]) -> Output {
    let child = Command::new(EMBER)
        .args(args)
        .env_remove("EMBER_CONFIG")
        .env_remove("EMBER_DATABASE_URL")
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    // Read the pipes while waiting (a full pipe would block ember), with a hard timeout.
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(Duration::from_secs(60)) {
        Ok(out) => out.unwrap(),
        Err(_) => {
            let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
            panic!("ember {args:?} did not finish within 60 s");
        }
    }
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

pub fn json(o: &Output) -> serde_json::Value {
    assert!(o.status.success(), "ember failed: {}", stderr(o));
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {}", stdout(o)))
}

/// A running `ember serve`, killed on drop so a failing test leaves nothing behind.
pub struct Serve {
    pub child: Child,
    pub log: PathBuf,
}

impl Serve {
    pub fn start(config: &Path, db_url: &str, dir: &Path) -> Serve {
        Serve::start_env(config, db_url, dir, &[])
    }

    /// As `start`, with extra environment (fault injection).
    pub fn start_env(config: &Path, db_url: &str, dir: &Path, env: &[(&str, &str)]) -> Serve {
        let log = dir.join(format!("serve-{}.log", uuid::Uuid::new_v4().simple()));
        let child = Command::new(EMBER)
            .args([
                "--config",
                config.to_str().unwrap(),
                "--database-url",
                db_url,
                "serve",
            ])
            .env_remove("EMBER_CONFIG")
            .env("EMBER_LOG", "info")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        Serve { child, log }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn signal(&self, sig: &str) {
        let st = Command::new("kill")
            .args([&format!("-{sig}"), &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(st.success());
    }

    /// Waits for exit with a timeout; returns the exit code (None if killed by a signal).
    pub fn wait(&mut self, timeout: Duration) -> Option<i32> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(st) = self.child.try_wait().unwrap() {
                return st.code();
            }
            if Instant::now() > deadline {
                panic!(
                    "ember serve did not exit within {timeout:?}; log:\n{}",
                    self.log_text()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            self.child.kill().ok();
            self.child.wait().ok();
        }
    }
}

/// Polls `f` until it returns Some, or fails after `timeout` with `what`.
pub fn wait_for<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return v;
        }
        if Instant::now() > deadline {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// `service list --json` as a list of objects.
pub fn services(config: &Path, db_url: &str) -> Vec<serde_json::Value> {
    let o = ember(&[
        "--config",
        config.to_str().unwrap(),
        "--database-url",
        db_url,
        "service",
        "list",
        "--json",
    ]);
    json(&o).as_array().unwrap().clone()
}

pub fn service<'a>(list: &'a [serde_json::Value], backend: &str) -> Option<&'a serde_json::Value> {
    list.iter().find(|s| s["backend"] == backend)
}

/// One ember setup: a config file and a database, with shorthands to run commands on them.
pub struct Env {
    pub dir: PathBuf,
    pub config: PathBuf,
    pub url: String,
}

impl Env {
    /// A config with fast timers (1 s heartbeats, down after 3 s) plus `backends` (TOML).
    pub fn new(dir: &Path, url: &str, backends: &str) -> Env {
        let text = format!(
            "data_dir = \"{}\"\nreport_interval = 1\nservice_down_time = 3\nperiodic_interval = 1\nperiodic_fuzzy_delay = 0\n{backends}",
            dir.join("data").display()
        );
        Env {
            dir: dir.to_path_buf(),
            config: write(dir, "ember.toml", &text),
            url: url.to_string(),
        }
    }

    /// A config with its own timers: `text` is the whole file but `data_dir`.
    pub fn with_text(dir: &Path, url: &str, text: &str) -> Env {
        let text = format!("data_dir = \"{}\"\n{text}", dir.join("data").display());
        Env {
            dir: dir.to_path_buf(),
            config: write(dir, "ember.toml", &text),
            url: url.to_string(),
        }
    }

    pub fn run(&self, args: &[&str]) -> Output {
        let mut all = vec![
            "--config",
            self.config.to_str().unwrap(),
            "--database-url",
            &self.url,
        ];
        all.extend_from_slice(args);
        ember(&all)
    }

    /// Runs with `--json`, asserting success.
    pub fn json(&self, args: &[&str]) -> serde_json::Value {
        let mut all = args.to_vec();
        all.push("--json");
        json(&self.run(&all))
    }

    /// Runs, asserting failure with `code`, and returns stderr.
    pub fn fails(&self, args: &[&str], code: i32) -> String {
        let o = self.run(args);
        assert_eq!(
            o.status.code(),
            Some(code),
            "ember {args:?}: stdout {} stderr {}",
            stdout(&o),
            stderr(&o)
        );
        assert!(!stderr(&o).contains("panicked"), "{}", stderr(&o));
        stderr(&o)
    }

    /// Waits (up to `secs`) until the service `host` (`host@backend`) is up.
    pub fn wait_up(&self, host: &str, secs: u64) {
        wait_for(&format!("{host} up"), Duration::from_secs(secs), || {
            services(&self.config, &self.url)
                .iter()
                .any(|s| s["host"] == host && s["state"] == "up")
                .then_some(())
        });
    }

    /// Waits (up to `secs`) until `backend`'s service (whatever its host) is up.
    pub fn wait_backend_up(&self, backend: &str, secs: u64) {
        wait_for(&format!("{backend} up"), Duration::from_secs(secs), || {
            let l = services(&self.config, &self.url);
            (service(&l, backend)?["state"] == "up").then_some(())
        });
    }

    /// Starts `ember serve` and waits until one of its own services is up: a row left up by
    /// a previous process (killed a moment ago) does not count, or the caller's next request
    /// would meet a service still on its first setup check.
    pub fn serve(&self) -> Serve {
        let s = Serve::start(&self.config, &self.url, &self.dir);
        let pid = s.child.id();
        wait_for("the service to heartbeat", Duration::from_secs(30), || {
            let l = services(&self.config, &self.url);
            l.iter()
                .any(|r| r["state"] == "up" && r["pid"] == pid)
                .then_some(())
        });
        s
    }

    /// `job show --json`.
    pub fn job(&self, id: &str) -> serde_json::Value {
        self.json(&["job", "show", id])
    }

    /// Waits (up to `secs`) for a job to end; returns it.
    pub fn wait_job(&self, id: &str, secs: u64) -> serde_json::Value {
        wait_for(
            &format!("job {id} to end"),
            Duration::from_secs(secs),
            || {
                let j = self.job(id);
                matches!(
                    j["state"].as_str().unwrap(),
                    "succeeded" | "failed" | "cancelled"
                )
                .then_some(j)
            },
        )
    }

    pub fn volume(&self, key: &str) -> serde_json::Value {
        self.json(&["volume", "show", key])
    }

    /// A volume's id by name.
    pub fn id_of(&self, name: &str) -> String {
        self.volume(name)["id"].as_str().unwrap().to_string()
    }

    /// The backend's directory of the file driver.
    pub fn file_dir(&self, backend: &str) -> PathBuf {
        self.dir.join("data/volumes").join(backend)
    }

    pub fn image(&self, backend: &str, volume_id: &str) -> PathBuf {
        self.file_dir(backend).join(format!("volume-{volume_id}"))
    }

    /// On the file backend whose directory is `dir`: volume `src` of `size`, its snapshot `s`
    /// holding `mib` MiB of `byte` (written straight into the snapshot's file: a throttled
    /// copy would only slow the test down), and the layered clones named in `clones`.
    pub fn snapshot_with_data(
        &self,
        size: &str,
        dir: &Path,
        mib: usize,
        byte: u8,
        clones: &[&str],
    ) {
        self.json(&["volume", "create", "src", "--size", size, "--wait"]);
        let s = self.json(&[
            "volume", "snapshot", "create", "s", "--volume", "src", "--wait",
        ]);
        let snap_file = dir.join(format!(
            "snapshot-{}",
            s["snapshot"]["id"].as_str().unwrap()
        ));
        write_at(&snap_file, 0, mib << 20, byte);
        for c in clones {
            self.json(&["volume", "create", c, "--snapshot", "s", "--wait"]);
        }
    }

    /// Queues a flatten of each volume without waiting; returns the jobs' ids.
    pub fn flatten_all(&self, volumes: &[&str]) -> Vec<String> {
        volumes
            .iter()
            .map(|v| {
                self.json(&["volume", "flatten", v])["job_id"]
                    .as_str()
                    .unwrap()
                    .to_string()
            })
            .collect()
    }

    /// Starts a flatten of `volume` and waits until it runs; returns the job's id.
    pub fn flatten_running(&self, volume: &str) -> String {
        let job = self.json(&["volume", "flatten", volume])["job_id"]
            .as_str()
            .unwrap()
            .to_string();
        wait_for("the flatten to run", Duration::from_secs(20), || {
            (self.job(&job)["state"] == "running").then_some(())
        });
        job
    }
}

/// Starts `ember volume migrate ARGS` (`[NAME, "--to", TO, ...]`), and once it runs, after
/// `delay` ms, cancels it or kills `ember serve` (then starts it again); returns whether the
/// volume ended on the target (a cancel that came too late lets it succeed). The volume is
/// `available` either way.
pub fn interrupt(
    env: &Env,
    serve: &mut Serve,
    args: &[&str],
    kill: bool,
    delay: u64,
    at: &str,
) -> bool {
    let (name, to) = (args[0], args[2]);
    let job = env.json(&[&["volume", "migrate"], args].concat())["job_id"]
        .as_str()
        .unwrap()
        .to_string();
    wait_for("the migration to run", Duration::from_secs(30), || {
        (env.job(&job)["state"] != "queued").then_some(())
    });
    std::thread::sleep(Duration::from_millis(delay));
    let was = env.job(&job);
    eprintln!(
        "{at}: at {} of {} bytes ({})",
        was["bytes_done"], was["bytes_total"], was["state"]
    );
    if kill {
        serve.signal("KILL");
        serve.wait(Duration::from_secs(10));
        *serve = env.serve();
        // Both ends ready again before the next request (an rbd backend's first setup check
        // takes a moment, and a request with --wait is refused meanwhile).
        let from = env.job(&job)["backend"].as_str().unwrap().to_string();
        env.wait_backend_up(&from, 60);
        env.wait_backend_up(to, 60);
    } else {
        let _ = env.run(&["job", "cancel", &job]);
    }
    let end = env.wait_job(&job, 180);
    eprintln!("{at}: the job {}", end["state"]);
    let v = env.volume(name);
    assert_eq!(v["status"], "available", "{at}: {v}");
    match end["state"].as_str() {
        Some("succeeded") => true,
        Some("cancelled") if !kill => false,
        other => panic!("{at}: the job ended {other:?}: {end}"),
    }
}

/// Two file backends, `file0` held to `bps` bytes a second (`volume_copy_bps_limit`): a copy
/// out of it lasts long enough to be cancelled or killed at a chosen moment.
pub fn two_files_from_throttled(bps: u64) -> String {
    format!(
        "[backends.file0]\nvolume_driver = \"file\"\nvolume_copy_bps_limit = {bps}\n\
         [backends.file1]\nvolume_driver = \"file\"\n"
    )
}

/// Writes `len` bytes of `byte` at `offset` into a file (a volume's data, as a guest would).
pub fn write_at(path: &Path, offset: u64, len: usize, byte: u8) {
    use std::os::unix::fs::FileExt;
    let f = std::fs::OpenOptions::new().write(true).open(path).unwrap();
    f.write_all_at(&vec![byte; len], offset).unwrap();
}

/// A file-backend image (`volume-ID` or `snapshot-ID` in `dir`) as a client reads it, by the
/// file driver's layering rule written out here on its own, not with the driver's code: a
/// byte is the image's own where its file holds data (`SEEK_DATA`), else its parent's (named
/// by `IMAGE.parent`), read the same way, as far as the parent reaches; else zero.
pub fn read_through(dir: &Path, image: &str) -> Vec<u8> {
    let path = dir.join(image);
    let mut out = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let Some(parent) = std::fs::read_to_string(dir.join(format!("{image}.parent")))
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
    else {
        return out;
    };
    let below = read_through(dir, &parent);
    let f = std::fs::File::open(&path).unwrap();
    use nix::unistd::{Whence, lseek};
    let len = out.len() as i64;
    let mut at = 0i64;
    while at < len {
        // The next hole from `at`, and where data starts again after it (ENXIO: none).
        let Ok(hole) = lseek(&f, at, Whence::SeekHole) else {
            break;
        };
        if hole >= len {
            break;
        }
        let end = lseek(&f, hole, Whence::SeekData).map_or(len, |d| d.min(len));
        for (i, b) in out
            .iter_mut()
            .enumerate()
            .take(end as usize)
            .skip(hole as usize)
        {
            *b = below.get(i).copied().unwrap_or(0);
        }
        at = end;
    }
    out
}

pub fn read_at(path: &Path, offset: u64, len: usize) -> Vec<u8> {
    use std::os::unix::fs::FileExt;
    let f = std::fs::File::open(path).unwrap();
    let mut buf = vec![0u8; len];
    f.read_exact_at(&mut buf, offset).unwrap();
    buf
}

/// A throwaway single-node Ceph cluster (scripts/ceph.sh) owned by one test: started on
/// 127.0.0.1 under its own temp dir, stopped by its pids on drop.
/// One write of `Ceph::client_write`: bytes at an offset, zeros written, or a discard (of
/// whole 4 MiB objects in the tests: librbd may skip a partial discard).
pub enum ClientOp {
    Data(u64, Vec<u8>),
    Zero(u64, u64),
    Discard(u64, u64),
}

/// A loopback port nothing listens on (the moment it was asked).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Whether every command is on PATH. A missing one skips the test with a notice, except in CI
/// (`CI` or `EMBER_REQUIRE_CEPH` set), where it fails it: scripts/test.sh installs them all.
pub fn tools_present(commands: &[&str], skipped: &str) -> bool {
    let script = commands
        .iter()
        .map(|c| format!("command -v {c}"))
        .collect::<Vec<_>>()
        .join(" && ");
    let have = Command::new("sh")
        .args(["-c", &script])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if !have {
        if std::env::var_os("EMBER_REQUIRE_CEPH").is_some() || std::env::var_os("CI").is_some() {
            panic!(
                "{} not installed: run the tests with scripts/test.sh",
                commands.join(", ")
            );
        }
        eprintln!(
            "NOTICE: {skipped} skipped: {} not installed (scripts/test.sh installs them)",
            commands.join(", ")
        );
    }
    have
}

pub struct Ceph {
    pub dir: PathBuf,
    pub conf: PathBuf,
}

fn script(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("scripts")
        .join(name)
}

impl Ceph {
    /// None (with a notice) when Ceph is not installed outside CI; in CI (`EMBER_REQUIRE_CEPH`
    /// or `CI`) a missing Ceph fails the test. `mgr`: start a manager too (pool usage figures
    /// need one; image operations do not).
    pub fn start(mgr: bool) -> Option<Ceph> {
        if !tools_present(&["ceph-mon", "rbd"], "rbd test") {
            return None;
        }
        let root = std::env::var_os("EMBER_TEST_CEPH_ROOT")
            .map(PathBuf::from)
            .unwrap_or_else(std::env::temp_dir);
        let dir = root.join(format!("ember-ceph-{}", uuid::Uuid::new_v4().simple()));
        let mut cmd = Command::new("bash");
        cmd.arg(script("ceph.sh")).arg("start").arg(&dir);
        if !mgr {
            cmd.arg("--no-mgr");
        }
        let started = Instant::now();
        let out = cmd.output().unwrap();
        let ceph = Ceph {
            conf: dir.join("ceph.conf"),
            dir,
        };
        assert!(
            out.status.success(),
            "ceph.sh start failed: {}{}",
            stdout(&out),
            stderr(&out)
        );
        eprintln!(
            "ceph cluster up in {:.1} s",
            started.elapsed().as_secs_f64()
        );
        Some(ceph)
    }

    fn script(&self, what: &str) {
        let out = Command::new("bash")
            .arg(script("ceph.sh"))
            .arg(what)
            .arg(&self.dir)
            .output()
            .unwrap();
        assert!(out.status.success(), "ceph.sh {what}: {}", stderr(&out));
    }

    pub fn mon_stop(&self) {
        self.script("mon-stop");
    }

    pub fn mon_start(&self) {
        self.script("mon-start");
    }

    /// Freezes the OSD and marks it down (see scripts/ceph.sh osd-freeze).
    pub fn osd_freeze(&self) {
        self.script("osd-freeze");
    }

    pub fn osd_thaw(&self) {
        self.script("osd-thaw");
    }

    /// Freezes (SIGSTOP) or resumes the monitor.
    pub fn mon_freeze(&self, on: bool) {
        self.script(if on { "mon-freeze" } else { "mon-thaw" });
    }

    /// A second pool, `volumes2`, usable by client.cinder (two backends on one cluster);
    /// returns the section of backend `name` on it.
    pub fn second_pool(&self, name: &str) -> String {
        self.ceph(&[
            "osd",
            "pool",
            "create",
            "volumes2",
            "8",
            "8",
            "replicated",
            "--size",
            "1",
        ]);
        self.rbd(&["pool", "init", "volumes2"]);
        self.ceph(&[
            "auth",
            "caps",
            "client.cinder",
            "mon",
            "profile rbd",
            "osd",
            "profile rbd pool=volumes, profile rbd pool=volumes2",
        ]);
        self.backend(name, "")
            .replace("rbd_pool = \"volumes\"", "rbd_pool = \"volumes2\"")
    }

    /// The `rbd` CLI as client.admin on this cluster.
    pub fn rbd(&self, args: &[&str]) -> Output {
        let out = Command::new("rbd")
            .arg("-c")
            .arg(&self.conf)
            .args(args)
            .output()
            .unwrap();
        assert!(out.status.success(), "rbd {args:?}: {}", stderr(&out));
        out
    }

    /// Writes into `volumes/IMAGE` in place through librbd, as a guest would
    /// (`tests/common/rbd_client.py`), and the same into `model`, the test's copy of what the
    /// image holds.
    pub fn client_write(&self, image: &str, ops: &[ClientOp], model: &mut [u8]) {
        let dir = tempfile::tempdir().unwrap();
        let mut data = vec![];
        let mut list = vec![];
        for op in ops {
            let (at, len, kind) = match op {
                ClientOp::Data(at, bytes) => {
                    data.extend_from_slice(bytes);
                    model[*at as usize..*at as usize + bytes.len()].copy_from_slice(bytes);
                    (*at, bytes.len() as u64, "data")
                }
                ClientOp::Zero(at, len) => (*at, *len, "zero"),
                ClientOp::Discard(at, len) => (*at, *len, "discard"),
            };
            if !matches!(op, ClientOp::Data(..)) {
                model[at as usize..(at + len) as usize].fill(0);
            }
            list.push(serde_json::json!([at, len, kind]));
        }
        let (ops_file, data_file) = (dir.path().join("ops.json"), dir.path().join("data"));
        std::fs::write(&ops_file, serde_json::to_vec(&list).unwrap()).unwrap();
        std::fs::write(&data_file, &data).unwrap();
        // Debian's Python, where apt's python3-rbd is (not a pyenv or venv one on PATH).
        let out = Command::new("/usr/bin/python3")
            .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/common/rbd_client.py"))
            .arg(&self.conf)
            .args(["volumes", image])
            .arg(&ops_file)
            .arg(&data_file)
            .output()
            .unwrap();
        assert!(out.status.success(), "rbd_client.py: {}", stderr(&out));
    }

    /// Writes `mib` MiB of data at the start of an image, as a guest would.
    pub fn fill(&self, image: &str, mib: u32) {
        self.rbd(&[
            "bench",
            "--io-type",
            "write",
            "--io-size",
            "4M",
            "--io-pattern",
            "seq",
            "--io-total",
            &format!("{mib}M"),
            &format!("volumes/{image}"),
        ]);
    }

    /// `rbd info --format json` of an image in the `volumes` pool.
    pub fn info(&self, image: &str) -> serde_json::Value {
        let o = self.rbd(&["info", "--format", "json", &format!("volumes/{image}")]);
        serde_json::from_slice(&o.stdout).unwrap()
    }

    /// The `ceph` CLI as client.admin on this cluster; returns stdout.
    pub fn ceph(&self, args: &[&str]) -> String {
        let out = Command::new("ceph")
            .arg("-c")
            .arg(&self.conf)
            .args(args)
            .output()
            .unwrap();
        assert!(out.status.success(), "ceph {args:?}: {}", stderr(&out));
        stdout(&out)
    }

    /// A backend section for this cluster's `volumes` pool as client.cinder, plus `extra` lines.
    pub fn backend(&self, name: &str, extra: &str) -> String {
        format!(
            "[backends.{name}]\nvolume_driver = \"rbd\"\nrbd_pool = \"volumes\"\nrbd_user = \"cinder\"\n\
             rbd_ceph_conf = \"{}\"\nrados_connect_timeout = 5\n{extra}\n",
            self.conf.display()
        )
    }

    /// Makes pool `backups` and client.cinder-backup (`ceph.sh backup-pool`); the top-level
    /// lines that send backups there.
    pub fn backup_target(&self) -> String {
        self.script("backup-pool");
        format!(
            "backup_driver = \"ceph\"\nbackup_ceph_pool = \"backups\"\nbackup_ceph_user = \"cinder-backup\"\n\
             backup_ceph_conf = \"{}\"\n",
            self.conf.display()
        )
    }

    pub fn keyring(&self, user: &str) -> PathBuf {
        self.dir.join(format!("ceph.client.{user}.keyring"))
    }
}

impl Drop for Ceph {
    fn drop(&mut self) {
        let _ = Command::new("bash")
            .arg(script("ceph.sh"))
            .arg("stop")
            .arg(&self.dir)
            .status();
    }
}

/// Another client with an image open, until dropped: a process holding a file (as a guest's
/// qemu would), or `rbd watch` on an rbd image. For the on-call tests.
pub struct Opener(pub Child);

impl Opener {
    /// `sh` keeping `path` open on fd 3.
    pub fn file(path: &Path) -> Opener {
        Opener(
            Command::new("sh")
                .arg("-c")
                .arg(format!("exec 3<'{}'; exec sleep 300", path.display()))
                .stdin(Stdio::null())
                .spawn()
                .unwrap(),
        )
    }

    /// `rbd watch POOL/IMAGE` as client.admin; its stderr goes to `err`.
    pub fn rbd_watch(ceph: &Ceph, spec: &str, err: Stdio) -> Opener {
        Opener(
            Command::new("rbd")
                .arg("-c")
                .arg(&ceph.conf)
                .args(["watch", spec])
                // `rbd watch` runs until its stdin ends: keep the pipe open.
                .stdin(Stdio::piped())
                .stdout(Stdio::null())
                .stderr(err)
                .spawn()
                .unwrap(),
        )
    }

    pub fn pid(&self) -> u32 {
        self.0.id()
    }
}

impl Drop for Opener {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A small tmpfs mounted for one test (a disk that fills up), unmounted on drop.
pub struct Tmpfs(PathBuf);

impl Tmpfs {
    /// `bytes` big. None (with a notice) when this user may not mount; as root a failed mount
    /// fails the test.
    pub fn mount(dir: &Path, bytes: u64) -> Option<Tmpfs> {
        std::fs::create_dir_all(dir).unwrap();
        let o = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={}k,mode=700", bytes.div_ceil(4096) * 4),
                "tmpfs",
            ])
            .arg(dir)
            .output()
            .unwrap();
        if !o.status.success() {
            if nix::unistd::getuid().is_root() {
                panic!("mount tmpfs failed as root: {}", stderr(&o));
            }
            eprintln!("NOTICE: disk-full test skipped: mounting a tmpfs needs root");
            return None;
        }
        Some(Tmpfs(dir.to_path_buf()))
    }

    pub fn resize(&self, bytes: u64) {
        let o = Command::new("mount")
            .args(["-o", &format!("remount,size={}k", bytes.div_ceil(4096) * 4)])
            .arg(&self.0)
            .output()
            .unwrap();
        assert!(o.status.success(), "remount: {}", stderr(&o));
    }

    /// Bytes in use on it.
    pub fn used(&self) -> u64 {
        let st = nix::sys::statvfs::statvfs(&self.0).unwrap();
        (st.blocks() - st.blocks_free()) * st.fragment_size()
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}
