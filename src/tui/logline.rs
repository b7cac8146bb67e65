//! How a log line is drawn in the Logs view: `HH:MM:SS LEVEL target  message`, each once,
//! the target as its last path segment (`runner`, not `ember::service::jobs::runner`). A line
//! that fits the width is never wrapped; a longer one continues under the message, so the
//! time, level and target columns stay clean.

use ratatui::style::Style;
use ratatui::text::{Line, Span};
use tui_logger::{ExtLogRecord, LogFormatter};

/// Width of the target column.
const TARGET: usize = 9;
/// `HH:MM:SS ` + `LEVEL ` + target + space.
const PREFIX: usize = 9 + 6 + TARGET + 1;

pub struct LogLine {
    pub text: Style,
    pub dim: Style,
    pub warn: Style,
    pub error: Style,
}

/// The target's last segment, cut to the column.
pub fn short_target(target: &str) -> String {
    let t = target.rsplit("::").next().unwrap_or(target);
    t.chars().take(TARGET).collect()
}

/// `msg` cut into pieces of at most `width` characters (at least one piece).
fn pieces(msg: &str, width: usize) -> Vec<String> {
    let chars: Vec<char> = msg.chars().collect();
    if chars.is_empty() {
        return vec![String::new()];
    }
    chars
        .chunks(width.max(1))
        .map(|c| c.iter().collect())
        .collect()
}

/// One log line as drawn: `HH:MM:SS LEVEL target  message`; a message longer than the width
/// continues under itself, so the first three columns stay clean. Both the tui-logger view and
/// the filtered view draw with this.
pub fn draw(
    time: &str,
    level: &str,
    target: &str,
    msg: &str,
    width: usize,
    style: Style,
    dim: Style,
) -> Vec<Line<'static>> {
    let room = width.saturating_sub(PREFIX).max(10);
    pieces(msg, room)
        .into_iter()
        .enumerate()
        .map(|(i, piece)| {
            let mut spans = if i == 0 {
                vec![
                    Span::styled(format!("{time} "), dim),
                    Span::styled(format!("{level:<5} "), style),
                    Span::styled(format!("{:<TARGET$} ", short_target(target)), dim),
                ]
            } else {
                vec![Span::raw(" ".repeat(PREFIX))]
            };
            spans.push(Span::styled(piece, style));
            Line::from(spans)
        })
        .collect()
}

impl LogFormatter for LogLine {
    fn min_width(&self) -> u16 {
        PREFIX as u16 + 10
    }

    fn format(&self, width: usize, evt: &ExtLogRecord) -> Vec<Line<'_>> {
        let (level, style) = match evt.level {
            log::Level::Error => ("ERROR", self.error),
            log::Level::Warn => ("WARN", self.warn),
            log::Level::Info => ("INFO", self.text),
            log::Level::Debug => ("DEBUG", self.dim),
            log::Level::Trace => ("TRACE", self.dim),
        };
        let time = evt.timestamp.strftime("%H:%M:%S").to_string();
        draw(
            &time,
            level,
            evt.target(),
            evt.msg(),
            width,
            style,
            self.dim,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_are_short_and_long_messages_split_at_the_width() {
        assert_eq!(short_target("ember::service::jobs::runner"), "runner");
        assert_eq!(short_target("ember::service::backend"), "backend");
        assert_eq!(short_target("a::verylongtargetname"), "verylongt");
        assert_eq!(pieces("abcdef", 4), ["abcd", "ef"]);
        assert_eq!(pieces("abc", 4), ["abc"], "a line that fits is not wrapped");
        assert_eq!(pieces("", 4), [""]);
    }
}
