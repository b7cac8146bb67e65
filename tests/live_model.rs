//! The console's live model, patched with only the changed rows, always equals the model read
//! fresh: random inserts, updates and soft deletes of volumes, snapshots and jobs, on both
//! engines, with many incremental refreshes in between; on PostgreSQL also with a writer
//! racing the reader (transactions that commit out of order are the case stamps must not miss).
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use common::*;
use ember::db::Db;
use ember::db::volumes::{NewSnapshot, NewVolume};
use ember::service::live::LiveModel;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

fn sorted<T: Clone, K: Ord>(rows: &[Arc<T>], key: impl Fn(&T) -> K) -> Vec<T> {
    let mut v: Vec<T> = rows.iter().map(|r| (**r).clone()).collect();
    v.sort_by_key(|r| key(r));
    v
}

async fn assert_same(db: &Db, model: &LiveModel, what: &str) {
    // Clones carry their parent's name (`v5@s5`), equal either way.
    let named = model
        .volumes
        .rows()
        .iter()
        .filter(|v| v.parent_name.is_some())
        .count();
    let clones = model
        .volumes
        .rows()
        .iter()
        .filter(|v| v.source_snapshot_id.is_some())
        .count();
    // Racing writers may delete a snapshot a clone was just made from (ember refuses that;
    // the racing test does not check): then neither model can name it.
    if !what.contains("racing") {
        assert_eq!(named, clones, "{what}: every clone's parent named");
    }
    let mut fresh = LiveModel::default();
    fresh.refresh(db).await.unwrap();
    assert_eq!(
        sorted(model.volumes.rows(), |v| v.id.clone()),
        sorted(fresh.volumes.rows(), |v| v.id.clone()),
        "{what}: volumes"
    );
    assert_eq!(
        sorted(model.snapshots.rows(), |s| s.id.clone()),
        sorted(fresh.snapshots.rows(), |s| s.id.clone()),
        "{what}: snapshots"
    );
    let ids = |m: &LiveModel| {
        let mut v: Vec<_> = m.jobs.iter().cloned().collect();
        v.sort_by(|a, b| a.id.cmp(&b.id));
        v
    };
    assert_eq!(ids(model), ids(&fresh), "{what}: jobs");
}

/// One random write: a new volume (sometimes with a snapshot and a job), a status change, a
/// resize, a delete, a job's progress or end.
async fn random_write(db: &Db, rng: &mut StdRng, n: &mut u64) {
    *n += 1;
    let vols = db.list_volumes(None, None).await.unwrap();
    let pick = |rng: &mut StdRng| {
        (!vols.is_empty()).then(|| vols[rng.random_range(0..vols.len())].clone())
    };
    match rng.random_range(0..7) {
        0 | 1 => {
            let id = format!("{:08x}-0000-4000-8000-{:012x}", n, rng.random::<u32>());
            // Sometimes a clone of a live snapshot (the console names its parent).
            let snaps = db.list_snapshots(None, true).await.unwrap();
            let parent = (!snaps.is_empty() && rng.random_bool(0.4))
                .then(|| snaps[rng.random_range(0..snaps.len())].id.clone());
            db.insert_volume(&NewVolume {
                id: &id,
                name: &format!("v{n}"),
                size_bytes: 1 << 30,
                status: ember::db::Status::Available,
                backend: "file0",
                host: "h@file0",
                source_snapshot_id: parent.as_deref(),
                source_volume_id: None,
                clone_depth: i64::from(parent.is_some()),
                multiattach: false,
            })
            .await
            .unwrap();
            if rng.random_bool(0.5) {
                db.insert_snapshot(&NewSnapshot {
                    id: &format!("{id}-s"),
                    name: &format!("s{n}"),
                    volume_id: &id,
                    size_bytes: 1 << 30,
                    status: ember::db::Status::Available,
                    backend: "file0",
                    host: "h@file0",
                    purpose: ember::db::Purpose::User,
                })
                .await
                .unwrap();
            }
            if rng.random_bool(0.5) {
                sqlx::query(
                    "INSERT INTO jobs (id, kind, target_id, backend, owner, state, params, requested_by, created_at, updated_at, volume_id) \
                     VALUES ($1, 'create', $2, 'file0', 'h@file0', 'queued', '{}', 'test', $3, $3, $2)",
                )
                .bind(format!("job-{n}"))
                .bind(&id)
                .bind(*n as i64)
                .execute(&db.pool)
                .await
                .unwrap();
            }
        }
        2 => {
            if let Some(v) = pick(rng) {
                let to = {
                    use ember::db::Status::*;
                    [Available, InUse, Error, Extending][rng.random_range(0..4)]
                };
                db.set_volume_status(&v.id, &[], to, Some("test"))
                    .await
                    .unwrap();
            }
        }
        3 => {
            if let Some(v) = pick(rng) {
                db.set_volume_size(&v.id, rng.random_range(1..100) << 30)
                    .await
                    .unwrap();
            }
        }
        4 => {
            if let Some(v) = pick(rng) {
                // As ember refuses it: not while clones depend on its snapshots.
                for s in db.snapshots_of(&v.id).await.unwrap() {
                    if !db.clones_of_snapshot(&s.id).await.unwrap().is_empty() {
                        return;
                    }
                }
                for s in db.snapshots_of(&v.id).await.unwrap() {
                    db.mark_snapshot_deleted(&s.id).await.unwrap();
                }
                db.mark_volume_deleted(&v.id).await.unwrap();
            }
        }
        _ => {
            let state = ["running", "succeeded", "failed"][rng.random_range(0..3)];
            sqlx::query(
                "UPDATE jobs SET state = $1, bytes_done = bytes_done + 1, updated_at = updated_at + 1 \
                 WHERE id = (SELECT id FROM jobs WHERE state IN ('queued', 'running') ORDER BY id LIMIT 1)",
            )
            .bind(state)
            .execute(&db.pool)
            .await
            .unwrap();
        }
    }
}

#[test]
fn incremental_model_equals_a_fresh_read() {
    each_engine(|engine, _dir, url| {
        tokio::runtime::Runtime::new().unwrap().block_on(async {
            let db = Db::connect(url).await.unwrap();
            for seed in 0..4u64 {
                let mut rng = StdRng::seed_from_u64(seed);
                let mut model = LiveModel::default();
                let mut n = seed * 10_000;
                assert!(model.refresh(&db).await.unwrap().full);
                for round in 0..40 {
                    for _ in 0..rng.random_range(0..6) {
                        random_write(&db, &mut rng, &mut n).await;
                    }
                    let r = model.refresh(&db).await.unwrap();
                    assert!(!r.full, "seed {seed} round {round}: a patch, not a reload");
                    assert_same(
                        &db,
                        &model,
                        &format!("{engine:?} seed {seed} round {round}"),
                    )
                    .await;
                }
            }

            // A writer racing the reader: writes land while refreshes run, in any order.
            let mut model = LiveModel::default();
            model.refresh(&db).await.unwrap();
            let stop = Arc::new(AtomicBool::new(false));
            let mut writers = vec![];
            for w in 0..3u64 {
                let (db, stop) = (db.clone(), stop.clone());
                writers.push(tokio::spawn(async move {
                    let mut rng = StdRng::seed_from_u64(100 + w);
                    let mut n = 1_000_000 * (w + 1);
                    while !stop.load(Ordering::SeqCst) {
                        random_write(&db, &mut rng, &mut n).await;
                    }
                }));
            }
            for _ in 0..60 {
                model.refresh(&db).await.unwrap();
                tokio::time::sleep(std::time::Duration::from_millis(5)).await;
            }
            stop.store(true, Ordering::SeqCst);
            for w in writers {
                w.await.unwrap();
            }
            model.refresh(&db).await.unwrap();
            assert_same(&db, &model, &format!("{engine:?} with racing writers")).await;
            db.close().await;
        });
    });
}

/// The Events view follows the audit log live: on PostgreSQL an event written alone (no volume,
/// snapshot or job row changes with it) is pushed, so the picture has it well before the
/// publisher's poll (60 s here); the model names its target; on both engines the newest
/// events come first.
#[test]
fn an_event_written_alone_reaches_the_picture_at_once_named() {
    each_engine(|engine, dir, url| {
        tokio::runtime::Runtime::new().unwrap().block_on(async {
            let db = Db::connect(url).await.unwrap();
            let id = uuid::Uuid::new_v4().to_string();
            db.insert_volume(&NewVolume {
                id: &id,
                name: "db-01",
                size_bytes: 1 << 30,
                status: ember::db::Status::Available,
                backend: "file0",
                host: "h@file0",
                source_snapshot_id: None,
                source_volume_id: None,
                clone_depth: 0,
                multiattach: false,
            })
            .await
            .unwrap();
            let env = Env::new(dir, url, "[backends.file0]\nvolume_driver = \"file\"\n");
            let cfg = Arc::new(ember::config::load(&env.config).unwrap());
            let cancel = tokio_util::sync::CancellationToken::new();
            let every = match engine {
                Engine::Postgres => std::time::Duration::from_secs(60),
                Engine::Sqlite => std::time::Duration::from_millis(200),
            };
            let (mut rx, _poke) =
                ember::service::snapshot::spawn_publisher(db.clone(), cfg, every, cancel.clone());
            // The first two pictures (without, then with the tables) are read at once.
            let started = std::time::Instant::now();
            while !rx.borrow().volumes_loaded && started.elapsed().as_secs() < 10 {
                tokio::time::timeout(std::time::Duration::from_secs(1), rx.changed())
                    .await
                    .ok();
            }
            tokio::time::sleep(std::time::Duration::from_millis(300)).await;
            for (kind, msg) in [
                (ember::db::EventKind::LockBroken, "first"),
                (ember::db::EventKind::LockBroken, "second"),
            ] {
                db.add_event(&ember::db::events::NewEvent {
                    actor: "alice (ssh from 10.0.0.7)",
                    host: Some("storage-01"),
                    kind,
                    target: Some(&id),
                    message: msg,
                })
                .await
                .unwrap();
            }
            let written = std::time::Instant::now();
            let seen = loop {
                let evs = rx.borrow().events.clone();
                if evs.iter().any(|e| e.message == "second") {
                    break evs;
                }
                assert!(
                    written.elapsed() < std::time::Duration::from_secs(5),
                    "{engine:?}: the events not in the picture after 5 s"
                );
                tokio::time::timeout(std::time::Duration::from_millis(500), rx.changed())
                    .await
                    .ok();
            };
            eprintln!(
                "{engine:?}: event on the picture after {:?}",
                written.elapsed()
            );
            assert_eq!(seen[0].message, "second", "newest first");
            assert_eq!(seen[1].message, "first");
            assert_eq!(seen[0].target_name.as_deref(), Some("db-01"));
            cancel.cancel();
            db.close().await;
        });
    });
}
