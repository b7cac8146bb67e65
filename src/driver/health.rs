//! The storage's own health, in the volume service's terms.
//!
//! A storage system reports its conditions in its own words (Ceph: named health checks such as
//! `POOL_FULL` or `OSD_DOWN`). An operator of volumes needs to know something else: does it
//! touch this backend, what does it stop or slow, and what is the fix. Drivers that can read
//! such conditions turn each into a [`HealthFinding`]; the doctor shows them, and a job that
//! fails while one that blocks writes stands names it in its error.

use serde::Serialize;

/// What a condition does to this backend's volumes. Ordered: `Blocks` is the worst.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Impact {
    /// Worth knowing, changes nothing for volumes now.
    Info,
    /// Volumes keep working, slower or with less safety; or a later failure would stop them.
    Slows,
    /// Writes (or all I/O) to the backend's pool are refused or hang until a timeout.
    Blocks,
}

/// Whether a condition bears on this backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Reach {
    /// It names this backend's pool (or placement groups of it).
    ThisPool,
    /// It is about the storage cluster as a whole, so every pool on it.
    Cluster,
    /// It names other pools only: information, never this backend's failure.
    OtherPool,
}

/// One condition the storage reports, explained for the volume service.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HealthFinding {
    /// The storage's own name for it (`POOL_FULL`).
    pub code: String,
    /// The storage's own severity (`HEALTH_WARN`, `HEALTH_ERR`).
    pub severity: String,
    pub reach: Reach,
    /// For `Reach::OtherPool`, always `Info`.
    pub impact: Impact,
    /// What is wrong, in a short phrase (`pool volumes is full (quota 20 MiB)`).
    pub headline: String,
    /// One line in ember's terms: what is wrong and what it does to volumes here.
    pub summary: String,
    /// The storage's own words: its summary, then its detail lines (capped).
    pub evidence: Vec<String>,
    /// The command to run or the thing to check.
    pub fix: String,
    /// Silenced by an operator in the storage (`ceph health mute`): still shown, marked.
    pub muted: bool,
}

impl HealthFinding {
    /// True for a condition that refuses or hangs this backend's writes now.
    pub fn blocks_here(&self) -> bool {
        self.impact == Impact::Blocks && self.reach != Reach::OtherPool
    }
}

/// The conditions that stop this backend's writes, one line each, for a failed job's error.
pub fn blockers(findings: &[HealthFinding]) -> Vec<String> {
    findings
        .iter()
        .filter(|f| f.blocks_here())
        .map(|f| format!("{} [{}; fix: {}]", f.headline, f.code, f.fix))
        .collect()
}
