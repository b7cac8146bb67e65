//! The raw document: sections of `key = value` with the line each came from.
//!
//! Both accepted formats (ember's TOML and Cinder's `cinder.conf`) are read into this one shape
//! first, so that a single table of options (`options.rs`) types, validates and explains them, and
//! every error can name the file, the line and the key whatever the format.
//! Owner: `config/`. Imports nothing internal.

use std::path::Path;

use super::error::ConfigError;

/// Which syntax a file was written in; told apart by content, not by file name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Format {
    /// ember's own TOML: top-level keys are Cinder's `[DEFAULT]`, backends are `[backends.NAME]`.
    Toml,
    /// An oslo.config INI file as Cinder reads it.
    CinderConf,
}

/// A value as written. TOML values keep their type; INI values are all text and are parsed by
/// the option that reads them.
#[derive(Debug, Clone, PartialEq)]
pub enum RawValue {
    Text(String),
    Str(String),
    Int(i64),
    Float(f64),
    Bool(bool),
    List(Vec<String>),
    /// A TOML table or datetime where a scalar was expected: kept only to say so.
    Other(&'static str),
}

#[derive(Debug, Clone)]
pub struct RawEntry {
    pub key: String,
    pub value: RawValue,
    pub line: usize,
}

#[derive(Debug, Clone)]
pub struct RawSection {
    pub name: String,
    pub line: usize,
    pub entries: Vec<RawEntry>,
}

impl RawSection {
    pub fn get(&self, key: &str) -> Option<&RawEntry> {
        // The last assignment wins, as in oslo.config.
        self.entries.iter().rev().find(|e| e.key == key)
    }
}

/// A parsed file: `DEFAULT` first (possibly empty), then the other sections in file order.
#[derive(Debug, Clone)]
pub struct RawDoc {
    pub format: Format,
    pub default: RawSection,
    /// TOML: the `[backends.NAME]` tables. INI: every section but `DEFAULT`.
    pub sections: Vec<RawSection>,
    /// TOML tables other than `backends` and `columns` (always an error in ember's TOML).
    pub stray_tables: Vec<(String, usize)>,
    /// TOML: the console's `[columns]` table (`volumes = ["name", "size"]`), if written.
    pub columns: Option<RawSection>,
}

impl RawDoc {
    pub fn section(&self, name: &str) -> Option<&RawSection> {
        self.sections.iter().find(|s| s.name == name)
    }
}

/// Reads `text` (from `path`, for messages) in whichever format its content shows.
pub fn parse(path: &Path, text: &str) -> Result<RawDoc, ConfigError> {
    if looks_like_cinder_conf(text) {
        return parse_ini(path, text);
    }
    match parse_toml(path, text) {
        Ok(doc) => Ok(doc),
        // Not TOML: if it reads as INI with at least one section, it is a cinder.conf.
        Err(toml_err) => match parse_ini(path, text) {
            Ok(doc) if !doc.sections.is_empty() || !doc.default.entries.is_empty() => {
                if is_toml_name(path) {
                    Err(toml_err)
                } else {
                    Ok(doc)
                }
            }
            _ => Err(toml_err),
        },
    }
}

fn is_toml_name(path: &Path) -> bool {
    path.extension().is_some_and(|e| e == "toml")
}

/// A `[DEFAULT]` header, or a `;` comment line, never appears in ember's TOML.
fn looks_like_cinder_conf(text: &str) -> bool {
    text.lines()
        .map(str::trim)
        .any(|l| l.eq_ignore_ascii_case("[default]") || l.starts_with(';'))
}

fn line_of(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())]
        .bytes()
        .filter(|b| *b == b'\n')
        .count()
        + 1
}

fn parse_toml(path: &Path, text: &str) -> Result<RawDoc, ConfigError> {
    use toml::de::{DeTable, DeValue};
    let doc = DeTable::parse(text).map_err(|e| {
        let line = e.span().map(|s| line_of(text, s.start));
        ConfigError::Syntax {
            file: path.to_path_buf(),
            line,
            message: e.message().trim().to_string(),
        }
    })?;
    let mut default = RawSection {
        name: "DEFAULT".into(),
        line: 1,
        entries: vec![],
    };
    let mut sections = vec![];
    let mut stray_tables = vec![];
    let mut columns = None;

    fn convert(v: &DeValue<'_>) -> RawValue {
        match v {
            DeValue::String(s) => RawValue::Str(s.to_string()),
            DeValue::Integer(i) => {
                let digits = i.as_str().replace('_', "");
                match i64::from_str_radix(&digits, i.radix()) {
                    Ok(n) => RawValue::Int(n),
                    Err(_) => RawValue::Other("integer out of range"),
                }
            }
            DeValue::Float(f) => {
                RawValue::Float(f.as_str().replace('_', "").parse().unwrap_or(f64::NAN))
            }
            DeValue::Boolean(b) => RawValue::Bool(*b),
            DeValue::Array(items) => {
                let mut out = vec![];
                for item in items {
                    match item.get_ref() {
                        DeValue::String(s) => out.push(s.to_string()),
                        _ => return RawValue::Other("array of non-strings"),
                    }
                }
                RawValue::List(out)
            }
            DeValue::Datetime(_) => RawValue::Other("datetime"),
            DeValue::Table(_) => RawValue::Other("table"),
        }
    }

    for (key, value) in doc.get_ref() {
        let line = line_of(text, key.span().start);
        match value.get_ref() {
            DeValue::Table(t) if key.get_ref() == "backends" => {
                for (name, body) in t {
                    let sline = line_of(text, name.span().start);
                    let mut section = RawSection {
                        name: name.get_ref().to_string(),
                        line: sline,
                        entries: vec![],
                    };
                    match body.get_ref() {
                        DeValue::Table(body) => {
                            for (k, v) in body {
                                section.entries.push(RawEntry {
                                    key: k.get_ref().to_string(),
                                    value: convert(v.get_ref()),
                                    line: line_of(text, k.span().start),
                                });
                            }
                        }
                        _ => {
                            return Err(ConfigError::Syntax {
                                file: path.to_path_buf(),
                                line: Some(sline),
                                message: format!(
                                    "backends.{} must be a table ([backends.{}])",
                                    name.get_ref(),
                                    name.get_ref()
                                ),
                            });
                        }
                    }
                    sections.push(section);
                }
            }
            DeValue::Table(t) if key.get_ref() == "columns" => {
                columns = Some(RawSection {
                    name: "columns".into(),
                    line,
                    entries: t
                        .iter()
                        .map(|(k, v)| RawEntry {
                            key: k.get_ref().to_string(),
                            value: convert(v.get_ref()),
                            line: line_of(text, k.span().start),
                        })
                        .collect(),
                });
            }
            DeValue::Table(_) => stray_tables.push((key.get_ref().to_string(), line)),
            other => default.entries.push(RawEntry {
                key: key.get_ref().to_string(),
                value: convert(other),
                line,
            }),
        }
    }
    sections.sort_by_key(|s| s.line);
    default.entries.sort_by_key(|e| e.line);
    Ok(RawDoc {
        format: Format::Toml,
        default,
        sections,
        stray_tables,
        columns,
    })
}

/// oslo.config's INI dialect. Hand-written because no INI crate reports the line of each key,
/// which every error message here needs, and oslo's dialect (`;`/`#` comments, indented
/// continuation lines, `key: value`, repeated sections that merge) is small.
fn parse_ini(path: &Path, text: &str) -> Result<RawDoc, ConfigError> {
    let mut default = RawSection {
        name: "DEFAULT".into(),
        line: 1,
        entries: vec![],
    };
    let mut sections: Vec<RawSection> = vec![];
    // Index into `sections`, or None for DEFAULT; and whether any section has been opened.
    let mut current: Option<Option<usize>> = None;
    for (idx, raw_line) in text.lines().enumerate() {
        let lineno = idx + 1;
        let trimmed = raw_line.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') || trimmed.starts_with(';') {
            continue;
        }
        let section = |cur: Option<Option<usize>>| -> Result<Option<usize>, ConfigError> {
            cur.ok_or_else(|| ConfigError::Syntax {
                file: path.to_path_buf(),
                line: Some(lineno),
                message: "a value before any [section] header".into(),
            })
        };
        // An indented line continues the previous value.
        if raw_line.starts_with([' ', '\t']) {
            let target = match section(current)? {
                None => &mut default,
                Some(i) => &mut sections[i],
            };
            match target.entries.last_mut() {
                Some(RawEntry {
                    value: RawValue::Text(v),
                    ..
                }) => {
                    v.push('\n');
                    v.push_str(trimmed);
                    continue;
                }
                _ => {
                    return Err(ConfigError::Syntax {
                        file: path.to_path_buf(),
                        line: Some(lineno),
                        message: "an indented continuation line with no value before it".into(),
                    });
                }
            }
        }
        if let Some(rest) = trimmed.strip_prefix('[') {
            let Some(name) = rest.strip_suffix(']') else {
                return Err(ConfigError::Syntax {
                    file: path.to_path_buf(),
                    line: Some(lineno),
                    message: format!("unclosed section header {trimmed:?}"),
                });
            };
            let name = name.trim();
            if name.eq_ignore_ascii_case("DEFAULT") {
                current = Some(None);
            } else if let Some(i) = sections.iter().position(|s| s.name == name) {
                current = Some(Some(i));
            } else {
                sections.push(RawSection {
                    name: name.to_string(),
                    line: lineno,
                    entries: vec![],
                });
                current = Some(Some(sections.len() - 1));
            }
            continue;
        }
        let Some(split) = trimmed.find(['=', ':']) else {
            return Err(ConfigError::Syntax {
                file: path.to_path_buf(),
                line: Some(lineno),
                message: format!("expected \"key = value\", found {trimmed:?}"),
            });
        };
        let key = trimmed[..split].trim().to_string();
        let value = trimmed[split + 1..].trim().to_string();
        let target = match section(current)? {
            None => &mut default,
            Some(i) => &mut sections[i],
        };
        target.entries.push(RawEntry {
            key,
            value: RawValue::Text(value),
            line: lineno,
        });
    }
    Ok(RawDoc {
        format: Format::CinderConf,
        default,
        sections,
        stray_tables: vec![],
        columns: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ini_continuations_and_comments() {
        let text = "# c\n[DEFAULT]\n; c\nenabled_backends = a,\n  b\n[a]\nvolume_driver: file\n";
        let doc = parse(Path::new("x.conf"), text).expect("parses");
        assert_eq!(doc.format, Format::CinderConf);
        assert_eq!(
            doc.default.get("enabled_backends").map(|e| e.value.clone()),
            Some(RawValue::Text("a,\nb".into()))
        );
        assert_eq!(
            doc.section("a")
                .and_then(|s| s.get("volume_driver"))
                .map(|e| e.line),
            Some(7)
        );
    }

    #[test]
    fn toml_lines_and_types() {
        let text = "report_interval = 5\n\n[backends.f0]\nvolume_driver = \"file\"\n";
        let doc = parse(Path::new("x.toml"), text).expect("parses");
        assert_eq!(doc.format, Format::Toml);
        assert_eq!(
            doc.default.get("report_interval").map(|e| e.value.clone()),
            Some(RawValue::Int(5))
        );
        let s = doc.section("f0").expect("backend");
        assert_eq!(s.line, 3);
        assert_eq!(s.get("volume_driver").map(|e| e.line), Some(4));
    }

    #[test]
    fn default_header_means_cinder_conf_even_if_valid_toml() {
        let doc = parse(Path::new("c"), "[DEFAULT]\nreport_interval = 10\n").expect("parses");
        assert_eq!(doc.format, Format::CinderConf);
    }
}
