//! Overview: the on-call front page. What is wrong comes first and in colour (services down
//! or late, failing checks, recent failed jobs, jobs waiting for a dead host, takeovers), or
//! one green line when all is well; then one line per backend (services, heartbeat pulse,
//! capacity), the running and queued jobs with bars and ETAs, and the latest audit events.

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Paragraph};

use crate::service::jobs::JobKind;
use crate::service::snapshot::BackendView;
use crate::service::units::{age, human_bytes};
use crate::service::view::{EventKind, JobState};
use crate::tui::columns::{eta_secs, job_rate};
use crate::tui::state::App;

/// Failed jobs younger than this count as trouble on the front page.
const RECENT_FAILURE_MS: i64 = 24 * 3_600_000;
/// Takeovers and lost claims younger than this are shown.
const RECENT_TAKEOVER_MS: i64 = 3_600_000;

fn boxed<'a>(app: &App, title: String, lines: Vec<Line<'a>>) -> Paragraph<'a> {
    Paragraph::new(lines).block(
        Block::default()
            .title(title)
            .borders(Borders::ALL)
            .border_style(app.theme.border),
    )
}

pub fn draw(frame: &mut Frame, app: &App, area: Rect, now_ms: i64) {
    let found = trouble(app, now_ms);
    let wrong = found.len();
    let trouble = trouble_lines(app, found);
    let backends = backend_lines(app, now_ms, area.width);
    let jobs = job_lines(app);
    let h = area.height;
    // What is wrong gets up to half the screen (wrapped: a fix is never cut off); backends
    // always show; jobs a few lines; the events take the rest.
    let inner_w = area.width.saturating_sub(2).max(1) as usize;
    let wrapped: usize = trouble
        .iter()
        .map(|l| l.width().div_ceil(inner_w).max(1))
        .sum();
    let trouble_h = (wrapped as u16 + 2).min((h / 2).max(3));
    let backends_h = (backends.len() as u16 + 2).min(h / 3).max(3);
    let jobs_h = (jobs.len().max(1) as u16 + 2).min(8);
    let [a, b, c, d] = Layout::vertical([
        Constraint::Length(trouble_h),
        Constraint::Length(backends_h),
        Constraint::Length(jobs_h),
        Constraint::Min(3),
    ])
    .areas(area);
    let title = if wrong > 0 {
        format!(" now: {wrong} thing(s) wrong ")
    } else {
        " now ".into()
    };
    frame.render_widget(
        boxed(app, title, trouble).wrap(ratatui::widgets::Wrap { trim: false }),
        a,
    );
    frame.render_widget(boxed(app, " backends ".into(), backends), b);
    let active = app.snap.jobs.iter().filter(|j| j.state.is_active()).count();
    let jobs_title = if active > jobs_h as usize - 2 {
        format!(" jobs: {active} running or queued (4 lists all) ")
    } else {
        " jobs ".into()
    };
    frame.render_widget(boxed(app, jobs_title, jobs), c);
    let events = event_lines(app, now_ms, d.height.saturating_sub(2) as usize);
    frame.render_widget(boxed(app, " latest events (7 for all) ".into(), events), d);
}

/// (line, is an error rather than a warning), most urgent first.
fn trouble(app: &App, now_ms: i64) -> Vec<(String, bool)> {
    let snap = &app.snap;
    let mut out = vec![];
    for s in snap.services.iter().filter(|s| !s.up && !s.starting) {
        let since = s
            .updated_at
            .map(|u| format!("last heartbeat {} ago", age((now_ms - u) as f64 / 1000.0)))
            .unwrap_or_else(|| "never heartbeated".into());
        let why = s.error.clone().unwrap_or_else(|| {
            if s.stopped {
                "stopped cleanly".into()
            } else {
                "no heartbeat".into()
            }
        });
        out.push((format!("DOWN {}: {why} ({since})", s.host), !s.stopped));
    }
    for s in snap.services.iter().filter(|s| s.is_late()) {
        out.push((
            format!(
                "LATE {}: last heartbeat {:.0} ms late (the reactor is starved)",
                s.host,
                s.lateness_ms.last().copied().unwrap_or(0.0)
            ),
            false,
        ));
    }
    // The doctor's failing checks (service checks: the DOWN lines already say it).
    for c in app.doctor.failing().filter(|c| c.check != "service") {
        let fix = c
            .fix
            .as_ref()
            .map(|f| format!(" → fix: {f}"))
            .unwrap_or_default();
        out.push((
            format!("FAIL {} {}: {}{fix}", c.scope, c.check, c.summary),
            true,
        ));
    }
    for j in snap
        .jobs
        .iter()
        .filter(|j| j.state == JobState::Failed)
        .filter(|j| now_ms - j.finished_at.unwrap_or(j.updated_at) < RECENT_FAILURE_MS)
        .take(3)
    {
        out.push((
            format!(
                "FAILED {} {} {} ago: {}",
                j.kind_name(),
                super::jobs::target(j),
                age((now_ms - j.finished_at.unwrap_or(j.updated_at)) as f64 / 1000.0),
                j.error.clone().unwrap_or_default()
            ),
            true,
        ));
    }
    for (id, why) in &snap.waiting {
        let name = snap
            .jobs
            .iter()
            .find(|j| j.id == *id)
            .map(super::jobs::target)
            .unwrap_or_else(|| crate::service::units::short_id(id).to_string());
        out.push((format!("WAITING job on {name}: {why}"), false));
    }
    for (kind, e) in snap
        .cluster_events
        .iter()
        .map(|e| (e.kind, e))
        .filter(|(k, _)| matches!(k, EventKind::JobTakenOver | EventKind::JobLeaseLost))
        .filter(|(_, e)| now_ms - e.at < RECENT_TAKEOVER_MS)
    {
        let what = if kind == EventKind::JobTakenOver {
            "TAKEOVER"
        } else {
            "FENCED"
        };
        out.push((
            format!(
                "{what} {} ago: {}",
                age((now_ms - e.at) as f64 / 1000.0),
                crate::tui::events::short_ids(&e.message)
            ),
            false,
        ));
    }
    out
}

fn trouble_lines(app: &App, found: Vec<(String, bool)>) -> Vec<Line<'static>> {
    let t = &app.theme;
    let mut lines: Vec<Line> = found
        .into_iter()
        .map(|(l, err)| Line::from(Span::styled(l, if err { t.error } else { t.warn })))
        .collect();
    let warns = app.doctor.count(crate::service::handle::Status::Warn);
    if lines.is_empty() {
        let up = app.snap.services.iter().filter(|s| s.up).count();
        let doctor = if app.doctor.running && app.doctor.checks.is_empty() {
            "doctor checks running".to_string()
        } else if app.doctor.finished_at.is_some() && warns == 0 {
            "doctor: all checks pass".to_string()
        } else if warns > 0 {
            format!("doctor: {warns} warning(s), see 6")
        } else {
            "doctor not run yet".to_string()
        };
        lines.push(Line::from(Span::styled(
            format!(
                "all well: {up} service(s) up and on time, no failed job in 24 h, {doctor}; {} volumes",
                app.snap.volume_count
            ),
            t.ok,
        )));
    } else if warns > 0 {
        lines.push(Line::from(Span::styled(
            format!("doctor: {warns} warning(s), see the doctor view (6)"),
            t.warn,
        )));
    }
    lines
}

/// One line per backend: name, driver, services up/late/down, the heartbeat pulse of its
/// latest service (lateness sparkline, age), and capacity used / provisioned / total.
fn backend_lines(app: &App, now_ms: i64, width: u16) -> Vec<Line<'static>> {
    let t = &app.theme;
    let mut lines = vec![];
    let wide = width >= 110;
    for b in &app.snap.backends {
        let svcs: Vec<_> = app
            .snap
            .services
            .iter()
            .filter(|s| s.backend == b.name)
            .collect();
        let late = svcs.iter().filter(|s| s.is_late()).count();
        let mut spans = vec![
            Span::styled(format!("{:<10}", b.name), t.text),
            Span::styled(format!("{:<5}", b.driver), t.dim),
        ];
        let state = if b.up == 0 && b.starting > 0 {
            Span::styled(format!("{:<16}", "starting"), t.warn)
        } else if b.up == 0 {
            Span::styled(format!("{:<16}", "DOWN"), t.error)
        } else {
            let text = format!("{} up {} late {} down", b.up - late, late, b.down);
            let style = if b.down > 0 || late > 0 { t.warn } else { t.ok };
            Span::styled(format!("{text:<16}"), style)
        };
        spans.push(state);
        // The pulse: the service that heartbeated last.
        if let Some(s) = svcs.iter().filter(|s| s.up).max_by_key(|s| s.updated_at) {
            let style = if s.is_late() { t.warn } else { t.dim };
            spans.push(Span::styled(
                format!(
                    " {} ",
                    super::sparkline(&s.lateness_ms, if wide { 12 } else { 6 })
                ),
                style,
            ));
            spans.push(Span::styled(
                format!(
                    "{:>4} ",
                    s.updated_at
                        .map(|u| age((now_ms - u) as f64 / 1000.0))
                        .unwrap_or_default()
                ),
                t.dim,
            ));
        }
        spans.extend(capacity(app, b, wide));
        if let Some(e) = &b.error {
            spans.push(Span::styled(format!(" {e}"), t.error));
        }
        lines.push(Line::from(spans));
        if b.draining {
            lines.push(evacuation_line(app, &b.name));
        }
    }
    lines
}

/// Under a draining backend: what an evacuation has left to move, what moves now and how
/// fast, and when it ends at that rate (from the volumes and the migrate jobs, which are all
/// that an evacuation is).
fn evacuation_line(app: &App, backend: &str) -> Line<'static> {
    let t = &app.theme;
    let snap = &app.snap;
    let moving: Vec<_> = snap
        .jobs
        .iter()
        .filter(|j| j.kind == JobKind::Migrate && j.backend == backend && j.state.is_active())
        .collect();
    let mut text = if snap.volumes_loaded {
        let left: Vec<_> = snap
            .volumes
            .iter()
            .filter(|v| &*v.backend == backend)
            .collect();
        let bytes: i64 = left.iter().map(|v| v.size_bytes.max(0)).sum();
        // A job's bar counts each state it carries twice (copied, then read back), snapshots
        // too: its share of its volume's bytes is what it has done of them, and its rate in
        // those bytes is its bar's rate scaled the same way.
        let (mut done, mut rate) = (0.0, 0.0);
        for j in moving.iter().filter(|j| j.bytes_total > 0) {
            let Some(v) = left.iter().find(|v| *v.id == j.target_id) else {
                continue;
            };
            let share = v.size_bytes.max(0) as f64 / j.bytes_total as f64;
            done += j.bytes_done.max(0) as f64 * share;
            rate += job_rate(j, app.rates.get(&j.id).copied()).unwrap_or(0.0) * share;
        }
        let mut text = format!(
            "  ↳ draining: {} volume(s), {} left",
            left.len(),
            human_bytes(bytes)
        );
        if rate > 0.0 {
            let eta = (bytes as f64 - done).max(0.0) / rate;
            text.push_str(&format!(
                ", {} moving at {}/s, eta {}",
                moving.len(),
                human_bytes(rate as i64),
                age(eta)
            ));
        } else if !moving.is_empty() {
            text.push_str(&format!(", {} migration(s) waiting to start", moving.len()));
        }
        text
    } else {
        format!("  ↳ draining: {} migration(s) under way", moving.len())
    };
    if moving.is_empty() {
        text.push_str(&format!(
            " (nothing moves: ember backend evacuate {backend} --to BACKEND)"
        ));
    }
    Line::from(Span::styled(text, t.warn))
}

fn capacity(app: &App, b: &BackendView, wide: bool) -> Vec<Span<'static>> {
    let t = &app.theme;
    let (Some(total), Some(free)) = (b.total_bytes, b.free_bytes) else {
        return vec![Span::styled(" capacity unknown", t.dim)];
    };
    let used = total - free;
    let ratio = if total > 0 {
        (used as f64 / total as f64).clamp(0.0, 1.0)
    } else {
        0.0
    };
    let style = if ratio > 0.9 {
        t.error
    } else if ratio > 0.8 {
        t.warn
    } else {
        t.text
    };
    let mut out = vec![];
    if wide {
        let n = 10;
        let filled = (ratio * n as f64).round() as usize;
        out.push(Span::styled(
            format!(" [{}{}]", "█".repeat(filled), "·".repeat(n - filled)),
            style,
        ));
    }
    out.push(Span::styled(
        format!(
            " used {} {:.0}% of {}",
            human_bytes(used),
            ratio * 100.0,
            human_bytes(total)
        ),
        style,
    ));
    if let Some(prov) = b.provisioned_bytes {
        let over = if total > 0 {
            prov as f64 / total as f64
        } else {
            0.0
        };
        let style = match b.max_over_subscription_ratio {
            Some(max) if over > max => t.error,
            _ => t.dim,
        };
        out.push(Span::styled(
            format!(", prov {} ({over:.2}x)", human_bytes(prov)),
            style,
        ));
    }
    out
}

/// Running jobs first (with bar, rate and ETA where bytes move), then queued ones.
fn job_lines(app: &App) -> Vec<Line<'static>> {
    let t = &app.theme;
    let mut jobs: Vec<_> = app
        .snap
        .jobs
        .iter()
        .filter(|j| j.state.is_active())
        .collect();
    jobs.sort_by_key(|j| (j.state != JobState::Running, j.created_at));
    let mut lines: Vec<Line> = jobs
        .iter()
        .map(|j| {
            let rate = job_rate(j, app.rates.get(&j.id).copied());
            let mut spans = vec![
                Span::styled(
                    format!("{:<8}", j.state.as_str()),
                    if j.state == JobState::Running {
                        t.accent
                    } else {
                        t.dim
                    },
                ),
                Span::styled(format!("{:<10} ", j.kind_name()), t.text),
                Span::styled(format!("{:<24} ", super::jobs::target(j)), t.text),
                Span::styled(super::jobs::progress_cell(j), t.accent),
            ];
            if let Some(r) = rate {
                spans.push(Span::styled(format!(" {}/s", human_bytes(r as i64)), t.dim));
            }
            if let Some(e) = eta_secs(j, rate) {
                spans.push(Span::styled(format!(" eta {}", age(e)), t.text));
            }
            let host = j.claimed_by.clone().or(j.owner.clone()).unwrap_or_default();
            spans.push(Span::styled(format!("  {host}"), t.dim));
            Line::from(spans)
        })
        .collect();
    if lines.is_empty() {
        lines.push(Line::from(Span::styled("no job running or queued", t.dim)));
    }
    lines
}

fn event_lines(app: &App, now_ms: i64, n: usize) -> Vec<Line<'static>> {
    let t = &app.theme;
    let mut lines: Vec<Line> = app
        .snap
        .events
        .iter()
        .take(n)
        .map(|e| {
            let target = e
                .target_name
                .clone()
                .or_else(|| {
                    e.target
                        .as_ref()
                        .map(|id| crate::service::units::short_id(id).to_string())
                })
                .unwrap_or_default();
            Line::from(vec![
                Span::styled(
                    format!("{:>4} ago ", age((now_ms - e.at) as f64 / 1000.0)),
                    t.dim,
                ),
                Span::styled(format!("{:<18} ", e.kind), t.accent),
                Span::styled(format!("{target:<16} "), t.text),
                Span::styled(format!("{}: ", super::jobs::short_actor(&e.actor)), t.dim),
                Span::styled(crate::tui::events::short_ids(&e.message), t.text),
            ])
        })
        .collect();
    if lines.is_empty() {
        lines.push(Line::from(Span::styled("no events yet", t.dim)));
    }
    lines
}
