//! Doctor: every check of `ember doctor` as it completes, worst first within its scope, with
//! the selected check's evidence and fix beneath. `r` runs them again.

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Cell, Paragraph, Row, Wrap};

use crate::service::handle::Status;
use crate::service::units::age;
use crate::tui::state::{App, View};

use super::render_table;

pub fn status_style(app: &App, s: Status) -> ratatui::style::Style {
    let t = &app.theme;
    match s {
        Status::Ok => t.ok,
        Status::Info | Status::Skip => t.dim,
        Status::Warn => t.warn,
        Status::Fail => t.error,
    }
}

pub fn draw(frame: &mut Frame, app: &App, area: Rect, now_ms: i64) {
    let t = &app.theme;
    let d = &app.doctor;
    let [top, bottom] = Layout::vertical([Constraint::Min(5), Constraint::Length(9)]).areas(area);
    let title = if d.running {
        format!(" doctor: running ({} done) ", d.checks.len())
    } else {
        format!(
            " doctor: {} failed, {} warnings, {} ok{} ",
            d.count(Status::Fail),
            d.count(Status::Warn),
            d.count(Status::Ok),
            d.finished_at
                .map(|f| format!(", {} ago", age((now_ms - f) as f64 / 1000.0)))
                .unwrap_or_default()
        )
    };
    let rows = d.checks.iter().map(|c| {
        Row::new(vec![
            Cell::from(Span::styled(c.status.label(), status_style(app, c.status))),
            Cell::from(c.scope.clone()),
            Cell::from(c.check.clone()),
            Cell::from(c.summary.clone()),
        ])
    });
    render_table(
        frame,
        top,
        t,
        rows,
        vec![
            Constraint::Length(4),
            Constraint::Length(14),
            Constraint::Length(14),
            Constraint::Min(10),
        ],
        ["", "scope", "check", "what was found"]
            .map(String::from)
            .to_vec(),
        title,
        app.selection(View::Doctor),
    );
    let mut lines = vec![];
    if let Some(c) = d.checks.get(app.selection(View::Doctor)) {
        lines.push(Line::from(Span::styled(
            c.summary.clone(),
            status_style(app, c.status),
        )));
        if let Some(fix) = &c.fix {
            lines.push(Line::from(vec![
                Span::styled("fix: ", t.accent),
                Span::styled(fix.clone(), t.text),
            ]));
        }
        for e in &c.evidence {
            lines.push(Line::from(Span::styled(format!("· {e}"), t.dim)));
        }
        lines.push(Line::from(Span::styled(
            format!("({} in {} ms)", c.id, c.took_ms),
            t.dim,
        )));
    } else if d.running {
        lines.push(Line::from(Span::styled("checks running...", t.dim)));
    }
    frame.render_widget(
        Paragraph::new(lines).wrap(Wrap { trim: true }).block(
            Block::default()
                .title(" evidence and fix (r: run again) ")
                .borders(Borders::ALL)
                .border_style(t.border),
        ),
        bottom,
    );
}
