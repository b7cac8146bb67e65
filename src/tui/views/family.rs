//! The family view: the selected volume's clone tree, from the volume at the top of its parent
//! chain down through every snapshot and clone, with size, status, depth and any job running
//! on a member. `enter` goes to a member; the volume keys act on the selected one.

use ratatui::Frame;
use ratatui::layout::{Constraint, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Cell, Row};

use crate::service::units::human_bytes;
use crate::service::view::Purpose;
use crate::tui::family::Node;
use crate::tui::state::{App, View};

pub fn draw(frame: &mut Frame, app: &App, area: Rect) {
    let t = &app.theme;
    let job_of = |id: &str| {
        app.snap
            .jobs
            .iter()
            .find(|j| j.target_id == id && j.state.is_active())
    };
    let rows = app.family.iter().map(|m| {
        let indent = "  ".repeat(m.depth);
        let (name, kind, size, status, depth, style) = match &m.node {
            Node::Volume(v) => (
                format!("{indent}{}", v.name),
                if v.source_snapshot_id.is_some() {
                    "clone"
                } else {
                    "volume"
                },
                v.size_bytes,
                v.status,
                v.clone_depth.to_string(),
                if Some(&*v.id) == app.family_of.as_deref() {
                    t.text.add_modifier(ratatui::style::Modifier::BOLD)
                } else {
                    t.text
                },
            ),
            Node::Snapshot(s) => (
                format!("{indent}@{}", s.name),
                // A snapshot ember made for a clone (removed with its last clone).
                if s.purpose == Purpose::Clone {
                    "snap*"
                } else {
                    "snapshot"
                },
                s.size_bytes,
                s.status,
                String::new(),
                t.dim,
            ),
        };
        let status_style = match status {
            s if s.is_usable() => t.ok,
            s if s.is_error() => t.error,
            _ => t.warn,
        };
        let job = job_of(m.id())
            .map(|j| {
                Line::from(Span::styled(
                    format!(
                        "{} {} {}",
                        j.kind_name(),
                        j.state,
                        super::jobs::progress_cell(j)
                    ),
                    t.accent,
                ))
            })
            .unwrap_or_default();
        Row::new(vec![
            Cell::from(Span::styled(name, style)),
            Cell::from(kind),
            Cell::from(human_bytes(size)),
            Cell::from(Span::styled(status.as_str(), status_style)),
            Cell::from(depth),
            Cell::from(job),
        ])
    });
    let root = app
        .family
        .first()
        .and_then(|m| m.volume())
        .map(|v| v.name.to_string())
        .unwrap_or_else(|| "(volume gone)".into());
    super::render_table(
        frame,
        area,
        t,
        rows,
        vec![
            Constraint::Min(20),
            Constraint::Length(8),
            Constraint::Length(9),
            Constraint::Length(10),
            Constraint::Length(5),
            Constraint::Min(16),
        ],
        ["member", "kind", "size", "status", "depth", "job"]
            .map(String::from)
            .to_vec(),
        format!(
            " family of {root}: {} members (enter: go to it, esc: back) ",
            app.family.len()
        ),
        app.selection(View::Family),
    );
}
