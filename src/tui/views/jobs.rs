//! Jobs: what each job works on (by name, with its backend), how far it is, and where bytes
//! move its rate and ETA; who asked and which host runs it; `enter` opens the job's detail
//! (a throughput chart for a running copy, the error and the retry command for a failure).

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Cell, Paragraph, Row, Sparkline, Wrap};

use crate::service::jobs::JobKind;
use crate::service::units::{age, human_bytes, rfc3339};
use crate::service::view::{JobState, JobView};
use crate::tui::columns::{eta_secs, job_rate, took};
use crate::tui::state::{App, View};

use super::{fit_view, headers, pick};

/// Whether bytes move in this job (a bar, a rate and an ETA mean something): the driver
/// reported a total, as copies do and metadata steps (create, snapshot) do not.
pub fn moves_bytes(j: &JobView) -> bool {
    j.bytes_total > 0
}

/// The target as an operator names it: `db-01 (rbd0)`, or the id's start when unknown.
pub fn target(j: &JobView) -> String {
    let name = j
        .target_name
        .clone()
        .unwrap_or_else(|| crate::service::units::short_id(&j.target_id).to_string());
    format!("{name} ({})", j.backend)
}

/// Who asked, compact for a table cell: `alice@10.0.0.7` for `alice (ssh from 10.0.0.7)`.
pub fn short_actor(actor: &str) -> String {
    match actor.split_once(" (ssh from ") {
        Some((user, addr)) => format!("{user}@{}", addr.trim_end_matches(')')),
        None => actor.to_string(),
    }
}

/// The kind in a table cell: `snap-create` for `snapshot_create`.
pub fn short_kind(j: &JobView) -> String {
    j.kind_name().replace("snapshot_", "snap-")
}

/// The progress cell: a bar where bytes move, else what the job is doing.
pub fn progress_cell(j: &JobView) -> String {
    if moves_bytes(j) {
        super::text_bar(j.bytes_done, j.bytes_total)
    } else {
        match j.state {
            JobState::Queued => JobState::Queued.as_str().into(),
            JobState::Running => "working".into(),
            JobState::Succeeded => "done".into(),
            _ => "-".into(),
        }
    }
}

pub fn draw(frame: &mut Frame, app: &App, area: Rect, now_ms: i64) {
    let (table_area, detail_area) = super::split_detail(app, area);
    draw_table(frame, app, table_area, now_ms);
    if let (Some(d), Some(j)) = (detail_area, app.selected_job()) {
        draw_detail(frame, app, d, j, now_ms);
    }
}

fn draw_table(frame: &mut Frame, app: &App, area: Rect, now_ms: i64) {
    let t = &app.theme;
    let (shown, widths) = fit_view(app, View::Jobs, area.width);
    let order = app.job_order();
    let rows = order.iter().filter_map(|i| app.snap.jobs.get(*i)).map(|j| {
        let rate = job_rate(j, app.rates.get(&j.id).copied());
        let eta = eta_secs(j, rate).map(age).unwrap_or_else(|| "-".into());
        let style = match j.state {
            JobState::Failed => t.error,
            JobState::Running => t.accent,
            JobState::Cancelled => t.warn,
            JobState::Succeeded => t.ok,
            _ => t.text,
        };
        Row::new(pick(
            vec![
                Cell::from(target(j)),
                Cell::from(short_kind(j)),
                match &j.wait_reason {
                    Some(_) if j.state == JobState::Running => {
                        Cell::from(Span::styled("waiting", t.warn))
                    }
                    _ => Cell::from(Span::styled(j.state.as_str(), style)),
                },
                Cell::from(progress_cell(j)),
                Cell::from(eta),
                // Who runs it, or who may (a queued job's owner).
                Cell::from(j.claimed_by.clone().or(j.owner.clone()).unwrap_or_default()),
                Cell::from(short_actor(&j.requested_by)),
                Cell::from(
                    rate.map(|r| format!("{}/s", human_bytes(r as i64)))
                        .unwrap_or_else(|| "-".into()),
                ),
                Cell::from(
                    j.started_at
                        .map(|s| format!("{} ago", age((now_ms - s) as f64 / 1000.0)))
                        .unwrap_or_else(|| "-".into()),
                ),
                Cell::from(
                    took(j)
                        .map(|ms| age(ms as f64 / 1000.0))
                        .unwrap_or_else(|| "-".into()),
                ),
                Cell::from(j.backend.clone()),
                match (
                    &j.error,
                    app.snap
                        .waiting
                        .iter()
                        .find(|(id, _)| *id == j.id)
                        .map(|(_, w)| w)
                        .or(j.wait_reason.as_ref()),
                ) {
                    (Some(e), _) => Cell::from(Span::styled(e.clone(), t.error)),
                    (None, Some(w)) => Cell::from(Span::styled(w.clone(), t.warn)),
                    (None, None) => Cell::from(""),
                },
            ],
            &shown,
        ))
    });
    let running = app.running_jobs();
    super::render_table(
        frame,
        area,
        t,
        rows,
        widths,
        headers(app, View::Jobs, &shown),
        if running > 0 {
            format!(" jobs {} ({running} running) ", app.snap.jobs.len())
        } else {
            format!(" jobs {} ", app.snap.jobs.len())
        },
        app.selection(View::Jobs),
    );
}

fn draw_detail(frame: &mut Frame, app: &App, area: Rect, j: &JobView, now_ms: i64) {
    let t = &app.theme;
    let kv = |k: &str, val: String| {
        Line::from(vec![
            Span::styled(format!("{k:>10} "), t.dim),
            Span::styled(val, t.text),
        ])
    };
    let rate = job_rate(j, app.rates.get(&j.id).copied());
    let mut lines = vec![
        kv("job", j.id.clone()),
        kv("kind", j.kind_name().to_string()),
        kv("target", format!("{} ({})", target(j), j.target_id)),
        kv("state", j.state.to_string()),
        kv("asked by", j.requested_by.clone()),
        kv(
            "host",
            j.claimed_by
                .clone()
                .or(j.owner.clone())
                .unwrap_or_else(|| "-".into()),
        ),
        kv("requested", rfc3339(j.created_at)),
    ];
    if let Some(s) = j.started_at {
        lines.push(kv(
            "started",
            format!("{} ({} ago)", rfc3339(s), age((now_ms - s) as f64 / 1000.0)),
        ));
    }
    if let Some(ms) = took(j) {
        lines.push(kv("took", age(ms as f64 / 1000.0)));
    }
    if moves_bytes(j) {
        // A verify moves no bytes into anything: it compares them.
        let label = if j.kind == JobKind::Verify {
            "compared"
        } else {
            "copied"
        };
        lines.push(kv(
            label,
            format!(
                "{} of {} {}",
                human_bytes(j.bytes_done),
                human_bytes(j.bytes_total),
                super::text_bar(j.bytes_done, j.bytes_total)
            ),
        ));
        if let Some(r) = rate {
            lines.push(kv("rate", format!("{}/s", human_bytes(r as i64))));
        }
        if let Some(e) = eta_secs(j, rate) {
            lines.push(kv("eta", age(e)));
        }
    }
    if let Some(w) = app
        .snap
        .waiting
        .iter()
        .find(|(id, _)| *id == j.id)
        .map(|(_, w)| w)
        .or(j.wait_reason.as_ref())
    {
        lines.push(Line::raw(""));
        lines.push(Line::from(Span::styled(format!("waiting: {w}"), t.warn)));
    }
    if let Some(r) = &j.result {
        lines.push(Line::raw(""));
        lines.push(Line::from(Span::styled("result", t.accent)));
        lines.push(Line::from(Span::styled(r.clone(), t.text)));
    }
    if let Some(e) = &j.error {
        lines.push(Line::raw(""));
        lines.push(Line::from(Span::styled("error", t.accent)));
        lines.push(Line::from(Span::styled(e.clone(), t.error)));
    }
    if matches!(j.state, JobState::Failed | JobState::Cancelled) {
        lines.push(Line::raw(""));
        lines.push(Line::from(Span::styled("retry (or r here):", t.accent)));
        lines.push(Line::from(Span::styled(
            format!("ember job retry {}", j.id),
            t.text,
        )));
    }
    let samples = app.samples.get(&j.id).map(Vec::as_slice).unwrap_or(&[]);
    let chart = crate::tui::jobs::throughput(samples);
    let block = Block::default()
        .title(" job (esc closes) ")
        .borders(Borders::ALL)
        .border_style(t.border);
    let inner = block.inner(area);
    frame.render_widget(block, area);
    let chart_h = if chart.len() >= 2 && inner.height > 14 {
        6
    } else {
        0
    };
    let [text_area, chart_area] =
        Layout::vertical([Constraint::Min(1), Constraint::Length(chart_h)]).areas(inner);
    frame.render_widget(Paragraph::new(lines).wrap(Wrap { trim: false }), text_area);
    if chart_h > 0 {
        let max = chart.iter().copied().fold(0.0_f64, f64::max);
        let data: Vec<u64> = chart.iter().map(|v| *v as u64).collect();
        // The newest samples that fit, right-aligned like a strip chart.
        let w = chart_area.width as usize;
        let tail = &data[data.len().saturating_sub(w)..];
        frame.render_widget(
            Sparkline::default()
                .block(
                    Block::default()
                        .borders(Borders::TOP)
                        .border_style(t.border)
                        .title(format!(" throughput, peak {}/s ", human_bytes(max as i64))),
                )
                .style(t.accent)
                .data(tail),
            chart_area,
        );
    }
}
