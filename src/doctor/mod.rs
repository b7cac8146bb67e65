//! `ember doctor` and the console's Doctor view: on-call diagnosis.
//!
//! Each check looks at one thing an operator would otherwise look at by hand (the ceph conf,
//! the keyring librados will pick, the monitors' ports, the services' heartbeats, the
//! database, stuck jobs), and says ok / warn / fail with the evidence and a one-line fix.
//! Checks run concurrently, blocking parts off the reactor and each under a timeout, and are
//! sent as they finish, so the console shows them as they complete and a dead monitor costs
//! one timeout, not the whole run.
//!
//! Owner: `doctor/`. Imports `config`, `db` and `driver` (to connect exactly as the service
//! does); the console reaches it only through the service handle.

mod attachments;
mod backend;
mod ceph;
mod ember;
mod render;

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::sync::mpsc;

use crate::config::Config;
use crate::db::{Db, ServiceRow};

pub use render::{print_text, summary};

/// How bad a finding is. Ordered: `Fail` is the worst.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Ok,
    /// Worth knowing, not a problem here (another pool's condition, a muted check).
    Info,
    /// Not run: what it needs failed first (e.g. auth when no keyring was found).
    Skip,
    Warn,
    Fail,
}

impl Status {
    pub fn label(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::Info => "info",
            Status::Skip => "skip",
            Status::Warn => "WARN",
            Status::Fail => "FAIL",
        }
    }
}

/// One check's result.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    /// Stable key for scripts: `<scope>.<check>`, e.g. `rbd0.keyring`.
    pub id: String,
    /// A backend's name, or `ember` for the whole installation.
    pub scope: String,
    /// The check's name (`keyring`), or a storage health check's own code (`POOL_FULL`).
    pub check: String,
    pub status: Status,
    /// What was found, in one line.
    pub summary: String,
    /// What it was found from (paths, addresses, figures). Never a secret.
    pub evidence: Vec<String>,
    /// One line: what to do about it.
    pub fix: Option<String>,
    pub took_ms: u64,
    /// Position for a stable order whatever the finishing order.
    #[serde(skip)]
    pub order: (usize, usize),
}

/// A check's result as its code builds it; `Check` adds who and when.
#[derive(Debug, Clone)]
pub struct Finding {
    pub status: Status,
    pub summary: String,
    pub evidence: Vec<String>,
    pub fix: Option<String>,
}

impl Finding {
    pub fn ok(summary: impl Into<String>) -> Self {
        Self::new(Status::Ok, summary)
    }
    pub fn warn(summary: impl Into<String>) -> Self {
        Self::new(Status::Warn, summary)
    }
    pub fn fail(summary: impl Into<String>) -> Self {
        Self::new(Status::Fail, summary)
    }
    pub fn info(summary: impl Into<String>) -> Self {
        Self::new(Status::Info, summary)
    }
    pub fn skip(summary: impl Into<String>) -> Self {
        Self::new(Status::Skip, summary)
    }
    pub fn new(status: Status, summary: impl Into<String>) -> Self {
        Finding {
            status,
            summary: summary.into(),
            evidence: vec![],
            fix: None,
        }
    }
    pub fn fix(mut self, fix: impl Into<String>) -> Self {
        self.fix = Some(fix.into());
        self
    }
    pub fn evidence(mut self, e: impl Into<String>) -> Self {
        self.evidence.push(e.into());
        self
    }
}

/// Where checks report to, stamped with their scope and order.
#[derive(Clone)]
pub struct Sink {
    tx: mpsc::UnboundedSender<Check>,
    scope: String,
    group: usize,
}

impl Sink {
    pub fn report(&self, idx: usize, check: impl Into<String>, started: Instant, f: Finding) {
        let check = check.into();
        let _ = self.tx.send(Check {
            id: format!("{}.{check}", self.scope),
            scope: self.scope.clone(),
            check,
            status: f.status,
            summary: f.summary,
            evidence: f.evidence,
            fix: f.fix,
            took_ms: started.elapsed().as_millis() as u64,
            order: (self.group, idx),
        });
    }
}

/// What the checks look at.
pub struct Target {
    pub config: Arc<Config>,
    /// The database, or why it could not be opened (itself a finding).
    pub db: Result<Db, String>,
    /// Only this backend's checks (and the installation's); None: everything.
    pub backend: Option<String>,
    /// A running job whose bytes have not moved for this long is reported stuck.
    pub stuck_after: Duration,
}

/// Default for [`Target::stuck_after`], in seconds.
pub const STUCK_AFTER_SECS: u64 = 600;

/// A blocking probe's upper bound beyond the backend's own connect timeout.
pub const PROBE_SLACK: Duration = Duration::from_secs(5);

/// One run: what is checked, and the services table read once for every check that needs it.
pub struct Run {
    pub target: Target,
    /// The rows, or the finding to report in their place (no database: skip; a read error: fail).
    services: Result<Vec<ServiceRow>, Finding>,
    /// Storage health checks about other pools already reported, by (cluster id, code): they
    /// appear once under their cluster, however many backends share it.
    pub cluster_seen: std::sync::Mutex<std::collections::HashSet<(String, String)>>,
}

impl Run {
    /// The services table, or None after reporting why it is not there as check `check`.
    pub fn services(
        &self,
        sink: &Sink,
        idx: usize,
        check: &'static str,
        started: Instant,
    ) -> Option<&[ServiceRow]> {
        match &self.services {
            Ok(rows) => Some(rows),
            Err(f) => {
                sink.report(idx, check, started, f.clone());
                None
            }
        }
    }
}

/// Runs every check, sending each as it completes; returns when all are done.
pub async fn run(target: Target, tx: mpsc::UnboundedSender<Check>) {
    let services = match &target.db {
        Err(_) => Err(Finding::skip("not tried: the database cannot be opened")),
        Ok(db) => db
            .list_services()
            .await
            .map_err(|e| Finding::fail(format!("cannot read services: {e}"))),
    };
    let run = Arc::new(Run {
        target,
        services,
        cluster_seen: Default::default(),
    });
    let mut tasks = tokio::task::JoinSet::new();
    let ember_sink = Sink {
        tx: tx.clone(),
        scope: "ember".into(),
        group: 0,
    };
    {
        let t = run.clone();
        tasks.spawn(async move { ember::run(&t, &ember_sink).await });
    }
    for (i, b) in run.target.config.backends.iter().enumerate() {
        if run.target.backend.as_deref().is_some_and(|n| n != b.name) {
            continue;
        }
        let sink = Sink {
            tx: tx.clone(),
            scope: b.name.clone(),
            group: i + 1,
        };
        let (t, b) = (run.clone(), b.clone());
        tasks.spawn(async move { backend::run(&t, &b, &sink).await });
    }
    while tasks.join_next().await.is_some() {}
}

/// Runs everything and returns the checks in their stable order.
pub async fn run_all(target: Target) -> Vec<Check> {
    let (tx, mut rx) = mpsc::unbounded_channel();
    run(target, tx).await;
    let mut out = vec![];
    while let Ok(c) = rx.try_recv() {
        out.push(c);
    }
    out.sort_by_key(|c| c.order);
    out
}

/// The worst status among checks (Ok when there are none).
pub fn worst(checks: &[Check]) -> Status {
    checks.iter().map(|c| c.status).max().unwrap_or(Status::Ok)
}
