//! The on-call toolkit through the binary: who has a volume open (a process holding the file,
//! an `rbd watch` client), deletes and extends refused naming them and forced with an audit
//! event, stale locks listed and broken (the locker blocklisted), `job retry`, `reset-state`,
//! and the error reason with its fix in `volume show`.
#![allow(clippy::unwrap_used)]

mod common;

use std::process::Stdio;
use std::time::Duration;

use common::*;

fn events(env: &Env) -> Vec<serde_json::Value> {
    env.json(&["events", "--limit", "200"])
        .as_array()
        .unwrap()
        .clone()
}

fn jobs_of_kind(env: &Env, kind: &str) -> usize {
    env.json(&["job", "list"])
        .as_array()
        .unwrap()
        .iter()
        .filter(|j| j["kind"] == kind)
        .count()
}

#[test]
fn an_open_file_volume_is_named_refused_and_forced_with_an_event() {
    let dir = tempfile::tempdir().unwrap();
    let url = fresh_db(Engine::Sqlite, dir.path()).unwrap();
    let env = Env::new(
        dir.path(),
        &url,
        "[backends.file0]\nvolume_driver = \"file\"\n",
    );
    let mut serve = env.serve();
    let v = env.json(&["volume", "create", "guest", "--size", "64M", "--wait"]);
    let id = v["volume"]["id"].as_str().unwrap().to_string();

    // What it really uses: 4 MiB written of 64 provisioned (allocated blocks).
    write_at(&env.image("file0", &id), 8 << 20, 4 << 20, 0x42);
    let shown = env.json(&["volume", "show", "guest"]);
    let used = shown["used_bytes"].as_u64().unwrap();
    assert!((4 << 20..5 << 20).contains(&used), "{shown}");
    let wide = env.json(&["volume", "list", "--wide"]);
    assert_eq!(wide[0]["used_bytes"], used, "{wide}");
    let text = stdout(&env.run(&["volume", "list", "--wide"]));
    assert!(text.contains("Used") && text.contains("MiB"), "{text}");

    // Nobody yet.
    let l = env.json(&["volume", "locks", "guest"]);
    assert_eq!(l["holders"], serde_json::json!([]), "{l}");
    assert!(l["check"].as_str().unwrap().starts_with("fuser -v "), "{l}");

    let holder = Opener::file(&env.image("file0", &id));
    let pid = format!("pid {}", holder.pid());
    let l = wait_for("the holder to be seen", Duration::from_secs(10), || {
        let l = env.json(&["volume", "locks", "guest"]);
        (!l["holders"].as_array().unwrap().is_empty()).then_some(l)
    });
    assert_eq!(l["holders"][0]["client"], pid.as_str(), "{l}");
    assert_eq!(l["holders"][0]["how"], "open file", "{l}");
    assert!(
        l["holders"][0]["address"]
            .as_str()
            .unwrap()
            .contains("sleep"),
        "{l}"
    );

    // Refused before anything is queued, naming the process and how to check.
    for args in [
        vec!["volume", "delete", "guest", "--wait"],
        vec!["volume", "extend", "guest", "--size", "128M"],
    ] {
        let err = env.fails(&args, 1);
        assert!(err.contains(&pid), "{args:?}: {err}");
        assert!(err.contains("fuser -v"), "{err}");
        assert!(err.contains("--force"), "{err}");
        assert!(err.contains("nothing was queued"), "{err}");
        assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
    }
    assert_eq!(
        jobs_of_kind(&env, "delete") + jobs_of_kind(&env, "extend"),
        0
    );
    assert_eq!(env.volume("guest")["status"], "available");
    // `volume show` says so too.
    let shown = stdout(&env.run(&["volume", "show", "guest"]));
    assert!(shown.contains("open by") && shown.contains(&pid), "{shown}");
    let shown = env.json(&["volume", "show", "guest"]);
    assert_eq!(
        shown["holders"]["holders"][0]["client"],
        pid.as_str(),
        "{shown}"
    );

    // The job checks again: opened after the request was checked (serve stopped meanwhile).
    serve.signal("TERM");
    serve.wait(Duration::from_secs(20));
    drop(holder);
    let queued = env.json(&["volume", "extend", "guest", "--size", "128M"]);
    let job = queued["job_id"].as_str().unwrap().to_string();
    let holder = Opener::file(&env.image("file0", &id));
    let pid = format!("pid {}", holder.pid());
    wait_for("the holder to be seen", Duration::from_secs(10), || {
        let l = env.json(&["volume", "locks", "guest"]);
        (!l["holders"].as_array().unwrap().is_empty()).then_some(())
    });
    let _serve = env.serve();
    let ended = env.wait_job(&job, 30);
    assert_eq!(ended["state"], "failed", "{ended}");
    assert!(ended["error"].as_str().unwrap().contains(&pid), "{ended}");
    // Refused, not broken: still usable, old size.
    let v = env.volume("guest");
    assert_eq!(v["status"], "available", "{v}");
    assert_eq!(v["size_bytes"], 64 << 20, "{v}");

    // --force deletes it anyway and the event names who had it open.
    let d = env.json(&["volume", "delete", "guest", "--force", "--wait"]);
    assert_eq!(d["job"]["state"], "succeeded", "{d}");
    assert_eq!(d["job"]["forced"], true, "{d}");
    assert!(!env.image("file0", &id).exists());
    let forced: Vec<_> = events(&env)
        .into_iter()
        .filter(|e| e["kind"] == "forced_while_open")
        .collect();
    assert_eq!(forced.len(), 1, "{forced:?}");
    let m = forced[0]["message"].as_str().unwrap();
    assert!(m.contains("delete forced by") && m.contains(&pid), "{m}");
}

#[test]
fn a_failed_job_says_why_and_is_retried_and_states_are_reset_by_hand() {
    let dir = tempfile::tempdir().unwrap();
    let url = fresh_db(Engine::Sqlite, dir.path()).unwrap();
    let env = Env::new(
        dir.path(),
        &url,
        "[backends.fake0]\nvolume_driver = \"fake\"\nfake_fail_op = \"extend\"\nfake_fail_call = 1\n",
    );
    let mut serve = env.serve();
    env.json(&["volume", "create", "v", "--size", "1G", "--wait"]);
    let o = env.run(&["volume", "extend", "v", "--size", "2G", "--wait"]);
    assert!(!o.status.success());
    let v = env.volume("v");
    assert_eq!(v["status"], "error_extending", "{v}");
    let failed = env
        .json(&["job", "list"])
        .as_array()
        .unwrap()
        .iter()
        .find(|j| j["kind"] == "extend")
        .unwrap()
        .clone();
    let short = &failed["id"].as_str().unwrap()[..8];

    // Why, and the command that fixes it.
    let shown = env.json(&["volume", "show", "v"]);
    assert!(
        shown["error_reason"].as_str().unwrap().contains("injected"),
        "{shown}"
    );
    let fix = shown["fix"].as_str().unwrap();
    assert!(fix.contains(&format!("ember job retry {short}")), "{fix}");
    let text = stdout(&env.run(&["volume", "show", "v"]));
    assert!(
        text.contains("fix") && text.contains("ember job retry"),
        "{text}"
    );

    // Retry: a new job with the same size, naming the old one.
    let r = env.json(&["job", "retry", short, "--wait"]);
    assert_eq!(r["job"]["state"], "succeeded", "{r}");
    assert_eq!(r["job"]["retry_of"], failed["id"], "{r}");
    assert_ne!(r["job"]["id"], failed["id"]);
    let v = env.volume("v");
    assert_eq!(
        (v["status"].as_str(), v["size_bytes"].as_u64()),
        (Some("available"), Some(2 << 30))
    );
    // A succeeded job is not retried.
    let err = env.fails(&["job", "retry", r["job"]["id"].as_str().unwrap()], 1);
    assert!(err.contains("only a failed or cancelled job"), "{err}");

    // reset-state: asks for --yes without a terminal, then changes and audits.
    let err = env.fails(&["volume", "reset-state", "v", "--state", "error"], 1);
    assert!(err.contains("--yes") && err.contains("storage"), "{err}");
    assert_eq!(env.volume("v")["status"], "available");
    let reset = env.json(&[
        "volume",
        "reset-state",
        "v",
        "--state",
        "error",
        "--reason",
        "checked by hand",
        "--yes",
    ]);
    assert_eq!(
        (reset["from"].as_str(), reset["to"].as_str()),
        (Some("available"), Some("error"))
    );
    let v = env.volume("v");
    assert_eq!(v["status"], "error", "{v}");
    let ev = events(&env)
        .into_iter()
        .find(|e| e["kind"] == "state_reset")
        .unwrap();
    let m = ev["message"].as_str().unwrap();
    assert!(
        m.contains("available -> error") && m.contains("checked by hand"),
        "{m}"
    );
    let err = env.fails(
        &["volume", "reset-state", "v", "--state", "deleting", "--yes"],
        2,
    );
    assert!(err.contains("deleting"), "{err}");
    env.json(&[
        "volume",
        "reset-state",
        "v",
        "--state",
        "available",
        "--yes",
    ]);

    // Refused while a job is queued on it (no service runs it now).
    serve.signal("TERM");
    serve.wait(Duration::from_secs(20));
    env.json(&["volume", "extend", "v", "--size", "3G"]);
    let err = env.fails(
        &[
            "volume",
            "reset-state",
            "v",
            "--state",
            "available",
            "--yes",
        ],
        1,
    );
    assert!(
        err.contains("extend job") && err.contains("ember job cancel"),
        "{err}"
    );
    assert_eq!(env.volume("v")["status"], "extending");
}

/// `rbd watch` as a second client, an advisory lock from `rbd lock add`, on a real cluster.
#[test]
fn rbd_watchers_and_stale_locks_are_named_broken_and_forced() {
    let Some(ceph) = Ceph::start(false) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let url = fresh_db(Engine::Sqlite, dir.path()).unwrap();
    let env = Env::new(dir.path(), &url, &ceph.backend("rbd0", ""));
    let _serve = env.serve();
    env.wait_backend_up("rbd0", 60);
    let v = env.json(&[
        "volume",
        "create",
        "guest",
        "--size",
        "64M",
        "--backend",
        "rbd0",
        "--wait",
    ]);
    let id = v["volume"]["id"].as_str().unwrap().to_string();
    let spec = format!("volumes/volume-{id}");

    // Used: whole objects, from the object map (`rbd du`).
    ceph.fill(&format!("volume-{id}"), 8);
    let shown = env.json(&["volume", "show", "guest"]);
    assert_eq!(shown["used_bytes"], 8 << 20, "{shown}");

    // A stale advisory lock: the client that took it has exited.
    ceph.rbd(&["lock", "add", &spec, "stale-cookie"]);
    let l = env.json(&["volume", "locks", "guest"]);
    let lock = l["holders"]
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h["cookie"] == "stale-cookie")
        .unwrap_or_else(|| panic!("{l}"))
        .clone();
    assert_eq!(lock["how"], "lock", "{l}");
    let locker = lock["client"].as_str().unwrap().to_string();
    assert!(
        l["check"]
            .as_str()
            .unwrap()
            .starts_with("rbd status volumes/"),
        "{l}"
    );
    // Break it: blocklisted, then gone.
    let b = env.json(&["volume", "break-lock", "guest", "--locker", &locker]);
    assert_eq!(b["broken"]["cookie"], "stale-cookie", "{b}");
    let blocklist = ceph.ceph(&["osd", "blocklist", "ls"]);
    let addr = lock["address"].as_str().unwrap();
    assert!(blocklist.contains(addr), "{addr} not in {blocklist}");
    let ls = stdout(&ceph.rbd(&["lock", "ls", &spec]));
    assert!(!ls.contains("stale-cookie"), "{ls}");
    assert!(
        events(&env).iter().any(|e| e["kind"] == "lock_broken"),
        "no lock_broken event"
    );

    // A live watcher (a second client with the image open).
    let mut watch = Opener::rbd_watch(
        &ceph,
        &spec,
        std::fs::File::create(dir.path().join("rbd-watch.err"))
            .unwrap()
            .into(),
    );
    let mut last = serde_json::Value::Null;
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let l = loop {
        let l = env.json(&["volume", "locks", "guest"]);
        let seen = l["holders"]
            .as_array()
            .unwrap()
            .iter()
            .any(|h| h["how"] == "watcher" && h["ember"] == false);
        if seen {
            break l;
        }
        if std::time::Instant::now() > deadline {
            let st = watch.0.try_wait().unwrap();
            let err = std::fs::read_to_string(dir.path().join("rbd-watch.err")).unwrap_or_default();
            panic!("the watcher was not seen in 20 s (rbd watch: {st:?} {err}); last: {last} {l}");
        }
        last = l;
        std::thread::sleep(Duration::from_millis(300));
    };
    let watcher = l["holders"]
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h["how"] == "watcher")
        .unwrap()
        .clone();
    let client = watcher["client"].as_str().unwrap().to_string();
    assert!(client.starts_with("client."), "{watcher}");
    // On this host: named by the services table's address.
    assert!(watcher["host"].is_string(), "{watcher}");
    let err = env.fails(&["volume", "delete", "guest", "--wait"], 1);
    assert!(
        err.contains(&client) && err.contains(&format!("rbd status {spec}")),
        "{err}"
    );
    let err = env.fails(&["volume", "break-lock", "guest", "--locker", &client], 1);
    assert!(err.contains("holds no lock"), "{err}");
    let shown = stdout(&env.run(&["volume", "show", "guest"]));
    assert!(shown.contains(&client), "{shown}");

    let d = env.json(&["volume", "delete", "guest", "--force", "--wait"]);
    assert_eq!(d["job"]["state"], "succeeded", "{d}");
    let ev = events(&env)
        .into_iter()
        .find(|e| e["kind"] == "forced_while_open")
        .unwrap();
    let m = ev["message"].as_str().unwrap();
    assert!(m.contains(&client) && m.contains("blocklisted"), "{ev}");
    // Fenced, as Ceph recommends before removing an image under a live client.
    let blocklist = ceph.ceph(&["osd", "blocklist", "ls"]);
    let addr = watcher["address"].as_str().unwrap();
    assert!(blocklist.contains(addr), "{addr} not in {blocklist}");
    drop(watch);
}

#[test]
fn files_are_adopted_and_released_like_cinders_manage_and_unmanage() {
    let dir = tempfile::tempdir().unwrap();
    let url = fresh_db(Engine::Sqlite, dir.path()).unwrap();
    let env = Env::new(
        dir.path(),
        &url,
        "[backends.file0]\nvolume_driver = \"file\"\n",
    );
    let _serve = env.serve();
    env.json(&["volume", "create", "seed", "--size", "1M", "--wait"]); // file_dir exists
    let fdir = env.file_dir("file0");
    // An image made outside ember: 64 MiB with data at 8 MiB.
    let legacy = fdir.join("legacy.img");
    std::fs::File::create(&legacy)
        .unwrap()
        .set_len(64 << 20)
        .unwrap();
    write_at(&legacy, 8 << 20, 1 << 20, 0x3c);

    // Open by a process: refused, naming it.
    let holder = Opener::file(&legacy);
    wait_for("the holder", Duration::from_secs(10), || {
        let o = env.run(&[
            "volume",
            "manage",
            "file0",
            "legacy.img",
            "--name",
            "legacy",
        ]);
        (!o.status.success() && stderr(&o).contains(&format!("pid {}", holder.pid()))).then_some(())
    });
    drop(holder);
    let err = env.fails(
        &["volume", "manage", "file0", "nothing.img", "--name", "x"],
        1,
    );
    assert!(
        err.contains("has no image nothing.img") && err.contains("reconcile"),
        "{err}"
    );

    let v = env.json(&[
        "volume",
        "manage",
        "file0",
        "legacy.img",
        "--name",
        "legacy",
    ]);
    let id = v["id"].as_str().unwrap().to_string();
    assert_eq!(v["status"], "available", "{v}");
    assert_eq!(v["size_bytes"], 64 << 20, "{v}");
    assert!(!legacy.exists(), "renamed");
    let image = env.image("file0", &id);
    assert_eq!(
        read_at(&image, 8 << 20, 4),
        vec![0x3c; 4],
        "the data came along"
    );
    let o = env.run(&["volume", "reconcile", "file0", "--json"]);
    assert!(o.status.success(), "{} {}", stdout(&o), stderr(&o));
    assert_eq!(json(&o), serde_json::json!([]), "nothing left to reconcile");
    assert!(
        events(&env).iter().any(|e| e["kind"] == "volume_managed"),
        "no volume_managed event"
    );

    // Unmanage: refused with a snapshot, then forgets the row and keeps the file.
    env.json(&[
        "volume", "snapshot", "create", "ls", "--volume", "legacy", "--wait",
    ]);
    let err = env.fails(&["volume", "unmanage", "legacy"], 1);
    assert!(err.contains("has snapshots") && err.contains("ls"), "{err}");
    env.json(&["volume", "snapshot", "delete", "ls", "--wait"]);
    let out = stdout(&env.run(&["volume", "unmanage", "legacy"]));
    assert!(
        out.contains("stays on file0") && out.contains("ember volume manage"),
        "{out}"
    );
    assert!(image.exists(), "the image stays");
    assert!(!env.run(&["volume", "show", "legacy"]).status.success());
    // Reconcile now calls it an orphan, manageable, with the command.
    // (exit 1: a difference is open)
    let o = env.run(&["volume", "reconcile", "file0", "--json"]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let r: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let img = format!("volume-{id}");
    let orphan = r
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["image"] == img.as_str())
        .unwrap_or_else(|| panic!("{r}"));
    assert_eq!(
        orphan["manageable"],
        format!("ember volume manage file0 {img} --name NAME").as_str()
    );
    let text = stdout(&env.run(&["volume", "reconcile", "file0"]));
    assert!(text.contains("manageable: ember volume manage"), "{text}");
    // ...and managing it again adopts it under a new id.
    let again = env.json(&["volume", "manage", "file0", &img, "--name", "legacy"]);
    assert_ne!(again["id"], id.as_str());
    assert_eq!(again["size_bytes"], 64 << 20);
}

/// Images made with `rbd create` and `rbd clone` outside ember, adopted and released.
#[test]
fn rbd_images_made_outside_ember_are_managed_with_their_layering() {
    let Some(ceph) = Ceph::start(false) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let url = fresh_db(Engine::Sqlite, dir.path()).unwrap();
    let env = Env::new(dir.path(), &url, &ceph.backend("rbd0", ""));
    let mut serve = env.serve();
    env.wait_backend_up("rbd0", 60);
    ceph.rbd(&["create", "--size", "128M", "volumes/legacy-db"]);
    ceph.fill("legacy-db", 8);
    let v = env.json(&["volume", "manage", "rbd0", "legacy-db", "--name", "db"]);
    let id = v["id"].as_str().unwrap().to_string();
    assert_eq!(v["size_bytes"], 128 << 20, "{v}");
    assert_eq!(ceph.info(&format!("volume-{id}"))["size"], 128 << 20);
    let ls = stdout(&ceph.rbd(&["ls", "volumes"]));
    assert!(!ls.contains("legacy-db"), "renamed: {ls}");

    // A clone made with `rbd clone` of a snapshot ember knows keeps its layering.
    let s = env.json(&[
        "volume", "snapshot", "create", "db-snap", "--volume", "db", "--wait",
    ]);
    let sid = s["snapshot"]["id"].as_str().unwrap().to_string();
    ceph.rbd(&[
        "clone",
        &format!("volumes/volume-{id}@snapshot-{sid}"),
        "volumes/outside-clone",
    ]);
    let c = env.json(&[
        "volume",
        "manage",
        "rbd0",
        "outside-clone",
        "--name",
        "db-copy",
    ]);
    assert_eq!(c["parent"], sid.as_str(), "{c}");
    assert_eq!(c["clone_depth"], 1, "{c}");
    let cid = c["id"].as_str().unwrap();
    let info = ceph.info(&format!("volume-{cid}"));
    assert!(
        info["parent"]["snapshot"] == format!("snapshot-{sid}").as_str(),
        "{info}"
    );
    // Flattening it through ember works on the adopted clone.
    let f = env.json(&["volume", "flatten", "db-copy", "--wait"]);
    assert_eq!(f["job"]["state"], "succeeded", "{f}");

    // A clone of a snapshot ember does not know is refused, with the way out.
    ceph.rbd(&["create", "--size", "64M", "volumes/other"]);
    ceph.rbd(&["snap", "create", "volumes/other@x"]);
    ceph.rbd(&["snap", "protect", "volumes/other@x"]);
    ceph.rbd(&["clone", "volumes/other@x", "volumes/other-clone"]);
    let err = env.fails(
        &["volume", "manage", "rbd0", "other-clone", "--name", "oc"],
        1,
    );
    assert!(
        err.contains("does not know") && err.contains("rbd flatten"),
        "{err}"
    );

    // Unmanage leaves the image where it is.
    env.json(&["volume", "unmanage", "db-copy"]);
    assert_eq!(ceph.info(&format!("volume-{cid}"))["size"], 128 << 20);
    assert!(!env.run(&["volume", "show", "db-copy"]).status.success());

    // A job refused by the storage check (a client opened the volume after the request was
    // checked), then retried once the client is gone; checked with the rbd CLI.
    serve.signal("TERM");
    serve.wait(Duration::from_secs(30));
    let queued = env.json(&["volume", "extend", "db", "--size", "256M"]);
    let job = queued["job_id"].as_str().unwrap().to_string();
    let watch = Opener::rbd_watch(&ceph, &format!("volumes/volume-{id}"), Stdio::null());
    wait_for("the watcher", Duration::from_secs(20), || {
        let l = env.json(&["volume", "locks", "db"]);
        (!l["holders"].as_array().unwrap().is_empty()).then_some(())
    });
    let _serve = env.serve();
    let ended = env.wait_job(&job, 60);
    assert_eq!(ended["state"], "failed", "{ended}");
    assert!(
        ended["error"]
            .as_str()
            .unwrap()
            .contains("is open by client."),
        "{ended}"
    );
    assert_eq!(env.volume("db")["status"], "available");
    assert_eq!(
        ceph.info(&format!("volume-{id}"))["size"],
        128 << 20,
        "untouched"
    );
    drop(watch);
    wait_for("the watch to go", Duration::from_secs(60), || {
        let l = env.json(&["volume", "locks", "db"]);
        l["holders"].as_array().unwrap().is_empty().then_some(())
    });
    let r = env.json(&["job", "retry", &job, "--wait"]);
    assert_eq!(r["job"]["state"], "succeeded", "{r}");
    assert_eq!(ceph.info(&format!("volume-{id}"))["size"], 256 << 20);

    // reset-state changes the record only: the image is as it was.
    env.json(&["volume", "reset-state", "db", "--state", "error", "--yes"]);
    assert_eq!(env.volume("db")["status"], "error");
    assert_eq!(ceph.info(&format!("volume-{id}"))["size"], 256 << 20);
    env.json(&[
        "volume",
        "reset-state",
        "db",
        "--state",
        "available",
        "--yes",
    ]);
}
