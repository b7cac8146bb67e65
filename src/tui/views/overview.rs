//! Overview: the on-call first screen. Backends with capacity gauges, services up/down, jobs
//! running, and what is wrong right now.

use crate::service::view::JobState;
use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::Style;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Gauge, Paragraph, Wrap};

use crate::service::units::{age, human_bytes};
use crate::tui::state::App;

pub fn draw(frame: &mut Frame, app: &App, area: Rect, now_ms: i64) {
    let t = &app.theme;
    let snap = &app.snap;
    let n = snap.backends.len().max(1) as u16;
    let [top, bottom] =
        Layout::vertical([Constraint::Length(n * 2 + 2), Constraint::Min(3)]).areas(area);
    let block = Block::default()
        .title(" backends ")
        .borders(Borders::ALL)
        .border_style(t.border);
    let inner = block.inner(top);
    frame.render_widget(block, top);
    let rows = Layout::vertical(vec![Constraint::Length(2); snap.backends.len()]).split(inner);
    for (b, row) in snap.backends.iter().zip(rows.iter()) {
        let [label, gauge] =
            Layout::vertical([Constraint::Length(1), Constraint::Length(1)]).areas(*row);
        let state = if b.up > 0 {
            Span::styled(format!("{} up", b.up), t.ok)
        } else if b.starting > 0 {
            Span::styled("starting", t.warn)
        } else {
            Span::styled("DOWN", t.error)
        };
        let mut spans = vec![
            Span::styled(format!("{:<12}", b.name), t.text),
            Span::styled(format!("{:<6}", b.driver), t.dim),
            state,
        ];
        if b.down > 0 && b.up > 0 {
            spans.push(Span::styled(format!(", {} down", b.down), t.warn));
        }
        if let (Some(total), Some(prov)) = (b.total_bytes, b.provisioned_bytes) {
            let ratio = if total > 0 {
                prov as f64 / total as f64
            } else {
                0.0
            };
            let style = match b.max_over_subscription_ratio {
                Some(max) if ratio > max => t.error,
                _ => t.dim,
            };
            spans.push(Span::styled(
                format!(
                    "   provisioned {} ({ratio:.2}x of total)",
                    human_bytes(prov)
                ),
                style,
            ));
        }
        if let Some(e) = &b.error {
            spans.push(Span::styled(format!("   {e}"), t.error));
        }
        frame.render_widget(Paragraph::new(Line::from(spans)), label);
        match (b.total_bytes, b.free_bytes) {
            (Some(total), Some(free)) if total > 0 => {
                let used = total - free;
                let ratio = (used as f64 / total as f64).clamp(0.0, 1.0);
                let color = if ratio > 0.9 {
                    t.error
                } else if ratio > 0.8 {
                    t.warn
                } else {
                    Style::new().fg(t.gauge)
                };
                let g = Gauge::default()
                    .gauge_style(color)
                    .ratio(ratio)
                    .label(format!(
                        "used {} of {} ({:.0}%), free {}",
                        human_bytes(used),
                        human_bytes(total),
                        ratio * 100.0,
                        human_bytes(free)
                    ));
                frame.render_widget(g, gauge);
            }
            _ => frame.render_widget(
                Paragraph::new(Span::styled("capacity unknown", t.dim)),
                gauge,
            ),
        }
    }

    // What is wrong, newest first: down services, failed jobs.
    let mut lines = vec![];
    let running = snap
        .jobs
        .iter()
        .filter(|j| j.state == JobState::Running)
        .count();
    let queued = snap
        .jobs
        .iter()
        .filter(|j| j.state == JobState::Queued)
        .count();
    let up = snap.services.iter().filter(|s| s.up).count();
    let starting = snap.services.iter().filter(|s| s.starting).count();
    let down = snap.services.len() - up - starting;
    let starting_text = if starting > 0 {
        format!(", {starting} starting")
    } else {
        String::new()
    };
    lines.push(Line::from(vec![
        Span::styled(
            format!("services {up} up{starting_text}, {down} down"),
            if up < snap.services.len() {
                t.warn
            } else {
                t.ok
            },
        ),
        Span::styled(
            format!(
                "   jobs {running} running, {queued} queued   volumes {}",
                snap.volume_count
            ),
            t.text,
        ),
    ]));
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
        lines.push(Line::from(Span::styled(
            format!("DOWN {}: {why} ({since})", s.host),
            if s.stopped { t.dim } else { t.error },
        )));
    }
    // What the doctor found failing: cause and fix on one line each, no navigation needed.
    // (Service checks are left out: the DOWN lines above already say the same.)
    for c in app.doctor.failing().filter(|c| c.check != "service") {
        let mut spans = vec![Span::styled(
            format!("FAIL {} {}: {}", c.scope, c.check, c.summary),
            t.error,
        )];
        if let Some(fix) = &c.fix {
            spans.push(Span::styled(format!(" → fix: {fix}"), t.text));
        }
        lines.push(Line::from(spans));
    }
    let warns = app.doctor.count(crate::service::handle::Status::Warn);
    if warns > 0 {
        lines.push(Line::from(Span::styled(
            format!("doctor: {warns} warning(s), see the doctor view (6)"),
            t.warn,
        )));
    }
    if app.doctor.running && app.doctor.checks.is_empty() {
        lines.push(Line::from(Span::styled("doctor: checks running...", t.dim)));
    }
    for j in snap
        .jobs
        .iter()
        .filter(|j| j.state == JobState::Failed)
        .take(5)
    {
        lines.push(Line::from(Span::styled(
            format!(
                "FAILED {} job {}: {}",
                j.kind_name(),
                &j.id[..8.min(j.id.len())],
                j.error.clone().unwrap_or_default()
            ),
            t.error,
        )));
    }
    // Jobs only a dead host may run, and what the cluster did about dead members.
    for (id, why) in &snap.waiting {
        lines.push(Line::from(Span::styled(
            format!("WAITING job {}: {why}", &id[..8.min(id.len())]),
            t.warn,
        )));
    }
    for e in snap
        .cluster_events
        .iter()
        .filter(|e| e.kind == "job_taken_over" || e.kind == "job_lease_lost")
        .filter(|e| now_ms - e.at < 3_600_000)
    {
        let what = if e.kind == "job_taken_over" {
            "TAKEOVER"
        } else {
            "FENCED"
        };
        lines.push(Line::from(Span::styled(
            format!(
                "{what} {} ago: {}",
                age((now_ms - e.at) as f64 / 1000.0),
                e.message
            ),
            t.warn,
        )));
    }
    if lines.len() == 1 {
        lines.push(Line::from(Span::styled(
            if app.doctor.finished_at.is_some() {
                "nothing is wrong (doctor: all checks pass)"
            } else {
                "nothing is wrong"
            },
            t.ok,
        )));
    }
    frame.render_widget(
        Paragraph::new(lines).wrap(Wrap { trim: true }).block(
            Block::default()
                .title(" now ")
                .borders(Borders::ALL)
                .border_style(t.border),
        ),
        bottom,
    );
}
