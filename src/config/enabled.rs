//! Which sections of a config file ember reads: the service-wide keys it knows (anything
//! else is an error in TOML, a note in cinder.conf, which configures Cinder's other services
//! too) and the backends it runs.

use std::path::Path;

use super::options::{BACKEND_KEYS, Lookup, SERVICE_KEYS, closest, section_label};
use super::raw::{Format, RawDoc};
use super::{ConfigError, cinder};

/// TOML: an unknown top-level key or table is fatal. cinder.conf: listed, because the same
/// file configures the API, scheduler and backup services too.
pub(super) fn check_service_keys(
    path: &Path,
    doc: &RawDoc,
    notes: &mut Vec<String>,
) -> Result<(), ConfigError> {
    let known = || SERVICE_KEYS.iter().chain(BACKEND_KEYS).copied();
    let mut unknown = vec![];
    for e in doc
        .default
        .entries
        .iter()
        .filter(|e| !known().any(|k| k == e.key))
    {
        match cinder::not_used(&e.key) {
            Some(why) => notes.push(format!(
                "{}:{}: {} in {}: a Cinder option ember does not use ({why})",
                path.display(),
                e.line,
                e.key,
                section_label(doc.format, "DEFAULT")
            )),
            None => unknown.push(e),
        }
    }
    match doc.format {
        Format::Toml => {
            if let Some(e) = unknown.first() {
                return Err(ConfigError::UnknownKey {
                    file: path.to_path_buf(),
                    line: e.line,
                    section: "the top level".into(),
                    key: e.key.clone(),
                    suggestion: closest(&e.key, known().chain(["backends"])),
                });
            }
            if let Some((name, line)) = doc.stray_tables.first() {
                return Err(ConfigError::UnknownKey {
                    file: path.to_path_buf(),
                    line: *line,
                    section: "the top level".into(),
                    key: format!("[{name}]"),
                    suggestion: closest(name, ["backends"]).map(|_| "[backends.NAME]".into()),
                });
            }
        }
        Format::CinderConf => {
            if !unknown.is_empty() {
                let names: Vec<_> = unknown.iter().map(|e| e.key.as_str()).collect();
                notes.push(format!(
                    "ignored [DEFAULT] keys (not ember's): {}",
                    names.join(", ")
                ));
            }
        }
    }
    Ok(())
}

/// The backends to run: `enabled_backends`, else (TOML) every `[backends.NAME]`; cinder.conf's
/// layout before Ocata (a driver in [DEFAULT]) is refused with the way out.
pub(super) fn enabled_backend_names(
    path: &Path,
    doc: &RawDoc,
    service: &Lookup<'_>,
    notes: &mut Vec<String>,
) -> Result<Vec<String>, ConfigError> {
    let listed = service.list("enabled_backends")?;
    // `enabled_backends =` (empty) beside a driver in [DEFAULT] is the pre-Ocata layout too.
    let legacy_empty = listed.as_ref().is_some_and(|l| l.is_empty())
        && doc.format == Format::CinderConf
        && doc.default.get("volume_driver").is_some();
    if let Some(list) = listed.filter(|_| !legacy_empty) {
        let mut seen = std::collections::HashSet::new();
        let names: Vec<String> = list
            .into_iter()
            .filter(|n| seen.insert(n.clone()))
            .collect();
        if doc.format == Format::CinderConf {
            let other: Vec<_> = doc
                .sections
                .iter()
                .filter(|s| !names.contains(&s.name) && s.name != "backend_defaults")
                .map(|s| {
                    if s.get("volume_driver").is_some() {
                        format!("[{}] (a backend not in enabled_backends)", s.name)
                    } else {
                        format!("[{}]", s.name)
                    }
                })
                .collect();
            if !other.is_empty() {
                notes.push(format!("sections not used by ember: {}", other.join(", ")));
            }
        }
        return Ok(names);
    }
    match doc.format {
        Format::Toml => Ok(doc.sections.iter().map(|s| s.name.clone()).collect()),
        Format::CinderConf => match doc.default.get("volume_driver") {
            // Cinder's layout before Ocata: refused there since, and here, with the way out.
            Some(driver) => {
                let name = service
                    .string("volume_backend_name")?
                    .filter(|n| !n.is_empty());
                Err(cinder::legacy_layout(path, doc, driver, name))
            }
            None => Ok(vec![]),
        },
    }
}
