//! Services: every volume service with its heartbeat, ticking age, and recent lateness as a
//! sparkline, grouped by cluster (the snapshot sorts members side by side). A down service
//! stands out; a late one warns before it is down.

use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Cell, Row};

use crate::service::units::age;
use crate::tui::state::{App, View};

use super::{Col, fit, pick};

const COLS: [Col; 9] = [
    Col {
        title: "cluster",
        width: 14,
        keep: false,
    },
    Col {
        title: "host",
        width: 22,
        keep: true,
    },
    Col {
        title: "status",
        width: 8,
        keep: false,
    },
    Col {
        title: "driver",
        width: 6,
        keep: false,
    },
    Col {
        title: "binary",
        width: 12,
        keep: false,
    },
    Col {
        title: "state",
        width: 5,
        keep: true,
    },
    Col {
        title: "heartbeat",
        width: 10,
        keep: true,
    },
    Col {
        title: "lateness (recent, last/max)",
        width: 36,
        keep: true,
    },
    Col {
        title: "reason",
        width: 0,
        keep: true,
    },
];

/// A heartbeat later than this (ms) is shown as a warning: the reactor is being starved.
const LATE_WARN_MS: f64 = 100.0;

pub fn draw(frame: &mut Frame, app: &App, area: Rect, now_ms: i64) {
    let t = &app.theme;
    let (shown, widths) = fit(&COLS, area.width);
    let rows = app.snap.services.iter().map(|s| {
        let r = s;
        let last = s.lateness_ms.last().copied().unwrap_or(0.0);
        let max = s.lateness_ms.iter().copied().fold(0.0_f64, f64::max);
        let heartbeat = match (r.stopped, r.updated_at) {
            (true, _) => "stopped".to_string(),
            (false, Some(u)) => format!("{} ago", age((now_ms - u) as f64 / 1000.0)),
            (false, None) => "never".into(),
        };
        let (state, state_style) = match (s.up, s.starting) {
            (true, _) => ("up", t.ok),
            (false, true) => ("starting", t.warn),
            (false, false) => ("DOWN", t.error),
        };
        let late_style = if max > LATE_WARN_MS { t.warn } else { t.dim };
        Row::new(pick(
            vec![
                Cell::from(r.cluster.clone().unwrap_or_else(|| "-".into())),
                Cell::from(r.host.clone()),
                Cell::from(if r.disabled { "disabled" } else { "enabled" }),
                Cell::from(r.driver.clone()),
                Cell::from(r.binary.clone()),
                Cell::from(Span::styled(state, state_style)),
                Cell::from(heartbeat),
                Cell::from(Line::from(vec![
                    Span::styled(super::sparkline(&s.lateness_ms, 20), late_style),
                    Span::styled(format!(" {last:.1}/{max:.1}ms"), late_style),
                ])),
                Cell::from(Span::styled(
                    r.error
                        .clone()
                        .or_else(|| r.disabled_reason.clone())
                        .unwrap_or_default(),
                    t.error,
                )),
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
        format!(
            " services (down after {}s without a heartbeat) ",
            app.snap.service_down_time_ms / 1000
        ),
        app.selection(View::Services),
    );
}
