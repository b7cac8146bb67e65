//! Text and JSON output shared by the commands: the JSON shapes are the stable contract for
//! scripts; tables are for people and may change.

use comfy_table::{Table, presets};
use serde::Serialize;

use crate::db::services::{Liveness, ServiceRow, liveness, parse_lateness};
use crate::db::{EventRow, JobKind, JobRow, JobState, Status, VolumeRow};
use crate::service::lateness::{Summary, summarize};

pub fn table(header: &[&str]) -> Table {
    let mut t = Table::new();
    t.load_preset(presets::ASCII_FULL_CONDENSED)
        .set_header(header.iter().copied());
    t
}

pub fn print_json<T: Serialize>(v: &T) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(v)?);
    Ok(())
}

pub use crate::service::takeover::waiting_for;
pub use crate::service::units::{age, human_bytes, rfc3339};

/// A service as scripts see it (`service list --json`).
#[derive(Debug, Serialize)]
pub struct ServiceJson {
    pub host: String,
    pub binary: String,
    pub backend: String,
    pub cluster: Option<String>,
    pub driver: String,
    pub status: &'static str,
    pub state: &'static str,
    pub disabled_reason: Option<String>,
    pub error: Option<String>,
    pub updated_at: Option<String>,
    pub heartbeat_age_s: Option<f64>,
    pub report_count: i64,
    pub lateness_ms: Option<Summary>,
    pub stopped: bool,
    pub version: String,
    pub pid: Option<i64>,
    /// The storage client address peers fence before taking its jobs over (rbd).
    pub client_address: Option<String>,
}

impl ServiceJson {
    pub fn from_row(r: &ServiceRow, now_ms: i64, down_time_ms: i64) -> Self {
        ServiceJson {
            host: r.host.clone(),
            binary: r.binary_name.clone(),
            backend: r.backend.clone(),
            cluster: r.cluster.clone(),
            driver: r.driver.clone(),
            status: if r.disabled != 0 {
                "disabled"
            } else {
                "enabled"
            },
            state: match liveness(r, now_ms, down_time_ms) {
                Liveness::Stopped => "down",
                l => l.as_str(),
            },
            disabled_reason: r.disabled_reason.clone(),
            error: r.error.clone(),
            updated_at: r.updated_at.map(rfc3339),
            heartbeat_age_s: r
                .updated_at
                .map(|u| ((now_ms - u) as f64 / 1000.0 * 10.0).round() / 10.0),
            report_count: r.report_count,
            lateness_ms: summarize(&parse_lateness(&r.lateness_ms)),
            stopped: r.stopped_at.is_some(),
            version: r.version.clone(),
            pid: r.pid,
            client_address: r.client_address.clone(),
        }
    }
}

/// A volume as scripts see it: the keys are fixed by the job issue's contract.
#[derive(Debug, Serialize)]
pub struct VolumeJson {
    pub id: String,
    pub name: String,
    pub status: Status,
    pub size_bytes: i64,
    pub backend: String,
    /// The owner: `host@backend`, or `cluster@backend` for a clustered backend.
    pub host: Option<String>,
    pub parent: Option<String>,
    pub clone_depth: i64,
    pub created_at: String,
    pub updated_at: String,
    /// Allocated bytes of its image (`volume list --wide`), when the storage told.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub used_bytes: Option<u64>,
}

impl From<&VolumeRow> for VolumeJson {
    fn from(v: &VolumeRow) -> Self {
        VolumeJson {
            id: v.id.clone(),
            name: v.name.clone(),
            status: v.status,
            size_bytes: v.size_bytes,
            backend: v.backend.clone(),
            host: v.host.clone(),
            parent: v.source_snapshot_id.clone(),
            clone_depth: v.clone_depth,
            created_at: rfc3339(v.created_at),
            updated_at: rfc3339(v.updated_at),
            used_bytes: None,
        }
    }
}

#[derive(Debug, Serialize)]
pub struct JobJson {
    pub id: String,
    pub kind: JobKind,
    pub target: String,
    /// The target as the operator names it: `db-01`, or `db-01@nightly` for a snapshot.
    pub target_name: Option<String>,
    pub backend: String,
    pub state: JobState,
    pub bytes_done: i64,
    pub bytes_total: i64,
    pub error: Option<String>,
    /// What it found (`volume verify`: equal, and how much was compared).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub result: Option<String>,
    pub requested_by: String,
    pub claimed_by: Option<String>,
    /// Who may run it: `host@backend`, or any member of `cluster@backend`.
    pub owner: Option<String>,
    /// Bumped by each claim (a takeover shows as a jump).
    pub claim_token: i64,
    pub created_at: String,
    pub started_at: Option<String>,
    pub finished_at: Option<String>,
    /// Set when the job waits for something an operator must fix (its owner is down).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub waiting: Option<String>,
    /// The job this one retries (`ember job retry`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry_of: Option<String>,
    /// Queued with `--force` (delete or extend of a volume someone has open).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub forced: bool,
    /// The storage client it works through when not its service's (a throttled rbd
    /// flatten's own): a takeover fences it too.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_address: Option<String>,
}

fn params(j: &JobRow) -> crate::service::jobs::Params {
    serde_json::from_str(&j.params).unwrap_or_default()
}

impl From<&JobRow> for JobJson {
    fn from(j: &JobRow) -> Self {
        JobJson {
            id: j.id.clone(),
            kind: j.kind,
            target: j.target_id.clone(),
            target_name: None,
            backend: j.backend.clone(),
            state: j.state,
            bytes_done: j.bytes_done,
            bytes_total: j.bytes_total,
            error: j.error.clone(),
            result: j.result.clone(),
            requested_by: j.requested_by.clone(),
            claimed_by: j.claimed_by.clone(),
            owner: j.owner.clone(),
            claim_token: j.claim_token,
            created_at: rfc3339(j.created_at),
            started_at: j.started_at.map(rfc3339),
            finished_at: j.finished_at.map(rfc3339),
            retry_of: params(j).retry_of,
            forced: params(j).force,
            client_address: j.client_address.clone(),
            waiting: j.wait_reason.clone(),
        }
    }
}

#[derive(Debug, Serialize)]
pub struct EventJson {
    pub id: i64,
    pub at: String,
    pub actor: String,
    pub host: Option<String>,
    pub kind: crate::db::EventKind,
    pub target: Option<String>,
    pub message: String,
}

impl From<&EventRow> for EventJson {
    fn from(e: &EventRow) -> Self {
        EventJson {
            id: e.id,
            at: rfc3339(e.at),
            actor: e.actor.clone(),
            host: e.host.clone(),
            kind: e.kind,
            target: e.target.clone(),
            message: e.message.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units() {
        assert_eq!(human_bytes(512), "512 B");
        assert_eq!(human_bytes(10 << 30), "10.0 GiB");
        assert_eq!(age(5.2), "5s");
        assert_eq!(age(600.0), "10m");
    }
}
