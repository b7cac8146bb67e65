//! Config errors. Every variant names the file and, where there is one, the line and the key,
//! because the operator reading it is looking at that file in another window.

use std::path::PathBuf;

use thiserror::Error;

#[derive(Debug, Error, Clone, PartialEq)]
pub enum ConfigError {
    #[error("{}: cannot read config: {message}", file.display())]
    Io { file: PathBuf, message: String },

    #[error("no config file found; looked for {}", list_paths(tried))]
    NotFound { tried: Vec<PathBuf> },

    #[error("{}{}: {message}", file.display(), at_line(*line))]
    Syntax {
        file: PathBuf,
        line: Option<usize>,
        message: String,
    },

    #[error("{}:{line}: unknown key \"{key}\" in {section}{}", file.display(), did_you_mean(suggestion))]
    UnknownKey {
        file: PathBuf,
        line: usize,
        section: String,
        key: String,
        suggestion: Option<String>,
    },

    #[error("{}:{line}: {key} in {section}: expected {expected}, found {found}", file.display())]
    Value {
        file: PathBuf,
        line: usize,
        section: String,
        key: String,
        expected: String,
        found: String,
    },

    #[error("{}: enabled_backends names \"{name}\" but there is no {section} section", file.display())]
    MissingSection {
        file: PathBuf,
        name: String,
        section: String,
    },

    #[error(
        "{}:{line}: unknown volume_driver \"{driver}\" in {section}; expected \"file\", \"rbd\" (or cinder.volume.drivers.rbd.RBDDriver) or \"fake\"",
        file.display()
    )]
    UnknownDriver {
        file: PathBuf,
        line: usize,
        section: String,
        driver: String,
    },

    #[error("{}{}: {section} has no {key}: {why}", file.display(), at_line(*line))]
    Missing {
        file: PathBuf,
        line: Option<usize>,
        section: String,
        key: String,
        why: String,
    },

    #[error(
        "{}:{line}: the old single-backend layout (driver options in [DEFAULT], no enabled_backends), which Cinder stopped supporting in Ocata; found in [DEFAULT]: {found}; add `enabled_backends = {name}` to [DEFAULT] and a line `[{name}]` above those options",
        file.display()
    )]
    LegacyLayout {
        file: PathBuf,
        line: usize,
        found: String,
        name: String,
    },

    #[error("{}: no backend configured: add a [backends.NAME] table (TOML) or enabled_backends and its sections (cinder.conf)", file.display())]
    NoBackends { file: PathBuf },
}

fn at_line(line: Option<usize>) -> String {
    line.map(|l| format!(":{l}")).unwrap_or_default()
}

fn did_you_mean(s: &Option<String>) -> String {
    s.as_ref()
        .map(|s| format!("; did you mean \"{s}\"?"))
        .unwrap_or_default()
}

fn list_paths(paths: &[PathBuf]) -> String {
    paths
        .iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(", ")
}
