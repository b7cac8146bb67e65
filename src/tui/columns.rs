//! The tables' columns as data: each column's name (the word `:sort` and the config's
//! `[columns]` use), its width and whether a narrow terminal may drop it, and how rows compare
//! by it. The views draw from these lists and the state sorts by them, so a column's header,
//! its sort and its config name cannot drift apart.

use std::cmp::Ordering;
use std::collections::HashMap;

use crate::service::snapshot::{EventView, JobView, ServiceView};

use super::state::View;

/// A table column: name, width (0: takes what is left), and whether it stays on a narrow
/// terminal. Columns that do not fit are dropped from the least important, so 80 columns
/// shows fewer columns rather than truncating every one of them.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Col {
    pub title: &'static str,
    pub width: u16,
    pub keep: bool,
    /// For the column that takes what is left (width 0): the least it needs, so that the
    /// droppable columns go before it is squeezed below this.
    pub min: u16,
}

const fn col(title: &'static str, width: u16, keep: bool) -> Col {
    Col {
        title,
        width,
        keep,
        min: 8,
    }
}

/// The column that takes the rest of the row, needing at least `min`.
const fn flex(title: &'static str, min: u16) -> Col {
    Col {
        title,
        width: 0,
        keep: true,
        min,
    }
}

/// Volumes: the order the filter's sort indices follow (see `tui::filter`).
pub const VOLUMES: [Col; 9] = [
    flex("name", 16),
    col("size", 10, true),
    col("status", 14, true),
    // How many attachments it has (k9s' READY-style count): in-use at a glance.
    col("A", 2, true),
    col("backend", 8, false),
    col("parent", 20, false),
    col("depth", 5, false),
    col("created", 20, false),
    col("id", 8, false),
];

/// Jobs: what, how far, who and where. Rate and ETA only mean something where bytes move.
/// A narrow terminal drops from the right: backend (the target names it), took, started,
/// rate, by, host, eta.
pub const JOBS: [Col; 12] = [
    col("target", 24, true),
    col("kind", 11, true),
    col("state", 9, true),
    col("progress", 19, true),
    col("eta", 5, false),
    col("host", 16, false),
    col("by", 18, false),
    col("rate", 10, false),
    col("started", 8, false),
    col("took", 6, false),
    col("backend", 8, false),
    flex("error", 8),
];

pub const SERVICES: [Col; 9] = [
    col("cluster", 14, false),
    col("host", 22, true),
    col("status", 8, false),
    col("driver", 6, false),
    col("binary", 12, false),
    col("state", 5, true),
    col("heartbeat", 10, true),
    col("lateness", 36, true),
    flex("reason", 8),
];

/// Events: newest first; `at` is the date and time, `ago` how long since. The message keeps
/// room to be read: actor, host and ago go first on a narrow terminal.
pub const EVENTS: [Col; 7] = [
    col("at", 14, true),
    col("kind", 17, true),
    col("target", 19, true),
    flex("message", 24),
    col("actor", 16, false),
    col("ago", 8, false),
    col("host", 16, false),
];

/// Backups: newest first; what each holds and what it added to the store.
pub const BACKUPS: [Col; 9] = [
    col("name", 22, true),
    col("volume", 16, true),
    col("status", 10, true),
    col("size", 9, true),
    col("data", 9, false),
    col("read", 9, false),
    col("stored", 9, true),
    col("incr", 4, false),
    col("age", 8, true),
];

/// The columns of a view's table (none for views without one).
pub fn of(view: View) -> &'static [Col] {
    match view {
        View::Volumes => &VOLUMES,
        View::Jobs => &JOBS,
        View::Services => &SERVICES,
        View::Events => &EVENTS,
        View::Backups => &BACKUPS,
        _ => &[],
    }
}

/// How a table is sorted: by which column, and whether reversed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SortBy {
    pub col: usize,
    pub desc: bool,
}

/// A view's sort as the operator left it: None is the table's natural order (jobs and events
/// newest first, services grouped by cluster).
pub type Sorts = HashMap<&'static str, SortBy>;

/// The index of a column by name (exact, else the only one starting with it).
pub fn find(view: View, name: &str) -> Option<usize> {
    let cols = of(view);
    let name = name.trim().to_lowercase();
    if let Some(i) = cols
        .iter()
        .position(|c| c.title.eq_ignore_ascii_case(&name))
    {
        return Some(i);
    }
    let starts: Vec<usize> = (0..cols.len())
        .filter(|i| cols[*i].title.starts_with(&name))
        .collect();
    (starts.len() == 1).then(|| starts[0])
}

/// The chosen columns of each view, from the config's `[columns]` (names checked here, so a
/// typo is an error naming the view, the word and the columns there are).
pub fn chosen(
    config: &std::collections::BTreeMap<String, Vec<String>>,
) -> Result<HashMap<&'static str, Vec<usize>>, String> {
    let mut out = HashMap::new();
    for (view_name, names) in config {
        let Some(view) = View::parse(view_name).filter(|v| !of(*v).is_empty()) else {
            return Err(format!(
                "[columns] {view_name}: no such table (tables: volumes, jobs, services, events)"
            ));
        };
        let mut idx = vec![];
        for n in names {
            match of(view).iter().position(|c| c.title == n.as_str()) {
                Some(i) => idx.push(i),
                None => {
                    return Err(format!(
                        "[columns] {view_name}: unknown column {n:?} (columns: {})",
                        of(view)
                            .iter()
                            .map(|c| c.title)
                            .collect::<Vec<_>>()
                            .join(", ")
                    ));
                }
            }
        }
        if idx.is_empty() {
            return Err(format!("[columns] {view_name}: empty (name at least one)"));
        }
        out.insert(view.name(), idx);
    }
    Ok(out)
}

/// Bytes per second of a job: the rate measured between snapshots if there is one, else its
/// average since it started (a job seen for the first time already has an ETA).
pub fn job_rate(j: &JobView, measured: Option<f64>) -> Option<f64> {
    if j.bytes_total <= 0 || j.state != crate::service::view::JobState::Running {
        return None;
    }
    measured.filter(|r| *r > 0.0).or_else(|| {
        let since = j.started_at?;
        let secs = (j.updated_at - since) as f64 / 1000.0;
        (secs > 0.5 && j.bytes_done > 0).then(|| j.bytes_done as f64 / secs)
    })
}

/// Seconds until a job is done at `rate`.
pub fn eta_secs(j: &JobView, rate: Option<f64>) -> Option<f64> {
    let r = rate.filter(|r| *r > 0.0)?;
    (j.bytes_total > j.bytes_done).then(|| (j.bytes_total - j.bytes_done) as f64 / r)
}

fn progress(j: &JobView) -> f64 {
    if j.bytes_total > 0 {
        j.bytes_done as f64 / j.bytes_total as f64
    } else {
        -1.0
    }
}

fn cmp_f(a: Option<f64>, b: Option<f64>) -> Ordering {
    a.partial_cmp(&b).unwrap_or(Ordering::Equal)
}

/// Jobs by a column of [`JOBS`].
pub fn cmp_jobs(a: &JobView, b: &JobView, col: usize, rates: &HashMap<String, f64>) -> Ordering {
    let rate = |j: &JobView| job_rate(j, rates.get(&j.id).copied());
    match JOBS.get(col).map(|c| c.title) {
        Some("target") => a.target_name.cmp(&b.target_name),
        Some("kind") => a.kind_name().cmp(b.kind_name()),
        Some("state") => a.state.cmp(&b.state),
        Some("progress") => cmp_f(Some(progress(a)), Some(progress(b))),
        Some("eta") => cmp_f(eta_secs(a, rate(a)), eta_secs(b, rate(b))),
        Some("rate") => cmp_f(rate(a), rate(b)),
        Some("host") => a.claimed_by.cmp(&b.claimed_by),
        Some("by") => a.requested_by.cmp(&b.requested_by),
        Some("started") => a.started_at.cmp(&b.started_at),
        Some("took") => took(a).cmp(&took(b)),
        Some("backend") => a.backend.cmp(&b.backend),
        _ => a.error.cmp(&b.error),
    }
}

/// How long a job ran (so far, for a running one: up to its last progress).
pub fn took(j: &JobView) -> Option<i64> {
    let start = j.started_at?;
    Some(j.finished_at.unwrap_or(j.updated_at.max(start)) - start)
}

pub fn cmp_services(a: &ServiceView, b: &ServiceView, col: usize) -> Ordering {
    match SERVICES.get(col).map(|c| c.title) {
        Some("cluster") => a.cluster.cmp(&b.cluster),
        Some("host") => a.host.cmp(&b.host),
        Some("status") => a.disabled.cmp(&b.disabled),
        Some("driver") => a.driver.cmp(&b.driver),
        Some("binary") => a.binary.cmp(&b.binary),
        Some("state") => (a.up, a.starting).cmp(&(b.up, b.starting)),
        Some("heartbeat") => a.updated_at.cmp(&b.updated_at),
        Some("lateness") => cmp_f(a.lateness_ms.last().copied(), b.lateness_ms.last().copied()),
        _ => a.error.cmp(&b.error),
    }
}

pub fn cmp_events(a: &EventView, b: &EventView, col: usize) -> Ordering {
    match EVENTS.get(col).map(|c| c.title) {
        Some("actor") => a.actor.cmp(&b.actor),
        Some("host") => a.host.cmp(&b.host),
        Some("kind") => a.kind.cmp(&b.kind),
        Some("target") => a.target_name.cmp(&b.target_name),
        Some("message") => a.message.cmp(&b.message),
        Some("ago") => b.at.cmp(&a.at),
        _ => a.at.cmp(&b.at).then(a.id.cmp(&b.id)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_are_found_by_name_or_unique_prefix() {
        assert_eq!(find(View::Jobs, "eta"), Some(4));
        assert_eq!(find(View::Jobs, "by"), Some(6));
        assert_eq!(find(View::Jobs, "TARGET"), Some(0));
        assert_eq!(find(View::Jobs, "ta"), Some(0));
        // "s": state, started: ambiguous.
        assert_eq!(find(View::Jobs, "s"), None);
        assert_eq!(find(View::Overview, "name"), None);
    }

    #[test]
    fn the_config_names_columns_or_says_which_exist() {
        let mut c = std::collections::BTreeMap::new();
        c.insert(
            "volumes".to_string(),
            vec!["name".to_string(), "status".to_string()],
        );
        let got = chosen(&c).expect("valid");
        assert_eq!(got["volumes"], vec![0, 2]);
        c.insert("jobs".to_string(), vec!["nmae".to_string()]);
        let e = chosen(&c).expect_err("typo");
        assert!(
            e.contains("jobs") && e.contains("nmae") && e.contains("target"),
            "{e}"
        );
        let mut c = std::collections::BTreeMap::new();
        c.insert("logs".to_string(), vec!["x".to_string()]);
        assert!(chosen(&c).expect_err("no table").contains("no such table"));
    }
}
