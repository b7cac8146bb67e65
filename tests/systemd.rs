//! `ember serve` under systemd's notify protocol, spoken to a socket as systemd's own: READY
//! once every backend's first setup check is done (one backend's cluster not answering for its
//! whole connect timeout does not hold it back for ever, and READY says how many are up), the
//! watchdog fed about once per heartbeat, STOPPING at SIGTERM.
#![allow(clippy::unwrap_used)]

mod common;

use std::os::unix::net::UnixDatagram;
use std::time::{Duration, Instant};

use common::*;

#[test]
fn ready_after_every_setup_check_then_the_watchdog_and_stopping() {
    let dir = tempfile::tempdir().unwrap();
    let url = fresh_db(Engine::Sqlite, dir.path()).unwrap();
    let conf = write(
        dir.path(),
        "ceph.conf",
        "[global]\nmon host = 127.0.0.1:1\n",
    );
    let env = Env::new(
        dir.path(),
        &url,
        &format!(
            "[backends.file0]\nvolume_driver = \"file\"\n\
             [backends.rbd0]\nvolume_driver = \"rbd\"\nrbd_pool = \"volumes\"\n\
             rbd_ceph_conf = \"{}\"\nrados_connect_timeout = 3\nrados_connection_retries = 0\n",
            conf.display()
        ),
    );
    let socket_path = dir.path().join("notify.sock");
    let socket = UnixDatagram::bind(&socket_path).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let started = Instant::now();
    let serve = Serve::start_env(
        &env.config,
        &env.url,
        &env.dir,
        &[
            ("NOTIFY_SOCKET", socket_path.to_str().unwrap()),
            ("WATCHDOG_USEC", "5000000"),
        ],
    );
    let mut got: Vec<(Duration, String)> = vec![];
    let mut buf = [0u8; 512];
    while started.elapsed() < Duration::from_secs(30) {
        if let Ok(n) = socket.recv(&mut buf) {
            got.push((
                started.elapsed(),
                String::from_utf8_lossy(&buf[..n]).into_owned(),
            ));
        }
        let watchdogs = got.iter().filter(|(_, m)| m.contains("WATCHDOG=1")).count();
        if got.iter().any(|(_, m)| m.contains("READY=1")) && watchdogs >= 4 {
            break;
        }
    }
    eprintln!("notifications: {got:?}");
    let ready = got
        .iter()
        .find(|(_, m)| m.contains("READY=1"))
        .unwrap_or_else(|| panic!("no READY=1 in 30 s: {got:?}\n{}", serve.log_text()));
    assert!(
        ready.1.contains("STATUS=1 of 2 backends up"),
        "READY says the rbd backend is not up: {ready:?}"
    );
    // Not before rbd0's setup check ended (its connect timeout, 3 s), and not much later.
    assert!(
        ready.0 >= Duration::from_secs(2) && ready.0 < Duration::from_secs(20),
        "READY at {:?}",
        ready.0
    );
    let feeds: Vec<Duration> = got
        .iter()
        .filter(|(_, m)| m.contains("WATCHDOG=1"))
        .map(|(t, _)| *t)
        .collect();
    assert!(
        feeds.len() >= 4,
        "the watchdog is fed every heartbeat (1 s): {feeds:?}"
    );
    serve.signal("TERM");
    let mut stopping = false;
    let until = Instant::now() + Duration::from_secs(10);
    while Instant::now() < until && !stopping {
        if let Ok(n) = socket.recv(&mut buf) {
            stopping = String::from_utf8_lossy(&buf[..n]).contains("STOPPING=1");
        }
    }
    assert!(stopping, "STOPPING=1 at SIGTERM");
}

/// The shipped unit asks for what `ember serve` provides, with a watchdog the heartbeat feeds in
/// time at the default report_interval (10 s), and room for the drain at stop.
#[test]
fn the_shipped_unit_matches_what_serve_does() {
    let unit =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/config/ember.service"))
            .unwrap();
    let value = |key: &str| {
        unit.lines()
            .find_map(|l| l.strip_prefix(&format!("{key}=")))
            .unwrap_or_else(|| panic!("{key}= missing from config/ember.service"))
            .trim()
            .to_string()
    };
    assert_eq!(value("Type"), "notify");
    assert!(
        value("ExecStart").ends_with(" serve"),
        "{}",
        value("ExecStart")
    );
    let watchdog: u64 = value("WatchdogSec").parse().unwrap();
    assert!(
        watchdog >= 3 * 10,
        "WatchdogSec={watchdog} under 3 x report_interval"
    );
    let stop: u64 = value("TimeoutStopSec").parse().unwrap();
    assert!(
        stop > 30,
        "TimeoutStopSec={stop} leaves no room for drain_timeout (30 s)"
    );
    // Its ExecStart runs: `serve` is a command of this binary.
    let help = ember(&["serve", "--help"]);
    assert!(help.status.success(), "{}", stderr(&help));
}
