//! Attachments through the binary with real clients: `volume attach` records who has a volume
//! (it is in-use: delete, migrate, extend and a second attach are refused naming it),
//! `volume export` serves it over NBD through qemu-nbd, read and written by `qemu-io` and
//! `nbdcopy` at the seed's offsets and compared byte for byte with the file, and the doctor
//! names an attachment nothing uses and a user nothing records. Seeds are printed;
//! `EMBER_SEED` replays one.
#![allow(clippy::unwrap_used)]

mod common;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::*;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// The doctor's `<backend>.attachments` check.
fn attachments_check(env: &Env, backend: &str) -> serde_json::Value {
    let o = env.run(&["doctor", "--json", "--backend", backend]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {} {}", stdout(&o), stderr(&o)));
    v["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == format!("{backend}.attachments"))
        .cloned()
        .unwrap_or_else(|| panic!("no attachments check: {v}"))
}

fn status(env: &Env, name: &str) -> String {
    env.volume(name)["status"].as_str().unwrap().to_string()
}

/// `ember volume export` running in the background, and the endpoint it printed.
struct Export {
    child: Child,
    endpoint: String,
}

impl Export {
    fn start(env: &Env, volume: &str, port: u16, extra: &[&str]) -> Export {
        let listen = format!("127.0.0.1:{port}");
        let mut args = vec![
            "--config",
            env.config.to_str().unwrap(),
            "--database-url",
            &env.url,
            "volume",
            "export",
            volume,
            "--listen",
            &listen,
        ];
        args.extend_from_slice(extra);
        let mut child = Command::new(env!("CARGO_BIN_EXE_ember"))
            .args(&args)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert_eq!(
            line.trim(),
            format!("nbd://{listen}"),
            "export printed {line:?}"
        );
        Export {
            child,
            endpoint: line.trim().to_string(),
        }
    }

    fn signal(&self, sig: &str) {
        Command::new("kill")
            .args([sig, &self.child.id().to_string()])
            .status()
            .unwrap();
    }

    /// Ends it as Ctrl-C does, and waits for it.
    fn stop(mut self) -> Option<i32> {
        self.signal("-INT");
        wait_for("the export to end", Duration::from_secs(30), || {
            self.child.try_wait().unwrap()
        })
        .code()
    }
}

impl Drop for Export {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn run_ok(cmd: &mut Command) -> String {
    let o = cmd.output().unwrap();
    assert!(o.status.success(), "{cmd:?}: {}{}", stdout(&o), stderr(&o));
    stdout(&o)
}

/// Writes `data` at `at` through an NBD endpoint with qemu-io.
fn nbd_write(endpoint: &str, at: u64, data: &[u8], scratch: &Path) {
    let src = scratch.join(format!("w-{at}"));
    std::fs::write(&src, data).unwrap();
    run_ok(Command::new("qemu-io").args([
        "-f",
        "raw",
        "-c",
        &format!("write -s {} {at} {}", src.display(), data.len()),
        endpoint,
    ]));
}

#[test]
fn attach_refuses_what_would_break_the_consumer_on_both_engines() {
    each_engine(|engine, dir, url| {
        let env = Env::new(dir, url, "[backends.file0]\nvolume_driver = \"file\"\n");
        let _serve = env.serve();
        env.json(&["volume", "create", "guest", "--size", "64M", "--wait"]);
        let id = env.id_of("guest");
        let a = env.json(&[
            "volume",
            "attach",
            "guest",
            "--host",
            "hv1",
            "--instance",
            "i-1",
        ]);
        let info = &a["connection_info"];
        assert_eq!(info["driver_volume_type"], "local", "{a}");
        assert_eq!(
            info["data"]["device_path"],
            env.image("file0", &id).display().to_string(),
            "{a}"
        );
        assert_eq!(info["data"]["access_mode"], "rw");
        let att = a["attachment"]["id"].as_str().unwrap().to_string();
        let short = &att[..8];
        assert_eq!(status(&env, "guest"), "in-use", "{engine:?}");
        let shown = env.volume("guest");
        assert_eq!(shown["attachments"][0]["instance"], "i-1", "{shown}");
        assert_eq!(shown["multiattach"], false, "{shown}");

        for (args, verb) in [
            (vec!["volume", "delete", "guest"], "delete"),
            (
                vec!["volume", "migrate", "guest", "--to", "file0"],
                "migrate",
            ),
            (
                vec!["volume", "extend", "guest", "--size", "128M"],
                "extend",
            ),
            (vec!["volume", "attach", "guest", "--host", "hv2"], "attach"),
        ] {
            let err = env.fails(&args, 1);
            assert!(
                err.contains(&format!("cannot {verb} volume guest"))
                    && err.contains("host hv1 (instance i-1, rw")
                    && err.contains(short),
                "{engine:?} {verb}: {err}"
            );
        }
        // Nothing was queued by the refusals.
        assert_eq!(env.json(&["job", "list"]).as_array().unwrap().len(), 1);

        let list = env.json(&["volume", "attachments"]);
        assert_eq!(list.as_array().unwrap().len(), 1, "{list}");
        assert_eq!(list[0]["attached_host"], "hv1");
        env.fails(
            &["volume", "detach", "guest", "--attachment", "ffffffff"],
            1,
        );
        // hv1 is not this host: nothing here has it open, so the detach is not refused.
        let o = env.run(&["volume", "detach", "guest"]);
        assert!(o.status.success(), "{}", stderr(&o));
        assert!(stdout(&o).contains("is available"), "{}", stdout(&o));
        assert_eq!(status(&env, "guest"), "available");
        env.fails(&["volume", "detach", "guest"], 1);

        // Multi-attach: only when created so; the last detach makes it available.
        env.json(&[
            "volume",
            "create",
            "shared",
            "--size",
            "8M",
            "--multiattach",
            "--wait",
        ]);
        for h in ["a", "b", "c"] {
            env.json(&["volume", "attach", "shared", "--host", h, "--mode", "ro"]);
        }
        let err = env.fails(&["volume", "detach", "shared"], 1);
        assert!(err.contains("has 3 attachments"), "{err}");
        env.run(&["volume", "detach", "shared", "--host", "a"]);
        assert_eq!(status(&env, "shared"), "in-use");
        assert_eq!(
            env.json(&["volume", "attachments", "shared"])
                .as_array()
                .unwrap()
                .len(),
            2
        );
        env.run(&["volume", "detach", "shared", "--all"]);
        assert_eq!(status(&env, "shared"), "available");
        // And then it may go.
        env.json(&["volume", "delete", "shared", "--wait"]);
        let kinds: Vec<String> = env
            .json(&["events", "--limit", "100"])
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["kind"].as_str().unwrap().to_string())
            .collect();
        assert_eq!(
            kinds.iter().filter(|k| *k == "volume_attached").count(),
            4,
            "{kinds:?}"
        );
        assert_eq!(
            kinds.iter().filter(|k| *k == "volume_detached").count(),
            4,
            "{kinds:?}"
        );
    });
}

#[test]
fn the_doctor_compares_attachments_with_who_has_the_file_open() {
    let dir = tempfile::tempdir().unwrap();
    let url = fresh_db(Engine::Sqlite, dir.path()).unwrap();
    let env = Env::new(
        dir.path(),
        &url,
        "[backends.file0]\nvolume_driver = \"file\"\n",
    );
    let _serve = env.serve();
    env.json(&["volume", "create", "vm-disk", "--size", "16M", "--wait"]);
    env.json(&["volume", "create", "loose", "--size", "16M", "--wait"]);
    let (disk, loose) = (env.id_of("vm-disk"), env.id_of("loose"));
    let c = attachments_check(&env, "file0");
    assert_eq!(c["status"], "ok", "{c}");

    // Attached on paper only: a stale attachment planted on purpose.
    let a = env.json(&["volume", "attach", "vm-disk", "--host", "localhost"]);
    let short = a["attachment"]["id"].as_str().unwrap()[..8].to_string();
    let c = attachments_check(&env, "file0");
    assert_eq!(c["status"], "warn", "{c}");
    let text = c.to_string();
    assert!(
        text.contains("attached on paper only: volume vm-disk")
            && text.contains(&format!("ember volume detach vm-disk --attachment {short}")),
        "{c}"
    );

    // The consumer opens it: the attachment is real; detaching under it is refused.
    let guest = Opener::file(&env.image("file0", &disk));
    let c = wait_for(
        "the doctor to see the guest",
        Duration::from_secs(10),
        || {
            let c = attachments_check(&env, "file0");
            (c["status"] == "ok").then_some(c)
        },
    );
    assert!(
        c["summary"]
            .as_str()
            .unwrap()
            .contains("1 attachment(s) match"),
        "{c}"
    );
    let err = env.fails(&["volume", "detach", "vm-disk"], 1);
    assert!(
        err.contains("still has vm-disk open") && err.contains(&format!("pid {}", guest.pid())),
        "{err}"
    );

    // Used but not attached: a process holds a volume nobody recorded.
    let stray = Opener::file(&env.image("file0", &loose));
    let c = attachments_check(&env, "file0");
    assert_eq!(c["status"], "warn", "{c}");
    assert!(
        c.to_string().contains(&format!(
            "used but not attached: volume loose is open by pid {}",
            stray.pid()
        )),
        "{c}"
    );
    drop(stray);

    // --force detaches under the open file, and says so in the events.
    let o = env.run(&["volume", "detach", "vm-disk", "--force"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let ev = env.json(&["events", "--limit", "20"]);
    assert!(ev.to_string().contains("(forced)"), "{ev}");
    drop(guest);
    assert_eq!(attachments_check(&env, "file0")["status"], "ok");
    // Detached by force, it may go.
    env.json(&["volume", "delete", "vm-disk", "--wait"]);
    assert!(env.run(&["volume", "show", "vm-disk"]).status.code() != Some(0));
}

#[test]
fn an_nbd_export_is_read_and_written_by_real_clients_byte_for_byte() {
    if !tools_present(
        &["qemu-nbd", "qemu-io", "nbdinfo", "nbdcopy"],
        "NBD export test",
    ) {
        return;
    }
    let seed = seed();
    let mut rng = StdRng::seed_from_u64(seed);
    let dir = tempfile::tempdir().unwrap();
    let url = fresh_db(Engine::Sqlite, dir.path()).unwrap();
    let env = Env::new(
        dir.path(),
        &url,
        "[backends.file0]\nvolume_driver = \"file\"\n",
    );
    let _serve = env.serve();
    // A size that is not a round number of anything.
    let size = (24u64 << 20) + rng.random_range(0..4096u64) * 512;
    env.json(&[
        "volume",
        "create",
        "nbd",
        "--size",
        &format!("{size}B"),
        "--wait",
    ]);
    let id = env.id_of("nbd");
    let image = env.image("file0", &id);
    let mut model = vec![0u8; size as usize];
    // What was there before the export stays (a few extents written into the file).
    for _ in 0..3 {
        let at = rng.random_range(0..size - 65536);
        let len = rng.random_range(1..65536) as usize;
        let byte = rng.random::<u8>();
        write_at(&image, at, len, byte);
        model[at as usize..at as usize + len].fill(byte);
    }

    let err = env.fails(&["volume", "export", "nbd", "--listen", "0.0.0.0:10809"], 1);
    assert!(err.contains("--allow-remote"), "{err}");

    let port = free_port();
    let x = Export::start(&env, "nbd", port, &[]);
    assert_eq!(status(&env, "nbd"), "in-use");
    let err = env.fails(&["volume", "delete", "nbd"], 1);
    assert!(err.contains("NBD export nbd://127.0.0.1"), "{err}");
    let err = env.fails(&["volume", "detach", "nbd"], 1);
    assert!(err.contains("still runs on this host"), "{err}");
    let info: serde_json::Value = serde_json::from_str(&run_ok(
        Command::new("nbdinfo").args(["--json", &x.endpoint]),
    ))
    .unwrap();
    assert_eq!(info["exports"][0]["export-size"], size, "{info}");

    // The seed's extents, unaligned, some crossing each other, written by qemu-io.
    let rounds = rng.random_range(4..10);
    for _ in 0..rounds {
        let len = rng.random_range(1..(3 << 20)) as usize;
        let at = rng.random_range(0..size - len as u64);
        let mut data = vec![0u8; len];
        rng.fill(&mut data[..]);
        nbd_write(&x.endpoint, at, &data, dir.path());
        model[at as usize..at as usize + len].copy_from_slice(&data);
    }
    // Read back through NBD, whole, by another client.
    let back = dir.path().join("back.raw");
    run_ok(Command::new("nbdcopy").args([&x.endpoint, back.to_str().unwrap()]));
    let through_nbd = std::fs::read(&back).unwrap();
    assert!(
        through_nbd == model,
        "seed {seed}: NBD read differs from what was written"
    );

    assert_eq!(x.stop(), Some(0));
    assert_eq!(status(&env, "nbd"), "available");
    assert!(
        env.json(&["volume", "attachments"])
            .as_array()
            .unwrap()
            .is_empty()
    );
    let file = std::fs::read(&image).unwrap();
    assert!(
        file == model,
        "seed {seed}: the file differs from what was written over NBD"
    );

    // Read-only: writes are refused by the server.
    let port = free_port();
    let x = Export::start(&env, "nbd", port, &["--read-only"]);
    let o = Command::new("qemu-io")
        .args(["-f", "raw", "-c", "write -P 0x11 0 4096", &x.endpoint])
        .output()
        .unwrap();
    assert!(
        !o.status.success() || stderr(&o).contains("failed") || stdout(&o).contains("failed"),
        "a read-only export took a write: {}{}",
        stdout(&o),
        stderr(&o)
    );
    assert_eq!(env.json(&["volume", "attachments", "nbd"])[0]["mode"], "ro");

    // kill -9 of the exporter: its server dies with it, the attachment stays on paper
    // only (the doctor names it), and an ordinary detach clears it.
    x.signal("-KILL");
    wait_for("the server to go", Duration::from_secs(10), || {
        std::net::TcpStream::connect(("127.0.0.1", port))
            .is_err()
            .then_some(())
    });
    let c = wait_for(
        "the doctor to name the stale export",
        Duration::from_secs(15),
        || {
            let c = attachments_check(&env, "file0");
            (c["status"] == "warn").then_some(c)
        },
    );
    assert!(
        c.to_string().contains("attached on paper only: volume nbd"),
        "{c}"
    );
    let o = env.run(&["volume", "detach", "nbd"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(status(&env, "nbd"), "available");
    let file = std::fs::read(&image).unwrap();
    assert!(
        file == model,
        "seed {seed}: the read-only export changed the file"
    );
}
