//! The rbd driver on a real throwaway Ceph cluster (scripts/ceph.sh: 1 mon, 1 memstore OSD on
//! 127.0.0.1, cephx on, client.cinder with `profile rbd` on pool `volumes`), through the
//! binary: what the operator types, what the database says, and what `rbd` sees in the pool.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::*;

fn sqlite(dir: &std::path::Path) -> String {
    fresh_db(Engine::Sqlite, dir).unwrap()
}

fn id(v: &serde_json::Value) -> String {
    v["id"].as_str().unwrap().to_string()
}

fn images(ceph: &Ceph) -> Vec<String> {
    let o = ceph.rbd(&["ls", "--format", "json", "volumes"]);
    serde_json::from_slice(&o.stdout).unwrap()
}

/// A digest of an image's whole content (or of `image@snap`).
fn digest(ceph: &Ceph, spec: &str) -> String {
    let out = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!(
            "rbd -c {} export volumes/{spec} - 2>/dev/null | md5sum",
            ceph.conf.display()
        ))
        .output()
        .unwrap();
    assert!(out.status.success());
    stdout(&out)
}

/// A cluster, an ember config with one rbd backend `rbd0` (plus `extra` lines) on a fresh
/// SQLite database, and its running service. Fields drop in order: service, then cluster.
struct Setup {
    _serve: Serve,
    env: Env,
    _dir: tempfile::TempDir,
    ceph: Ceph,
}

/// None when Ceph is not installed outside CI (see `Ceph::start`).
fn setup(mgr: bool, extra: &str) -> Option<Setup> {
    let ceph = Ceph::start(mgr)?;
    let dir = tempfile::tempdir().unwrap();
    let env = Env::new(
        dir.path(),
        &sqlite(dir.path()),
        &ceph.backend("rbd0", extra),
    );
    Some(Setup {
        _serve: env.serve(),
        env,
        _dir: dir,
        ceph,
    })
}

#[test]
fn every_job_kind_on_rbd() {
    let Some(s) = setup(false, "rbd_max_clone_depth = 5") else {
        return;
    };
    let (env, ceph) = (&s.env, &s.ceph);

    // create: an image of the size, named as Cinder names it.
    let base = env.json(&["volume", "create", "base", "--size", "1G", "--wait"])["volume"].clone();
    let base_img = format!("volume-{}", id(&base));
    assert_eq!(ceph.info(&base_img)["size"], 1u64 << 30);
    ceph.fill(&base_img, 64);

    // snapshot: volume@snapshot-<id>, protected so that it can be cloned.
    let snap = env.json(&[
        "volume", "snapshot", "create", "s1", "--volume", "base", "--wait",
    ])["snapshot"]
        .clone();
    let snap_name = format!("snapshot-{}", id(&snap));
    let o = ceph.rbd(&[
        "snap",
        "ls",
        "--format",
        "json",
        &format!("volumes/{base_img}"),
    ]);
    let snaps: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(snaps[0]["name"], snap_name.as_str());
    assert_eq!(snaps[0]["protected"], "true");

    // clone from the snapshot: a layered child.
    let c1 = env.json(&["volume", "create", "c1", "--snapshot", "s1", "--wait"])["volume"].clone();
    let c1_img = format!("volume-{}", id(&c1));
    assert_eq!(ceph.info(&c1_img)["parent"]["snapshot"], snap_name.as_str());
    assert_eq!(
        digest(ceph, &c1_img),
        digest(ceph, &format!("{base_img}@{snap_name}"))
    );

    // clone of a volume: snapshot + protect + clone underneath.
    let c2 = env.json(&["volume", "create", "c2", "--source", "base", "--wait"])["volume"].clone();
    assert!(
        ceph.info(&format!("volume-{}", id(&c2)))["parent"]["snapshot"]
            .as_str()
            .unwrap()
            .starts_with("snapshot-")
    );

    // extend, and a shrink refused at once.
    env.json(&["volume", "extend", "c1", "--size", "2G", "--wait"]);
    assert_eq!(ceph.info(&c1_img)["size"], 2u64 << 30);
    let e = env.fails(&["volume", "extend", "c1", "--size", "1G"], 1);
    assert!(e.contains("shrink") || e.contains("smaller"), "{e}");

    // delete refused while clones read from the snapshot, with the fix named.
    let e = env.fails(&["volume", "snapshot", "delete", "s1"], 1);
    assert!(e.contains("dependent clones") && e.contains("c1"), "{e}");

    // flatten: the data stays, the link goes.
    let before = digest(ceph, &c1_img);
    let f = env.json(&["volume", "flatten", "c1", "--wait"]);
    assert_eq!(f["job"]["state"], "succeeded");
    assert_eq!(f["job"]["bytes_done"], f["job"]["bytes_total"]);
    assert!(ceph.info(&c1_img).get("parent").is_none());
    assert_eq!(digest(ceph, &c1_img), before);

    // snapshot delete once nothing depends on it; clone, flatten, delete of the rest.
    env.json(&["volume", "snapshot", "delete", "s1", "--wait"]);
    let o = ceph.rbd(&[
        "snap",
        "ls",
        "--format",
        "json",
        &format!("volumes/{base_img}"),
    ]);
    let left: Vec<serde_json::Value> = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(left.len(), 1, "only c2's clone snapshot is left: {left:?}");
    env.json(&["volume", "delete", "c2", "--wait"]);
    env.json(&["volume", "delete", "base", "--wait"]);
    env.json(&["volume", "delete", "c1", "--wait"]);
    assert_eq!(images(ceph), Vec::<String>::new());
    let r = env.json(&["volume", "reconcile", "rbd0"]);
    assert_eq!(r.as_array().map(Vec::len), Some(0), "{r}");
}

#[test]
fn flatten_of_a_1g_clone_shows_progress_and_can_be_cancelled() {
    // 128 MiB/s: a 1 GiB flatten takes about 8 s, long enough to watch and to cancel.
    let Some(s) = setup(false, "volume_copy_bps_limit = 134217728") else {
        return;
    };
    let (env, ceph) = (&s.env, &s.ceph);
    let src = env.json(&["volume", "create", "src", "--size", "1G", "--wait"])["volume"].clone();
    ceph.fill(&format!("volume-{}", id(&src)), 256);
    env.json(&[
        "volume", "snapshot", "create", "s", "--volume", "src", "--wait",
    ]);
    env.json(&["volume", "create", "c", "--snapshot", "s", "--wait"]);

    let job = env.json(&["volume", "flatten", "c"])["job_id"]
        .as_str()
        .unwrap()
        .to_string();
    let mut seen = vec![];
    wait_for("progress to move twice", Duration::from_secs(30), || {
        let j = env.json(&["job", "show", &job]);
        let done = j["bytes_done"].as_i64().unwrap();
        if done > 0 && done < 1 << 30 && seen.last() != Some(&done) {
            seen.push(done);
        }
        (seen.len() >= 2).then_some(())
    });
    assert_eq!(env.json(&["job", "show", &job])["bytes_total"], 1i64 << 30);
    let c = env.json(&["job", "cancel", &job]);
    assert_eq!(c["result"], "cancel_requested");
    let o = env.run(&["job", "watch", &job]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let j = env.json(&["job", "show", &job]);
    assert_eq!(j["state"], "cancelled");
    assert!(j["bytes_done"].as_i64().unwrap() < 1 << 30);
    assert!(
        env.volume("c")["parent"].is_string(),
        "a cancelled flatten leaves the clone layered"
    );
    let c_img = format!("volume-{}", id(&env.volume("c")));
    assert!(ceph.info(&c_img).get("parent").is_some());

    // Run again to the end: the link goes, the data is the snapshot's.
    env.json(&["volume", "flatten", "c", "--wait"]);
    assert!(ceph.info(&c_img).get("parent").is_none());
}

#[test]
fn auto_flatten_at_max_clone_depth_and_deferred_deletion_through_the_trash() {
    let Some(s) = setup(
        false,
        "rbd_max_clone_depth = 1\nenable_deferred_deletion = true\ndeferred_deletion_purge_interval = 1",
    ) else {
        return;
    };
    let (env, ceph) = (&s.env, &s.ceph);
    env.json(&["volume", "create", "a", "--size", "256M", "--wait"]);
    let b = env.json(&["volume", "create", "b", "--source", "a", "--wait"])["volume"].clone();
    let b_img = format!("volume-{}", id(&b));
    assert!(ceph.info(&b_img).get("parent").is_some(), "depth 1 is kept");
    // A clone of the clone would be depth 2 > 1: flattened at once.
    let c = env.json(&["volume", "create", "c", "--source", "b", "--wait"])["volume"].clone();
    assert!(
        ceph.info(&format!("volume-{}", id(&c)))
            .get("parent")
            .is_none(),
        "past rbd_max_clone_depth the clone is flattened"
    );

    // Deferred: a's clone snapshot still has b reading from it, so a goes to the trash and
    // leaves the pool listing; once b is gone the periodic purge removes it for good.
    let a_img = format!("volume-{}", id(&env.volume("a")));
    let b_data = digest(ceph, &b_img);
    env.json(&["volume", "delete", "a", "--cascade", "--wait"]);
    assert!(!images(ceph).contains(&a_img));
    let trash = stdout(&ceph.rbd(&["trash", "ls", "volumes"]));
    assert!(trash.contains(&a_img), "{trash}");
    assert_eq!(
        digest(ceph, &b_img),
        b_data,
        "the clone still reads its parent's data"
    );
    env.json(&["volume", "delete", "b", "--wait"]);
    wait_for("the purge of a", Duration::from_secs(30), || {
        stdout(&ceph.rbd(&["trash", "ls", "volumes"]))
            .trim()
            .is_empty()
            .then_some(())
    });
    // The event is written just after the image goes: waited for, not raced (under load in
    // CI the listing once came first).
    wait_for("the image_purged event", Duration::from_secs(30), || {
        env.json(&["events"])
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["kind"] == "image_purged" && e["target"] == a_img.as_str())
            .then_some(())
    });
}

#[test]
fn capacity_from_the_pool_and_reconcile_against_the_pool() {
    let Some(s) = setup(true, "") else {
        return;
    };
    let (env, ceph) = (&s.env, &s.ceph);
    env.json(&["volume", "create", "v1", "--size", "1G", "--wait"]);
    env.json(&["volume", "create", "v2", "--size", "512M", "--wait"]);
    // The mgr reports pool figures a few seconds late: poll.
    let b = wait_for("capacity", Duration::from_secs(30), || {
        let l = env.json(&["backend", "list"]);
        let b = l.as_array().unwrap()[0].clone();
        (b["provisioned_bytes"] == (3u64 << 29) && b["total_bytes"].as_u64() > Some(0)).then_some(b)
    });
    let cap = &b;
    assert!(cap["free_bytes"].as_u64().unwrap() <= cap["total_bytes"].as_u64().unwrap());
    assert!(cap["total_bytes"].as_u64().unwrap() > 4 << 30, "{cap}");

    // An image made behind ember's back, and a volume whose image was removed.
    let orphan = "volume-00000000-0000-0000-0000-0000000000aa";
    ceph.rbd(&["create", "--size", "16M", &format!("volumes/{orphan}")]);
    let v2 = env.volume("v2");
    ceph.rbd(&["rm", &format!("volumes/volume-{}", id(&v2))]);
    let o = env.run(&["volume", "reconcile", "rbd0", "--json"]);
    assert_eq!(o.status.code(), Some(1), "differences found");
    let r: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let kinds: Vec<(String, String)> = r
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["kind"].as_str().unwrap().to_string(),
                f["image"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert!(
        kinds.contains(&("orphan_image".into(), orphan.into())),
        "{r}"
    );
    assert!(
        kinds.contains(&("missing_image".into(), format!("volume-{}", id(&v2)))),
        "{r}"
    );
    assert_eq!(kinds.len(), 2, "{r}");
}
