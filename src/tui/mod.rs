//! The full-screen console.
//!
//! Owner: `tui/`. May import `service` (its `Handle` and snapshot types) and `config`; never
//! `db` or `driver`. One event loop: input (a thread reading the terminal), snapshots from the
//! service, a 1 s tick (clock and heartbeat ages), and command results all arrive here; only
//! `App` changes state; the screen is redrawn only when something changed.

pub mod action;
pub mod columns;
pub mod doctor;
pub mod events;
pub mod family;
pub mod filter;
pub mod jobs;
pub mod keymap;
pub mod logbook;
pub mod logline;
pub mod nav;
pub mod oncall;
pub mod prompt;
pub mod state;
pub mod theme;
pub mod view;
pub mod views;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use ratatui::crossterm::event::{self, Event, KeyEventKind};
use tokio::sync::mpsc;

use crate::service::handle::Handle;
use crate::service::inspect::Inspection;
use crate::service::jobs::request::Cancelled;

use state::{App, Command};

/// What the console was started with.
#[derive(Debug, Clone, Default)]
pub struct Options {
    pub theme: Option<String>,
    /// A message to show at start (e.g. "attached: ember serve already runs file0").
    pub notice: Option<String>,
}

/// Whether two snapshots draw the same (the read time aside): a re-read that found nothing
/// new does not redraw.
fn same_picture(
    a: &crate::service::snapshot::Snapshot,
    b: &crate::service::snapshot::Snapshot,
) -> bool {
    // Volumes and snapshots: a table that did not change is published as the same Arc.
    Arc::ptr_eq(&a.volumes, &b.volumes)
        && Arc::ptr_eq(&a.snapshots, &b.snapshots)
        && Arc::ptr_eq(&a.events, &b.events)
        && a.services == b.services
        && a.backends == b.backends
        && a.jobs == b.jobs
        && a.waiting == b.waiting
        && a.cluster_events == b.cluster_events
        && a.volume_count == b.volume_count
        && a.error == b.error
}

/// The database's clock, as every age on screen is judged by (see `db::clock`).
fn now_ms() -> i64 {
    crate::db::now_ms()
}

type DoctorTx = mpsc::UnboundedSender<Option<crate::service::handle::Check>>;
type HoldersTx = mpsc::UnboundedSender<(String, Result<Inspection, String>)>;

fn run_doctor(h: Arc<Handle>, tx: DoctorTx) {
    tokio::spawn(async move {
        let mut rx = h.doctor();
        while let Some(c) = rx.recv().await {
            let _ = tx.send(Some(c));
        }
        let _ = tx.send(None);
    });
}

/// Sends a command to the service layer in the background; its answer comes back on the
/// matching channel (a toast, doctor checks, holders), never by blocking the screen.
fn dispatch(
    handle: &Arc<Handle>,
    cmd: Command,
    done_tx: &mpsc::UnboundedSender<(String, bool)>,
    doctor_tx: &DoctorTx,
    holders_tx: &HoldersTx,
) {
    let (h, tx) = (handle.clone(), done_tx.clone());
    match cmd {
        Command::Quit => {}
        Command::Refresh => h.refresh(),
        Command::Doctor => run_doctor(h, doctor_tx.clone()),
        Command::Inspection(id) => {
            let tx = holders_tx.clone();
            tokio::spawn(async move {
                let answer = h.holders(&id).await;
                let _ = tx.send((id, answer));
            });
        }
        Command::Submit(req) => {
            tokio::spawn(async move {
                let msg = match h.submit(req).await {
                    Ok(e) => (
                        format!("job {} queued", crate::service::units::short_id(&e.job_id)),
                        false,
                    ),
                    Err(e) => (e.to_string(), true),
                };
                let _ = tx.send(msg);
            });
        }
        Command::Retry(id) => {
            tokio::spawn(async move {
                let msg = match h.retry(&id).await {
                    Ok(e) => (
                        format!(
                            "retry queued as job {}",
                            crate::service::units::short_id(&e.job_id)
                        ),
                        false,
                    ),
                    Err(e) => (e.to_string(), true),
                };
                let _ = tx.send(msg);
            });
        }
        Command::ResetState {
            volume,
            state,
            reason,
        } => {
            tokio::spawn(async move {
                let msg = match h.reset_state(&volume, state, reason.as_deref()).await {
                    Ok(r) => (
                        format!("{}: {} -> {} (audited)", r.name, r.from, r.to),
                        false,
                    ),
                    Err(e) => (e.to_string(), true),
                };
                let _ = tx.send(msg);
            });
        }
        Command::BreakLock { volume, locker } => {
            tokio::spawn(async move {
                let msg = match h.break_lock(&volume, &locker).await {
                    Ok(b) => (b.message, false),
                    Err(e) => (e.to_string(), true),
                };
                let _ = tx.send(msg);
            });
        }
        Command::Unmanage(volume) => {
            tokio::spawn(async move {
                let msg = match h.unmanage(&volume).await {
                    Ok(v) => (
                        format!("{} forgotten; its image stays on {}", v.name, v.backend),
                        false,
                    ),
                    Err(e) => (e.to_string(), true),
                };
                let _ = tx.send(msg);
            });
        }
        Command::Manage {
            backend,
            image,
            name,
        } => {
            tokio::spawn(async move {
                let msg = match h.manage(&backend, &image, &name).await {
                    Ok(v) => (
                        format!("{image} adopted as volume {} ({})", v.name, v.id),
                        false,
                    ),
                    Err(e) => (e.to_string(), true),
                };
                let _ = tx.send(msg);
            });
        }
        Command::Cancel(id) => {
            tokio::spawn(async move {
                let msg = match h.cancel(&id).await {
                    Ok(Cancelled::Now(j)) => {
                        (format!("{} job cancelled before it started", j.kind), false)
                    }
                    Ok(Cancelled::Requested(j)) => (
                        format!(
                            "cancel of {} job requested: it stops at its next step",
                            j.kind
                        ),
                        false,
                    ),
                    Err(e) => (e.to_string(), true),
                };
                let _ = tx.send(msg);
            });
        }
    }
}

/// Runs the console until the operator quits. The terminal is restored on every path,
/// including a panic (ratatui's init installs the hook).
pub async fn run(handle: Arc<Handle>, opts: Options, host: String) -> std::io::Result<()> {
    let theme = theme::Theme::load(opts.theme.as_deref().or(handle.config.theme.as_deref()))
        .map_err(std::io::Error::other)?;
    // Checked before the screen is taken over, so a bad file is a plain error message.
    let keys = match &handle.config.keymap {
        Some(path) => keymap::Keymap::with_overrides(path).map_err(std::io::Error::other)?,
        None => keymap::Keymap::default_map(),
    };
    let columns = columns::chosen(&handle.config.columns).map_err(std::io::Error::other)?;
    let mut app = App::new(keys, theme, handle.read_only, handle.worker, host);
    app.columns = columns;
    app.read_only_reason = handle.read_only_reason.clone();
    app.toast = opts.notice.map(|n| (n, false));
    app.set_snapshot(handle.snapshot.borrow().clone());

    let mut terminal = ratatui::try_init()?;
    let mouse = handle.config.mouse;
    if mouse {
        ratatui::crossterm::execute!(std::io::stdout(), event::EnableMouseCapture)?;
    }
    let (input_tx, mut input_rx) = mpsc::unbounded_channel::<Event>();
    let stop_input = Arc::new(AtomicBool::new(false));
    let stop = stop_input.clone();
    // Input is read on its own thread: crossterm's read blocks.
    std::thread::Builder::new()
        .name("ember-input".into())
        .spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                match event::poll(Duration::from_millis(1000)) {
                    Ok(true) => match event::read() {
                        Ok(ev) => {
                            if input_tx.send(ev).is_err() {
                                return;
                            }
                        }
                        Err(_) => return,
                    },
                    Ok(false) => {}
                    Err(_) => return,
                }
            }
        })?;

    let (done_tx, mut done_rx) = mpsc::unbounded_channel::<(String, bool)>();
    // Doctor results: Some(check) as each finishes, None when a run is over. The first run
    // starts at once, so the Overview shows what fails as soon as ember opens.
    let (doctor_tx, mut doctor_rx) =
        mpsc::unbounded_channel::<Option<crate::service::handle::Check>>();
    // As a worker, the first run waits until this process's services have tried their
    // storage and heartbeated (or two report intervals), so it does not report the previous
    // run's stale rows as dead.
    let opened_ms = now_ms();
    let first_deadline = opened_ms + 2 * handle.config.report_interval.as_millis() as i64;
    let mut first_doctor_pending = true;
    let ready = |app: &App, now: i64| -> bool {
        !handle.worker
            || now >= first_deadline
            || app
                .snap
                .services
                .iter()
                .filter(|s| s.host.starts_with(&format!("{}@", app.host)))
                .all(|s| s.error.is_some() || s.updated_at.is_some_and(|u| u >= opened_ms))
                && !app.snap.services.is_empty()
    };
    let (holders_tx, mut holders_rx) =
        mpsc::unbounded_channel::<(String, Result<Inspection, String>)>();
    let mut snapshots = handle.snapshot.clone();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let mut dirty = true;
    let mut last_minute = now_ms() / 60_000;
    let result = loop {
        if first_doctor_pending && ready(&app, now_ms()) {
            first_doctor_pending = false;
            if app.doctor.start().is_some() {
                run_doctor(handle.clone(), doctor_tx.clone());
            }
            dirty = true;
        }
        if let Some(cmd) = app.holders_wanted(now_ms()) {
            dispatch(&handle, cmd, &done_tx, &doctor_tx, &holders_tx);
        }
        if dirty {
            tui_logger::move_events();
            if let Ok(size) = terminal.size() {
                app.page_rows = size.height.saturating_sub(5) as usize;
            }
            if let Err(e) = terminal.draw(|f| views::draw(f, &app, now_ms())) {
                break Err(e);
            }
            dirty = false;
        }
        tokio::select! {
            ev = input_rx.recv() => {
                let Some(ev) = ev else { break Ok(()) };
                match ev {
                    Event::Key(k) if k.kind == KeyEventKind::Press => {
                        app.toast = None;
                        if let Some(cmd) = app.handle_key(k) {
                            if cmd == Command::Quit {
                                break Ok(());
                            }
                            dispatch(&handle, cmd, &done_tx, &doctor_tx, &holders_tx);
                        }
                        dirty = true;
                    }
                    Event::Resize(_, _) => dirty = true,
                    Event::Mouse(m) if app.mouse(m) => dirty = true,
                    _ => {}
                }
            }
            changed = snapshots.changed() => {
                if changed.is_err() {
                    break Ok(());
                }
                let snap = snapshots.borrow_and_update().clone();
                if !same_picture(&snap, &app.snap) {
                    app.set_snapshot(snap);
                    dirty = true;
                }
            }
            c = doctor_rx.recv() => {
                match c {
                    Some(Some(c)) => app.doctor.add(c),
                    Some(None) => app.doctor.finish(now_ms()),
                    None => {}
                }
                dirty = true;
            }
            h = holders_rx.recv() => {
                if let Some((volume, answer)) = h {
                    app.set_holders(volume, now_ms(), answer);
                    dirty = true;
                }
            }
            msg = done_rx.recv() => {
                if let Some(m) = msg {
                    app.toast = Some(m);
                    dirty = true;
                }
            }
            _ = tick.tick() => {
                // Idle, almost nothing goes to the terminal: only views with ticking ages
                // redraw every second; the clock shows minutes.
                let minute = now_ms() / 60_000;
                if matches!(app.view, state::View::Overview | state::View::Services | state::View::Jobs | state::View::Logs | state::View::Doctor | state::View::Events) || minute != last_minute {
                    last_minute = minute;
                    dirty = true;
                }
            }
        }
    };
    stop_input.store(true, Ordering::Relaxed);
    if mouse {
        let _ = ratatui::crossterm::execute!(std::io::stdout(), event::DisableMouseCapture);
    }
    ratatui::restore();
    result
}
