//! Services: every volume service with its heartbeat, ticking age, and recent lateness as a
//! sparkline, grouped by cluster (the snapshot sorts members side by side). A down service
//! stands out; a late one warns before it is down.

use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Cell, Row};

use crate::service::units::age;
use crate::tui::state::{App, View};

use super::{fit_view, headers, pick};

/// A heartbeat later than this (ms) is shown as a warning: the reactor is being starved.
pub const LATE_WARN_MS: f64 = crate::service::view::LATE_WARN_MS;

pub fn draw(frame: &mut Frame, app: &App, area: Rect, now_ms: i64) {
    let t = &app.theme;
    let (shown, widths) = fit_view(app, View::Services, area.width);
    let order = app.service_order();
    let rows = order
        .iter()
        .filter_map(|i| app.snap.services.get(*i))
        .map(|s| {
            let r = s;
            let last = s.lateness_ms.last().copied().unwrap_or(0.0);
            let max = s.lateness_ms.iter().copied().fold(0.0_f64, f64::max);
            let heartbeat = match (r.stopped, r.updated_at) {
                (true, _) => "stopped".to_string(),
                (false, Some(u)) => format!("{} ago", age((now_ms - u) as f64 / 1000.0)),
                (false, None) => "never".into(),
            };
            let (state, state_style) = match (s.up, s.starting) {
                (true, _) if s.is_late() => ("late", t.warn),
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
        headers(app, View::Services, &shown),
        format!(
            " services (down after {}s without a heartbeat) ",
            app.snap.service_down_time_ms / 1000
        ),
        app.selection(View::Services),
    );
}
