//! Prometheus metrics (`metrics_listen`): what pages an operator before a service is declared
//! dead. The heartbeat's lateness is the first sign of a starved reactor, Cinder's failure;
//! it is measured here on every beat anyway, and exported as a histogram.
//!
//! Two kinds of figures. Events this process sees as they happen (heartbeat lateness, the
//! database's round trip, storage call latency, jobs ending, bytes copied, takeovers and
//! fencing) are counted into the process's registry where they happen. The cluster's state
//! (services up and their last heartbeat's age, capacity, unfinished jobs) is read from the
//! database at each scrape, so every host's endpoint tells the same story. Labels are bounded:
//! backend, service host, job kind, state and operation; never a volume or job id.
//!
//! One registry per process, like the tracing subscriber: the places that count are deep in
//! the service and need no handle passed down to them.

use std::net::SocketAddr;
use std::sync::LazyLock;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Registry, Unit};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::db::Db;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ServiceLabels {
    pub backend: String,
    /// `host@backend`.
    pub service: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OpLabels {
    pub backend: String,
    pub op: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabels {
    pub kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindStateLabels {
    pub kind: String,
    pub state: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FindingLabels {
    /// A backend, or `ember` for the installation.
    pub scope: String,
    pub severity: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct BackendLabels {
    pub backend: String,
}

type FloatGauge = Gauge<f64, AtomicU64>;

/// The process's figures; see the module's doc.
pub struct Metrics {
    pub heartbeat_lateness: Family<ServiceLabels, Histogram, fn() -> Histogram>,
    pub database_round_trip: Family<KindLabels, Histogram, fn() -> Histogram>,
    pub storage_call: Family<OpLabels, Histogram, fn() -> Histogram>,
    pub jobs_ended: Family<KindStateLabels, Counter>,
    pub job_duration: Family<KindLabels, Histogram, fn() -> Histogram>,
    pub job_bytes: Family<KindLabels, Counter>,
    pub takeovers: Family<BackendLabels, Counter>,
    pub fenced_clients: Family<BackendLabels, Counter>,
    // Read from the database at each scrape.
    service_up: Family<ServiceLabels, Gauge>,
    heartbeat_age: Family<ServiceLabels, FloatGauge>,
    capacity_total: Family<BackendLabels, Gauge>,
    capacity_free: Family<BackendLabels, Gauge>,
    provisioned: Family<BackendLabels, Gauge>,
    jobs_unfinished: Family<KindStateLabels, Gauge>,
    doctor_findings: Family<FindingLabels, Gauge>,
    registry: Registry,
}

/// Latency buckets from 0.5 ms to about 16 s (doubling): a heartbeat is late at 100 ms,
/// a storage call hangs at seconds.
fn latency() -> Histogram {
    Histogram::new(exponential_buckets(0.0005, 2.0, 16))
}

/// Job durations from 0.1 s to about 9 h.
fn job_time() -> Histogram {
    Histogram::new(exponential_buckets(0.1, 3.0, 12))
}

impl Metrics {
    fn new() -> Metrics {
        let mut r = Registry::with_prefix("ember");
        let heartbeat_lateness = Family::new_with_constructor(latency as fn() -> Histogram);
        r.register_with_unit(
            "heartbeat_lateness",
            "How long after its scheduled time each heartbeat of this process fired (a starved reactor shows here first)",
            Unit::Seconds,
            heartbeat_lateness.clone(),
        );
        let database_round_trip = Family::new_with_constructor(latency as fn() -> Histogram);
        r.register_with_unit(
            "database_round_trip",
            "Time of this process's database writes, by what was written",
            Unit::Seconds,
            database_round_trip.clone(),
        );
        let storage_call = Family::new_with_constructor(latency as fn() -> Histogram);
        r.register_with_unit(
            "storage_call_duration",
            "Time of this process's blocking storage calls, by backend and operation (job kind for a job's calls)",
            Unit::Seconds,
            storage_call.clone(),
        );
        let jobs_ended = Family::default();
        r.register(
            "jobs_ended",
            "Jobs this process ran to an end, by kind and how they ended",
            jobs_ended.clone(),
        );
        let job_duration = Family::new_with_constructor(job_time as fn() -> Histogram);
        r.register_with_unit(
            "job_duration",
            "How long the jobs this process ran to an end took, by kind",
            Unit::Seconds,
            job_duration.clone(),
        );
        let job_bytes = Family::default();
        r.register_with_unit(
            "job_copied",
            "Bytes the jobs this process runs moved (copies, flattens, migrations, backups, their checks), by kind, counted as they move",
            Unit::Bytes,
            job_bytes.clone(),
        );
        let takeovers = Family::default();
        r.register(
            "takeovers",
            "Jobs this process took over from a service that was down",
            takeovers.clone(),
        );
        let fenced_clients = Family::default();
        r.register(
            "fenced_clients",
            "Storage clients this process fenced (blocklisted) before taking their work over or forcing past them",
            fenced_clients.clone(),
        );
        let service_up = Family::default();
        r.register(
            "service_up",
            "1 while the service is up: its heartbeat younger than service_down_time (every service in the database)",
            service_up.clone(),
        );
        let heartbeat_age = Family::default();
        r.register_with_unit(
            "service_heartbeat_age",
            "Age of the service's last heartbeat, by the database's clock",
            Unit::Seconds,
            heartbeat_age.clone(),
        );
        let capacity_total = Family::default();
        r.register_with_unit(
            "backend_capacity_total",
            "The backend's capacity as its newest service last reported it",
            Unit::Bytes,
            capacity_total.clone(),
        );
        let capacity_free = Family::default();
        r.register_with_unit(
            "backend_capacity_free",
            "The backend's free capacity as its newest service last reported it",
            Unit::Bytes,
            capacity_free.clone(),
        );
        let provisioned = Family::default();
        r.register_with_unit(
            "backend_provisioned",
            "What the backend's volumes were promised (the sum of their sizes)",
            Unit::Bytes,
            provisioned.clone(),
        );
        let jobs_unfinished = Family::default();
        r.register(
            "jobs",
            "Unfinished jobs in the database, by kind and state",
            jobs_unfinished.clone(),
        );
        let doctor_findings = Family::default();
        r.register(
            "doctor_findings",
            "The doctor's checks by scope and result (ok, info, skip, warn, fail), from its last run by this process",
            doctor_findings.clone(),
        );
        Metrics {
            doctor_findings,
            heartbeat_lateness,
            database_round_trip,
            storage_call,
            jobs_ended,
            job_duration,
            job_bytes,
            takeovers,
            fenced_clients,
            service_up,
            heartbeat_age,
            capacity_total,
            capacity_free,
            provisioned,
            jobs_unfinished,
            registry: r,
        }
    }

    /// The bytes-moved counter of a job kind, for the job's progress to count into.
    pub fn job_copied(&self, kind: &str) -> Counter {
        self.job_bytes
            .get_or_create(&KindLabels {
                kind: kind.to_string(),
            })
            .clone()
    }

    /// Counts a job that ended: its kind, how it ended, and how long it ran.
    pub fn job_ended(&self, kind: &str, state: &str, took: Duration) {
        let labels = KindStateLabels {
            kind: kind.to_string(),
            state: state.to_string(),
        };
        self.jobs_ended.get_or_create(&labels).inc();
        let kind = KindLabels {
            kind: kind.to_string(),
        };
        self.job_duration
            .get_or_create(&kind)
            .observe(took.as_secs_f64());
    }

    pub fn storage_call(&self, backend: &str, op: &str, took: Duration) {
        self.storage_call
            .get_or_create(&OpLabels {
                backend: backend.to_string(),
                op: op.to_string(),
            })
            .observe(took.as_secs_f64());
    }

    pub fn backend_count(family: &Family<BackendLabels, Counter>, backend: &str) {
        family
            .get_or_create(&BackendLabels {
                backend: backend.to_string(),
            })
            .inc();
    }

    /// Sets the cluster-wide gauges from the database (what every host's endpoint reports
    /// alike).
    async fn read_cluster(&self, db: &Db, down_ms: i64) -> Result<(), crate::db::DbError> {
        let services = db.list_services().await?;
        let now = db.clock_ms().await?;
        let jobs = db.active_jobs().await?;
        for f in [&self.capacity_total, &self.capacity_free, &self.provisioned] {
            f.clear();
        }
        self.service_up.clear();
        self.heartbeat_age.clear();
        self.jobs_unfinished.clear();
        let mut newest: std::collections::HashMap<&str, &crate::db::ServiceRow> =
            Default::default();
        for s in &services {
            let labels = ServiceLabels {
                backend: s.backend.clone(),
                service: s.host.clone(),
            };
            let up =
                crate::db::services::liveness(s, now, down_ms) == crate::db::services::Liveness::Up;
            self.service_up.get_or_create(&labels).set(i64::from(up));
            if let Some(u) = s.updated_at {
                self.heartbeat_age
                    .get_or_create(&labels)
                    .set((now - u).max(0) as f64 / 1000.0);
            }
            if s.capacity_at.is_some()
                && newest
                    .get(s.backend.as_str())
                    .is_none_or(|n| n.capacity_at < s.capacity_at)
            {
                newest.insert(&s.backend, s);
            }
        }
        for (backend, s) in newest {
            let b = BackendLabels {
                backend: backend.to_string(),
            };
            for (family, value) in [
                (&self.capacity_total, s.capacity_total),
                (&self.capacity_free, s.capacity_free),
                (&self.provisioned, s.capacity_provisioned),
            ] {
                if let Some(v) = value {
                    family.get_or_create(&b).set(v);
                }
            }
        }
        for j in &jobs {
            self.jobs_unfinished
                .get_or_create(&KindStateLabels {
                    kind: j.kind.to_string(),
                    state: j.state.to_string(),
                })
                .inc();
        }
        Ok(())
    }

    /// The text a scrape returns: Prometheus' text format (0.0.4), which every scraper and
    /// `promtool check metrics` reads.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        prometheus_text(&out)
    }
}

/// The crate writes OpenMetrics, where a counter's family is named without `_total` and its
/// samples with it, plus `# UNIT` and `# EOF` lines. In Prometheus' text format a family's
/// name is its samples' name: counters' HELP and TYPE take the `_total`, UNIT and EOF go.
fn prometheus_text(openmetrics: &str) -> String {
    let counters: std::collections::HashSet<&str> = openmetrics
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE ")?.strip_suffix(" counter"))
        .collect();
    let mut out = String::with_capacity(openmetrics.len());
    for line in openmetrics.lines() {
        if line.starts_with("# UNIT ") || line == "# EOF" {
            continue;
        }
        let meta = ["# HELP ", "# TYPE "]
            .into_iter()
            .find_map(|p| Some((p, line.strip_prefix(p)?)));
        match meta {
            Some((prefix, rest)) => {
                let (name, tail) = rest.split_once(' ').unwrap_or((rest, ""));
                let total = if counters.contains(name) {
                    "_total"
                } else {
                    ""
                };
                out.push_str(&format!("{prefix}{name}{total} {tail}"));
            }
            None => out.push_str(line),
        }
        out.push('\n');
    }
    out
}

static METRICS: LazyLock<Metrics> = LazyLock::new(Metrics::new);

/// The process's metrics.
pub fn get() -> &'static Metrics {
    &METRICS
}

/// Runs the doctor every `every` (its checks bounded by their own timeouts) and sets
/// `ember_doctor_findings` from each run: a FAIL pages without anyone running the doctor.
pub async fn doctor_loop(
    config: std::sync::Arc<crate::config::Config>,
    db: Db,
    every: Duration,
    cancel: CancellationToken,
) {
    use crate::doctor::{Status, Target};
    loop {
        let checks = crate::doctor::run_all(Target {
            config: config.clone(),
            db: Ok(db.clone()),
            backend: None,
            stuck_after: Duration::from_secs(crate::doctor::STUCK_AFTER_SECS),
        })
        .await;
        let m = get();
        m.doctor_findings.clear();
        let scopes: std::collections::BTreeSet<&str> =
            checks.iter().map(|c| c.scope.as_str()).collect();
        for scope in scopes {
            for s in [
                Status::Ok,
                Status::Info,
                Status::Skip,
                Status::Warn,
                Status::Fail,
            ] {
                let n = checks
                    .iter()
                    .filter(|c| c.scope == scope && c.status == s)
                    .count();
                m.doctor_findings
                    .get_or_create(&FindingLabels {
                        scope: scope.to_string(),
                        severity: s.label().to_lowercase(),
                    })
                    .set(n as i64);
            }
        }
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(every) => {}
        }
    }
}

/// Serves `GET /metrics` on `addr` until `cancel`. A scrape reads the cluster's state from the
/// database first (given up after 2 s: the process's own figures are served anyway).
pub async fn serve(
    addr: SocketAddr,
    db: Db,
    down_time: Duration,
    cancel: CancellationToken,
) -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    if !addr.ip().is_loopback() {
        warn!(
            "metrics_listen = {addr}: the metrics are served beyond this host, without authentication"
        );
    }
    info!("metrics on http://{addr}/metrics");
    serve_on(listener, db, down_time, cancel).await
}

/// [`serve`] on a socket already bound (the benchmark's, on a free port).
pub async fn serve_on(
    listener: tokio::net::TcpListener,
    db: Db,
    down_time: Duration,
    cancel: CancellationToken,
) -> std::io::Result<()> {
    let down_ms = down_time.as_millis() as i64;
    let app = axum::Router::new().route(
        "/metrics",
        axum::routing::get(move || {
            let db = db.clone();
            async move {
                let m = get();
                match tokio::time::timeout(Duration::from_secs(2), m.read_cluster(&db, down_ms))
                    .await
                {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => warn!("metrics: the cluster's state not read: {e}"),
                    Err(_) => warn!("metrics: the database did not answer within 2 s"),
                }
                (
                    [(
                        axum::http::header::CONTENT_TYPE,
                        "text/plain; version=0.0.4; charset=utf-8",
                    )],
                    m.encode(),
                )
            }
        }),
    );
    axum::serve(listener, app)
        .with_graceful_shutdown(async move { cancel.cancelled().await })
        .await
}
