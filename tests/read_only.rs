//! Read-only has one gate: the database handle an operator's command or console acts through
//! refuses every change itself. Every mutating command of the CLI (found by walking its help,
//! so a new command must be classified here) and every dangerous action of the console's
//! keymap is refused in read-only mode, by `--read-only` and by `read_only = true`, with
//! nothing written: no job, no event, no status change.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use common::*;

/// Leaf commands that change nothing (or, for `serve`, are the volume service itself, whose
/// own writes read-only does not govern; `bench` works on databases of its own).
const READING: &[&str] = &[
    "console",
    "serve",
    "service list",
    "backend list",
    "volume list",
    "volume show",
    "volume locks",
    "volume attachments",
    "volume snapshot list",
    "job list",
    "job show",
    "job watch",
    "backup list",
    "backup show",
    // Reads the store only.
    "backup verify",
    "events",
    "config check",
    "doctor",
    "bench",
    // Print a script or the manual page; completions read names only.
    "completions",
    "man",
];

/// Every other leaf command, with arguments that would succeed without read-only.
fn mutating(flatten_job: &str) -> Vec<(&'static str, Vec<String>)> {
    let v = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    vec![
        (
            "volume create",
            v(&[
                "volume",
                "create",
                "n1",
                "--size",
                "1M",
                "--backend",
                "file0",
            ]),
        ),
        ("volume flatten", v(&["volume", "flatten", "c2"])),
        (
            "volume attach",
            v(&["volume", "attach", "v", "--host", "h"]),
        ),
        ("volume detach", v(&["volume", "detach", "w"])),
        (
            "volume export",
            v(&["volume", "export", "v", "--listen", "127.0.0.1:1"]),
        ),
        (
            "volume migrate",
            v(&["volume", "migrate", "v", "--to", "file1"]),
        ),
        ("backup create", v(&["backup", "create", "v"])),
        ("backend drain", v(&["backend", "drain", "file1"])),
        (
            "backend evacuate",
            v(&["backend", "evacuate", "file1", "--to", "file0"]),
        ),
        ("backup restore", v(&["backup", "restore", "wb"])),
        ("backup delete", v(&["backup", "delete", "wb"])),
        // Reads the data only, but queues a job: a write to the database.
        ("volume verify", v(&["volume", "verify", "c2"])),
        (
            "volume extend",
            v(&["volume", "extend", "v", "--size", "128M"]),
        ),
        ("volume delete", v(&["volume", "delete", "v"])),
        (
            "volume snapshot create",
            v(&["volume", "snapshot", "create", "s9", "--volume", "v"]),
        ),
        (
            "volume snapshot delete",
            v(&["volume", "snapshot", "delete", "ws"]),
        ),
        (
            "volume reconcile",
            v(&["volume", "reconcile", "file0", "--fix"]),
        ),
        (
            "job cancel",
            vec!["job".into(), "cancel".into(), flatten_job.to_string()],
        ),
        (
            "service disable",
            v(&["service", "disable", "gone@file0", "--reason", "x"]),
        ),
        ("service enable", v(&["service", "enable", "gone@file0"])),
        ("service remove", v(&["service", "remove", "gone@file0"])),
        ("db roles", v(&["db", "roles", "--apply"])),
        (
            "volume reset-state",
            v(&["volume", "reset-state", "v", "--state", "error", "--yes"]),
        ),
        (
            "volume snapshot reset-state",
            v(&[
                "volume",
                "snapshot",
                "reset-state",
                "ws",
                "--state",
                "error",
                "--yes",
            ]),
        ),
        // Refused by the gate before it looks for the lock (the file backend has none).
        (
            "volume break-lock",
            v(&["volume", "break-lock", "v", "--locker", "client.1"]),
        ),
        (
            "volume manage",
            v(&["volume", "manage", "file0", "orphan.img", "--name", "m"]),
        ),
        ("volume unmanage", v(&["volume", "unmanage", "v"])),
        // Refused by the gate before it looks at the job's state.
        (
            "job retry",
            vec!["job".into(), "retry".into(), flatten_job.to_string()],
        ),
    ]
}

/// The leaf commands of `ember`, from its help (`volume snapshot create`, ...).
fn leaves(prefix: &[&str]) -> Vec<String> {
    let mut args: Vec<&str> = prefix.to_vec();
    args.push("--help");
    let help = stdout(&ember(&args));
    let subs: Vec<String> = help
        .split("Commands:")
        .nth(1)
        .map(|c| c.split("\n\n").next().unwrap_or(""))
        .unwrap_or("")
        .lines()
        // A command's line starts at column 2; its wrapped description is indented more.
        .filter(|l| l.starts_with("  ") && !l.starts_with("   "))
        .filter_map(|l| l.split_whitespace().next().map(String::from))
        .filter(|w| w != "help")
        .collect();
    if subs.is_empty() || prefix.first() == Some(&"bench") {
        return vec![prefix.join(" ")];
    }
    subs.iter()
        .flat_map(|s| {
            let mut p = prefix.to_vec();
            p.push(s);
            leaves(&p)
        })
        .collect()
}

/// What an operator could see change: volumes, snapshots, jobs (state and cancel flag),
/// events, services' operator fields.
fn fingerprint(env: &Env) -> String {
    let vols: Vec<_> = env
        .json(&["volume", "list"])
        .as_array()
        .unwrap()
        .iter()
        .map(|v| {
            format!(
                "{} {} {} {} {}",
                v["name"], v["status"], v["size_bytes"], v["parent"], v["updated_at"]
            )
        })
        .collect();
    let snaps: Vec<_> = env
        .json(&["volume", "snapshot", "list", "--all"])
        .as_array()
        .unwrap()
        .iter()
        .map(|s| format!("{} {}", s["name"], s["status"]))
        .collect();
    let jobs: Vec<_> = env
        .json(&["job", "list"])
        .as_array()
        .unwrap()
        .iter()
        .map(|j| format!("{} {} {}", j["id"], j["state"], j["error"]))
        .collect();
    let events = env.json(&["events"]).as_array().unwrap().len();
    let backups: Vec<_> = env
        .json(&["backup", "list"])
        .as_array()
        .unwrap()
        .iter()
        .map(|b| format!("{} {}", b["name"], b["status"]))
        .collect();
    let services: Vec<_> = services(&env.config, &env.url)
        .iter()
        .map(|s| format!("{} {} {}", s["host"], s["status"], s["disabled_reason"]))
        .collect();
    format!("{vols:?}\n{snaps:?}\n{jobs:?}\nevents {events}\n{services:?}\n{backups:?}")
}

#[test]
fn every_change_is_refused_by_the_database_in_read_only_mode() {
    each_engine(|_, dir, url| {
        let env = Env::new(
            dir,
            url,
            "[backends.file0]\nvolume_driver = \"file\"\nvolume_copy_bps_limit = 1048576\n\
             [backends.file1]\nvolume_driver = \"file\"\n",
        );
        // A service that stopped cleanly: `service remove` of it would succeed.
        let gone_dir = dir.join("gone");
        std::fs::create_dir_all(&gone_dir).unwrap();
        let gone = Env::new(
            &gone_dir,
            url,
            "host = \"gone\"\n[backends.file0]\nvolume_driver = \"file\"\n",
        );
        let mut g = gone.serve();
        g.signal("TERM");
        assert_eq!(g.wait(Duration::from_secs(30)), Some(0));

        let _serve = env.serve();
        let on_file0 = |name: &str, size: &str| {
            env.json(&[
                "volume",
                "create",
                name,
                "--size",
                size,
                "--backend",
                "file0",
                "--wait",
            ]);
        };
        on_file0("v", "64M");
        on_file0("w", "64M");
        env.json(&[
            "volume", "snapshot", "create", "ws", "--volume", "w", "--wait",
        ]);
        // A parent with 128 MiB of data and two clones of it (as `snapshot_with_data`, with a
        // second backend in the config).
        on_file0("src", "1G");
        let s = env.json(&[
            "volume", "snapshot", "create", "s", "--volume", "src", "--wait",
        ]);
        let snap_file = env.file_dir("file0").join(format!(
            "snapshot-{}",
            s["snapshot"]["id"].as_str().unwrap()
        ));
        write_at(&snap_file, 0, 128 << 20, 0x5a);
        for c in ["c", "c2"] {
            env.json(&["volume", "create", c, "--snapshot", "s", "--wait"]);
        }
        env.json(&["backup", "create", "w", "--name", "wb", "--wait"]);
        // An attachment for the read-only detach to be refused on.
        env.json(&["volume", "attach", "w", "--host", "h"]);
        // A flatten that runs for minutes at 1 MiB/s: the job a read-only cancel must not stop.
        let job = env.flatten_running("c");

        // Every leaf command is classified.
        let all: BTreeSet<String> = leaves(&[]).into_iter().collect();
        let cases = mutating(&job);
        let known: BTreeSet<String> = READING
            .iter()
            .map(|s| s.to_string())
            .chain(cases.iter().map(|c| c.0.to_string()))
            .collect();
        let unclassified: Vec<&String> = all.difference(&known).collect();
        assert!(
            unclassified.is_empty(),
            "classify these commands in tests/read_only.rs: {unclassified:?}"
        );

        // Read-only by the flag, then by the config.
        let ro_config = write(
            dir,
            "ro.toml",
            &std::fs::read_to_string(&env.config).unwrap().replacen(
                "report_interval",
                "read_only = true\nreport_interval",
                1,
            ),
        );
        let before = fingerprint(&env);
        for (name, args) in &cases {
            for how in ["--read-only", "read_only = true"] {
                let mut full = vec!["--config".to_string()];
                if how == "--read-only" {
                    full.push(env.config.display().to_string());
                    full.push("--read-only".into());
                } else {
                    full.push(ro_config.display().to_string());
                }
                full.extend(["--database-url".to_string(), url.to_string()]);
                full.extend(args.iter().cloned());
                let refs: Vec<&str> = full.iter().map(String::as_str).collect();
                let o = ember(&refs);
                let err = stderr(&o);
                assert!(
                    !o.status.success(),
                    "{name} ({how}) succeeded: {}",
                    stdout(&o)
                );
                assert!(
                    err.contains("read-only"),
                    "{name} ({how}) was refused for another reason: {err}"
                );
                assert!(err.contains("nothing was changed"), "{name} ({how}): {err}");
                assert_eq!(
                    err.trim().lines().count(),
                    1,
                    "{name} ({how}): one line: {err}"
                );
            }
        }
        assert_eq!(
            fingerprint(&env),
            before,
            "a read-only command changed something"
        );
        assert_eq!(env.job(&job)["state"], "running");

        // The console's dangerous actions go through the same gate: a handle on a read-only
        // database refuses each request the keymap can send, and a cancel.
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(async {
            use ember::service::jobs::Request;
            let db = ember::db::Db::connect_read_only(url).await.unwrap();
            let cfg = Arc::new(ember::config::load(&env.config).unwrap());
            let (_tx, rx) = tokio::sync::watch::channel(Arc::new(
                ember::service::snapshot::Snapshot::default(),
            ));
            let h = ember::service::handle::Handle::new(
                db,
                cfg,
                rx,
                Arc::new(tokio::sync::Notify::new()),
                vec![],
                false,
            );
            assert!(
                h.read_only,
                "the console knows it is read-only from its database handle"
            );
            let keymap = ember::tui::keymap::Keymap::default_map();
            let dangerous: BTreeSet<String> = keymap
                .rows
                .iter()
                .filter(|r| r.dangerous)
                .map(|r| format!("{:?}", r.action))
                .collect();
            let expected: BTreeSet<String> = [
                "NewVolume",
                "Snapshot",
                "CloneVolume",
                "Flatten",
                "Verify",
                "Extend",
                "Delete",
                "Migrate",
                "CancelJob",
                "RetryJob",
                "ResetState",
                "BreakLock",
                "Unmanage",
            ]
            .iter()
            .map(|s| s.to_string())
            .collect();
            assert_eq!(
                dangerous, expected,
                "a new dangerous console action: add it to this test"
            );
            let requests = [
                Request::Create {
                    multiattach: false,
                    name: "k1".into(),
                    size: Some(1 << 20),
                    backend: Some("file0".into()),
                    snapshot: None,
                    source: None,
                },
                Request::SnapshotCreate {
                    name: "k2".into(),
                    volume: "v".into(),
                },
                Request::Create {
                    multiattach: false,
                    name: "k3".into(),
                    size: None,
                    backend: None,
                    snapshot: Some("s".into()),
                    source: None,
                },
                Request::Create {
                    multiattach: false,
                    name: "k4".into(),
                    size: None,
                    backend: None,
                    snapshot: None,
                    source: Some("v".into()),
                },
                Request::Flatten {
                    volume: "c2".into(),
                },
                Request::Verify {
                    volume: "c2".into(),
                    against: None,
                    bps_limit: None,
                },
                Request::Extend {
                    volume: "v".into(),
                    size: 128 << 20,
                    force: false,
                },
                Request::Delete {
                    volume: "v".into(),
                    cascade: false,
                    force: false,
                },
                Request::SnapshotDelete {
                    snapshot: "ws".into(),
                },
                Request::Migrate {
                    volume: "v".into(),
                    to: "file1".into(),
                    with_clones: false,
                },
                Request::BackupCreate {
                    volume: "v".into(),
                    name: None,
                    incremental: false,
                },
                Request::BackupRestore {
                    backup: "wb".into(),
                    name: None,
                    backend: None,
                },
                Request::BackupDelete {
                    backup: "wb".into(),
                },
            ];
            for r in requests {
                let e = h
                    .submit(r.clone())
                    .await
                    .map(|_| ())
                    .unwrap_err()
                    .to_string();
                assert!(
                    e.contains("read-only") && e.contains("nothing was changed"),
                    "{r:?}: {e}"
                );
            }
            let e = h.cancel(&job).await.map(|_| ()).unwrap_err().to_string();
            assert!(e.contains("read-only"), "cancel: {e}");
            let e = h.retry(&job).await.map(|_| ()).unwrap_err().to_string();
            assert!(e.contains("read-only"), "retry: {e}");
            let e = h
                .reset_state("v", ember::db::Status::Error, None)
                .await
                .map(|_| ())
                .unwrap_err()
                .to_string();
            assert!(e.contains("read-only"), "reset-state: {e}");
            let e = h
                .break_lock("v", "client.1")
                .await
                .map(|_| ())
                .unwrap_err()
                .to_string();
            assert!(e.contains("read-only"), "break-lock: {e}");
            let e = h.unmanage("v").await.map(|_| ()).unwrap_err().to_string();
            assert!(e.contains("read-only"), "unmanage: {e}");
            let e = h
                .manage("file0", "orphan.img", "m")
                .await
                .map(|_| ())
                .unwrap_err()
                .to_string();
            assert!(e.contains("read-only"), "manage: {e}");
        });
        assert_eq!(
            fingerprint(&env),
            before,
            "a read-only console action changed something"
        );
        assert_eq!(env.job(&job)["state"], "running");
        env.json(&["job", "cancel", &job]);
    });
}

/// `read_only = true` in the config holds for the listing commands too: they opened the
/// database as writers, and connecting applied pending migrations (a write) from a process
/// the operator said must never write. Now such a process says the schema is behind and stops.
#[test]
fn a_read_only_config_never_migrates_even_to_list() {
    each_engine(|engine, dir, url| {
        if engine == Engine::Sqlite {
            // An existing, empty database file: a schema with none of ember's migrations.
            let path = url.trim_start_matches("sqlite://");
            std::fs::write(path, b"").unwrap();
        }
        let env = Env::new(
            dir,
            url,
            "read_only = true\n[backends.file0]\nvolume_driver = \"file\"\n",
        );
        for args in [
            vec!["volume", "list"],
            vec!["volume", "snapshot", "list"],
            vec!["job", "list"],
            vec!["service", "list"],
            vec!["events"],
            vec!["volume", "show", "x"],
            vec!["job", "show", "x"],
        ] {
            let e = env.fails(&args, 1);
            assert!(
                e.contains("read-only ember does not apply them"),
                "{args:?}: {e}"
            );
        }
        if engine == Engine::Sqlite {
            let path = url.trim_start_matches("sqlite://");
            assert_eq!(
                std::fs::metadata(path).unwrap().len(),
                0,
                "nothing was written to the database file"
            );
        }
    });
}
