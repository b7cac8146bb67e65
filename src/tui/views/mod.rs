//! Drawing: `draw` reads the `App` and the frame; it changes nothing. Each view has its own
//! file; the title bar (where you are), the footer (keys, from the keymap) and overlays
//! (help, prompts) are here.

mod backups;
mod doctor;
mod events;
mod family;
mod jobs;
mod overview;
mod services;
mod volumes;

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::Modifier;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Clear, Paragraph, Row, Table, Wrap};

use super::state::{App, Mode, View};

/// Width of a text progress bar in tables.
pub const BAR: usize = 12;

pub fn draw(frame: &mut Frame, app: &App, now_ms: i64) {
    let [header, body, footer] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Min(1),
        Constraint::Length(1),
    ])
    .areas(frame.area());
    draw_header(frame, app, header, now_ms);
    match app.view {
        View::Overview => overview::draw(frame, app, body, now_ms),
        View::Services => services::draw(frame, app, body, now_ms),
        View::Volumes => volumes::draw(frame, app, body),
        View::Jobs => jobs::draw(frame, app, body, now_ms),
        View::Logs => draw_logs(frame, app, body),
        View::Doctor => doctor::draw(frame, app, body, now_ms),
        View::Events => events::draw(frame, app, body, now_ms),
        View::Family => family::draw(frame, app, body),
        View::Backups => backups::draw(frame, app, body, now_ms),
    }
    draw_footer(frame, app, footer);
    match &app.mode {
        Mode::Help => draw_help(frame, app),
        Mode::Prompt(p) => draw_prompt(frame, app, p),
        _ => {}
    }
}

fn draw_header(frame: &mut Frame, app: &App, area: Rect, now_ms: i64) {
    let t = &app.theme;
    let mut spans = vec![Span::raw(" ember "), Span::raw("│ ")];
    // The family view is a view of one volume: a tab only while it is open. A narrow
    // terminal shows the other views by their number keys.
    let narrow = area.width < 110;
    for (i, v) in View::ALL
        .into_iter()
        .enumerate()
        .filter(|(_, v)| *v != View::Family || app.view == View::Family)
    {
        let label = match (v == app.view, narrow) {
            (true, _) if v == View::Family => format!("{} ", v.name()),
            (true, true) => format!("{} {} ", i + 1, v.name()),
            (false, true) => format!("{} ", i + 1),
            _ => format!("{} ", v.name()),
        };
        spans.push(if v == app.view {
            Span::styled(label, t.header.add_modifier(Modifier::UNDERLINED))
        } else {
            Span::raw(label)
        });
    }
    spans.push(Span::raw(format!("│ {} ", app.host)));
    spans.push(Span::raw(if app.worker {
        "│ worker "
    } else {
        "│ attached "
    }));
    if app.read_only {
        spans.push(Span::raw(match &app.read_only_reason {
            // The flag needs no explaining; a login that may only read does.
            Some(r) if r.starts_with("connected as") => format!("│ READ-ONLY: {r} "),
            _ => "│ READ-ONLY ".to_string(),
        }));
    }
    if let Some(e) = &app.snap.error {
        let since = app
            .snap
            .error_since
            .and_then(chrono::DateTime::<chrono::Utc>::from_timestamp_millis)
            .map(|t| {
                format!(
                    " since {} ({} ago)",
                    t.format("%H:%M:%S"),
                    crate::service::units::age((now_ms - t.timestamp_millis()) as f64 / 1000.0)
                )
            })
            .unwrap_or_default();
        spans.push(Span::raw(format!("│ DATABASE UNREACHABLE{since}: {e} ")));
    }
    let clock = chrono::DateTime::<chrono::Utc>::from_timestamp_millis(now_ms)
        .map(|t| t.format("%H:%M UTC").to_string())
        .unwrap_or_default();
    let used: usize = spans.iter().map(|s| s.width()).sum();
    let pad = (area.width as usize).saturating_sub(used + clock.len() + 1);
    spans.push(Span::raw(" ".repeat(pad)));
    spans.push(Span::raw(clock));
    frame.render_widget(Paragraph::new(Line::from(spans)).style(t.header), area);
}

fn draw_footer(frame: &mut Frame, app: &App, area: Rect) {
    let t = &app.theme;
    let line = match &app.mode {
        Mode::Filter => Line::from(vec![
            Span::styled("/", t.accent),
            Span::raw(app.filter_text().to_string()),
            Span::styled("█", t.accent),
            Span::styled("  enter keep · esc clear", t.dim),
        ]),
        Mode::Command(c) => Line::from(vec![
            Span::styled(":", t.accent),
            Span::raw(c.clone()),
            Span::styled("█", t.accent),
        ]),
        _ => match &app.toast {
            Some((msg, true)) => Line::from(Span::styled(msg.clone(), t.error)),
            Some((msg, false)) => Line::from(Span::styled(msg.clone(), t.ok)),
            None => {
                let mut spans = vec![];
                for r in app
                    .keymap
                    .hints(app.view, app.read_only)
                    .into_iter()
                    .filter(|r| {
                        !matches!(r.on.as_str(), "down" | "up" | "pageup" | "pagedown" | "G")
                    })
                {
                    spans.push(Span::styled(format!("{} ", r.on), t.accent));
                    spans.push(Span::styled(
                        format!("{}  ", r.desc.split(" (").next().unwrap_or(&r.desc)),
                        t.dim,
                    ));
                }
                Line::from(spans)
            }
        },
    };
    frame.render_widget(Paragraph::new(line), area);
}

/// The log lines (time, level, short target, message; see `tui::logline`) and, with `h`,
/// the target list where `+`/`-` set each target's level.
fn draw_logs(frame: &mut Frame, app: &App, area: Rect) {
    let t = &app.theme;
    if !app.log_filter.is_empty() {
        return draw_filtered_logs(frame, app, area);
    }
    let (targets, lines) = if app.log_targets_shown {
        let [a, b] = Layout::horizontal([Constraint::Length(34), Constraint::Min(20)]).areas(area);
        (Some(a), b)
    } else {
        (None, area)
    };
    if let Some(a) = targets {
        frame.render_widget(
            tui_logger::TuiLoggerTargetWidget::default()
                .block(
                    Block::default()
                        .title(" targets: +/- level ")
                        .borders(Borders::ALL)
                        .border_style(t.border),
                )
                .style(t.text)
                .highlight_style(t.selected)
                .state(&app.logs),
            a,
        );
    }
    let w = tui_logger::TuiLoggerWidget::default()
        .block(
            Block::default()
                .title(" logs (also in <data_dir>/ember.log) ")
                .borders(Borders::ALL)
                .border_style(t.border),
        )
        .formatter(Box::new(crate::tui::logline::LogLine {
            text: t.text,
            dim: t.dim,
            warn: t.warn,
            error: t.error,
        }))
        .state(&app.logs);
    frame.render_widget(w, lines);
}

/// The lines of `tui::logbook` that match the filter, newest at the bottom, as the unfiltered
/// view draws them.
fn draw_filtered_logs(frame: &mut Frame, app: &App, area: Rect) {
    let t = &app.theme;
    let (hits, total) = crate::tui::logbook::matching(&app.log_filter);
    let rows = area.height.saturating_sub(2) as usize;
    let width = area.width.saturating_sub(2).max(1) as usize;
    let end = hits.len().saturating_sub(app.log_scroll);
    // From the newest shown line up, as many as fit (a long line takes several rows).
    let mut shown: Vec<Vec<Line>> = vec![];
    let mut used = 0;
    for e in hits[..end].iter().rev() {
        let style = match e.level {
            tracing::Level::ERROR => t.error,
            tracing::Level::WARN => t.warn,
            tracing::Level::INFO => t.text,
            _ => t.dim,
        };
        let time = chrono::DateTime::<chrono::Utc>::from_timestamp_millis(e.at_ms)
            .map(|d| {
                d.with_timezone(&chrono::Local)
                    .format("%H:%M:%S")
                    .to_string()
            })
            .unwrap_or_default();
        let drawn = crate::tui::logline::draw(
            &time,
            e.level.as_str(),
            &e.target,
            &e.text,
            width,
            style,
            t.dim,
        );
        if used + drawn.len() > rows {
            break;
        }
        used += drawn.len();
        shown.push(drawn);
    }
    let lines: Vec<Line> = shown.into_iter().rev().flatten().collect();
    frame.render_widget(
        Paragraph::new(lines).block(
            Block::default()
                .title(format!(
                    " logs matching \"{}\": {} of {total} (esc clears) ",
                    app.log_filter,
                    hits.len()
                ))
                .borders(Borders::ALL)
                .border_style(t.border),
        ),
        area,
    );
}

/// A centered box of `w` x `h` cells (clamped to the screen).
fn centered(area: Rect, w: u16, h: u16) -> Rect {
    let w = w.min(area.width);
    let h = h.min(area.height);
    Rect {
        x: area.x + (area.width - w) / 2,
        y: area.y + (area.height - h) / 2,
        width: w,
        height: h,
    }
}

fn draw_help(frame: &mut Frame, app: &App) {
    let t = &app.theme;
    let mut rows = vec![];
    for r in app.keymap.hints(app.view, app.read_only) {
        let keys = app.keymap.keys_for(&r.view, r.action).join(", ");
        rows.push(Row::new(vec![
            keys,
            r.desc.clone(),
            if r.view == "global" {
                "".into()
            } else {
                r.view.clone()
            },
        ]));
    }
    let area = centered(frame.area(), 70, rows.len() as u16 + 4);
    frame.render_widget(Clear, area);
    let table = Table::new(
        rows,
        [
            Constraint::Length(16),
            Constraint::Min(20),
            Constraint::Length(10),
        ],
    )
    .header(Row::new(vec!["key", "action", "view"]).style(t.accent))
    .block(
        Block::default()
            .title(format!(" help: {} (any key closes) ", app.view.name()))
            .borders(Borders::ALL)
            .border_style(t.accent),
    );
    frame.render_widget(table, area);
}

fn draw_prompt(frame: &mut Frame, app: &App, p: &super::state::Prompt) {
    let t = &app.theme;
    let mut lines = vec![
        Line::from(Span::styled(
            p.title.clone(),
            t.text.add_modifier(Modifier::BOLD),
        )),
        Line::raw(""),
    ];
    for (i, (label, value)) in p.fields.iter().enumerate() {
        let focus = i == p.focus;
        lines.push(Line::from(vec![
            Span::styled(
                format!("{label:>20}: "),
                if focus { t.accent } else { t.dim },
            ),
            Span::styled(value.clone(), if focus { t.selected } else { t.text }),
            Span::styled(if focus { "█" } else { "" }, t.accent),
        ]));
    }
    if let Some(e) = &p.error {
        lines.push(Line::raw(""));
        lines.push(Line::from(Span::styled(e.clone(), t.error)));
    }
    lines.push(Line::raw(""));
    lines.push(Line::from(Span::styled(
        if p.fields.is_empty() {
            "y yes · n no"
        } else {
            "enter submit · tab next field · esc cancel"
        },
        t.dim,
    )));
    let area = centered(frame.area(), 76, lines.len() as u16 + 2);
    frame.render_widget(Clear, area);
    frame.render_widget(
        Paragraph::new(lines).wrap(Wrap { trim: false }).block(
            Block::default()
                .borders(Borders::ALL)
                .border_style(t.accent),
        ),
        area,
    );
}

/// A table view's area, and beside it the detail pane's when the detail is open (55/45).
pub fn split_detail(app: &App, area: Rect) -> (Rect, Option<Rect>) {
    if app.detail {
        let [a, b] = Layout::horizontal([Constraint::Percentage(55), Constraint::Percentage(45)])
            .areas(area);
        (a, Some(b))
    } else {
        (area, None)
    }
}

/// `[=====>     ] 42%` as text, for table cells.
pub fn text_bar(done: i64, total: i64) -> String {
    if total <= 0 {
        return format!("[{}]   -", " ".repeat(BAR));
    }
    let frac = (done as f64 / total as f64).clamp(0.0, 1.0);
    let filled = (frac * BAR as f64).round() as usize;
    format!(
        "[{}{}] {:>3.0}%",
        "=".repeat(filled),
        " ".repeat(BAR - filled),
        frac * 100.0
    )
}

/// A sparkline of recent values as block characters, scaled to the largest value but at
/// least 20 ms, so a healthy service (1-2 ms late) draws a flat low line instead of timer
/// noise blown up to full height.
pub fn sparkline(values: &[f64], width: usize) -> String {
    const BLOCKS: [char; 8] = ['▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];
    let tail = &values[values.len().saturating_sub(width)..];
    let max = tail.iter().copied().fold(20.0_f64, f64::max);
    tail.iter()
        .map(|v| BLOCKS[((v / max) * 7.0).round().clamp(0.0, 7.0) as usize])
        .collect()
}

pub use crate::tui::columns::Col;

/// Which of `order` (column indices, the config's choice or all) fit in `width`, and their
/// constraints: the rightmost columns a narrow terminal may drop go first.
pub fn fit(cols: &[Col], order: &[usize], width: u16) -> (Vec<usize>, Vec<Constraint>) {
    let mut shown: Vec<usize> = order.iter().copied().filter(|i| *i < cols.len()).collect();
    let need = |s: &[usize]| {
        s.iter()
            .map(|i| if cols[*i].width == 0 { cols[*i].min } else { cols[*i].width } + 1)
            .sum::<u16>()
            + 2
    };
    while need(&shown) > width {
        match shown.iter().rposition(|i| !cols[*i].keep) {
            Some(p) => {
                shown.remove(p);
            }
            None => break,
        }
    }
    let constraints = shown
        .iter()
        .map(|i| {
            if cols[*i].width == 0 {
                Constraint::Min(cols[*i].min)
            } else {
                Constraint::Length(cols[*i].width)
            }
        })
        .collect();
    (shown, constraints)
}

/// The header cells of the shown columns, the sorted one marked ▲ or ▼.
pub fn headers(app: &App, view: View, shown: &[usize]) -> Vec<String> {
    let cols = crate::tui::columns::of(view);
    let sort = app.sort_of(view);
    shown
        .iter()
        .filter_map(|i| cols.get(*i).map(|c| (*i, c)))
        .map(|(i, c)| match sort {
            Some(s) if s.col == i => format!("{}{}", c.title, if s.desc { "▼" } else { "▲" }),
            _ => c.title.to_string(),
        })
        .collect()
}

/// A table view's columns that fit: the config's choice (or all), narrowed to the width.
pub fn fit_view(app: &App, view: View, width: u16) -> (Vec<usize>, Vec<Constraint>) {
    fit(crate::tui::columns::of(view), &app.columns_of(view), width)
}

/// Keeps only the shown cells of a row.
pub fn pick<T: Clone>(cells: Vec<T>, shown: &[usize]) -> Vec<T> {
    shown
        .iter()
        .filter_map(|i| cells.get(*i).cloned())
        .collect()
}

/// The frame the table views share: a header row, the highlighted selection (`selected` is
/// the row's index among `rows`) and a titled border.
#[allow(clippy::too_many_arguments)]
pub fn render_table<'a>(
    frame: &mut Frame,
    area: Rect,
    theme: &super::theme::Theme,
    rows: impl IntoIterator<Item = Row<'a>>,
    widths: Vec<Constraint>,
    header: Vec<String>,
    title: String,
    selected: usize,
) {
    let table = Table::new(rows, widths)
        .header(Row::new(header).style(theme.accent))
        .row_highlight_style(theme.selected)
        .block(
            Block::default()
                .title(title)
                .borders(Borders::ALL)
                .border_style(theme.border),
        );
    let mut state = ratatui::widgets::TableState::default().with_selected(Some(selected));
    frame.render_stateful_widget(table, area, &mut state);
}
