//! Requests: everything that can be refused is refused here, at once, before anything is
//! written (unknown volume, busy volume, dependent clones, shrinking extend...). What passes is
//! written in one transaction: the new rows, the guarded status change, the job.

use uuid::Uuid;

use crate::config::Config;
use crate::db::backups::NewBackup;
use crate::db::events::NewEvent;
use crate::db::jobs::{Enqueue, Enqueued as Written, NewJob, Transition};
use crate::db::volumes::{Found, NewSnapshot, NewVolume};
use crate::db::{Db, Purpose, SnapshotRow, Status, VolumeRow};
use crate::service::lifecycle::{self, Target};

pub use super::cancel::{Cancelled, cancel};
use super::guards::{
    asks_from, dependents, may_start, not_busy, rules, short, snapshot_not_moving, status_is,
    verify_default,
};
use super::{JobError, JobKind, Params};
use crate::service::units::check_name;

/// What an operator asks for. Volumes and snapshots are named by id or unique name.
#[derive(Debug, Clone, PartialEq)]
pub enum Request {
    Create {
        name: String,
        size: Option<u64>,
        backend: Option<String>,
        snapshot: Option<String>,
        source: Option<String>,
        /// Takes more than one attachment at a time.
        multiattach: bool,
    },
    Flatten {
        volume: String,
    },
    /// Compare a volume's data with a snapshot: `against`, else its parent while layered, else
    /// the snapshot it was flattened from while that still exists.
    Verify {
        volume: String,
        against: Option<String>,
        bps_limit: Option<u64>,
    },
    /// `force`: even though someone has the volume open (the job checks the storage).
    Extend {
        volume: String,
        size: u64,
        force: bool,
    },
    Delete {
        volume: String,
        cascade: bool,
        force: bool,
    },
    SnapshotCreate {
        name: String,
        volume: String,
    },
    SnapshotDelete {
        snapshot: String,
    },
    /// Move a volume to another backend (`NAME`, `HOST@NAME` or `CLUSTER@NAME`);
    /// `with_clones`: and every clone that reads from it, keeping their layering.
    Migrate {
        volume: String,
        to: String,
        with_clones: bool,
    },
    /// Back a volume up into the backup store (`incremental`: refused without an earlier one).
    BackupCreate {
        volume: String,
        name: Option<String>,
        incremental: bool,
    },
    /// A new volume from a backup (`backend`: else the backup's volume's backend).
    BackupRestore {
        backup: String,
        name: Option<String>,
        backend: Option<String>,
    },
    BackupDelete {
        backup: String,
    },
}

/// What was enqueued: the job, and the volume or snapshot as it now stands.
#[derive(Debug, Clone)]
pub struct Enqueued {
    pub job_id: String,
    pub backend: String,
    /// Who runs it: `host@backend`, or `cluster@backend`.
    pub owner: String,
    /// For a new volume placed among several services: which one was picked, and why.
    pub placement: Option<String>,
    pub volume: Option<VolumeRow>,
    pub snapshot: Option<SnapshotRow>,
    pub backup: Option<crate::db::BackupRow>,
}

/// One row from an id-or-name lookup, or the error an operator should see.
pub fn found<T>(what: &'static str, key: &str, f: Found<T>) -> Result<T, JobError> {
    match f {
        Found::One(v) => Ok(v),
        Found::None => Err(JobError::NotFound {
            what,
            key: key.to_string(),
        }),
        Found::Ambiguous(ids) => Err(JobError::Ambiguous {
            what,
            key: key.to_string(),
            count: ids.len(),
            ids,
        }),
    }
}

/// A live volume by id or unique name.
pub async fn volume(db: &Db, key: &str) -> Result<VolumeRow, JobError> {
    found("volume", key, db.find_volume(key).await?)
}

pub(super) async fn snapshot(db: &Db, key: &str) -> Result<SnapshotRow, JobError> {
    found("snapshot", key, db.find_snapshot(key).await?)
}

/// A checked request, ready to be written.
pub(super) struct Plan {
    pub(super) kind: JobKind,
    pub(super) target: String,
    pub(super) backend: String,
    pub(super) owner: String,
    /// The volume the job works on: one unfinished job per volume.
    pub(super) works_on: String,
    pub(super) placement: Option<String>,
    pub(super) params: Params,
    pub(super) volume: Option<PlanVolume>,
    pub(super) snapshot: Option<PlanSnapshot>,
    pub(super) backup: Option<PlanBackup>,
    /// The guarded status change the request makes: target, id, from, to.
    pub(super) transition: Option<(Target, String, &'static [Status], Status)>,
    pub(super) describe: String,
}

pub(super) struct PlanVolume {
    pub(super) id: String,
    pub(super) name: String,
    pub(super) size: i64,
    pub(super) source_snapshot_id: Option<String>,
    pub(super) source_volume_id: Option<String>,
    pub(super) depth: i64,
    pub(super) multiattach: bool,
}

pub(super) struct PlanBackup {
    pub(super) id: String,
    pub(super) name: String,
    pub(super) volume_id: String,
    pub(super) size: i64,
    pub(super) parent_id: Option<String>,
}

pub(super) struct PlanSnapshot {
    pub(super) id: String,
    pub(super) name: String,
    pub(super) volume_id: String,
    pub(super) size: i64,
    pub(super) purpose: Purpose,
}

impl Plan {
    /// `owner`: the target's recorded owner (None for rows older than ownership: then this
    /// host's service of the backend).
    pub(super) fn new(
        cfg: &Config,
        kind: JobKind,
        target: &str,
        backend: &str,
        owner: Option<&str>,
        describe: String,
    ) -> Plan {
        Plan {
            kind,
            target: target.to_string(),
            backend: backend.to_string(),
            owner: owner
                .map(str::to_string)
                .unwrap_or_else(|| cfg.service_owner(backend)),
            works_on: target.to_string(),
            placement: None,
            params: Params::default(),
            volume: None,
            snapshot: None,
            backup: None,
            transition: None,
            describe,
        }
    }

    /// The target `id` moves into the kind's `during` status, guarded on `from`.
    pub(super) fn guard(&mut self, id: String, from: &'static [Status]) {
        if let Some(r) = lifecycle::rule(self.kind)
            && let Some(during) = r.during
        {
            self.transition = Some((r.target, id, from, during));
        }
    }
}

/// Checks a request and enqueues its job. Nothing is written when it is refused.
pub async fn enqueue(
    db: &Db,
    cfg: &Config,
    req: Request,
    actor: &str,
) -> Result<Enqueued, JobError> {
    let plan = plan(db, cfg, &req).await?;
    write(db, actor, plan).await
}

/// A request that passed every check, not written yet (placement already decided).
pub struct Checked(Plan);

impl Checked {
    /// `host@backend` or `cluster@backend`: who will run the job.
    pub fn owner(&self) -> &str {
        &self.0.owner
    }
}

/// Checks a request without writing anything.
pub async fn check(db: &Db, cfg: &Config, req: &Request) -> Result<Checked, JobError> {
    Ok(Checked(plan(db, cfg, req).await?))
}

/// Writes a checked request (its status guards are checked again, in the transaction).
pub async fn enqueue_checked(db: &Db, c: Checked, actor: &str) -> Result<Enqueued, JobError> {
    write(db, actor, c.0).await
}

async fn plan(db: &Db, cfg: &Config, req: &Request) -> Result<Plan, JobError> {
    Ok(match req {
        Request::Create {
            name,
            size,
            backend,
            snapshot,
            source,
            multiattach,
        } => {
            super::create::plan_create(
                db,
                cfg,
                name,
                *size,
                backend.as_deref(),
                (snapshot.as_deref(), source.as_deref()),
                *multiattach,
            )
            .await?
        }
        Request::Migrate {
            volume: key,
            to,
            with_clones,
        } => super::migrate::plan_migrate(db, cfg, key, to, *with_clones).await?,
        Request::BackupCreate {
            volume: key,
            name,
            incremental,
        } => super::backup::plan_create(db, cfg, key, name.as_deref(), *incremental).await?,
        Request::BackupRestore {
            backup,
            name,
            backend,
        } => {
            super::backup::plan_restore(db, cfg, backup, name.as_deref(), backend.as_deref())
                .await?
        }
        Request::BackupDelete { backup } => super::backup::plan_delete(db, cfg, backup).await?,
        Request::Flatten { volume: key } => {
            let v = volume(db, key).await?;
            status_is(&v, asks_from(JobKind::Flatten), "flatten")?;
            if v.source_snapshot_id.is_none() {
                return Err(JobError::Refused(format!(
                    "volume {} ({}) has no parent: nothing to flatten",
                    v.name, v.id
                )));
            }
            not_busy(db, &v.id, &format!("volume {}", v.name)).await?;
            Plan::new(
                cfg,
                JobKind::Flatten,
                &v.id,
                &v.backend,
                v.host.as_deref(),
                format!("flatten {}", v.name),
            )
        }
        Request::Verify {
            volume: key,
            against,
            bps_limit,
        } => {
            let v = volume(db, key).await?;
            status_is(&v, asks_from(JobKind::Verify), "verify")?;
            let snap = match against {
                Some(k) => snapshot(db, k).await?,
                None => verify_default(db, &v).await?,
            };
            if snap.status != Status::Available {
                return Err(JobError::Refused(format!(
                    "snapshot {} ({}) is {}: verify compares with an available snapshot",
                    snap.name, snap.id, snap.status
                )));
            }
            if snap.backend != v.backend {
                return Err(JobError::Refused(format!(
                    "snapshot {} is on backend {} and volume {} on {}: verify compares within one backend",
                    snap.name, snap.backend, v.name, v.backend
                )));
            }
            not_busy(db, &v.id, &format!("volume {}", v.name)).await?;
            let mut plan = Plan::new(
                cfg,
                JobKind::Verify,
                &v.id,
                &v.backend,
                v.host.as_deref(),
                format!("verify {} against snapshot {}", v.name, snap.name),
            );
            plan.params.snapshot_id = Some(snap.id.clone());
            plan.params.volume_id = Some(snap.volume_id.clone());
            plan.params.bps_limit = *bps_limit;
            plan
        }
        Request::Extend {
            volume: key,
            size,
            force,
        } => {
            let v = volume(db, key).await?;
            crate::service::attach::refuse_if_attached(db, &v, "extend").await?;
            status_is(&v, asks_from(JobKind::Extend), "extend")?;
            if *size <= v.size_bytes as u64 {
                return Err(JobError::Refused(format!(
                    "volume {} is {} bytes; extend needs a larger size (got {size}); volumes never shrink",
                    v.name, v.size_bytes
                )));
            }
            not_busy(db, &v.id, &format!("volume {}", v.name)).await?;
            let mut plan = Plan::new(
                cfg,
                JobKind::Extend,
                &v.id,
                &v.backend,
                v.host.as_deref(),
                format!("extend {} to {size} bytes", v.name),
            );
            plan.params.size = Some(*size);
            plan.params.force = *force;
            if *force {
                plan.describe += " (forced even if open)";
            }
            plan.guard(v.id, asks_from(JobKind::Extend));
            plan
        }
        Request::Delete {
            volume: key,
            cascade,
            force,
        } => {
            let v = volume(db, key).await?;
            crate::service::attach::refuse_if_attached(db, &v, "delete").await?;
            status_is(&v, asks_from(JobKind::Delete), "delete")?;
            not_busy(db, &v.id, &format!("volume {}", v.name)).await?;
            let bc = rules(cfg, &v.backend);
            for s in db.snapshots_of(&v.id).await? {
                not_busy(db, &s.id, &format!("snapshot {}", s.name)).await?;
                if s.purpose == Purpose::User && !cascade {
                    return Err(JobError::Refused(format!(
                        "volume {} has snapshot {} ({}); delete its snapshots first, or use --cascade",
                        v.name, s.name, s.id
                    )));
                }
                if !bc.enable_deferred_deletion
                    && let Some(why) = dependents(db, &s).await?
                {
                    return Err(JobError::Refused(why));
                }
            }
            let mut plan = Plan::new(
                cfg,
                JobKind::Delete,
                &v.id,
                &v.backend,
                v.host.as_deref(),
                format!("delete {}", v.name),
            );
            plan.params.cascade = *cascade;
            plan.params.force = *force;
            if *force {
                plan.describe += " (forced even if open)";
            }
            plan.guard(v.id, asks_from(JobKind::Delete));
            plan
        }
        Request::SnapshotCreate { name, volume: key } => {
            check_name(name)?;
            let v = volume(db, key).await?;
            // A snapshot is taken of a volume a guest could use.
            status_is(&v, asks_from(JobKind::Flatten), "snapshot")?;
            not_busy(db, &v.id, &format!("volume {}", v.name)).await?;
            let id = Uuid::new_v4().to_string();
            let mut plan = Plan::new(
                cfg,
                JobKind::SnapshotCreate,
                &id,
                &v.backend,
                v.host.as_deref(),
                format!("snapshot {} as {name}", v.name),
            );
            plan.params.volume_id = Some(v.id.clone());
            plan.works_on = v.id.clone();
            plan.snapshot = Some(PlanSnapshot {
                id,
                name: name.clone(),
                volume_id: v.id,
                size: v.size_bytes,
                purpose: Purpose::User,
            });
            plan
        }
        Request::SnapshotDelete { snapshot: key } => {
            let s = snapshot(db, key).await?;
            let from = asks_from(JobKind::SnapshotDelete);
            may_start("snapshot", &s.name, &s.id, s.status, from, "delete")?;
            not_busy(db, &s.id, &format!("snapshot {}", s.name)).await?;
            snapshot_not_moving(db, &s, "delete").await?;
            let bc = rules(cfg, &s.backend);
            if !bc.enable_deferred_deletion
                && let Some(why) = dependents(db, &s).await?
            {
                return Err(JobError::Refused(why));
            }
            let mut plan = Plan::new(
                cfg,
                JobKind::SnapshotDelete,
                &s.id,
                &s.backend,
                s.host.as_deref(),
                format!("delete snapshot {}", s.name),
            );
            plan.works_on = s.volume_id.clone();
            plan.guard(s.id, asks_from(JobKind::SnapshotDelete));
            plan
        }
    })
}

pub(super) async fn write(db: &Db, actor: &str, plan: Plan) -> Result<Enqueued, JobError> {
    db.ensure_writable("enqueue a job")?;
    let job_id = Uuid::new_v4().to_string();
    let params_json = serde_json::to_string(&plan.params).unwrap_or_else(|_| "{}".into());
    let e = Enqueue {
        volume: plan.volume.as_ref().map(|v| NewVolume {
            id: &v.id,
            name: &v.name,
            size_bytes: v.size,
            status: Status::Creating,
            backend: &plan.backend,
            host: &plan.owner,
            source_snapshot_id: v.source_snapshot_id.as_deref(),
            source_volume_id: v.source_volume_id.as_deref(),
            clone_depth: v.depth,
            multiattach: v.multiattach,
        }),
        snapshot: plan.snapshot.as_ref().map(|s| NewSnapshot {
            id: &s.id,
            name: &s.name,
            volume_id: &s.volume_id,
            size_bytes: s.size,
            status: Status::Creating,
            backend: &plan.backend,
            host: &plan.owner,
            purpose: s.purpose,
        }),
        backup: plan.backup.as_ref().map(|b| NewBackup {
            id: &b.id,
            name: &b.name,
            volume_id: &b.volume_id,
            size_bytes: b.size,
            backend: &plan.backend,
            host: &plan.owner,
            parent_id: b.parent_id.as_deref(),
        }),
        transitions: plan
            .transition
            .iter()
            .flat_map(|(target, id, from, to)| {
                std::iter::once(id)
                    .chain(&plan.params.family)
                    .map(move |id| Transition {
                        table: match target {
                            Target::Volume => "volumes",
                            Target::Snapshot => "snapshots",
                            Target::Backup => "backups",
                        },
                        id,
                        from,
                        to: *to,
                    })
            })
            .collect(),
        job: NewJob {
            id: &job_id,
            kind: plan.kind,
            target_id: &plan.target,
            backend: &plan.backend,
            owner: &plan.owner,
            volume_id: &plan.works_on,
            params: &params_json,
            requested_by: actor,
        },
    };
    match db.enqueue(&e).await? {
        Written::Written => {}
        Written::TargetChanged => {
            return Err(JobError::Refused(format!(
                "{}: the target changed state meanwhile; look again and retry",
                plan.describe
            )));
        }
        Written::TargetBusy => {
            let busy = db.active_job_on(&plan.works_on).await?;
            return Err(JobError::Refused(format!(
                "{}: refused, another job on the same volume was queued first{}; wait for it or cancel it",
                plan.describe,
                busy.map(|j| format!(" ({} job {})", j.kind, short(&j.id)))
                    .unwrap_or_default()
            )));
        }
    }
    let message = format!("{} job {job_id}: {}", plan.kind.as_str(), plan.describe);
    let _ = db
        .add_event(&NewEvent {
            actor,
            host: None,
            kind: crate::db::EventKind::JobQueued,
            target: Some(&plan.target),
            message: &message,
        })
        .await;
    let is_snapshot = matches!(plan.kind, JobKind::SnapshotCreate | JobKind::SnapshotDelete);
    Ok(Enqueued {
        job_id,
        backend: plan.backend,
        owner: plan.owner,
        placement: plan.placement,
        volume: if is_snapshot {
            None
        } else {
            db.get_volume(&plan.target).await?
        },
        snapshot: if is_snapshot {
            db.get_snapshot(&plan.target).await?
        } else {
            None
        },
        backup: if matches!(plan.kind, JobKind::BackupCreate | JobKind::BackupDelete) {
            db.get_backup(&plan.target).await?
        } else {
            None
        },
    })
}
