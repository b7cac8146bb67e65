//! Backups: the store's backups, newest first: which volume, what each holds and what it added
//! to the store (the first of a volume holds everything, later ones only what changed).

use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::text::Span;
use ratatui::widgets::{Cell, Row};

use crate::service::units::{age, human_bytes};
use crate::tui::state::{App, View};

use super::{fit_view, headers, pick};

pub fn draw(frame: &mut Frame, app: &App, area: Rect, now_ms: i64) {
    let t = &app.theme;
    let (shown, widths) = fit_view(app, View::Backups, area.width);
    // One pass over the volumes for the names the backups need (not one per backup: 100k
    // volumes times many backups would be felt on every frame).
    let wanted: std::collections::HashSet<&str> = app
        .snap
        .backups
        .iter()
        .map(|b| b.volume_id.as_str())
        .collect();
    let names: std::collections::HashMap<&str, &str> = app
        .snap
        .volumes
        .iter()
        .filter(|v| wanted.contains(&*v.id))
        .map(|v| (&*v.id, &*v.name))
        .collect();
    let rows = app.snap.backups.iter().map(|b| {
        let volume = names
            .get(b.volume_id.as_str())
            .map(|n| n.to_string())
            .unwrap_or_else(|| format!("{} (gone)", crate::service::units::short_id(&b.volume_id)));
        let status = Span::styled(
            b.status.as_str(),
            if b.status.is_error() {
                t.error
            } else if b.status == crate::db::Status::Available {
                t.ok
            } else {
                t.accent
            },
        );
        Row::new(pick(
            vec![
                Cell::from(b.name.clone()),
                Cell::from(volume),
                Cell::from(status),
                Cell::from(human_bytes(b.size_bytes)),
                Cell::from(human_bytes(b.data_bytes)),
                Cell::from(human_bytes(b.read_bytes)),
                Cell::from(human_bytes(b.stored_bytes)),
                Cell::from(if b.incremental { "yes" } else { "-" }),
                Cell::from(age((now_ms - b.created_at) as f64 / 1000.0)),
            ],
            &shown,
        ))
    });
    let stored: i64 = app.snap.backups.iter().map(|b| b.stored_bytes).sum();
    super::render_table(
        frame,
        area,
        t,
        rows,
        widths,
        headers(app, View::Backups, &shown),
        format!(
            " backups {} ({} in the store; restore: ember backup restore NAME) ",
            app.snap.backups.len(),
            human_bytes(stored)
        ),
        app.selection(View::Backups),
    );
}
