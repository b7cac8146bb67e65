//! Volumes: a sortable, filterable table that builds only the rows on screen (it must stay
//! smooth with 100,000 volumes), and a detail pane with snapshots, the parent chain, the
//! children and the volume's jobs.

use crate::service::view::JobState;
use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Cell, Paragraph, Row, Wrap};

use crate::service::jobs::retry::{ErrorFacts, explain_error};
use crate::service::units::{human_bytes, rfc3339};
use crate::service::view::{Purpose, VolumeView};
use crate::tui::state::{App, View};

use super::{fit_view, headers, pick};

pub fn draw(frame: &mut Frame, app: &App, area: Rect) {
    let (table_area, detail_area) = super::split_detail(app, area);
    draw_table(frame, app, table_area);
    if let (Some(d), Some(v)) = (detail_area, app.selected_volume()) {
        draw_detail(frame, app, d, v);
    }
}

fn draw_table(frame: &mut Frame, app: &App, area: Rect) {
    let t = &app.theme;
    let (shown, widths) = fit_view(app, View::Volumes, area.width);
    let page = (area.height as usize).saturating_sub(3).max(1);
    let sel = app.selection(View::Volumes);
    let offset = sel.saturating_sub(page - 1);
    let snap = &app.snap;
    let rows = app
        .visible
        .iter()
        .skip(offset)
        .take(page)
        .filter_map(|i| snap.volumes.get(*i))
        .map(|v| {
            let status = match v.status {
                s if s.is_usable() => t.ok,
                s if s.is_error() => t.error,
                _ => t.warn,
            };
            Row::new(pick(
                vec![
                    Cell::from(&*v.name),
                    Cell::from(human_bytes(v.size_bytes)),
                    Cell::from(Span::styled(v.status.as_str(), status)),
                    Cell::from(if v.attached > 0 {
                        v.attached.to_string()
                    } else {
                        String::new()
                    }),
                    Cell::from(&*v.backend),
                    Cell::from(match (&v.parent_name, &v.source_snapshot_id) {
                        (Some(n), _) => n.to_string(),
                        (None, Some(p)) => crate::service::units::short_id(p).to_string(),
                        (None, None) => String::new(),
                    }),
                    Cell::from(v.clone_depth.to_string()),
                    Cell::from(rfc3339(v.created_at)),
                    Cell::from(crate::service::units::short_id(&v.id).to_string()),
                ],
                &shown,
            ))
        });
    let filter = if app.filter.is_empty() {
        String::new()
    } else {
        format!(" filter: {} ", app.filter)
    };
    let title = if snap.volumes_loaded {
        format!(
            " volumes {} of {}{filter} ",
            app.visible.len(),
            snap.volumes.len()
        )
    } else {
        format!(" volumes: loading {} rows... ", snap.volume_count)
    };
    super::render_table(
        frame,
        area,
        t,
        rows,
        widths,
        headers(app, View::Volumes, &shown),
        title,
        sel - offset,
    );
}

fn draw_detail(frame: &mut Frame, app: &App, area: Rect, v: &VolumeView) {
    let t = &app.theme;
    let snap = &app.snap;
    let kv = |k: &str, val: String| {
        Line::from(vec![
            Span::styled(format!("{k:>11} "), t.dim),
            Span::styled(val, t.text),
        ])
    };
    let mut lines = vec![
        kv("id", v.id.to_string()),
        kv("name", v.name.to_string()),
        kv(
            "status",
            format!(
                "{}{}",
                v.status,
                v.status_reason
                    .as_deref()
                    .map(|r| format!(" ({r})"))
                    .unwrap_or_default()
            ),
        ),
        kv(
            "size",
            format!("{} ({} bytes)", human_bytes(v.size_bytes), v.size_bytes),
        ),
        kv("backend", v.backend.to_string()),
        kv("depth", v.clone_depth.to_string()),
    ];
    lines.extend(used(app, v).map(|u| kv("used", u)));
    lines.extend(error_lines(app, v));
    lines.extend(attachment_lines(app, v));
    lines.extend(holder_lines(app, v));
    lines.push(Line::raw(""));
    lines.push(Line::from(Span::styled("parent chain", t.accent)));
    // Walk up: volume ← snapshot ← volume ← ...
    let mut cur = v.source_snapshot_id.clone();
    let mut depth = 1;
    while let Some(sid) = cur.take() {
        let Some(s) = snap.snapshots.iter().find(|s| s.id == sid) else {
            lines.push(Line::raw(format!(
                "{}└ snapshot {sid} (deleted)",
                "  ".repeat(depth)
            )));
            break;
        };
        let parent = snap.volumes.iter().find(|p| p.id == s.volume_id);
        lines.push(Line::raw(format!(
            "{}└ {} of {}",
            "  ".repeat(depth),
            s.name,
            parent.map(|p| &*p.name).unwrap_or("(deleted volume)")
        )));
        cur = parent.and_then(|p| p.source_snapshot_id.clone());
        depth += 1;
        if depth > 32 {
            break;
        }
    }
    if v.source_snapshot_id.is_none() {
        lines.push(Line::from(Span::styled("  none (independent)", t.dim)));
    }
    lines.push(Line::raw(""));
    lines.push(Line::from(Span::styled(
        "snapshots and their clones",
        t.accent,
    )));
    let mine: Vec<_> = snap
        .snapshots
        .iter()
        .filter(|s| s.volume_id == v.id)
        .collect();
    if mine.is_empty() {
        lines.push(Line::from(Span::styled("  none", t.dim)));
    }
    for s in mine {
        lines.push(Line::raw(format!(
            "  {} [{}]{}",
            s.name,
            s.status,
            if s.purpose == Purpose::Clone {
                " (for a clone)"
            } else {
                ""
            }
        )));
        for c in snap
            .volumes
            .iter()
            .filter(|c| c.source_snapshot_id.as_deref() == Some(&*s.id))
        {
            lines.push(Line::raw(format!("    └ {} [{}]", c.name, c.status)));
        }
    }
    lines.push(Line::raw(""));
    lines.push(Line::from(Span::styled("backups", t.accent)));
    let backups: Vec<_> = snap
        .backups
        .iter()
        .filter(|b| *b.volume_id == *v.id)
        .collect();
    if backups.is_empty() {
        lines.push(Line::from(Span::styled(
            "  none (ember backup create NAME)",
            t.dim,
        )));
    }
    for b in backups.iter().take(4) {
        lines.push(Line::raw(format!(
            "  {} [{}] {} stored",
            b.name,
            b.status,
            human_bytes(b.stored_bytes)
        )));
    }
    if backups.len() > 4 {
        lines.push(Line::from(Span::styled(
            format!("  and {} older (8: backups)", backups.len() - 4),
            t.dim,
        )));
    }
    lines.push(Line::raw(""));
    lines.push(Line::from(Span::styled("jobs", t.accent)));
    for j in snap.jobs.iter().filter(|j| *j.target_id == *v.id).take(8) {
        let style = if j.state == JobState::Failed {
            t.error
        } else {
            t.text
        };
        lines.push(Line::from(Span::styled(
            format!(
                "  {} {} {}",
                j.kind_name(),
                j.state,
                j.error.as_deref().unwrap_or("")
            ),
            style,
        )));
    }
    frame.render_widget(
        Paragraph::new(lines).wrap(Wrap { trim: false }).block(
            Block::default()
                .title(" detail (esc closes) ")
                .borders(Borders::ALL)
                .border_style(t.border),
        ),
        area,
    );
}

/// For a volume in an error state: why, and the command that fixes it.
fn error_lines(app: &App, v: &VolumeView) -> Vec<Line<'static>> {
    let t = &app.theme;
    let failed = app
        .snap
        .jobs
        .iter()
        .find(|j| *j.target_id == *v.id && j.state == JobState::Failed);
    let facts = ErrorFacts {
        name: &v.name,
        status: v.status,
        status_reason: v.status_reason.as_deref(),
        size_bytes: v.size_bytes,
        backend: &v.backend,
    };
    let Some(e) = explain_error(&facts, failed.map(|j| (j.id.as_str(), j.error.as_deref()))) else {
        return vec![];
    };
    vec![
        Line::raw(""),
        Line::from(Span::styled(format!("why: {}", e.reason), t.error)),
        Line::from(Span::styled(format!("fix: {}", e.fix), t.text)),
    ]
}

/// Its attachments, and where they disagree with who has it open (as last asked): "attached
/// on paper only" and "used but not attached", each with its fix.
fn attachment_lines(app: &App, v: &VolumeView) -> Vec<Line<'static>> {
    use crate::service::attach;
    let t = &app.theme;
    let mine: Vec<crate::db::AttachmentRow> = app
        .snap
        .attachments
        .iter()
        .filter(|a| *a.volume_id == *v.id)
        .cloned()
        .collect();
    let mut out = vec![
        Line::raw(""),
        Line::from(Span::styled("attachments", t.accent)),
    ];
    if mine.is_empty() {
        out.push(Line::from(Span::styled(
            "  none (ember volume attach NAME --host HOST)",
            t.dim,
        )));
    }
    for a in &mine {
        out.push(Line::raw(format!(
            "  {} since {}",
            a.describe(),
            rfc3339(a.created_at)
        )));
    }
    // Compared here only where no resolver is needed: the doctor resolves host names.
    let literal = mine
        .iter()
        .all(|a| attach::literal_addresses(&a.attached_host).is_some());
    if !literal {
        out.push(Line::from(Span::styled(
            format!(
                "  compared with the storage by: ember doctor --backend {}",
                v.backend
            ),
            t.dim,
        )));
    }
    if let (true, Some(Ok(h))) = (literal, app.holders.of(&v.id)) {
        let resolve = |h: &str| attach::literal_addresses(h).unwrap_or_default();
        let local = |h: &str| {
            attach::literal_addresses(h).is_some_and(|ips| ips.iter().any(|ip| ip.is_loopback()))
        };
        for m in attach::compare(&mine, &h.holders, &resolve, &local) {
            out.push(Line::from(Span::styled(
                format!("  ! {}", m.describe(&v.name)),
                t.warn,
            )));
        }
    }
    out
}

/// The storage's allocation, as last asked with the holders (`3.0 GiB of 13.0 GiB`): one more
/// of the facts at the top, before any section.
fn used(app: &App, v: &VolumeView) -> Option<String> {
    let Some(Ok(h)) = app.holders.of(&v.id) else {
        return None;
    };
    let used = h
        .used_bytes
        .map(|u| human_bytes(u as i64))
        .unwrap_or_else(|| "unknown".into());
    Some(format!("{used} of {}", human_bytes(v.size_bytes)))
}

/// Who has it open, as last asked (every few seconds while the pane is open).
fn holder_lines(app: &App, v: &VolumeView) -> Vec<Line<'static>> {
    let t = &app.theme;
    let mut out = vec![Line::raw(""), Line::from(Span::styled("open by", t.accent))];
    match app.holders.of(&v.id) {
        None => out.push(Line::from(Span::styled("  asking the storage...", t.dim))),
        Some(Err(e)) => out.push(Line::from(Span::styled(format!("  unknown: {e}"), t.warn))),
        Some(Ok(h)) if h.holders.is_empty() => {
            out.push(Line::from(Span::styled("  nobody", t.dim)));
        }
        Some(Ok(h)) => {
            for x in &h.holders {
                let style = if x.ember { t.dim } else { t.warn };
                out.push(Line::from(Span::styled(
                    format!("  {}", x.describe()),
                    style,
                )));
            }
            out.push(Line::from(Span::styled(
                format!("  check: {}", h.check),
                t.dim,
            )));
        }
    }
    out
}
