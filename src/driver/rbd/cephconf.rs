//! What a Ceph client reads before it connects: `ceph.conf` and the keyring for its name.
//!
//! librados says little when these go wrong (a wrong `rbd_user` ends as a bare ENOENT), so the
//! driver's error messages and `ember doctor` repeat Ceph's own lookup here and say what was
//! found where. ceph.conf is read with Ceph's grammar, not oslo's: indentation means nothing,
//! `;` and `#` start comments anywhere, and `mon host`, `mon_host` and `mon-host` are one key.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// One `key = value` of ceph.conf.
#[derive(Debug, Clone)]
struct Entry {
    section: String,
    key: String,
    value: String,
    line: usize,
}

/// A parsed ceph.conf.
#[derive(Debug, Clone)]
pub struct CephConf {
    pub path: PathBuf,
    entries: Vec<Entry>,
}

fn normalize(key: &str) -> String {
    key.trim()
        .split([' ', '_', '-'])
        .filter(|s| !s.is_empty())
        .collect::<Vec<_>>()
        .join("_")
        .to_ascii_lowercase()
}

impl CephConf {
    pub fn parse(path: &Path, text: &str) -> CephConf {
        let mut section = "global".to_string();
        let mut entries = vec![];
        for (i, raw) in text.lines().enumerate() {
            let line = raw.split([';', '#']).next().unwrap_or("").trim();
            if line.is_empty() {
                continue;
            }
            if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
                section = name.trim().to_string();
            } else if let Some((k, v)) = line.split_once('=') {
                entries.push(Entry {
                    section: section.clone(),
                    key: normalize(k),
                    value: v.trim().to_string(),
                    line: i + 1,
                });
            }
        }
        CephConf {
            path: path.to_path_buf(),
            entries,
        }
    }

    pub fn load(path: &Path) -> std::io::Result<CephConf> {
        Ok(Self::parse(path, &std::fs::read_to_string(path)?))
    }

    /// The value `entity` (e.g. `client.cinder`) sees: its own section, then its type's, then
    /// `[global]`. Returns the value and its line.
    pub fn get(&self, entity: &str, key: &str) -> Option<(&str, usize)> {
        let key = normalize(key);
        let kind = entity.split('.').next().unwrap_or(entity);
        [entity, kind, "global"].iter().find_map(|s| {
            self.entries
                .iter()
                .rev()
                .find(|e| e.section == *s && e.key == key)
                .map(|e| (e.value.as_str(), e.line))
        })
    }

    /// Every monitor address the conf names (`mon host`, and `mon addr` of `[mon.X]` sections).
    pub fn monitors(&self) -> Vec<MonAddr> {
        let mut out = vec![];
        if let Some((v, _)) = self.get("client", "mon_host") {
            out.extend(parse_mon_host(v));
        }
        for e in &self.entries {
            if e.section.starts_with("mon.") && e.key == "mon_addr" {
                out.extend(parse_mon_host(&e.value));
            }
        }
        out
    }
}

/// A monitor address and the protocol its port speaks.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct MonAddr {
    /// `v1`, `v2`, or `any` when the conf gave a bare address (both default ports are tried).
    pub proto: &'static str,
    pub host: String,
    pub port: u16,
}

impl std::fmt::Display for MonAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        match self.proto {
            "any" => write!(f, "{host}:{}", self.port),
            p => write!(f, "{p}:{host}:{}", self.port),
        }
    }
}

/// Ceph's `mon_host` forms: `[v2:1.2.3.4:3300,v1:1.2.3.4:6789]`, `1.2.3.4:6789, 5.6.7.8`,
/// `mon1 mon2`. A bare host means both default ports (3300 for v2, 6789 for v1).
pub fn parse_mon_host(value: &str) -> Vec<MonAddr> {
    let mut out = vec![];
    for item in value
        .split([',', ' ', ';', '\t'])
        .map(|s| s.trim_matches(|c| c == '[' || c == ']'))
        .filter(|s| !s.is_empty())
    {
        let (proto, rest) = match item.split_once(':') {
            Some(("v1", r)) => ("v1", r),
            Some(("v2", r)) => ("v2", r),
            _ => ("any", item),
        };
        // host:port, with an optional /nonce after the port.
        let rest = rest.split('/').next().unwrap_or(rest);
        let (host, port) = match rest.rsplit_once(':') {
            Some((h, p)) if !h.contains(':') || h.ends_with(']') => (
                h.trim_matches(|c| c == '[' || c == ']'),
                p.parse::<u16>().ok(),
            ),
            _ => (rest, None),
        };
        match (proto, port) {
            (_, Some(p)) => out.push(MonAddr {
                proto: if proto == "any" && p == 3300 {
                    "v2"
                } else if proto == "any" && p == 6789 {
                    "v1"
                } else {
                    proto
                },
                host: host.into(),
                port: p,
            }),
            ("v2", None) => out.push(MonAddr {
                proto: "v2",
                host: host.into(),
                port: 3300,
            }),
            ("v1", None) => out.push(MonAddr {
                proto: "v1",
                host: host.into(),
                port: 6789,
            }),
            _ => {
                for (p, port) in [("v2", 3300), ("v1", 6789)] {
                    out.push(MonAddr {
                        proto: p,
                        host: host.into(),
                        port,
                    });
                }
            }
        }
    }
    out
}

/// Where librados looks for the conf when `rbd_ceph_conf` is empty.
pub fn default_conf_paths(cluster: &str) -> Vec<PathBuf> {
    let mut v = vec![];
    if let Some(p) = std::env::var_os("CEPH_CONF") {
        v.push(PathBuf::from(p));
    }
    v.push(PathBuf::from(format!("/etc/ceph/{cluster}.conf")));
    if let Some(home) = std::env::var_os("HOME") {
        v.push(
            Path::new(&home)
                .join(".ceph")
                .join(format!("{cluster}.conf")),
        );
    }
    v.push(PathBuf::from(format!("{cluster}.conf")));
    v
}

/// The conf a backend will read: the configured one, or the first of the default paths.
pub fn resolve_conf(cluster: &str, configured: Option<&Path>) -> Result<PathBuf, Vec<PathBuf>> {
    match configured {
        Some(p) => Ok(p.to_path_buf()),
        None => {
            let tried = default_conf_paths(cluster);
            tried.iter().find(|p| p.is_file()).cloned().ok_or(tried)
        }
    }
}

const DEFAULT_KEYRING: &str = "/etc/ceph/$cluster.$name.keyring,/etc/ceph/$cluster.keyring,/etc/ceph/keyring,/etc/ceph/keyring.bin";

/// What the keyring search found for one client.
#[derive(Debug, Clone, serde::Serialize)]
pub struct KeyringSearch {
    /// `client.<user>`.
    pub entity: String,
    /// Where the setting came from: `rbd_keyring_conf`, `ceph.conf:<line>` or `default`.
    pub source: String,
    /// Every path tried, in Ceph's order.
    pub searched: Vec<PathBuf>,
    /// The first readable one (the one librados uses).
    pub found: Option<PathBuf>,
    /// Whether `found` holds an entry for `entity`.
    pub has_entry: bool,
    /// `found` is readable by users other than its owner.
    pub world_readable: bool,
    /// Other keyrings beside the searched paths, with the clients they hold: the likely fix
    /// when the right one is missing.
    pub nearby: Vec<(PathBuf, Vec<String>)>,
}

impl KeyringSearch {
    /// The problem, and its fix, when librados will not find a key for the entity.
    pub fn problem(&self) -> Option<(String, String)> {
        let entity = &self.entity;
        match &self.found {
            Some(_) if self.has_entry => None,
            Some(p) => Some((
                format!("{} has no [{entity}] entry", p.display()),
                format!(
                    "add the key of {entity} to {} (ceph auth get {entity})",
                    p.display()
                ),
            )),
            None => {
                let tried = self
                    .searched
                    .iter()
                    .map(|p| p.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ");
                let cause = format!("no keyring for {entity} (looked in {tried})");
                // Another service's client key is the likely mix-up; the admin key never is the
                // fix (a volume service must not run as admin).
                let usable = |c: &String| c.starts_with("client.") && c != "client.admin";
                let other = self
                    .nearby
                    .iter()
                    .find(|(_, clients)| clients.iter().any(usable));
                let fix = match other {
                    Some((path, clients)) => {
                        let client = clients
                            .iter()
                            .find(|c| usable(c))
                            .map(String::as_str)
                            .unwrap_or("");
                        let theirs = client.strip_prefix("client.").unwrap_or(client);
                        let want = self
                            .searched
                            .first()
                            .map(|p| p.display().to_string())
                            .unwrap_or_default();
                        format!(
                            "{} holds {client}, not {entity}: set rbd_user = {theirs}, or \
                             rbd_keyring_conf to a keyring with {entity} (e.g. {want})",
                            path.display()
                        )
                    }
                    None => format!(
                        "put the key of {entity} in {} (ceph auth get {entity} -o FILE), or set rbd_keyring_conf",
                        self.searched
                            .first()
                            .map(|p| p.display().to_string())
                            .unwrap_or_default()
                    ),
                };
                Some((cause, fix))
            }
        }
    }
}

/// The client names a keyring file holds (its `[client.x]` section headers).
pub fn keyring_entities(path: &Path) -> std::io::Result<Vec<String>> {
    let bytes = std::fs::read(path)?;
    let text = String::from_utf8_lossy(&bytes);
    Ok(text
        .lines()
        .filter_map(|l| {
            let l = l.trim();
            l.strip_prefix('[')?
                .strip_suffix(']')
                .map(|s| s.trim().to_string())
        })
        .collect())
}

fn expand(template: &str, cluster: &str, entity: &str) -> String {
    let id = entity.split_once('.').map_or(entity, |(_, id)| id);
    template
        .replace("$cluster", cluster)
        .replace("${cluster}", cluster)
        .replace("$name", entity)
        .replace("${name}", entity)
        .replace("$id", id)
        .replace("${id}", id)
}

/// Ceph's keyring lookup for `client.<user>`: `rbd_keyring_conf`, else the conf's `keyring`
/// (`$cluster`/`$name` expanded), else the defaults under /etc/ceph. The first readable file
/// is the one used, whether or not it holds the entity.
pub fn find_keyring(
    cluster: &str,
    user: &str,
    conf: Option<&CephConf>,
    keyring_conf: Option<&Path>,
) -> KeyringSearch {
    let entity = format!("client.{user}");
    let (template, source) = match (keyring_conf, conf.and_then(|c| c.get(&entity, "keyring"))) {
        (Some(k), _) => (k.display().to_string(), "rbd_keyring_conf".to_string()),
        (None, Some((v, line))) => (
            v.to_string(),
            format!(
                "{}:{line}",
                conf.map(|c| c.path.display().to_string())
                    .unwrap_or_default()
            ),
        ),
        (None, None) => (DEFAULT_KEYRING.to_string(), "default".to_string()),
    };
    let searched: Vec<PathBuf> = template
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| PathBuf::from(expand(s, cluster, &entity)))
        .collect();
    let found = searched
        .iter()
        .find(|p| std::fs::File::open(p).is_ok())
        .cloned();
    let (has_entry, world_readable) = match &found {
        Some(p) => {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(p)
                .map(|m| m.permissions().mode())
                .unwrap_or(0);
            let binary = p.extension().is_some_and(|e| e == "bin");
            let has = binary
                || keyring_entities(p)
                    .map(|e| e.iter().any(|x| x == &entity))
                    .unwrap_or(false);
            (has, mode & 0o004 != 0)
        }
        None => (false, false),
    };
    let dirs: BTreeSet<PathBuf> = searched
        .iter()
        .filter_map(|p| p.parent().map(Path::to_path_buf))
        .collect();
    let mut nearby = vec![];
    if found.is_none() || !has_entry {
        for dir in dirs {
            let Ok(rd) = std::fs::read_dir(&dir) else {
                continue;
            };
            let mut files: Vec<PathBuf> = rd
                .flatten()
                .map(|e| e.path())
                .filter(|p| p.to_string_lossy().ends_with(".keyring"))
                .collect();
            files.sort();
            for f in files {
                if let Ok(ents) = keyring_entities(&f)
                    && !ents.is_empty()
                    && !ents.contains(&entity)
                {
                    nearby.push((f, ents));
                }
            }
        }
    }
    KeyringSearch {
        entity,
        source,
        searched,
        found,
        has_entry,
        world_readable,
        nearby,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mon_host_forms() {
        let v = parse_mon_host("[v2:127.0.0.1:3300,v1:127.0.0.1:6789]");
        assert_eq!(v.len(), 2);
        assert_eq!((v[0].proto, v[0].port), ("v2", 3300));
        assert_eq!((v[1].proto, v[1].port), ("v1", 6789));
        let v = parse_mon_host("10.0.0.1, 10.0.0.2:6790");
        assert_eq!(v.len(), 3);
        assert_eq!(v[2].to_string(), "10.0.0.2:6790");
    }

    #[test]
    fn conf_lookup_order_and_key_spelling() {
        let c = CephConf::parse(
            Path::new("c"),
            "[global]\n mon host = a ; comment\nkeyring = /g\n[client]\nkeyring=/c\n[client.x]\n  Keyring = /x\n",
        );
        assert_eq!(c.get("client.x", "keyring"), Some(("/x", 7)));
        assert_eq!(c.get("client.y", "keyring"), Some(("/c", 5)));
        assert_eq!(c.get("mon.a", "keyring"), Some(("/g", 3)));
        assert_eq!(c.get("client.x", "mon-host").map(|v| v.0), Some("a"));
    }

    #[test]
    fn wrong_user_names_the_keyring_that_exists() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let conf_text = format!(
            "[client]\nkeyring = {}/ceph.$name.keyring\n",
            dir.path().display()
        );
        std::fs::write(
            dir.path().join("ceph.client.cinder.keyring"),
            "[client.cinder]\n\tkey = X\n",
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let conf = CephConf::parse(&dir.path().join("ceph.conf"), &conf_text);
        let s = find_keyring("ceph", "cinder-x", Some(&conf), None);
        let (cause, fix) = s.problem().unwrap_or_else(|| panic!("no problem found"));
        assert!(cause.contains("ceph.client.cinder-x.keyring"), "{cause}");
        assert!(
            fix.contains("ceph.client.cinder.keyring holds client.cinder"),
            "{fix}"
        );
        assert!(fix.contains("rbd_user = cinder"), "{fix}");
        assert!(
            find_keyring("ceph", "cinder", Some(&conf), None)
                .problem()
                .is_none()
        );
    }
}
