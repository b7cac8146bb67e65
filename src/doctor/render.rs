//! `ember doctor`'s text report: one block per scope, one line per check, evidence and fix
//! indented beneath, wrapped to the terminal (80 columns when not a terminal).

use std::io::Write;

use super::{Check, Status};

/// `N checks: F failed, W warnings`.
pub fn summary(checks: &[Check]) -> String {
    let count = |s| checks.iter().filter(|c| c.status == s).count();
    format!(
        "{} checks: {} failed, {} warnings, {} ok, {} info, {} skipped",
        checks.len(),
        count(Status::Fail),
        count(Status::Warn),
        count(Status::Ok),
        count(Status::Info),
        count(Status::Skip)
    )
}

fn width() -> usize {
    crossterm_width().unwrap_or(80).clamp(60, 120)
}

fn crossterm_width() -> Option<usize> {
    use std::io::IsTerminal;
    if !std::io::stdout().is_terminal() {
        return None;
    }
    ratatui::crossterm::terminal::size()
        .ok()
        .map(|(w, _)| w as usize)
}

/// Writes the report; `verbose` adds the evidence of passing checks.
pub fn print_text(out: &mut impl Write, checks: &[Check], verbose: bool) -> std::io::Result<()> {
    let w = width();
    let head = 15; // "  FAIL name      ": the summary starts at head + 2
    let (pad, cont) = (" ".repeat(head + 2), " ".repeat(head + 4));
    let (ev_first, fix_first) = (format!("{pad}· "), format!("{pad}fix: "));
    let body = textwrap::Options::new(w).subsequent_indent(&pad);
    let sub = |first: &'static str| {
        let first = if first == "ev" { &ev_first } else { &fix_first };
        textwrap::Options::new(w)
            .initial_indent(first)
            .subsequent_indent(&cont)
            .break_words(true)
    };
    let mut scope = "";
    for c in checks {
        if c.scope != scope {
            scope = &c.scope;
            writeln!(out, "{scope}")?;
        }
        let line = format!("  {:<4} {:<9} {}", c.status.label(), c.check, c.summary);
        for l in textwrap::wrap(&line, &body) {
            writeln!(out, "{l}")?;
        }
        if verbose || c.status >= Status::Warn || c.status == Status::Info {
            for e in &c.evidence {
                for l in textwrap::wrap(e, sub("ev")) {
                    writeln!(out, "{l}")?;
                }
            }
        }
        if let Some(fix) = &c.fix
            && (c.status >= Status::Warn || c.status == Status::Info)
        {
            for l in textwrap::wrap(fix, sub("fix")) {
                writeln!(out, "{l}")?;
            }
        }
    }
    writeln!(out)?;
    writeln!(out, "{}", summary(checks))
}
