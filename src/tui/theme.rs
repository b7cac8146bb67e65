//! Themes are files in `themes/` (TOML, a colour per role), compiled in; `--theme` picks one by
//! name or loads a path. A user theme lists only what it changes: it is read over the default.
//! `NO_COLOR` turns colours off (selection stays visible by reversing).

use ratatui::style::{Color, Modifier, Style};
use serde::Deserialize;

const DARK: &str = include_str!("../../themes/dark.toml");
const LIGHT: &str = include_str!("../../themes/light.toml");
const HIGH_CONTRAST: &str = include_str!("../../themes/high-contrast.toml");

/// Names of the shipped themes.
pub const SHIPPED: &[&str] = &["dark", "light", "high-contrast"];

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ThemeFile {
    header_fg: Option<String>,
    header_bg: Option<String>,
    text: Option<String>,
    dim: Option<String>,
    selected_fg: Option<String>,
    selected_bg: Option<String>,
    ok: Option<String>,
    warn: Option<String>,
    error: Option<String>,
    gauge: Option<String>,
    border: Option<String>,
    accent: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Theme {
    pub header: Style,
    pub text: Style,
    pub dim: Style,
    pub selected: Style,
    pub ok: Style,
    pub warn: Style,
    pub error: Style,
    pub gauge: Color,
    pub border: Style,
    pub accent: Style,
}

fn color(s: &Option<String>, default: Color) -> Color {
    s.as_deref()
        .and_then(|c| c.parse::<Color>().ok())
        .unwrap_or(default)
}

impl Theme {
    fn from_file(f: &ThemeFile) -> Theme {
        let c = |v: &Option<String>| color(v, Color::Reset);
        Theme {
            header: Style::new()
                .fg(c(&f.header_fg))
                .bg(c(&f.header_bg))
                .add_modifier(Modifier::BOLD),
            text: Style::new().fg(c(&f.text)),
            dim: Style::new().fg(c(&f.dim)),
            selected: Style::new()
                .fg(c(&f.selected_fg))
                .bg(c(&f.selected_bg))
                .add_modifier(Modifier::BOLD),
            ok: Style::new().fg(c(&f.ok)),
            warn: Style::new().fg(c(&f.warn)).add_modifier(Modifier::BOLD),
            error: Style::new().fg(c(&f.error)).add_modifier(Modifier::BOLD),
            gauge: c(&f.gauge),
            border: Style::new().fg(c(&f.border)),
            accent: Style::new().fg(c(&f.accent)),
        }
    }

    /// No colours at all: for `NO_COLOR` and dumb terminals.
    pub fn monochrome() -> Theme {
        Theme {
            header: Style::new().add_modifier(Modifier::REVERSED | Modifier::BOLD),
            text: Style::new(),
            dim: Style::new(),
            selected: Style::new().add_modifier(Modifier::REVERSED),
            ok: Style::new(),
            warn: Style::new().add_modifier(Modifier::BOLD),
            error: Style::new().add_modifier(Modifier::BOLD | Modifier::UNDERLINED),
            gauge: Color::Reset,
            border: Style::new(),
            accent: Style::new().add_modifier(Modifier::BOLD),
        }
    }

    /// A shipped theme by name, or a theme file read over the default.
    pub fn load(name: Option<&str>) -> Result<Theme, String> {
        if std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty()) {
            return Ok(Theme::monochrome());
        }
        let parse = |text: &str, what: &str| {
            toml::from_str::<ThemeFile>(text).map_err(|e| format!("theme {what}: {e}"))
        };
        let base = parse(DARK, "dark")?;
        let file = match name.unwrap_or("dark") {
            "dark" => return Ok(Theme::from_file(&base)),
            "light" => parse(LIGHT, "light")?,
            "high-contrast" => parse(HIGH_CONTRAST, "high-contrast")?,
            path => {
                let text = std::fs::read_to_string(path).map_err(|e| {
                    format!(
                        "theme {path:?}: {e} (shipped themes: {})",
                        SHIPPED.join(", ")
                    )
                })?;
                parse(&text, path)?
            }
        };
        // Over the default: a user file lists only what it changes.
        let merged = ThemeFile {
            header_fg: file.header_fg.or(base.header_fg),
            header_bg: file.header_bg.or(base.header_bg),
            text: file.text.or(base.text),
            dim: file.dim.or(base.dim),
            selected_fg: file.selected_fg.or(base.selected_fg),
            selected_bg: file.selected_bg.or(base.selected_bg),
            ok: file.ok.or(base.ok),
            warn: file.warn.or(base.warn),
            error: file.error.or(base.error),
            gauge: file.gauge.or(base.gauge),
            border: file.border.or(base.border),
            accent: file.accent.or(base.accent),
        };
        Ok(Theme::from_file(&merged))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shipped_themes_load() {
        for t in SHIPPED {
            let th = Theme::load(Some(t)).expect("loads");
            assert_ne!(th.selected, Style::new(), "{t}");
        }
        assert!(Theme::load(Some("/nonexistent/theme.toml")).is_err());
    }
}
