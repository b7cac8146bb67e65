//! Every job kind through the binary on the file driver, on SQLite and PostgreSQL: what the
//! operator types, what the database says after, and what is on disk.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::*;

const FILE0: &str = "[backends.file0]\nvolume_driver = \"file\"\nrbd_max_clone_depth = 2\n";

#[test]
fn every_job_kind_on_the_file_driver() {
    each_engine(|_, dir, url| {
        let env = Env::new(dir, url, FILE0);
        let _serve = env.serve();

        // create
        let out = env.json(&["volume", "create", "base", "--size", "1G", "--wait"]);
        assert_eq!(out["job"]["state"], "succeeded");
        assert_eq!(out["job"]["kind"], "create");
        for key in [
            "id",
            "kind",
            "target",
            "state",
            "bytes_done",
            "bytes_total",
            "error",
            "requested_by",
        ] {
            assert!(out["job"].get(key).is_some(), "job JSON lacks {key}");
        }
        let base = out["volume"].clone();
        assert_eq!(base["status"], "available");
        assert_eq!(base["size_bytes"], 1i64 << 30);
        let base_id = base["id"].as_str().unwrap().to_string();
        let base_img = env.image("file0", &base_id);
        assert_eq!(std::fs::metadata(&base_img).unwrap().len(), 1 << 30);
        assert_eq!(
            std::os::unix::fs::MetadataExt::blocks(&std::fs::metadata(&base_img).unwrap()),
            0,
            "a new volume is sparse"
        );
        // Guest data: 32 MiB of 0xAB at 100 MiB.
        write_at(&base_img, 100 << 20, 32 << 20, 0xAB);

        // snapshot create, then a later write to the volume must not reach the snapshot
        let snap = env.json(&[
            "volume", "snapshot", "create", "s1", "--volume", "base", "--wait",
        ]);
        assert_eq!(snap["snapshot"]["status"], "available");
        write_at(&base_img, 100 << 20, 1 << 20, 0xCD);

        // clone from the snapshot: layering, fast, depth 1, reads through
        let c1 = env.json(&["volume", "create", "c1", "--snapshot", "s1", "--wait"]);
        let c1_id = c1["volume"]["id"].as_str().unwrap().to_string();
        assert_eq!(c1["volume"]["clone_depth"], 1);
        assert_eq!(c1["volume"]["parent"], snap["snapshot"]["id"]);
        assert!(
            env.file_dir("file0")
                .join(format!("volume-{c1_id}.parent"))
                .exists()
        );

        // delete refused while a clone depends on the snapshot, with the fix named
        let err = env.fails(&["volume", "snapshot", "delete", "s1"], 1);
        assert!(
            err.contains("has dependent clones: c1") && err.contains("ember volume flatten"),
            "{err}"
        );
        let err = env.fails(&["volume", "delete", "base", "--cascade"], 1);
        assert!(err.contains("has dependent clones"), "{err}");

        // flatten: the clone gets the snapshot's data (not the later write), and no parent
        let f = env.json(&["volume", "flatten", "c1", "--wait"]);
        assert_eq!(f["job"]["state"], "succeeded");
        assert!(
            f["job"]["bytes_total"].as_i64().unwrap() >= 32 << 20,
            "{}",
            f["job"]
        );
        assert_eq!(f["job"]["bytes_done"], f["job"]["bytes_total"]);
        assert_eq!(f["volume"]["parent"], serde_json::Value::Null);
        assert_eq!(f["volume"]["clone_depth"], 0);
        let c1_img = env.image("file0", &c1_id);
        assert!(
            read_at(&c1_img, 100 << 20, 32 << 20)
                .iter()
                .all(|b| *b == 0xAB),
            "flattened data is the snapshot's"
        );
        assert!(
            !env.file_dir("file0")
                .join(format!("volume-{c1_id}.parent"))
                .exists()
        );
        let used =
            std::os::unix::fs::MetadataExt::blocks(&std::fs::metadata(&c1_img).unwrap()) * 512;
        assert!(
            used < 40 << 20,
            "flatten copied only allocated extents: {used} bytes used"
        );

        // clone of a volume (--source): a hidden clone snapshot underneath
        let c2 = env.json(&[
            "volume", "create", "c2", "--source", "c1", "--size", "2G", "--wait",
        ]);
        assert_eq!(c2["volume"]["size_bytes"], 2i64 << 30);
        assert_eq!(c2["volume"]["clone_depth"], 1);
        let all = env.json(&["volume", "snapshot", "list", "--all"]);
        assert!(
            all.as_array()
                .unwrap()
                .iter()
                .any(|s| s["purpose"] == "clone")
        );
        let users = env.json(&["volume", "snapshot", "list"]);
        assert!(
            users
                .as_array()
                .unwrap()
                .iter()
                .all(|s| s["purpose"] == "user")
        );

        // extend; shrinking refused at once
        let e = env.json(&["volume", "extend", "c2", "--size", "3G", "--wait"]);
        assert_eq!(e["volume"]["size_bytes"], 3i64 << 30);
        assert_eq!(
            std::fs::metadata(env.image("file0", c2["volume"]["id"].as_str().unwrap()))
                .unwrap()
                .len(),
            3 << 30
        );
        let err = env.fails(&["volume", "extend", "c2", "--size", "1G"], 1);
        assert!(err.contains("never shrink"), "{err}");

        // delete of the clone removes its hidden clone snapshot too
        let d = env.json(&["volume", "delete", "c2", "--wait"]);
        assert_eq!(d["job"]["state"], "succeeded");
        assert_eq!(d["volume"]["status"], "deleted");
        let all = env.json(&["volume", "snapshot", "list", "--all"]);
        assert!(
            all.as_array()
                .unwrap()
                .iter()
                .all(|s| s["purpose"] == "user"),
            "clone snapshot collected: {all}"
        );

        // snapshot delete, then volume delete
        env.json(&["volume", "snapshot", "delete", "s1", "--wait"]);
        env.json(&["volume", "delete", "base", "--wait"]);
        env.json(&["volume", "delete", "c1", "--wait"]);
        let left: Vec<_> = std::fs::read_dir(env.file_dir("file0"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert!(
            left.is_empty(),
            "files left after deleting everything: {left:?}"
        );
        assert_eq!(env.json(&["volume", "list"]).as_array().unwrap().len(), 0);

        // the audit log names who asked
        let events = env.json(&["events", "--limit", "200"]);
        let queued: Vec<_> = events
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["kind"] == "job_queued")
            .collect();
        assert!(queued.len() >= 9, "{queued:?}");
        assert!(
            queued
                .iter()
                .all(|e| !e["actor"].as_str().unwrap().is_empty())
        );
    });
}

#[test]
fn clone_past_max_clone_depth_is_flattened_at_once() {
    each_engine(|_, dir, url| {
        let env = Env::new(
            dir,
            url,
            "[backends.file0]\nvolume_driver = \"file\"\nrbd_max_clone_depth = 1\n",
        );
        let _serve = env.serve();
        env.json(&["volume", "create", "a", "--size", "64M", "--wait"]);
        let b = env.json(&["volume", "create", "b", "--source", "a", "--wait"]);
        assert_eq!(b["volume"]["clone_depth"], 1, "within the limit: layered");
        let c = env.json(&["volume", "create", "c", "--source", "b", "--wait"]);
        assert_eq!(
            c["volume"]["clone_depth"], 0,
            "past the limit: flattened at once, as Cinder does"
        );
        assert_eq!(c["volume"]["parent"], serde_json::Value::Null);
        let c_id = c["volume"]["id"].as_str().unwrap();
        assert!(
            !env.file_dir("file0")
                .join(format!("volume-{c_id}.parent"))
                .exists()
        );
    });
}

#[test]
fn requests_that_can_be_refused_are_refused_at_once_and_nothing_is_enqueued() {
    each_engine(|_, dir, url| {
        let env = Env::new(
            dir,
            url,
            "[backends.file0]\nvolume_driver = \"file\"\n[backends.file1]\nvolume_driver = \"file\"\n",
        );
        // No service runs: --wait would never end, so it is refused before anything is written.
        let err = env.fails(
            &[
                "volume",
                "create",
                "v",
                "--size",
                "1G",
                "--backend",
                "file0",
                "--wait",
            ],
            1,
        );
        assert!(
            err.contains("no live service serves") && err.contains("@file0"),
            "{err}"
        );
        let queued = env.json(&["job", "list"]);
        assert_eq!(
            queued.as_array().unwrap().len(),
            0,
            "refused --wait enqueued nothing"
        );

        for (args, code, expect) in [
            (
                vec!["volume", "create", "v", "--size", "0"],
                2,
                "bad size \"0\"",
            ),
            (
                vec!["volume", "create", "v", "--size", "ten"],
                2,
                "bad size \"ten\"",
            ),
            (vec!["volume", "create", "v"], 1, "needs --size"),
            (
                vec!["volume", "create", "v", "--size", "1G"],
                1,
                "several backends: choose one with --backend (file0, file1)",
            ),
            (
                vec!["volume", "create", "v", "--size", "1G", "--backend", "nope"],
                1,
                "no backend \"nope\"",
            ),
            (
                vec!["volume", "flatten", "ghost"],
                1,
                "no volume with id or name \"ghost\"",
            ),
            (
                vec!["volume", "delete", "ghost"],
                1,
                "no volume with id or name \"ghost\"",
            ),
            (
                vec!["volume", "snapshot", "delete", "ghost"],
                1,
                "no snapshot with id or name \"ghost\"",
            ),
            (
                vec!["volume", "create", "v", "--snapshot", "ghost"],
                1,
                "no snapshot with id or name \"ghost\"",
            ),
            (
                vec!["job", "cancel", "ghost"],
                1,
                "no job with id or name \"ghost\"",
            ),
        ] {
            let err = env.fails(&args, code);
            assert!(err.contains(expect), "{args:?}: {err}");
        }
        assert_eq!(env.json(&["job", "list"]).as_array().unwrap().len(), 0);

        // A plain enqueue without a live service is accepted, with a warning.
        let o = env.run(&[
            "volume",
            "create",
            "v",
            "--size",
            "1G",
            "--backend",
            "file0",
        ]);
        assert!(o.status.success());
        assert!(
            stderr(&o).contains("no live service serves") && stderr(&o).contains("@file0"),
            "{}",
            stderr(&o)
        );
        // While a job is queued on it, a second one is refused with the reason.
        let err = env.fails(&["volume", "delete", "v"], 1);
        assert!(
            err.contains("cannot delete volume v") && err.contains("creating"),
            "{err}"
        );
        // ...and the queued job can be cancelled: it ends at once and the row goes.
        let jobs = env.json(&["job", "list"]);
        let id = jobs[0]["id"].as_str().unwrap();
        let c = env.json(&["job", "cancel", &id[..8]]);
        assert_eq!(c["result"], "cancelled");
        assert_eq!(env.json(&["job", "show", id])["state"], "cancelled");
        assert_eq!(env.json(&["volume", "list"]).as_array().unwrap().len(), 0);

        // A flatten of a volume with no parent, a delete with snapshots (without --cascade).
        let _serve = env.serve();
        env.json(&[
            "volume",
            "create",
            "w",
            "--size",
            "1G",
            "--backend",
            "file0",
            "--wait",
        ]);
        let err = env.fails(&["volume", "flatten", "w"], 1);
        assert!(err.contains("has no parent"), "{err}");
        env.json(&[
            "volume", "snapshot", "create", "ws", "--volume", "w", "--wait",
        ]);
        let err = env.fails(&["volume", "delete", "w"], 1);
        assert!(
            err.contains("has snapshot ws") && err.contains("--cascade"),
            "{err}"
        );
        let d = env.json(&["volume", "delete", "w", "--cascade", "--wait"]);
        assert_eq!(d["volume"]["status"], "deleted");
    });
}

#[test]
fn a_running_flatten_shows_progress_and_can_be_cancelled() {
    each_engine(|_, dir, url| {
        // 8 MiB/s: a 64 MiB flatten takes 8 s unless cancelled.
        let env = Env::new(
            dir,
            url,
            "[backends.file0]\nvolume_driver = \"file\"\nvolume_copy_bps_limit = 8388608\n",
        );
        let _serve = env.serve();
        env.snapshot_with_data("1G", &env.file_dir("file0"), 64, 0x11, &["c"]);
        let f = env.json(&["volume", "flatten", "c"]);
        let job = f["job_id"].as_str().unwrap().to_string();
        // Progress moves.
        let first = wait_for("progress", Duration::from_secs(20), || {
            let j = env.json(&["job", "show", &job]);
            (j["bytes_done"].as_i64().unwrap() > 0).then_some(j["bytes_done"].as_i64().unwrap())
        });
        wait_for("more progress", Duration::from_secs(20), || {
            (env.json(&["job", "show", &job])["bytes_done"]
                .as_i64()
                .unwrap()
                > first)
                .then_some(())
        });
        assert_eq!(env.json(&["job", "show", &job])["bytes_total"], 64i64 << 20);
        // Cancel: the worker stops within a progress step; the clone keeps its parent.
        let c = env.json(&["job", "cancel", &job]);
        assert_eq!(c["result"], "cancel_requested");
        let o = env.run(&["job", "watch", &job]);
        assert_eq!(
            o.status.code(),
            Some(1),
            "watch of a cancelled job exits non-zero"
        );
        assert!(stderr(&o).contains("cancelled"), "{}", stderr(&o));
        let j = env.json(&["job", "show", &job]);
        assert_eq!(j["state"], "cancelled");
        assert!(j["bytes_done"].as_i64().unwrap() < 64 << 20);
        let c = env.volume("c");
        assert_eq!(c["status"], "available");
        assert!(
            c["parent"].is_string(),
            "a cancelled flatten leaves the clone layered"
        );
        // Run again: it finishes, copying only what is left.
        env.json(&["volume", "flatten", "c", "--wait"]);
        assert_eq!(env.volume("c")["parent"], serde_json::Value::Null);
    });
}

#[test]
fn reconcile_reports_and_fixes_differences() {
    each_engine(|_, dir, url| {
        let env = Env::new(dir, url, FILE0);
        let serve = env.serve();
        let a = env.json(&["volume", "create", "a", "--size", "64M", "--wait"]);
        let b = env.json(&["volume", "create", "b", "--size", "64M", "--wait"]);
        drop(serve);
        // An orphan image (no row) and a row whose image vanished.
        std::fs::write(
            env.file_dir("file0")
                .join("volume-00000000-0000-0000-0000-00000000dead"),
            b"x",
        )
        .unwrap();
        std::fs::remove_file(env.image("file0", b["volume"]["id"].as_str().unwrap())).unwrap();
        let o = env.run(&["volume", "reconcile", "file0", "--json"]);
        assert_eq!(o.status.code(), Some(1), "differences found");
        let f: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        let kinds: Vec<&str> = f
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x["kind"].as_str().unwrap())
            .collect();
        assert!(
            kinds.contains(&"orphan_image") && kinds.contains(&"missing_image"),
            "{f}"
        );
        let fixed = env.run(&["volume", "reconcile", "file0", "--fix"]);
        assert!(fixed.status.success(), "{}", stdout(&fixed));
        assert!(
            !env.file_dir("file0")
                .join("volume-00000000-0000-0000-0000-00000000dead")
                .exists()
        );
        assert_eq!(env.volume("b")["status"], "error");
        assert_eq!(
            env.volume(a["volume"]["id"].as_str().unwrap())["status"],
            "available"
        );
        let again = env.run(&["volume", "reconcile", "file0"]);
        assert!(again.status.success());
        assert!(stdout(&again).contains("agree"), "{}", stdout(&again));
    });
}

#[test]
fn deferred_deletion_hides_a_snapshot_with_clones_and_purges_it_after_the_last_one() {
    each_engine(|_, dir, url| {
        let env = Env::new(
            dir,
            url,
            "[backends.file0]\nvolume_driver = \"file\"\nenable_deferred_deletion = true\ndeferred_deletion_purge_interval = 1\n",
        );
        let _serve = env.serve();
        env.json(&["volume", "create", "a", "--size", "64M", "--wait"]);
        let s = env.json(&[
            "volume", "snapshot", "create", "s", "--volume", "a", "--wait",
        ]);
        let snap_file = env.file_dir("file0").join(format!(
            "snapshot-{}",
            s["snapshot"]["id"].as_str().unwrap()
        ));
        env.json(&["volume", "create", "c", "--snapshot", "s", "--wait"]);
        // With deferred deletion the delete is accepted though a clone reads from it.
        let d = env.json(&["volume", "snapshot", "delete", "s", "--wait"]);
        assert_eq!(d["job"]["state"], "succeeded");
        assert_eq!(
            env.json(&["volume", "snapshot", "list", "--all"])
                .as_array()
                .unwrap()
                .len(),
            0,
            "hidden"
        );
        assert!(snap_file.exists(), "kept while the clone reads from it");
        // Once the clone no longer depends on it, the periodic task removes it.
        env.json(&["volume", "flatten", "c", "--wait"]);
        wait_for(
            "the deferred snapshot to be purged",
            Duration::from_secs(20),
            || (!snap_file.exists()).then_some(()),
        );
        let events = env.json(&["events", "--limit", "100"]);
        assert!(
            events
                .as_array()
                .unwrap()
                .iter()
                .any(|e| e["kind"] == "image_purged"),
            "{events}"
        );
    });
}

/// `volume verify` picks what to compare with, refuses in one line when there is nothing, and
/// keeps its finding on the job (both engines).
#[test]
fn verify_compares_with_the_parent_then_the_flattened_from_snapshot() {
    each_engine(|_, dir, url| {
        let env = Env::new(dir, url, FILE0);
        let _serve = env.serve();
        env.json(&["volume", "create", "plain", "--size", "8M", "--wait"]);
        let e = env.fails(&["volume", "verify", "plain"], 1);
        assert!(
            e.contains("has no parent") && e.contains("--against"),
            "{e}"
        );
        env.snapshot_with_data("16M", &env.file_dir("file0"), 4, 0x5c, &["c"]);
        // Layered: against its parent.
        let out = env.json(&["volume", "verify", "c", "--wait"]);
        assert_eq!(out["job"]["state"], "succeeded", "{out}");
        assert_eq!(out["job"]["kind"], "verify");
        let result = out["job"]["result"].as_str().unwrap().to_string();
        assert!(
            result.contains("equals snapshot src@s") && result.contains("16.0 MiB compared"),
            "{result}"
        );
        // Flat: against the snapshot it was flattened from; a difference names its offset.
        env.json(&["volume", "flatten", "c", "--wait"]);
        let c = env.volume("c");
        env.json(&["volume", "verify", "c", "--wait"]);
        write_at(
            &env.image("file0", c["id"].as_str().unwrap()),
            12345,
            10,
            0x00,
        );
        let e = env.fails(&["volume", "verify", "c", "--wait"], 1);
        assert!(
            e.contains("first at byte 12345 ") && e.contains("10 bytes differ"),
            "{e}"
        );
        // Against a named snapshot of another volume (any available one of the backend).
        env.json(&[
            "volume", "snapshot", "create", "ps", "--volume", "plain", "--wait",
        ]);
        let e = env.fails(&["volume", "verify", "c", "--against", "ps", "--wait"], 1);
        assert!(e.contains("first at byte 0 "), "{e}");
        // The snapshot it was flattened from is gone: nothing to compare with by default.
        env.json(&["volume", "snapshot", "delete", "s", "--wait"]);
        let e = env.fails(&["volume", "verify", "c"], 1);
        assert!(e.contains("no longer exists"), "{e}");
        assert!(
            env.fails(&["volume", "verify", "c", "--bps-limit", "fast"], 2)
                .contains("--bps-limit")
        );
    });
}

/// Flattens past `rbd_concurrent_flatten_operations` wait visibly: measured before the fix,
/// 5 flattens with a limit of 2 showed 5 running at 0 %. Now the 3 that wait say why, in
/// `job list`, `job list --json` and `job show`.
#[test]
fn flattens_past_the_limit_show_waiting_with_the_reason() {
    each_engine(|_, dir, url| {
        let env = Env::new(
            dir,
            url,
            "[backends.file0]\nvolume_driver = \"file\"\nrbd_concurrent_flatten_operations = 2\n\
             backend_native_threads_pool_size = 8\nvolume_copy_bps_limit = 1048576\n",
        );
        let _serve = env.serve();
        let clones = ["f1", "f2", "f3", "f4", "f5"];
        env.snapshot_with_data("1G", &env.file_dir("file0"), 64, 0x21, &clones);
        let jobs = env.flatten_all(&clones);
        let waiting = wait_for("3 flattens waiting", Duration::from_secs(30), || {
            let list = env.json(&["job", "list"]);
            let w: Vec<serde_json::Value> = list
                .as_array()
                .unwrap()
                .iter()
                .filter(|j| j["kind"] == "flatten" && j["waiting"].is_string())
                .cloned()
                .collect();
            (w.len() == 3).then_some(w)
        });
        for j in &waiting {
            assert_eq!(j["state"], "running", "{j}");
            assert_eq!(
                j["waiting"],
                "waiting for a flatten slot: 2 of 2 in use (rbd_concurrent_flatten_operations = 2)"
            );
        }
        let shown = env.job(waiting[0]["id"].as_str().unwrap());
        assert!(
            shown["waiting"].as_str().unwrap().contains("flatten slot"),
            "{shown}"
        );
        let text = stdout(&env.run(&["job", "list"]));
        assert_eq!(
            text.lines().filter(|l| l.contains(" waiting ")).count(),
            3,
            "{text}"
        );
        for j in &jobs {
            let _ = env.run(&["job", "cancel", j]);
        }
        for j in &jobs {
            let ended = env.wait_job(j, 60);
            assert!(
                ended["waiting"].is_null(),
                "an ended job waits for nothing: {ended}"
            );
        }
    });
}
