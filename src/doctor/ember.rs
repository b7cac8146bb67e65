//! Checks of the installation as a whole: the config, the database, the hosts sharing it
//! (with their clock skew) and the job queue.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use crate::db::services::is_up;
use crate::db::{JobState, now_ms};
use crate::service::takeover::waiting_for;
use crate::service::units::human_bytes;

use super::{Finding, Run, Sink};

/// Failed jobs younger than this are listed.
const RECENT: Duration = Duration::from_secs(24 * 3600);

pub async fn run(t: &Run, sink: &Sink) {
    config(t, sink);
    database(t, sink).await;
    role(t, sink).await;
    hosts(t, sink).await;
    jobs(t, sink).await;
    metrics(t, sink);
    backup(t, sink).await;
}

/// The backup target: the directory writable, or the rbd pool reachable as its user.
async fn backup(t: &Run, sink: &Sink) {
    let started = Instant::now();
    let cfg = t.target.config.backup.clone();
    let limit = cfg
        .ceph
        .as_ref()
        .map_or(Duration::from_secs(10), |c| c.connect_timeout)
        + super::PROBE_SLACK;
    let checked = crate::service::pool::operator_call(limit, move || {
        crate::backup::open(&cfg)
            .map_err(|e| {
                (
                    e.to_string(),
                    "set backup_posix_path to a directory ember may write".to_string(),
                )
            })
            .and_then(|target| target.check())
    })
    .await;
    let f = match checked {
        Ok(Ok(summary)) => Finding::ok(summary),
        Ok(Err((cause, fix))) => Finding::fail(cause).fix(fix),
        Err(e) => Finding::fail(format!("the backup target did not answer: {e}"))
            .fix("start the monitors of the backup cluster, or fix mon_host in backup_ceph_conf"),
    };
    sink.report(6, "backup", started, f);
}

/// `metrics_listen`: served to this host only, or to the network without authentication.
fn metrics(t: &Run, sink: &Sink) {
    let started = Instant::now();
    let f = match t.target.config.metrics_listen {
        None => Finding::ok("no Prometheus endpoint (metrics_listen is not set)"),
        Some(a) if a.ip().is_loopback() => {
            Finding::ok(format!("Prometheus metrics on http://{a}/metrics (this host only)"))
        }
        Some(a) => Finding::warn(format!(
            "metrics_listen = {a}: the metrics are served to the network, without authentication"
        ))
        .fix("listen on 127.0.0.1 and let the Prometheus server scrape through a proxy or an SSH tunnel, or fence the port off"),
    };
    sink.report(5, "metrics", started, f);
}

fn config(t: &Run, sink: &Sink) {
    let started = Instant::now();
    let c = &t.target.config;
    let file = c
        .file
        .as_ref()
        .map_or("built-in defaults".to_string(), |p| p.display().to_string());
    let mut f = if let Some(b) = c.broken.first() {
        let mut f = Finding::fail(format!("backend {} cannot start: {}", b.name, b.reason))
            .fix("correct the section named, then `ember config check`");
        for b in &c.broken[1..] {
            f = f.evidence(format!("also broken: {}: {}", b.name, b.reason));
        }
        f
    } else {
        Finding::ok(format!(
            "{file}: {} backend(s): {}",
            c.backends.len(),
            c.backends
                .iter()
                .map(|b| format!("{} ({})", b.name, b.driver_name()))
                .collect::<Vec<_>>()
                .join(", ")
        ))
    };
    for n in &c.notes {
        f = f.evidence(n.clone());
    }
    sink.report(0, "config", started, f);
}

async fn database(t: &Run, sink: &Sink) {
    let started = Instant::now();
    let db = match &t.target.db {
        Ok(db) => db,
        Err(e) => {
            sink.report(
                1,
                "database",
                started,
                Finding::fail(format!("cannot open the database: {e}"))
                    .fix("check database_url (or --database-url), and that the server or file is reachable"),
            );
            return;
        }
    };
    let work = async {
        let (applied, known, failed) = db.schema_status().await?;
        let size = db.size_bytes().await?;
        Ok::<_, crate::db::DbError>((applied, known, failed, size))
    };
    let (applied, known, failed, size) =
        match tokio::time::timeout(crate::db::BUSY_TIMEOUT * 2, work).await {
            Err(_) => {
                sink.report(
                    1,
                    "database",
                    started,
                    Finding::fail(format!(
                        "{}: no answer within {} s",
                        db.display_url,
                        (crate::db::BUSY_TIMEOUT * 2).as_secs()
                    ))
                    .fix("the database is locked or overloaded: look for a stuck writer"),
                );
                return;
            }
            Ok(Err(e)) => {
                sink.report(
                    1,
                    "database",
                    started,
                    Finding::fail(format!("{}: {e}", db.display_url)),
                );
                return;
            }
            Ok(Ok(v)) => v,
        };
    let mut f = if !failed.is_empty() {
        Finding::fail(format!("failed migrations: {}", failed.join(", ")))
            .fix("restore from backup, or repair the schema by hand; then restart ember")
    } else if applied < known {
        Finding::fail(format!("schema at {applied} of {known} migrations"))
            .fix("start ember once (it migrates at start) with write access to the database")
    } else if applied > known {
        Finding::warn(format!(
            "schema has {applied} migrations, this ember knows {known}: a newer ember wrote it"
        ))
        .fix("upgrade this host's ember to the version the others run")
    } else {
        Finding::ok(format!(
            "{}: reachable, schema current ({applied} migrations), {}",
            db.display_url,
            human_bytes(size as i64)
        ))
    };
    if let Some(path) = db.sqlite_file() {
        use std::os::unix::fs::PermissionsExt;
        match std::fs::metadata(&path) {
            Ok(m) => {
                let mode = m.permissions().mode() & 0o777;
                f = f.evidence(format!("{} mode {mode:o}", path.display()));
                use std::os::unix::fs::MetadataExt;
                let me = nix::unistd::getuid().as_raw();
                if m.uid() != me && f.status == super::Status::Ok {
                    f = Finding::warn(format!(
                        "{} belongs to uid {}, not to the user ember runs as (uid {me})",
                        path.display(),
                        m.uid()
                    ))
                    .fix(format!("chown {me} {}", path.display()));
                } else if mode & 0o077 != 0 && f.status == super::Status::Ok {
                    f = Finding::warn(format!(
                        "{} is readable by other users (mode {mode:o}); it names hosts and users",
                        path.display()
                    ))
                    .fix(format!("chmod 600 {}", path.display()));
                }
            }
            Err(e) => f = f.evidence(format!("{}: {e}", path.display())),
        }
    }
    sink.report(1, "database", started, f);
}

/// The login this process connected as and whether its grants fit what ember does on this
/// host: a host with backends runs volume services (`ember serve`, or the console's worker),
/// which need `ember_service`; a read-only ember needs only `ember_viewer`.
async fn role(t: &Run, sink: &Sink) {
    let started = Instant::now();
    let Ok(db) = &t.target.db else {
        return; // the database check says why
    };
    let cfg = &t.target.config;
    if db.engine == crate::db::Engine::Sqlite {
        let f = Finding::ok("SQLite: single-user; the file's mode keeps other users out");
        sink.report(
            4,
            "role",
            started,
            match cfg.data_dir.metadata() {
                Ok(m) if std::os::unix::fs::PermissionsExt::mode(&m.permissions()) & 0o077 != 0 => {
                    Finding::warn(format!(
                        "data dir {} is open to other users (mode {:o})",
                        cfg.data_dir.display(),
                        std::os::unix::fs::PermissionsExt::mode(&m.permissions()) & 0o777
                    ))
                    .fix(format!("chmod 700 {}", cfg.data_dir.display()))
                }
                _ => f,
            },
        );
        return;
    }
    let access = match db.access().await {
        Ok(a) => a,
        Err(e) => {
            sink.report(
                4,
                "role",
                started,
                Finding::warn(format!("cannot read the role's grants: {e}")),
            );
            return;
        }
    };
    let may = match (access.can_serve, access.can_change) {
        (true, _) => "may read, enqueue and cancel jobs, and run volume services",
        (false, true) => "may read, enqueue and cancel jobs; may not run volume services",
        (false, false) => "may only read",
    };
    let runs_services = !cfg.read_only && !cfg.backends.is_empty();
    let f = if runs_services && !access.can_serve {
        Finding::warn(format!(
            "connected as {}: {may}, but this host's config runs volume services (ember serve, the console's worker)",
            access.describe()
        ))
        .fix(format!(
            "GRANT {} TO {} (or use a login that has it; `ember db roles` prints the roles)",
            crate::db::roles::SERVICE,
            access.user
        ))
    } else {
        Finding::ok(format!("connected as {}: {may}", access.describe()))
    };
    sink.report(4, "role", started, f);
}

/// A host's clock this far from the database's is a finding. Ember itself judges every age by
/// the database's clock, but cephx tickets, logs and file times on that host use its own.
const SKEW_WARN_MS: i64 = 1000;

/// Hosts sharing the database, and how far each one's clock is from the database's (each
/// service records it with every heartbeat; this process measured its own at connect).
async fn hosts(t: &Run, sink: &Sink) {
    let started = Instant::now();
    let Some(rows) = t.services(sink, 2, "hosts", started) else {
        return;
    };
    let now = now_ms();
    let down_ms = t.target.config.service_down_time.as_millis() as i64;
    // Per host: its newest heartbeat (None: never), whether any service is live, and the
    // clock skew its newest heartbeat recorded.
    let mut by_host: BTreeMap<String, (Option<i64>, bool, Option<i64>)> = BTreeMap::new();
    for r in rows {
        let host = r.host.split('@').next().unwrap_or(&r.host).to_string();
        let live = is_up(r, now, down_ms);
        let e = by_host.entry(host).or_insert((None, false, None));
        if r.updated_at >= e.0 {
            e.2 = r.clock_skew_ms.or(e.2);
        }
        e.0 = e.0.max(r.updated_at);
        e.1 |= live;
    }
    let me = &t.target.config.host;
    let mine = crate::db::clock::skew_ms();
    by_host.entry(me.clone()).or_insert((None, false, None)).2 = Some(mine);
    let mut skewed = vec![];
    let mut lines = vec![];
    for (host, (last, live, skew)) in &by_host {
        let tag = if host == me { " (this host)" } else { "" };
        let skew_text = skew.map_or(String::new(), |s| format!(", clock {}", describe_skew(s)));
        match last {
            None => lines.push(format!("{host}{tag}: never heartbeated{skew_text}")),
            Some(last) => lines.push(format!(
                "{host}{tag}: {}, last heartbeat {:.1} s ago{skew_text}",
                if *live { "live" } else { "down" },
                (now - last) as f64 / 1000.0,
            )),
        }
        if let Some(s) = skew.filter(|s| s.abs() > SKEW_WARN_MS) {
            skewed.push(format!("{host}'s clock is {}", describe_skew(s)));
        }
    }
    let others = by_host.keys().filter(|h| *h != me).count();
    let mut f = if !skewed.is_empty() {
        Finding::warn(skewed.join("; ")).fix(
            "sync the clocks (chronyc tracking; timedatectl): ember judges ages by the \
             database's clock, but cephx tickets, logs and file times on a host use its own",
        )
    } else {
        Finding::ok(format!(
            "{} host(s) share this database ({others} other than {me}); clocks within {} s of the database's",
            by_host.len(),
            SKEW_WARN_MS / 1000
        ))
    };
    f.evidence = lines;
    sink.report(2, "hosts", started, f);
}

/// `120.0 s ahead of the database's`, `0.3 s behind the database's`.
fn describe_skew(ms: i64) -> String {
    format!(
        "{:.1} s {} the database's",
        ms.unsigned_abs() as f64 / 1000.0,
        if ms >= 0 { "ahead of" } else { "behind" }
    )
}

async fn jobs(t: &Run, sink: &Sink) {
    let started = Instant::now();
    let (Some(services), Ok(db)) = (t.services(sink, 3, "jobs", started), &t.target.db) else {
        return;
    };
    let jobs = match db.list_jobs(None, 5000).await {
        Ok(v) => v,
        Err(e) => {
            sink.report(
                3,
                "jobs",
                started,
                Finding::fail(format!("cannot read jobs: {e}")),
            );
            return;
        }
    };
    // Ages by the database's clock, as the services judge each other.
    let now = db.clock_ms().await.unwrap_or_else(|_| now_ms());
    let down_ms = t.target.config.service_down_time.as_millis() as i64;
    let stuck_ms = t.target.stuck_after.as_millis() as i64;
    let mut fails = vec![];
    let mut warns = vec![];
    let mut stuck = 0;
    for j in jobs.iter().filter(|j| j.state.is_active()) {
        let short = crate::service::units::short_id(&j.id);
        if let Some(why) = waiting_for(j, services, now, down_ms) {
            fails.push(format!(
                "job {short} ({} of {}, {}): {why}",
                j.kind, j.target_id, j.state
            ));
        } else if j.state == JobState::Running && now - j.updated_at > stuck_ms {
            stuck += 1;
            warns.push(format!(
                "job {short} ({}) made no progress for {} min ({} of {} bytes)",
                j.kind,
                (now - j.updated_at) / 60_000,
                j.bytes_done,
                j.bytes_total
            ));
        }
    }
    let failed: Vec<_> = jobs
        .iter()
        .filter(|j| {
            j.state == JobState::Failed
                && j.finished_at
                    .is_some_and(|f| now - f < RECENT.as_millis() as i64)
        })
        .collect();
    for j in failed.iter().take(5) {
        warns.push(format!(
            "job {} ({}) failed: {}",
            crate::service::units::short_id(&j.id),
            j.kind,
            j.error.as_deref().unwrap_or("?")
        ));
    }
    let queued = jobs.iter().filter(|j| j.state == JobState::Queued).count();
    let running = jobs.iter().filter(|j| j.state == JobState::Running).count();
    let mut f = if let Some(first) = fails.first() {
        Finding::fail(first.clone()).fix(
            "each job above says what it waits for: restart ember on that host (it requeues its own jobs), \
             or `ember service remove HOST` once it is gone for good",
        )
    } else if !warns.is_empty() {
        let summary = if stuck > 0 {
            format!("{stuck} job(s) stuck, {} failed in 24 h", failed.len())
        } else {
            format!("{} job(s) failed in the last 24 h", failed.len())
        };
        Finding::warn(summary)
            .fix("`ember job show ID` for details; cancel stuck jobs with `ember job cancel ID`")
    } else {
        Finding::ok(format!(
            "{running} running, {queued} queued, none stuck or failed in 24 h"
        ))
    };
    f.evidence = fails.into_iter().chain(warns).collect();
    sink.report(3, "jobs", started, f);
}
