//! Jobs: running and recent jobs with progress, bytes, rate, ETA, the host that runs them and
//! who asked; a job waiting for a host that is down says so, with the fix.

use crate::service::view::JobState;
use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::text::Span;
use ratatui::widgets::{Cell, Row};

use crate::service::units::{age, human_bytes};
use crate::tui::state::{App, View};

use super::{Col, fit, pick};

const COLS: [Col; 11] = [
    Col {
        title: "job",
        width: 8,
        keep: true,
    },
    Col {
        title: "kind",
        width: 15,
        keep: true,
    },
    Col {
        title: "state",
        width: 9,
        keep: true,
    },
    Col {
        title: "progress",
        width: 19,
        keep: true,
    },
    // Narrow terminals drop the rightmost optional columns first: `by`, `when`, `bytes`...
    Col {
        title: "host",
        width: 16,
        keep: false,
    },
    Col {
        title: "rate",
        width: 11,
        keep: false,
    },
    Col {
        title: "eta",
        width: 5,
        keep: false,
    },
    Col {
        title: "bytes",
        width: 21,
        keep: false,
    },
    Col {
        title: "when",
        width: 8,
        keep: false,
    },
    Col {
        title: "by",
        width: 14,
        keep: false,
    },
    Col {
        title: "error",
        width: 0,
        keep: true,
    },
];

pub fn draw(frame: &mut Frame, app: &App, area: Rect, now_ms: i64) {
    let t = &app.theme;
    let (shown, widths) = fit(&COLS, area.width);
    let rows = app.snap.jobs.iter().map(|j| {
        let rate = app
            .rates
            .get(&j.id)
            .copied()
            .filter(|_| j.state == JobState::Running);
        let eta = match rate {
            Some(r) if r > 0.0 && j.bytes_total > j.bytes_done => {
                age((j.bytes_total - j.bytes_done) as f64 / r)
            }
            _ => "-".into(),
        };
        let style = match j.state.as_str() {
            "failed" => t.error,
            "running" => t.accent,
            "cancelled" => t.warn,
            "succeeded" => t.ok,
            _ => t.text,
        };
        let when = j.finished_at.or(j.started_at).unwrap_or(j.created_at);
        Row::new(pick(
            vec![
                Cell::from(j.id[..8.min(j.id.len())].to_string()),
                Cell::from(j.kind_name()),
                Cell::from(Span::styled(j.state.as_str(), style)),
                Cell::from(super::text_bar(j.bytes_done, j.bytes_total)),
                // Who runs it, or who may (a queued job's owner).
                Cell::from(j.claimed_by.clone().or(j.owner.clone()).unwrap_or_default()),
                Cell::from(
                    rate.map(|r| format!("{}/s", human_bytes(r as i64)))
                        .unwrap_or_else(|| "-".into()),
                ),
                Cell::from(eta),
                Cell::from(format!(
                    "{}/{}",
                    human_bytes(j.bytes_done),
                    human_bytes(j.bytes_total)
                )),
                Cell::from(format!("{} ago", age((now_ms - when) as f64 / 1000.0))),
                Cell::from(j.requested_by.clone()),
                match (
                    &j.error,
                    app.snap.waiting.iter().find(|(id, _)| *id == j.id),
                ) {
                    (Some(e), _) => Cell::from(Span::styled(e.clone(), t.error)),
                    (None, Some((_, w))) => Cell::from(Span::styled(w.clone(), t.warn)),
                    (None, None) => Cell::from(""),
                },
            ],
            &shown,
        ))
    });
    super::render_table(
        frame,
        area,
        t,
        rows,
        widths,
        pick(COLS.iter().map(|c| c.title.to_string()).collect(), &shown),
        " jobs ".into(),
        app.selection(View::Jobs),
    );
}
