//! The option vocabulary (Cinder's names) and typed reads over a chain of raw sections.
//!
//! A backend option is looked up in the backend's section, then `[backend_defaults]`, then
//! `[DEFAULT]`, as Cinder does for shared backend options, so one table serves both formats.

use std::path::Path;

use super::error::ConfigError;
use super::raw::{Format, RawEntry, RawSection, RawValue};

/// Keys of `[DEFAULT]` (the top level of ember's TOML) that ember reads.
pub const SERVICE_KEYS: &[&str] = &[
    "enabled_backends",
    "host",
    "backend_host",
    "cluster",
    "report_interval",
    "service_down_time",
    "periodic_interval",
    "periodic_fuzzy_delay",
    "backend_native_threads_pool_size",
    "data_dir",
    "backup_posix_path",
    "backup_ceph_max_snapshots",
    "backup_driver",
    "backup_ceph_conf",
    "backup_ceph_user",
    "backup_ceph_pool",
    "database_url",
    "read_only",
    "keymap",
    "theme",
    "mouse",
    "drain_timeout",
    "metrics_listen",
    "log_format",
];

/// Keys of a backend section.
pub const BACKEND_KEYS: &[&str] = &[
    "volume_driver",
    "volume_backend_name",
    "file_dir",
    "rbd_pool",
    "rbd_user",
    "rbd_ceph_conf",
    "rbd_keyring_conf",
    "rbd_cluster_name",
    "rbd_secret_uuid",
    "rbd_max_clone_depth",
    "rbd_flatten_volume_from_snapshot",
    "rados_connect_timeout",
    "rados_connection_retries",
    "rados_connection_interval",
    "rbd_store_chunk_size",
    "rbd_concurrent_flatten_operations",
    "rbd_exclusive_cinder_pool",
    "report_dynamic_total_capacity",
    "deferred_deletion_delay",
    "deferred_deletion_purge_interval",
    "max_over_subscription_ratio",
    "reserved_percentage",
    "enable_deferred_deletion",
    "backend_native_threads_pool_size",
    "volume_copy_bps_limit",
    "backend_host",
    "file_shared_storage",
    "fake_latency_ms",
    "fake_blocking",
    "fake_fail_op",
    "fake_fail_busy",
    "fake_fail_call",
    "fake_fail_at_percent",
    "fake_copy_mib",
];

/// The known key closest to a misspelt one, if any is close enough to be a likely typo.
pub fn closest<'k>(key: &str, known: impl IntoIterator<Item = &'k str>) -> Option<String> {
    known
        .into_iter()
        .map(|k| (strsim::jaro_winkler(key, k), k))
        .filter(|(score, _)| *score >= 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, k)| k.to_string())
}

/// How a section is named in messages, in the syntax of the file the operator wrote.
pub fn section_label(format: Format, name: &str) -> String {
    match (format, name) {
        (Format::Toml, "DEFAULT") => "the top level".into(),
        (Format::Toml, n) => format!("[backends.{n}]"),
        (Format::CinderConf, n) => format!("[{n}]"),
    }
}

/// Typed reads of one option over a chain of sections, first match wins.
pub struct Lookup<'a> {
    pub file: &'a Path,
    pub format: Format,
    pub chain: Vec<&'a RawSection>,
}

impl<'a> Lookup<'a> {
    pub fn find(&self, key: &str) -> Option<(&'a RawEntry, &'a RawSection)> {
        self.chain.iter().find_map(|s| s.get(key).map(|e| (e, *s)))
    }

    fn bad(&self, e: &RawEntry, s: &RawSection, expected: &str) -> ConfigError {
        ConfigError::Value {
            file: self.file.to_path_buf(),
            line: e.line,
            section: section_label(self.format, &s.name),
            key: e.key.clone(),
            expected: expected.to_string(),
            found: describe(&e.value),
        }
    }

    /// [`Self::bad`] for a key that was found (its value read, and not what was expected).
    fn bad_key(&self, key: &str, expected: &str) -> ConfigError {
        match self.find(key) {
            Some((e, s)) => self.bad(e, s, expected),
            None => ConfigError::Value {
                file: self.file.to_path_buf(),
                line: 0,
                section: String::new(),
                key: key.to_string(),
                expected: expected.to_string(),
                found: "nothing".into(),
            },
        }
    }

    /// The line an option was set on, for messages about its meaning rather than its syntax.
    pub fn line(&self, key: &str) -> Option<usize> {
        self.find(key).map(|(e, _)| e.line)
    }

    /// An `ADDRESS:PORT` to listen on (`127.0.0.1:9477`, `[::1]:9477`); None when unset or
    /// empty.
    pub fn socket_addr(&self, key: &str) -> Result<Option<std::net::SocketAddr>, ConfigError> {
        let Some(text) = self.string(key)?.filter(|t| !t.is_empty()) else {
            return Ok(None);
        };
        match text.parse() {
            Ok(a) => Ok(Some(a)),
            Err(_) => Err(self.bad_key(key, "an IP address and port, such as 127.0.0.1:9477")),
        }
    }

    /// One of `allowed` (as written there), or None when unset.
    pub fn choice(
        &self,
        key: &str,
        allowed: &[&'static str],
    ) -> Result<Option<&'static str>, ConfigError> {
        let Some(text) = self.string(key)? else {
            return Ok(None);
        };
        match allowed.iter().find(|a| a.eq_ignore_ascii_case(&text)) {
            Some(a) => Ok(Some(a)),
            None => Err(self.bad_key(key, &allowed.join(" or "))),
        }
    }

    pub fn string(&self, key: &str) -> Result<Option<String>, ConfigError> {
        match self.find(key) {
            None => Ok(None),
            Some((e, s)) => match &e.value {
                RawValue::Text(t) | RawValue::Str(t) => Ok(Some(t.trim().to_string())),
                _ => Err(self.bad(e, s, "a string")),
            },
        }
    }

    pub fn int(&self, key: &str, default: i64, min: i64, max: i64) -> Result<i64, ConfigError> {
        let Some((e, s)) = self.find(key) else {
            return Ok(default);
        };
        let n = match &e.value {
            RawValue::Int(n) => Some(*n),
            RawValue::Text(t) => t.trim().parse::<i64>().ok(),
            _ => None,
        };
        let expected = if max == i64::MAX {
            format!("a whole number >= {min}")
        } else {
            format!("a whole number from {min} to {max}")
        };
        match n {
            Some(n) if (min..=max).contains(&n) => Ok(n),
            _ => Err(self.bad(e, s, &expected)),
        }
    }

    pub fn float(&self, key: &str, default: f64, min: f64) -> Result<f64, ConfigError> {
        let Some((e, s)) = self.find(key) else {
            return Ok(default);
        };
        let n = match &e.value {
            RawValue::Int(n) => Some(*n as f64),
            RawValue::Float(f) => Some(*f),
            RawValue::Text(t) => t.trim().parse::<f64>().ok(),
            _ => None,
        };
        match n {
            Some(n) if n.is_finite() && n >= min => Ok(n),
            _ => Err(self.bad(e, s, &format!("a number >= {min}"))),
        }
    }

    pub fn bool(&self, key: &str, default: bool) -> Result<bool, ConfigError> {
        let Some((e, s)) = self.find(key) else {
            return Ok(default);
        };
        let b = match &e.value {
            RawValue::Bool(b) => Some(*b),
            // oslo.config's spellings.
            RawValue::Text(t) => match t.trim().to_ascii_lowercase().as_str() {
                "true" | "yes" | "on" | "1" => Some(true),
                "false" | "no" | "off" | "0" => Some(false),
                _ => None,
            },
            _ => None,
        };
        b.ok_or_else(|| self.bad(e, s, "true or false"))
    }

    /// A list: a TOML array of strings, or comma-separated text (oslo's ListOpt).
    pub fn list(&self, key: &str) -> Result<Option<Vec<String>>, ConfigError> {
        let Some((e, s)) = self.find(key) else {
            return Ok(None);
        };
        match &e.value {
            RawValue::List(items) => Ok(Some(items.iter().map(|i| i.trim().to_string()).collect())),
            RawValue::Text(t) | RawValue::Str(t) => Ok(Some(
                t.split([',', '\n'])
                    .map(str::trim)
                    .filter(|x| !x.is_empty())
                    .map(str::to_string)
                    .collect(),
            )),
            _ => Err(self.bad(e, s, "a list of names")),
        }
    }
}

fn describe(v: &RawValue) -> String {
    match v {
        RawValue::Text(t) | RawValue::Str(t) => format!("{t:?}"),
        RawValue::Int(n) => n.to_string(),
        RawValue::Float(f) => f.to_string(),
        RawValue::Bool(b) => b.to_string(),
        RawValue::List(l) => format!("{l:?}"),
        RawValue::Other(what) => format!("a {what}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn closest_finds_typos_only() {
        assert_eq!(
            closest("rbd_pol", BACKEND_KEYS.iter().copied()).as_deref(),
            Some("rbd_pool")
        );
        assert_eq!(
            closest("report_intervall", SERVICE_KEYS.iter().copied()).as_deref(),
            Some("report_interval")
        );
        assert_eq!(closest("zzzz", BACKEND_KEYS.iter().copied()), None);
    }
}
