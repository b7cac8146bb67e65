//! systemd's notify protocol for `ember serve` under `Type=notify` (`config/ember.service`):
//! READY once every backend's first setup check is done (started or failing with its reason,
//! so a broken backend never holds the unit in "activating"), and the watchdog fed from the
//! heartbeat loop, so systemd restarts a process whose reactor stalls. Without
//! `NOTIFY_SOCKET` (not under systemd) every call here does nothing.

use std::sync::Arc;
use std::time::Duration;

use sd_notify::NotifyState;
use tracing::{info, warn};

use super::backend::BackendService;

/// Says READY=1 when every backend's first setup check has finished.
pub fn notify_ready_after(backends: Vec<Arc<BackendService>>) {
    if std::env::var_os("NOTIFY_SOCKET").is_none() {
        return;
    }
    tokio::spawn(async move {
        for b in &backends {
            b.setup_done.cancelled().await;
        }
        let up = backends
            .iter()
            .filter(|b| b.healthy.load(std::sync::atomic::Ordering::SeqCst))
            .count();
        let status = format!("{up} of {} backends up", backends.len());
        match sd_notify::notify(&[NotifyState::Ready, NotifyState::Status(&status)]) {
            Ok(()) => info!("systemd: ready ({status})"),
            Err(e) => warn!("systemd: READY not sent: {e}"),
        }
    });
}

/// One watchdog keep-alive (each heartbeat tick: the reactor is running).
pub fn feed_watchdog() {
    if sd_notify::watchdog_enabled().is_some()
        && let Err(e) = sd_notify::notify(&[NotifyState::Watchdog])
    {
        warn!("systemd: watchdog not fed: {e}");
    }
}

/// Warns when `WatchdogSec` is too short for the heartbeat to feed it in time.
pub fn check_watchdog(report_interval: Duration) {
    if let Some(w) = sd_notify::watchdog_enabled()
        && w < report_interval * 2
    {
        warn!(
            "systemd: WatchdogSec={}s is under twice report_interval ({}s): a healthy ember may be restarted; set WatchdogSec to at least {}s",
            w.as_secs(),
            report_interval.as_secs(),
            (report_interval * 3).as_secs()
        );
    }
}

/// STOPPING=1 at the start of a drain, so systemd waits for it instead of calling it hung.
pub fn stopping() {
    let _ = sd_notify::notify(&[NotifyState::Stopping]);
}
