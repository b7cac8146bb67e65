//! The lifecycle table (`src/service/lifecycle.rs`) against what the code does: every job kind
//! asked for from every status, every end (success on the file driver, failure and a busy
//! refusal on fake backends that inject them, a cancel before start, a crash that leaves a row
//! mid-way), each compared with the table's row. Also: no state word outside `src/db/`.
#![allow(clippy::unwrap_used)]

mod common;

use std::path::Path;
use std::time::Duration;

use common::*;
use ember::db::backups::NewBackup;
use ember::db::volumes::{NewSnapshot, NewVolume};
use ember::db::{Db, EventKind, JobKind, JobState, Purpose, Status};
use ember::service::jobs::{Request, cancel, enqueue};
use ember::service::lifecycle::{After, End, RULES, Target, interrupted, rule};
use uuid::Uuid;

const BACKENDS: &str = "\
[backends.file0]
volume_driver = \"file\"

[backends.file1]
volume_driver = \"file\"

[backends.bad]
volume_driver = \"fake\"
fake_fail_op = \"create,clone,extend,delete,snapshot,delete_snapshot,flatten\"

[backends.busy]
volume_driver = \"fake\"
fake_fail_op = \"create,clone,extend,delete,snapshot,delete_snapshot,flatten\"
fake_fail_busy = true
";

/// Rows made directly in the database, owned by a backend's service of this config.
struct Rows<'a> {
    db: &'a Db,
    owner: String,
    backend: &'a str,
}

impl Rows<'_> {
    async fn volume(&self, status: Status, parent: Option<&str>) -> String {
        let id = Uuid::new_v4().to_string();
        let name = format!("v-{}", &id[..8]);
        self.db
            .insert_volume(&NewVolume {
                id: &id,
                name: &name,
                size_bytes: 1 << 20,
                status,
                backend: self.backend,
                host: &self.owner,
                source_snapshot_id: parent,
                source_volume_id: None,
                clone_depth: i64::from(parent.is_some()),
                multiattach: false,
            })
            .await
            .unwrap();
        id
    }

    async fn backup(&self, status: Status, volume: &str) -> String {
        let id = Uuid::new_v4().to_string();
        let name = format!("b-{}", &id[..8]);
        self.db
            .insert_backup(
                &NewBackup {
                    id: &id,
                    name: &name,
                    volume_id: volume,
                    size_bytes: 1 << 20,
                    backend: self.backend,
                    host: &self.owner,
                    parent_id: None,
                },
                status,
            )
            .await
            .unwrap();
        id
    }

    async fn snapshot(&self, status: Status, volume: &str) -> String {
        let id = Uuid::new_v4().to_string();
        let name = format!("s-{}", &id[..8]);
        self.db
            .insert_snapshot(&NewSnapshot {
                id: &id,
                name: &name,
                volume_id: volume,
                size_bytes: 1 << 20,
                status,
                backend: self.backend,
                host: &self.owner,
                purpose: Purpose::User,
            })
            .await
            .unwrap();
        id
    }
}

/// A request of `kind` whose target is (or, for a kind that makes its target, whose source
/// is) `status`; returns it and the target's id when it exists before the request.
async fn request_from(rows: &Rows<'_>, kind: JobKind, status: Status) -> (Request, Option<String>) {
    let base = rows.volume(Status::Available, None).await;
    let snap = rows.snapshot(Status::Available, &base).await;
    let fresh = || format!("n-{}", &Uuid::new_v4().to_string()[..8]);
    match kind {
        JobKind::Create => (
            Request::Create {
                multiattach: false,
                name: fresh(),
                size: Some(1 << 20),
                backend: Some(rows.backend.into()),
                snapshot: None,
                source: None,
            },
            None,
        ),
        JobKind::Clone => (
            Request::Create {
                multiattach: false,
                name: fresh(),
                size: None,
                backend: None,
                snapshot: Some(snap),
                source: None,
            },
            None,
        ),
        JobKind::SnapshotCreate => (
            Request::SnapshotCreate {
                name: fresh(),
                volume: base,
            },
            None,
        ),
        JobKind::Flatten => {
            let v = rows.volume(status, Some(&snap)).await;
            (Request::Flatten { volume: v.clone() }, Some(v))
        }
        JobKind::Verify => {
            let v = rows.volume(status, Some(&snap)).await;
            let r = Request::Verify {
                volume: v.clone(),
                against: None,
                bps_limit: None,
            };
            (r, Some(v))
        }
        JobKind::Extend => {
            let v = rows.volume(status, None).await;
            let r = Request::Extend {
                volume: v.clone(),
                size: 2 << 20,
                force: false,
            };
            (r, Some(v))
        }
        JobKind::Delete => {
            let v = rows.volume(status, None).await;
            let r = Request::Delete {
                volume: v.clone(),
                cascade: false,
                force: false,
            };
            (r, Some(v))
        }
        JobKind::SnapshotDelete => {
            let s = rows.snapshot(status, &base).await;
            (
                Request::SnapshotDelete {
                    snapshot: s.clone(),
                },
                Some(s),
            )
        }
        JobKind::Migrate => {
            let v = rows.volume(status, None).await;
            let r = Request::Migrate {
                volume: v.clone(),
                to: "file0".into(),
                with_clones: false,
            };
            (r, Some(v))
        }
        JobKind::BackupCreate => {
            let r = Request::BackupCreate {
                volume: base,
                name: Some(fresh()),
                incremental: false,
            };
            (r, None)
        }
        JobKind::BackupRestore => {
            let b = rows.backup(Status::Available, &base).await;
            let r = Request::BackupRestore {
                backup: b,
                name: Some(fresh()),
                backend: None,
            };
            (r, None)
        }
        JobKind::BackupDelete => {
            let b = rows.backup(status, &base).await;
            (Request::BackupDelete { backup: b.clone() }, Some(b))
        }
        JobKind::Unknown => unreachable!("no rule has an unknown kind"),
    }
}

/// The target's status now, `None` once its row is removed.
async fn status_of(db: &Db, target: Target, id: &str) -> Option<Status> {
    match target {
        Target::Volume => db
            .get_volume(id)
            .await
            .unwrap()
            .filter(|v| v.deleted_at.is_none())
            .map(|v| v.status),
        Target::Snapshot => db
            .get_snapshot(id)
            .await
            .unwrap()
            .filter(|s| s.deleted_at.is_none())
            .map(|s| s.status),
        Target::Backup => db
            .get_backup(id)
            .await
            .unwrap()
            .filter(|b| b.deleted_at.is_none())
            .map(|b| b.status),
    }
}

/// What the table says the row shows after `after`, from `before`.
fn expected(after: After, before: Status) -> Option<Status> {
    match after {
        After::Unchanged => Some(before),
        After::Set(s) => Some(s),
        After::Removed => None,
    }
}

#[test]
fn every_kind_asked_from_every_status_and_cancelled_before_start_follows_the_table() {
    each_engine(|_, dir, url| {
        // No service runs: every job stays queued, and is cancelled before it starts.
        let env = Env::new(dir, url, BACKENDS);
        let cfg = ember::config::load(&env.config).unwrap();
        tokio::runtime::Runtime::new().unwrap().block_on(async {
            let db = Db::connect(url).await.unwrap();
            let rows = Rows {
                db: &db,
                owner: cfg.service_owner("bad"),
                backend: "bad",
            };
            let mut pairs = 0;
            for r in &RULES {
                // A kind that makes its target starts from no status of its own.
                let statuses: &[Status] = if r.asks_from.is_empty() {
                    &[Status::Available]
                } else {
                    Status::ALL
                };
                for &status in statuses {
                    pairs += 1;
                    let (req, target) = request_from(&rows, r.kind, status).await;
                    let asked = enqueue(&db, &cfg, req.clone(), "test").await;
                    let may = r.asks_from.is_empty() || r.may_ask(status);
                    assert_eq!(
                        asked.is_ok(),
                        may,
                        "{} from {status}: the table says {}, the request said {:?}",
                        r.kind,
                        if may { "allowed" } else { "refused" },
                        asked.as_ref().err().map(ToString::to_string)
                    );
                    let Ok(e) = asked else {
                        // Refused: nothing changed.
                        if let Some(t) = &target {
                            assert_eq!(status_of(&db, r.target, t).await, Some(status));
                        }
                        continue;
                    };
                    let job = db.get_job(&e.job_id).await.unwrap().unwrap();
                    assert_eq!(job.kind, r.kind);
                    assert_eq!(job.state, JobState::Queued);
                    let id = job.target_id.clone();
                    let during = r.during.unwrap_or(status);
                    assert_eq!(
                        status_of(&db, r.target, &id).await,
                        Some(during),
                        "{} from {status}: while queued",
                        r.kind
                    );
                    cancel(&db, &e.job_id, "test").await.unwrap();
                    let job = db.get_job(&e.job_id).await.unwrap().unwrap();
                    assert_eq!(job.state, JobState::Cancelled);
                    assert_eq!(
                        status_of(&db, r.target, &id).await,
                        expected(r.cancelled_queued, status),
                        "{} from {status}: cancelled before it started",
                        r.kind
                    );
                }
            }
            eprintln!("{pairs} (kind, status) pairs asked and cancelled");
            assert!(pairs > 50, "{pairs}");
        });
    });
}

/// Enqueues `req` through the library, waits for the service to end it, and returns the job.
fn run(
    rt: &tokio::runtime::Runtime,
    env: &Env,
    db: &Db,
    cfg: &ember::config::Config,
    req: Request,
) -> (String, serde_json::Value) {
    // The caller's runtime: the pool's connections belong to the runtime that opened them,
    // and a runtime dropped here left PostgreSQL connections that failed the next query
    // ("a Tokio 1.x context was found, but it is being shutdown").
    let e = rt.block_on(enqueue(db, cfg, req, "test")).unwrap();
    let job = rt.block_on(db.get_job(&e.job_id)).unwrap().unwrap();
    (job.target_id, env.wait_job(&e.job_id, 60))
}

#[test]
fn every_kind_ends_where_the_table_says() {
    each_engine(|_, dir, url| {
        let env = Env::new(dir, url, BACKENDS);
        let cfg = ember::config::load(&env.config).unwrap();
        let rt = tokio::runtime::Runtime::new().unwrap();
        let db = rt.block_on(Db::connect(url)).unwrap();

        // A crash left rows mid-way with no job: the service's start settles them.
        let bad = Rows {
            db: &db,
            owner: cfg.service_owner("bad"),
            backend: "bad",
        };
        let mut left = vec![];
        rt.block_on(async {
            let base = bad.volume(Status::Available, None).await;
            for s in [Status::Creating, Status::Extending, Status::Deleting] {
                left.push((Target::Volume, s, bad.volume(s, None).await));
            }
            for s in [Status::Creating, Status::Deleting] {
                left.push((Target::Snapshot, s, bad.snapshot(s, &base).await));
            }
        });
        let _serve = env.serve();
        for (target, before, id) in &left {
            let want = interrupted(*target, *before);
            let got = wait_for("a mid-way row settled", Duration::from_secs(30), || {
                let s = rt.block_on(status_of(&db, *target, id));
                (s != Some(*before)).then_some(s)
            });
            assert_eq!(got, want, "{target:?} left {before}");
        }

        // Failure and a busy refusal, on the fake backends that inject them.
        for (backend, end) in [("bad", End::Failed), ("busy", End::RefusedBusy)] {
            let rows = Rows {
                db: &db,
                owner: cfg.service_owner(backend),
                backend,
            };
            for r in &RULES {
                let from = r.asks_from.first().copied().unwrap_or(Status::Available);
                // A backup delete touches no volume driver: no busy refusal to inject.
                if r.kind == JobKind::BackupDelete && end == End::RefusedBusy {
                    continue;
                }
                let (req, target) = rt.block_on(request_from(&rows, r.kind, from));
                // A backup delete touches no volume driver: its fault is a directory where
                // the store's manifest file should be (the remove fails).
                if let (JobKind::BackupDelete, Some(b)) = (r.kind, &target) {
                    let path = dir.join(format!("data/backup/manifests/{b}.json"));
                    std::fs::create_dir_all(path).unwrap();
                }
                let (id, job) = run(&rt, &env, &db, &cfg, req);
                if let (JobKind::BackupDelete, Some(b)) = (r.kind, &target) {
                    let path = dir.join(format!("data/backup/manifests/{b}.json"));
                    std::fs::remove_dir(path).unwrap();
                }
                assert_eq!(job["state"], "failed", "{} on {backend}: {job}", r.kind);
                assert_eq!(
                    rt.block_on(status_of(&db, r.target, &id)),
                    expected(r.after(end), from),
                    "{} on {backend} ({end:?}): {}",
                    r.kind,
                    job["error"]
                );
            }
        }

        // Success, on the file driver, through the binary as an operator types it.
        let ok = |args: &[&str]| env.json(args);
        let succeeded = |kind: JobKind, target: Target, id: &str, before: Status| {
            let r = rule(kind).unwrap();
            assert_eq!(
                rt.block_on(status_of(&db, target, id)),
                expected(r.succeeded, before),
                "{kind} succeeded"
            );
        };
        let v = ok(&[
            "volume",
            "create",
            "base",
            "--size",
            "8M",
            "--backend",
            "file0",
            "--wait",
        ]);
        let base = v["volume"]["id"].as_str().unwrap().to_string();
        succeeded(JobKind::Create, Target::Volume, &base, Status::Creating);
        let s = ok(&[
            "volume", "snapshot", "create", "s1", "--volume", "base", "--wait",
        ]);
        let s1 = s["snapshot"]["id"].as_str().unwrap().to_string();
        succeeded(
            JobKind::SnapshotCreate,
            Target::Snapshot,
            &s1,
            Status::Creating,
        );
        let c = ok(&["volume", "create", "c1", "--snapshot", "s1", "--wait"]);
        let c1 = c["volume"]["id"].as_str().unwrap().to_string();
        succeeded(JobKind::Clone, Target::Volume, &c1, Status::Creating);
        ok(&["volume", "verify", "c1", "--wait"]);
        succeeded(JobKind::Verify, Target::Volume, &c1, Status::Available);
        ok(&["volume", "flatten", "c1", "--wait"]);
        succeeded(JobKind::Flatten, Target::Volume, &c1, Status::Available);
        ok(&["volume", "extend", "c1", "--size", "16M", "--wait"]);
        succeeded(JobKind::Extend, Target::Volume, &c1, Status::Available);
        ok(&["volume", "snapshot", "delete", "s1", "--wait"]);
        succeeded(
            JobKind::SnapshotDelete,
            Target::Snapshot,
            &s1,
            Status::Available,
        );
        ok(&["volume", "migrate", "c1", "--to", "file1", "--wait"]);
        succeeded(JobKind::Migrate, Target::Volume, &c1, Status::Available);
        let b = ok(&["backup", "create", "c1", "--name", "b1", "--wait"]);
        let b1 = b["job"]["target"].as_str().unwrap().to_string();
        succeeded(JobKind::BackupCreate, Target::Backup, &b1, Status::Creating);
        let r = ok(&["backup", "restore", "b1", "--name", "r1", "--wait"]);
        let r1 = r["volume"]["id"].as_str().unwrap().to_string();
        succeeded(
            JobKind::BackupRestore,
            Target::Volume,
            &r1,
            Status::Creating,
        );
        ok(&["backup", "delete", "b1", "--wait"]);
        succeeded(
            JobKind::BackupDelete,
            Target::Backup,
            &b1,
            Status::Available,
        );
        ok(&["volume", "delete", "c1", "--wait"]);
        succeeded(JobKind::Delete, Target::Volume, &c1, Status::Available);
    });
}

/// Each word of a state, status or event kind is spelt in `src/db/` only; everything else
/// uses the enums. Words that are also ordinary words of the code are left out: `error` (a
/// JSON key and a label), `deleted` (a file's suffix), and the job kinds that name driver
/// operations (`create`, `clone`, `flatten`, `extend`, `delete`, `verify`, `migrate`).
#[test]
fn no_state_word_outside_the_database_layer() {
    let generic = [
        "error", "deleted", "create", "clone", "flatten", "extend", "delete", "verify", "migrate",
        "user",
    ];
    let mut words: Vec<&str> = Status::ALL.iter().map(|s| s.as_str()).collect();
    words.extend(JobState::ALL.iter().map(|s| s.as_str()));
    words.extend(JobKind::ALL.iter().map(|s| s.as_str()));
    words.extend(EventKind::ALL.iter().map(|s| s.as_str()));
    words.retain(|w| !generic.contains(w));
    let quoted: Vec<String> = words.iter().map(|w| format!("\"{w}\"")).collect();
    let mut found = vec![];
    grep_rs(Path::new("src"), &mut found, &|line| {
        !line.trim_start().starts_with("//") && quoted.iter().any(|q| line.contains(q.as_str()))
    });
    assert!(
        found.is_empty(),
        "state words spelt outside src/db/ (use the enums of src/db/words.rs):\n{}",
        found.join("\n")
    );
}

/// Every line of the `.rs` files under `dir` (but `src/db/`) for which `hit` holds, as
/// `path:line: text`.
fn grep_rs(dir: &Path, found: &mut Vec<String>, hit: &dyn Fn(&str) -> bool) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path == Path::new("src/db") {
            continue;
        }
        if path.is_dir() {
            grep_rs(&path, found, hit);
        } else if path.extension().is_some_and(|e| e == "rs") {
            let text = std::fs::read_to_string(&path).unwrap();
            for (n, line) in text.lines().enumerate().filter(|(_, l)| hit(l)) {
                found.push(format!("{}:{}: {}", path.display(), n + 1, line.trim()));
            }
        }
    }
}

/// The console works on views: the handle it calls returns none of the database's row types,
/// the live model keeps none, and `src/tui/` names none.
#[test]
fn the_console_side_holds_no_rows() {
    let rows = ["VolumeRow", "SnapshotRow", "JobRow"];
    let mut found = vec![];
    for path in ["src/service/handle.rs", "src/service/live.rs"] {
        let text = std::fs::read_to_string(path).unwrap();
        for (n, line) in text.lines().enumerate() {
            let signature = line.trim_start().starts_with("pub ") || line.contains("-> Result<");
            if rows.iter().any(|r| line.contains(r)) && (signature || path.ends_with("live.rs")) {
                found.push(format!("{path}:{}: {}", n + 1, line.trim()));
            }
        }
    }
    grep_rs(Path::new("src/tui"), &mut found, &|line| {
        rows.iter().any(|r| line.contains(r))
    });
    assert!(
        found.is_empty(),
        "row types on the console's side:\n{}",
        found.join("\n")
    );
}
