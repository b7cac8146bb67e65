//! Events: the audit log, newest first, following new events live; `/` filters by actor,
//! kind, target name or any word. What was done, to what (by name), by whom, from where.

use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::text::Span;
use ratatui::widgets::{Cell, Row};

use crate::service::units::age;
use crate::tui::state::{App, View};

use super::{fit_view, headers, pick};

pub fn draw(frame: &mut Frame, app: &App, area: Rect, now_ms: i64) {
    let t = &app.theme;
    let (shown, widths) = fit_view(app, View::Events, area.width);
    let visible = app.visible_events();
    let rows = visible
        .iter()
        .filter_map(|i| app.snap.events.get(*i))
        .map(|e| {
            let at = chrono::DateTime::<chrono::Utc>::from_timestamp_millis(e.at)
                .map(|d| d.format("%m-%d %H:%M:%S").to_string())
                .unwrap_or_default();
            let target = e
                .target_name
                .clone()
                .or_else(|| e.target.clone())
                .unwrap_or_default();
            Row::new(pick(
                vec![
                    Cell::from(at),
                    Cell::from(Span::styled(
                        e.kind.as_str(),
                        if e.kind.is_alarming() {
                            t.warn
                        } else {
                            t.accent
                        },
                    )),
                    Cell::from(target),
                    Cell::from(crate::tui::events::short_ids(&e.message)),
                    Cell::from(super::jobs::short_actor(&e.actor)),
                    Cell::from(format!("{} ago", age((now_ms - e.at) as f64 / 1000.0))),
                    Cell::from(e.host.clone().unwrap_or_default()),
                ],
                &shown,
            ))
        });
    let filter = if app.event_filter.is_empty() {
        String::new()
    } else {
        format!(" filter: {} ", app.event_filter)
    };
    super::render_table(
        frame,
        area,
        t,
        rows,
        widths,
        headers(app, View::Events, &shown),
        format!(
            " events {} of {} (newest {} kept; all: ember events){filter} ",
            visible.len(),
            app.snap.events.len(),
            crate::service::live::EVENTS_KEPT
        ),
        app.selection(View::Events),
    );
}
