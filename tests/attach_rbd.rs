//! Attachments of rbd volumes on a throwaway cluster, with real clients: qemu opens the volume
//! with exactly the connection info `volume attach` printed (the qemu URI, as client.cinder
//! with its keyring), writes the seed's data at the seed's offset, and `rbd export` shows it;
//! the libvirt `<disk>` validates against libvirt's schema; the doctor sees the consumer's
//! watcher, an attachment nothing uses, and a watcher nothing records. Seeds are printed;
//! `EMBER_SEED` replays one.
#![allow(clippy::unwrap_used)]

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const SECRET: &str = "5b6e2c7a-3f41-4a8e-9d0c-2b7f1e6a9c44";

/// A qemu with the rbd block driver: the machine's when it has one, else the one
/// scripts/qemu-rbd.sh unpacks (bin dir, module dir). None (with a notice) outside CI when
/// neither can be had.
fn qemu_rbd() -> Option<(Option<PathBuf>, Option<PathBuf>)> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/qemu-rbd.sh");
    let o = Command::new("bash").arg(script).output().unwrap();
    if !o.status.success() {
        if std::env::var_os("CI").is_some() || std::env::var_os("EMBER_REQUIRE_CEPH").is_some() {
            panic!("scripts/qemu-rbd.sh: {}", stderr(&o));
        }
        eprintln!("NOTICE: qemu with rbd not available: {}", stderr(&o));
        return None;
    }
    let dir = stdout(&o).trim().to_string();
    if dir.is_empty() {
        return Some((None, None));
    }
    let dir = PathBuf::from(dir);
    Some((Some(dir.join("bin")), Some(dir.join("modules"))))
}

fn qemu(q: &(Option<PathBuf>, Option<PathBuf>), tool: &str) -> Command {
    let mut c = Command::new(match &q.0 {
        Some(bin) => bin.join(tool),
        None => PathBuf::from(tool),
    });
    if let Some(m) = &q.1 {
        c.env("QEMU_MODULE_DIR", m);
    }
    c
}

fn check(env: &Env) -> serde_json::Value {
    let o = env.run(&["doctor", "--json", "--backend", "rbd0"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {} {}", stdout(&o), stderr(&o)));
    v["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == "rbd0.attachments")
        .cloned()
        .unwrap_or_else(|| panic!("no attachments check: {v}"))
}

#[test]
fn rbd_connection_info_opens_the_volume_in_qemu_and_the_doctor_sees_its_watcher() {
    let Some(q) = qemu_rbd() else { return };
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
        &ceph.backend("rbd0", &format!("rbd_secret_uuid = \"{SECRET}\"")),
    );
    let _serve = env.serve();
    env.wait_backend_up("rbd0", 60);
    let size = (16u64 << 20) + rng.random_range(0..4096u64) * 4096;
    env.json(&[
        "volume",
        "create",
        "vm",
        "--size",
        &format!("{size}B"),
        "--backend",
        "rbd0",
        "--wait",
    ]);
    env.json(&[
        "volume",
        "create",
        "loose",
        "--size",
        "4M",
        "--backend",
        "rbd0",
        "--wait",
    ]);
    let id = env.id_of("vm");
    let image = format!("volume-{id}");

    // Cinder's connection info.
    let a = env.json(&[
        "volume",
        "attach",
        "vm",
        "--host",
        "127.0.0.1",
        "--instance",
        "i-9",
    ]);
    let d = &a["connection_info"]["data"];
    assert_eq!(a["connection_info"]["driver_volume_type"], "rbd", "{a}");
    assert_eq!(d["name"], format!("volumes/{image}"), "{a}");
    assert_eq!(d["auth_username"], "cinder");
    assert_eq!(d["auth_enabled"], true);
    assert_eq!(d["secret_type"], "ceph");
    assert_eq!(d["secret_uuid"], SECRET);
    assert_eq!(d["cluster_name"], "ceph");
    assert_eq!(d["volume_id"], id.as_str());
    assert_eq!(d["discard"], true);
    assert!(
        d["hosts"].as_array().unwrap().contains(&"127.0.0.1".into()),
        "{a}"
    );
    assert_eq!(
        d["hosts"].as_array().unwrap().len(),
        d["ports"].as_array().unwrap().len()
    );
    env.run(&["volume", "detach", "vm"]);

    // The libvirt <disk>, in a domain, against libvirt's own schema.
    let o = env.run(&[
        "volume",
        "attach",
        "vm",
        "--host",
        "127.0.0.1",
        "--format",
        "libvirt",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let disk = stdout(&o);
    assert!(
        disk.contains(&format!("<secret type=\"ceph\" uuid=\"{SECRET}\"/>"))
            && disk.contains(&format!("name=\"volumes/{image}\""))
            && disk.contains("<auth username=\"cinder\">"),
        "{disk}"
    );
    if tools_present(&["virt-xml-validate"], "libvirt XML validation") {
        let domain = dir.path().join("domain.xml");
        std::fs::write(
            &domain,
            format!(
                "<domain type='kvm'><name>t</name><memory>131072</memory>\
                 <os><type>hvm</type></os><devices>{disk}</devices></domain>"
            ),
        )
        .unwrap();
        let v = Command::new("virt-xml-validate")
            .arg(&domain)
            .arg("domain")
            .output()
            .unwrap();
        assert!(v.status.success(), "{disk}\n{}{}", stdout(&v), stderr(&v));
    }
    env.run(&["volume", "detach", "vm"]);

    // qemu opens it with the URI as printed, as client.cinder.
    let o = env.run(&[
        "volume",
        "attach",
        "vm",
        "--host",
        "127.0.0.1",
        "--format",
        "qemu",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let uri = stdout(&o).trim().to_string();
    assert!(
        uri.starts_with(&format!("rbd:volumes/{image}:id=cinder:conf=")),
        "{uri}"
    );
    let len = rng.random_range(1..(1 << 20)) as usize;
    let at = rng.random_range(0..size - len as u64);
    let mut data = vec![0u8; len];
    rng.fill(&mut data[..]);
    let src = dir.path().join("data");
    std::fs::write(&src, &data).unwrap();
    let w = qemu(&q, "qemu-io")
        .args([
            "-f",
            "raw",
            "-c",
            &format!("write -s {} {at} {len}", src.display()),
            &uri,
        ])
        .output()
        .unwrap();
    assert!(
        w.status.success(),
        "seed {seed}: qemu-io: {}{}",
        stdout(&w),
        stderr(&w)
    );
    let out = dir.path().join("export.img");
    ceph.rbd(&["export", &format!("volumes/{image}"), out.to_str().unwrap()]);
    let mut model = vec![0u8; size as usize];
    model[at as usize..at as usize + len].copy_from_slice(&data);
    let got = std::fs::read(&out).unwrap();
    if let Some(i) = (0..model.len().max(got.len())).find(|&i| model.get(i) != got.get(i)) {
        panic!("seed {seed}: rbd export differs from what qemu wrote, first at byte {i}");
    }

    // Nothing holds it now: attached on paper only.
    let c = check(&env);
    assert_eq!(c["status"], "warn", "{c}");
    assert!(
        c.to_string().contains("attached on paper only: volume vm"),
        "{c}"
    );

    // A guest (qemu-nbd, as qemu would, with the same URI) opens it: the watcher is seen from
    // the attachment's host, and a detach under it is refused.
    let port = free_port();
    let guest = Opener(
        qemu(&q, "qemu-nbd")
            .args([
                "-f",
                "raw",
                "--bind=127.0.0.1",
                &format!("--port={port}"),
                "--persistent",
                &uri,
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap(),
    );
    let c = wait_for(
        "the doctor to see the guest's watcher",
        Duration::from_secs(30),
        || {
            let c = check(&env);
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
    let err = env.fails(&["volume", "detach", "vm"], 1);
    assert!(
        err.contains("still has vm open") && err.contains("watcher"),
        "{err}"
    );
    drop(guest);

    // A watcher nobody recorded: used but not attached.
    let stray = Opener::rbd_watch(
        &ceph,
        &format!("volumes/volume-{}", env.id_of("loose")),
        Stdio::null(),
    );
    let c = wait_for(
        "the doctor to see the stray watcher",
        Duration::from_secs(30),
        || {
            let c = check(&env);
            c.to_string()
                .contains("used but not attached: volume loose")
                .then_some(c)
        },
    );
    assert_eq!(c["status"], "warn", "{c}");
    drop(stray);
    wait_for("the guest's watch to go", Duration::from_secs(60), || {
        env.run(&["volume", "detach", "vm"])
            .status
            .success()
            .then_some(())
    });
    assert_eq!(env.volume("vm")["status"], "available");

    // `volume export` of the rbd volume: ember's qemu-nbd (the one with the rbd driver, from
    // PATH) serves what qemu wrote, read back whole by nbdcopy.
    if !tools_present(&["nbdcopy"], "rbd NBD export") {
        return;
    }
    let mut path = std::env::var("PATH").unwrap();
    if let Some(bin) = &q.0 {
        path = format!("{}:{path}", bin.display());
    }
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ember"));
    cmd.args([
        "--config",
        env.config.to_str().unwrap(),
        "--database-url",
        &env.url,
    ])
    .args(["volume", "export", "vm", "--read-only", "--listen", &listen])
    .env("PATH", path)
    .stdout(Stdio::piped());
    if let Some(m) = &q.1 {
        cmd.env("QEMU_MODULE_DIR", m);
    }
    let mut x = Opener(cmd.spawn().unwrap());
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(x.0.stdout.take().unwrap()),
        &mut line,
    )
    .unwrap();
    assert_eq!(
        line.trim(),
        format!("nbd://{listen}"),
        "export printed {line:?}"
    );
    assert_eq!(env.volume("vm")["status"], "in-use");
    let back = dir.path().join("nbd.img");
    let o = Command::new("nbdcopy")
        .args([&format!("nbd://{listen}"), back.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(o.status.success(), "nbdcopy: {}", stderr(&o));
    let got = std::fs::read(&back).unwrap();
    if let Some(i) = (0..model.len().max(got.len())).find(|&i| model.get(i) != got.get(i)) {
        panic!("seed {seed}: the NBD export of the rbd volume differs first at byte {i}");
    }
    Command::new("kill")
        .args(["-TERM", &x.pid().to_string()])
        .status()
        .unwrap();
    let done = wait_for("the export to end", Duration::from_secs(30), || {
        x.0.try_wait().unwrap()
    });
    assert!(done.success(), "{done:?}");
    assert_eq!(env.volume("vm")["status"], "available");
}
