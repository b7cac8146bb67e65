//! The console's one door into the service layer: the published snapshot to draw, and the
//! commands it may send. The console holds this and nothing below it (no `db`, no `driver`).

use std::sync::Arc;

use tokio::sync::{Notify, watch};

use crate::config::Config;
use crate::db::Db;

use super::actor::current_actor;
use super::jobs::request::Cancelled;
use super::jobs::{self, Enqueued, JobError, Request};
use super::snapshot::Snapshot;
use super::view::{JobView, VolumeView};

pub use crate::doctor::{Check, Status};

pub struct Handle {
    db: Db,
    pub config: Arc<Config>,
    pub snapshot: watch::Receiver<Arc<Snapshot>>,
    poke: Arc<Notify>,
    /// True when this process runs the services (the console is the worker).
    pub worker: bool,
    /// The services of this process: a cancel reaches their running jobs at once.
    local: Vec<Arc<super::BackendService>>,
    pub read_only: bool,
    /// Why, when the database handle refuses changes (`read_only`, or a login that may only
    /// read), for the title bar.
    pub read_only_reason: Option<String>,
}

impl Handle {
    pub fn new(
        db: Db,
        config: Arc<Config>,
        snapshot: watch::Receiver<Arc<Snapshot>>,
        poke: Arc<Notify>,
        local: Vec<Arc<super::BackendService>>,
        read_only: bool,
    ) -> Handle {
        let read_only = read_only || db.is_read_only();
        let read_only_reason = db.read_only_reason().map(String::from);
        Handle {
            db,
            config,
            snapshot,
            poke,
            worker: !local.is_empty(),
            local,
            read_only,
            read_only_reason,
        }
    }

    /// Reads the database now instead of at the next push or poll (`ctrl-r`).
    pub fn refresh(&self) {
        self.poke.notify_one();
    }

    /// Checks and enqueues a request; the snapshot refreshes at once.
    pub async fn submit(&self, req: Request) -> Result<Queued, JobError> {
        let out = jobs::enqueue(&self.db, &self.config, req, &current_actor()).await;
        self.poke.notify_one();
        out.map(Queued::from)
    }

    /// Runs the doctor's checks in the background; each arrives on the channel as it
    /// finishes, and the channel closes when all are done.
    pub fn doctor(&self) -> tokio::sync::mpsc::UnboundedReceiver<Check> {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let target = crate::doctor::Target {
            config: self.config.clone(),
            db: Ok(self.db.clone()),
            backend: None,
            stuck_after: std::time::Duration::from_secs(crate::doctor::STUCK_AFTER_SECS),
        };
        tokio::spawn(crate::doctor::run(target, tx));
        rx
    }

    /// Who has a volume open (the detail pane, the delete confirmation): through this
    /// process's service of its backend, else a client of its own; bounded in time.
    pub async fn holders(&self, volume_id: &str) -> Result<super::inspect::Inspection, String> {
        let v = jobs::request::volume(&self.db, volume_id)
            .await
            .map_err(|e| e.to_string())?;
        super::inspect::of_volume(
            &self.config,
            &self.db,
            &self.local,
            &v,
            super::inspect::Usage::Measure,
        )
        .await
        .map_err(|e| e.to_string())
    }

    /// `volume break-lock` from the detail pane (never forced from the console: a live
    /// holder's lock is refused, and the CLI's --force is the deliberate way).
    pub async fn break_lock(
        &self,
        volume_id: &str,
        locker: &str,
    ) -> Result<super::locks::Broken, JobError> {
        let out = super::locks::break_lock(
            &self.config,
            &self.db,
            &self.local,
            volume_id,
            locker,
            false,
            &current_actor(),
        )
        .await;
        self.poke.notify_one();
        out
    }

    /// `volume manage` from the `:manage BACKEND IMAGE NAME` command.
    pub async fn manage(
        &self,
        backend: &str,
        image: &str,
        name: &str,
    ) -> Result<VolumeView, JobError> {
        let out = super::manage::manage(
            &self.db,
            &self.config,
            backend,
            image,
            name,
            &current_actor(),
        )
        .await;
        self.poke.notify_one();
        out.map(view_of)
    }

    /// `volume unmanage` from the Volumes view (the operator typed the name).
    pub async fn unmanage(&self, volume_id: &str) -> Result<VolumeView, JobError> {
        let out = super::manage::unmanage(&self.db, volume_id, &current_actor()).await;
        self.poke.notify_one();
        out.map(view_of)
    }

    /// `job retry` from the Jobs view.
    pub async fn retry(&self, job_id: &str) -> Result<Queued, JobError> {
        let out = jobs::retry::retry(&self.db, &self.config, job_id, &current_actor()).await;
        self.poke.notify_one();
        out.map(Queued::from)
    }

    /// `volume reset-state` from the Volumes view (the operator typed the name).
    pub async fn reset_state(
        &self,
        volume_id: &str,
        state: crate::service::view::Status,
        reason: Option<&str>,
    ) -> Result<jobs::retry::Reset, JobError> {
        let out =
            jobs::retry::reset_state(&self.db, volume_id, false, state, reason, &current_actor())
                .await;
        self.poke.notify_one();
        out
    }

    pub async fn cancel(&self, job_id: &str) -> Result<Cancelled<JobView>, JobError> {
        let out = jobs::cancel(&self.db, job_id, &current_actor()).await;
        // Running here: stop the driver call now, not at its next flag read.
        if let Ok(Cancelled::Requested(j)) = &out {
            for b in &self.local {
                if let Some(p) = b
                    .running
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .get(&j.id)
                {
                    p.cancel.cancel();
                }
            }
        }
        self.poke.notify_one();
        out.map(|c| c.map(|j| JobView::from(&j)))
    }
}

/// What the console learns of a job it queued: the job's id and who runs it (the volume and
/// snapshot rows come to it through the live model, as every change does).
#[derive(Debug, Clone, PartialEq)]
pub struct Queued {
    pub job_id: String,
    pub owner: String,
    /// For a new volume placed among several services: which one was picked, and why.
    pub placement: Option<String>,
}

impl From<Enqueued> for Queued {
    fn from(e: Enqueued) -> Self {
        Queued {
            job_id: e.job_id,
            owner: e.owner,
            placement: e.placement,
        }
    }
}

/// A row the console gets back from a command, as the console's own type.
fn view_of(v: crate::db::VolumeRow) -> VolumeView {
    VolumeView::from_row(v, &mut super::view::Interner::default())
}
