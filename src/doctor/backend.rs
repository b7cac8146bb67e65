//! Per-backend checks: its storage (ceph conf, monitors, keyring, auth and pool, cluster
//! health; or the file driver's directory) and its services' heartbeats.

use std::path::Path;
use std::time::{Duration, Instant};

use crate::config::{BackendConfig, DriverConfig, RbdConfig};
use crate::db::now_ms;
use crate::db::services::{Liveness, liveness, parse_lateness};
use crate::driver::DriverError;
use crate::service::pool::operator_call;

/// Checks of local files (a backend's directory, the keyrings) are given up after this long.
const LOCAL_LIMIT: std::time::Duration = std::time::Duration::from_secs(20);
use crate::driver::rbd::RbdDriver;
use crate::driver::rbd::cephconf::{self, CephConf, MonAddr};

use super::{Finding, PROBE_SLACK, Run, Sink, ceph};

/// How long a monitor port may take to accept a TCP connection.
const TCP_TIMEOUT: Duration = Duration::from_secs(2);

pub async fn run(t: &Run, b: &BackendConfig, sink: &Sink) {
    let storage = async {
        match &b.driver {
            DriverConfig::Rbd(r) => rbd(t, r, b, sink).await,
            DriverConfig::File { dir } => {
                let started = Instant::now();
                let dir = dir.clone();
                // A directory on a dead network mount hangs: the check is given up.
                let f = operator_call(LOCAL_LIMIT, move || file_dir(&dir))
                    .await
                    .unwrap_or_else(|e| Finding::fail(format!("checking the directory: {e}")));
                sink.report(0, "storage", started, f);
            }
            DriverConfig::Fake(_) => sink.report(
                0,
                "storage",
                Instant::now(),
                Finding::ok("fake driver (fault injection): nothing to check"),
            ),
        }
    };
    tokio::join!(
        storage,
        service(t, b, sink),
        super::attachments::check(t, b, sink, 8)
    );
}

fn file_dir(dir: &Path) -> Finding {
    if !dir.is_dir() {
        return Finding::warn(format!("{} does not exist yet", dir.display())).fix(
            "it is created at the first start of the service; check file_dir if it should exist",
        );
    }
    let probe = dir.join(format!(".ember-doctor-{}", std::process::id()));
    if let Err(e) = std::fs::write(&probe, b"x") {
        return Finding::fail(format!("{} is not writable: {e}", dir.display())).fix(format!(
            "chown/chmod {} for the user ember runs as",
            dir.display()
        ));
    }
    let _ = std::fs::remove_file(&probe);
    match nix::sys::statvfs::statvfs(dir) {
        Ok(s) => {
            let total = s.blocks() * s.fragment_size();
            let free = s.blocks_available() * s.fragment_size();
            let pct = if total == 0 {
                0.0
            } else {
                free as f64 * 100.0 / total as f64
            };
            let line = format!(
                "{}: writable, {} free of {} ({pct:.0}%)",
                dir.display(),
                crate::service::units::human_bytes(free as i64),
                crate::service::units::human_bytes(total as i64)
            );
            if pct < 10.0 {
                Finding::warn(line).fix("free space on the filesystem, or move file_dir")
            } else {
                Finding::ok(line)
            }
        }
        Err(e) => Finding::warn(format!("{}: statvfs failed: {e}", dir.display())),
    }
}

/// The client's right to use the OSD blocklist is checked too: a cluster's peers fence each
/// other with it, and breaking a stale lock or forcing a delete under a live client needs it.
async fn rbd(t: &Run, r: &RbdConfig, b: &BackendConfig, sink: &Sink) {
    let clustered = t.target.config.cluster.is_some();
    let user = r.user.clone().unwrap_or_else(|| "admin".into());
    // 1. The conf.
    let started = Instant::now();
    let conf: Option<CephConf> =
        match cephconf::resolve_conf(&r.cluster_name, r.ceph_conf.as_deref()) {
            Err(tried) => {
                let list = tried
                    .iter()
                    .map(|p| p.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ");
                sink.report(
                    0,
                    "ceph_conf",
                    started,
                    Finding::fail(format!("no ceph conf found (looked in {list})"))
                        .fix("set rbd_ceph_conf to the cluster's ceph.conf"),
                );
                None
            }
            Ok(path) => match CephConf::load(&path) {
                Ok(c) => {
                    let mons = c.monitors();
                    let f = if mons.is_empty() {
                        Finding::fail(format!("{} names no monitor (mon_host)", path.display()))
                            .fix(format!(
                                "add `mon host = ...` under [global] in {}",
                                path.display()
                            ))
                    } else {
                        Finding::ok(format!(
                            "{}: {} monitor address(es)",
                            path.display(),
                            mons.len()
                        ))
                    };
                    sink.report(0, "ceph_conf", started, f);
                    Some(c)
                }
                Err(e) => {
                    let fix = if e.kind() == std::io::ErrorKind::PermissionDenied {
                        format!(
                            "make {} readable by the user ember runs as (uid {})",
                            path.display(),
                            nix::unistd::getuid()
                        )
                    } else {
                        "set rbd_ceph_conf to the cluster's ceph.conf".to_string()
                    };
                    sink.report(
                        0,
                        "ceph_conf",
                        started,
                        Finding::fail(format!("cannot read {}: {e}", path.display())).fix(fix),
                    );
                    None
                }
            },
        };

    // 2. Monitors over TCP, and 3. the keyring, side by side.
    let mons = conf.as_ref().map(CephConf::monitors).unwrap_or_default();
    let (reachable, keyring_ok) = tokio::join!(monitors(&mons, conf.is_some(), sink), async {
        let started = Instant::now();
        let (cluster, user, conf, keyring) = (
            r.cluster_name.clone(),
            user.clone(),
            conf.clone(),
            r.keyring_conf.clone(),
        );
        let f = operator_call(LOCAL_LIMIT, move || {
            keyring_finding(&cluster, &user, conf.as_ref(), keyring.as_deref())
        })
        .await
        .unwrap_or_else(|e| Finding::fail(format!("reading the keyrings: {e}")));
        let ok = f.status != super::Status::Fail;
        sink.report(2, "keyring", started, f);
        ok
    });

    // 4. Auth, pool and caps, and 5. health: connect as the service does.
    let started = Instant::now();
    if conf.is_none() || !reachable || !keyring_ok {
        let why = if conf.is_none() {
            "no readable ceph conf"
        } else if !reachable {
            "no monitor reachable"
        } else {
            "no usable keyring (see above)"
        };
        sink.report(
            3,
            "auth_pool",
            started,
            Finding::skip(format!("not tried: {why}")),
        );
        sink.report(
            4,
            "health",
            started,
            Finding::skip(format!("not tried: {why}")),
        );
        return;
    }
    // A diagnosis tries once: an unreachable cluster is named at once, not after retries.
    let once = RbdConfig {
        connection_retries: 0,
        ..r.clone()
    };
    let driver = std::sync::Arc::new(RbdDriver::new(&b.name, once, 0));
    let limit = r.connect_timeout + PROBE_SLACK;
    let d = driver.clone();
    // The monitors first: health answers even while the OSDs do not.
    let health = ceph::blocking(&b.name, limit, move || d.health()).await;
    let h = match health {
        Err(e) => {
            let (cause, fix) = match &e {
                DriverError::Setup { cause, fix, .. } => (cause.clone(), fix.clone()),
                e => (e.detail(), fix_for(e, r)),
            };
            sink.report(3, "auth_pool", started, Finding::fail(cause).fix(fix));
            sink.report(
                4,
                "health",
                started,
                Finding::skip("not tried: cannot connect"),
            );
            return;
        }
        Ok(h) => h,
    };
    ceph::health_findings(t, &h, r, started, sink);
    // Then the pool through the OSDs, with the client's caps on it.
    let started = Instant::now();
    let d = driver.clone();
    let f = match ceph::blocking(&b.name, limit, move || d.count_images()).await {
        Ok(n) => Finding::ok(format!(
            "connected as client.{user}; pool {} holds {n} image(s)",
            r.pool
        ))
        .evidence(format!("took {} ms", started.elapsed().as_millis())),
        Err(e) => {
            let fix = match &e {
                DriverError::Timeout { .. } => "the OSDs do not answer: see the cluster's health checks (ceph health detail; ceph osd tree)".to_string(),
                e => fix_for(e, r),
            };
            Finding::fail(format!(
                "connected as client.{user}, but listing pool {}: {}",
                r.pool,
                e.detail()
            ))
            .fix(fix)
        }
    };
    sink.report(3, "auth_pool", started, f);
    ceph::fencing(driver, &user, r, clustered, limit, sink).await;
}

/// The fix for a connect/pool failure, by its kind.
fn fix_for(e: &DriverError, r: &RbdConfig) -> String {
    match e {
        DriverError::NoPool { pool, .. } => format!(
            "create the pool (ceph osd pool create {pool}; rbd pool init {pool}) or fix rbd_pool"
        ),
        DriverError::Permission { .. } => format!(
            "ceph auth caps client.{} mon 'profile rbd' osd 'profile rbd pool={}'",
            r.user.as_deref().unwrap_or("admin"),
            r.pool
        ),
        DriverError::Timeout { op: "connect", .. } => {
            "start the monitors, or fix mon_host in the ceph conf".into()
        }
        _ => "see the evidence above; `ember service list` shows the backend's own error".into(),
    }
}

fn keyring_finding(
    cluster: &str,
    user: &str,
    conf: Option<&CephConf>,
    keyring: Option<&Path>,
) -> Finding {
    let s = cephconf::find_keyring(cluster, user, conf, keyring);
    let mut f = match (s.problem(), &s.found) {
        (Some((cause, fix)), _) => Finding::fail(cause).fix(fix),
        (None, Some(p)) if s.world_readable => Finding::warn(format!(
            "{} holds {} but is readable by every user",
            p.display(),
            s.entity
        ))
        .fix(format!("chmod 600 {}", p.display())),
        (None, Some(p)) => Finding::ok(format!("{} holds {}", p.display(), s.entity)),
        (None, None) => Finding::fail(format!("no keyring for {}", s.entity)),
    };
    f = f.evidence(format!("keyring setting from {}", s.source));
    for (p, ents) in &s.nearby {
        f = f.evidence(format!("nearby: {} holds {}", p.display(), ents.join(", ")));
    }
    f
}

/// TCP connects to every monitor address at once; true when at least one accepts.
async fn monitors(mons: &[MonAddr], have_conf: bool, sink: &Sink) -> bool {
    let started = Instant::now();
    if !have_conf {
        sink.report(
            1,
            "monitors",
            started,
            Finding::skip("not tried: no readable ceph conf"),
        );
        return false;
    }
    if mons.is_empty() {
        sink.report(
            1,
            "monitors",
            started,
            Finding::skip("not tried: the conf names no monitor"),
        );
        return false;
    }
    let mut set = tokio::task::JoinSet::new();
    for (i, m) in mons.iter().cloned().enumerate() {
        set.spawn(async move {
            let t = Instant::now();
            let r = tokio::time::timeout(
                TCP_TIMEOUT,
                tokio::net::TcpStream::connect((m.host.as_str(), m.port)),
            )
            .await;
            let line = match r {
                Ok(Ok(_)) => Ok(format!(
                    "{m} accepts ({:.1} ms)",
                    t.elapsed().as_secs_f64() * 1000.0
                )),
                Ok(Err(e)) => Err(format!("{m}: {e}")),
                Err(_) => Err(format!("{m}: no answer within {} s", TCP_TIMEOUT.as_secs())),
            };
            (i, line)
        });
    }
    let mut results: Vec<(usize, Result<String, String>)> = set.join_all().await;
    results.sort_by_key(|r| r.0);
    let results: Vec<Result<String, String>> = results.into_iter().map(|r| r.1).collect();
    let up = results.iter().filter(|r| r.is_ok()).count();
    let mut f = if up == 0 {
        Finding::fail(format!(
            "no monitor reachable ({} address(es) tried)",
            results.len()
        ))
        .fix("start the monitors, or fix mon_host in the ceph conf (the ports must match)")
    } else if up < results.len() {
        Finding::warn(format!(
            "{up} of {} monitor addresses reachable",
            results.len()
        ))
        .fix("a monitor is down or firewalled: check it (ceph mon stat)")
    } else {
        Finding::ok(format!(
            "{up} of {} monitor addresses reachable",
            results.len()
        ))
    };
    for r in results {
        f = f.evidence(r.unwrap_or_else(|e| e));
    }
    sink.report(1, "monitors", started, f);
    up > 0
}

/// The backend's services (on every host): heartbeat age against service_down_time, error,
/// and recent lateness (a service that heartbeats late is starving).
async fn service(t: &Run, b: &BackendConfig, sink: &Sink) {
    let started = Instant::now();
    let Some(rows) = t.services(sink, 6, "service", started) else {
        return;
    };
    let down_ms = t.target.config.service_down_time.as_millis() as i64;
    let now = now_ms();
    let mine: Vec<_> = rows.iter().filter(|r| r.backend == b.name).collect();
    if mine.is_empty() {
        sink.report(
            6,
            "service",
            started,
            Finding::warn("no service has ever run for this backend")
                .fix("start ember (the console runs the services) or `ember serve`"),
        );
        return;
    }
    let mut worst = Finding::ok(String::new());
    let mut lines = vec![];
    let report_ms = t.target.config.report_interval.as_millis() as f64;
    for r in &mine {
        let age = r.updated_at.map(|u| (now - u) as f64 / 1000.0);
        let late = parse_lateness(&r.lateness_ms);
        let p99 = crate::service::lateness::summarize(&late).map(|s| s.p99);
        let age_s = age.map_or("never".to_string(), |a| format!("{a:.0} s ago"));
        let f = if let Some(err) = &r.error {
            let (cause, fix) = err
                .split_once("; fix: ")
                .map_or((err.as_str(), None), |(c, f)| (c, Some(f)));
            let f = Finding::fail(format!("{}: backend failing: {cause}", r.host));
            match fix {
                Some(x) => f.fix(x),
                None => f.fix("see the auth/pool checks above, and the service log"),
            }
        } else if r.stopped_at.is_some() {
            Finding::warn(format!("{}: stopped cleanly", r.host))
                .fix("start ember (or `ember serve`) on that host")
        } else if liveness(r, now, down_ms) == Liveness::Starting {
            Finding::warn(format!(
                "{}: starting (first setup check running, started {})",
                r.host,
                r.started_at.map_or("?".into(), |s| format!(
                    "{:.0} s ago",
                    (now - s) as f64 / 1000.0
                ))
            ))
            .fix("wait; if it is still starting after service_down_time, read its log")
        } else if liveness(r, now, down_ms) != Liveness::Up {
            Finding::fail(format!(
                "{}: last heartbeat {age_s} (service_down_time {} s): the process is dead or hung",
                r.host,
                t.target.config.service_down_time.as_secs()
            ))
            .fix(format!(
                "check ember on {} (pid {}), and restart it",
                r.host.split('@').next().unwrap_or(""),
                r.pid.unwrap_or(0)
            ))
        } else if p99.is_some_and(|p| p > report_ms / 2.0) {
            Finding::warn(format!(
                "{}: heartbeats late (p99 {:.0} ms of a {} s interval): the process is starving",
                r.host,
                p99.unwrap_or(0.0),
                t.target.config.report_interval.as_secs()
            ))
            .fix("look for CPU starvation on that host (top); lower backend_native_threads_pool_size")
        } else {
            Finding::ok(format!("{}: up, last heartbeat {age_s}", r.host))
        };
        lines.push(format!(
            "{}: {} heartbeat {age_s}, lateness p99 {}",
            r.host,
            f.status.label(),
            p99.map_or("-".into(), |p| format!("{p:.1} ms"))
        ));
        if f.status > worst.status || worst.summary.is_empty() {
            worst = f;
        }
    }
    if mine.len() > 1 && worst.status == super::Status::Ok {
        worst.summary = format!("{} services up", mine.len());
    }
    worst.evidence = lines;
    sink.report(6, "service", started, worst);
}
