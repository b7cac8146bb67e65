//! The console's own sections of ember's TOML (`[columns]`): read here, their names checked by
//! the console against its tables (the config does not know them).

use std::path::Path;

use super::error::ConfigError;
use super::raw::{RawDoc, RawValue};

/// `[columns]`: each key a table, each value a list of column names.
pub(super) fn columns(
    path: &Path,
    doc: &RawDoc,
) -> Result<std::collections::BTreeMap<String, Vec<String>>, ConfigError> {
    let mut out = std::collections::BTreeMap::new();
    for e in doc.columns.iter().flat_map(|s| &s.entries) {
        match &e.value {
            RawValue::List(names) => {
                out.insert(e.key.clone(), names.clone());
            }
            _ => {
                return Err(ConfigError::Syntax {
                    file: path.to_path_buf(),
                    line: Some(e.line),
                    message: format!(
                        "[columns] {} must be a list of column names, e.g. {} = [\"name\", \"size\"]",
                        e.key, e.key
                    ),
                });
            }
        }
    }
    Ok(out)
}
