//! Ceph's health checks read through the backend's own connection (`health detail`) and
//! explained for this backend with the table in `health_codes`.

use serde_json::Value;

use super::health_codes::{self, Area};
use crate::driver::health::{HealthFinding, Impact, Reach};

/// Detail lines kept per check as evidence (Ceph can list thousands of PGs).
const MAX_DETAIL: usize = 8;

/// What ember knows about the backend's pool when it reads the checks.
#[derive(Debug, Clone, Default)]
pub struct PoolFacts {
    pub name: String,
    /// Ceph's pool id, which prefixes its placement group ids (`1.a`); None if unknown.
    pub id: Option<i64>,
    /// The pool's byte quota (0: none); None if it could not be read.
    pub quota_bytes: Option<u64>,
}

/// Every active check of a `health detail` answer, explained for the pool in `pool`.
pub fn assess_all(health: &Value, pool: &PoolFacts) -> Vec<HealthFinding> {
    let Some(checks) = health["checks"].as_object() else {
        return vec![];
    };
    let mut out: Vec<HealthFinding> = checks
        .iter()
        .map(|(code, check)| assess(code, check, pool))
        .collect();
    // Worst first, then by code, so a report reads the same every time.
    out.sort_by(|a, b| b.impact.cmp(&a.impact).then_with(|| a.code.cmp(&b.code)));
    out
}

/// One check, from its JSON (`severity`, `summary.message`, `detail[].message`, `muted`).
pub fn assess(code: &str, check: &Value, pool: &PoolFacts) -> HealthFinding {
    let severity = check["severity"]
        .as_str()
        .unwrap_or("HEALTH_WARN")
        .to_string();
    let summary = check["summary"]["message"]
        .as_str()
        .unwrap_or("")
        .to_string();
    let detail: Vec<String> = check["detail"]
        .as_array()
        .map(|d| {
            d.iter()
                .filter_map(|x| x["message"].as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default();
    let mut evidence = vec![format!("{code} ({severity}): {summary}")];
    evidence.extend(detail.iter().take(MAX_DETAIL).cloned());
    if detail.len() > MAX_DETAIL {
        evidence.push(format!(
            "... {} more (ceph health detail)",
            detail.len() - MAX_DETAIL
        ));
    }
    let muted = check["muted"].as_bool().unwrap_or(false);

    let (area, mut impact, means, fix) = match health_codes::lookup(code) {
        Some(info) => (info.area, info.impact, info.means.to_string(), info.fix),
        None if health_codes::is_cephfs(code) => (
            Area::Cluster,
            Impact::Info,
            "a CephFS check: no bearing on volumes".to_string(),
            "see ceph fs status",
        ),
        None => (
            Area::Cluster,
            Impact::Slows,
            format!("ember does not know what {code} means for volumes"),
            "read ceph health detail and Ceph's health-checks page",
        ),
    };
    // Flags that stop all client I/O, as opposed to maintenance flags such as noout.
    if code == "OSDMAP_FLAGS" && stops_io(&summary) {
        impact = Impact::Blocks;
    }
    let reach = match area {
        Area::Cluster => Reach::Cluster,
        Area::Pool => names_pool(&detail, &summary, &pool.name),
        Area::Pg => names_pgs_of(&detail, pool.id),
    };
    if reach == Reach::OtherPool {
        impact = Impact::Info;
    }
    let headline = headline(code, &summary, &detail, pool, reach);
    // Another pool's check is fixed on that pool, not on this backend's.
    let named = match reach {
        Reach::OtherPool => PoolFacts {
            name: first_quoted(&detail).unwrap_or_else(|| "<pool>".into()),
            ..PoolFacts::default()
        },
        _ => pool.clone(),
    };
    HealthFinding {
        code: code.to_string(),
        severity,
        reach,
        impact,
        summary: if reach == Reach::OtherPool {
            format!(
                "{headline}; pool {} (this backend's) is not affected",
                pool.name
            )
        } else {
            format!("{headline}: {means}")
        },
        headline,
        evidence,
        fix: fill(fix, &named, &detail),
        muted,
    }
}

/// `pause`, `pauserd`, `pausewr` or `full` among the flags of an `OSDMAP_FLAGS` summary
/// (`pauserd,pausewr flag(s) set`).
fn stops_io(summary: &str) -> bool {
    summary
        .split_whitespace()
        .next()
        .unwrap_or("")
        .split(',')
        .any(|f| matches!(f, "pause" | "pauserd" | "pausewr" | "full"))
}

/// Whether a pool check names `pool`. Ceph quotes pool names (`pool 'volumes' is full`); a
/// check with no detail to tell by counts as this pool's, which errs on the side of telling.
fn names_pool(detail: &[String], summary: &str, pool: &str) -> Reach {
    let quoted = format!("'{pool}'");
    let lines: Vec<&String> = if detail.is_empty() {
        vec![]
    } else {
        detail.iter().collect()
    };
    if lines.is_empty() {
        return if summary.contains(&quoted) || !summary.contains('\'') {
            Reach::ThisPool
        } else {
            Reach::OtherPool
        };
    }
    let named = |l: &str| {
        l.contains(&quoted)
            || l.split(|c: char| !(c.is_alphanumeric() || "._-".contains(c)))
                .any(|w| w == pool)
    };
    if lines.iter().any(|l| named(l)) {
        Reach::ThisPool
    } else {
        Reach::OtherPool
    }
}

/// Whether a PG check names a placement group of pool `id` (`pg 1.a is stuck inactive`).
fn names_pgs_of(detail: &[String], id: Option<i64>) -> Reach {
    let Some(id) = id else {
        return Reach::ThisPool;
    };
    let prefix = format!("{id}.");
    let mut any_pg = false;
    for line in detail {
        for w in line.split_whitespace() {
            let w = w.trim_matches(|c: char| !c.is_ascii_alphanumeric() && c != '.');
            if let Some((pool, pg)) = w.split_once('.')
                && pool.parse::<i64>().is_ok()
                && !pg.is_empty()
                && pg.chars().all(|c| c.is_ascii_hexdigit())
            {
                any_pg = true;
                if w.starts_with(&prefix) {
                    return Reach::ThisPool;
                }
            }
        }
    }
    // A truncated list ("... and N more") may hide this pool's PGs: tell rather than hide.
    let truncated = detail.iter().any(|l| l.contains("more"));
    if any_pg && !truncated {
        Reach::OtherPool
    } else {
        Reach::ThisPool
    }
}

/// What is wrong, in one short phrase: for the pool's own checks with the pool's name (and,
/// for a full pool, its quota), else Ceph's summary.
fn headline(
    code: &str,
    summary: &str,
    detail: &[String],
    pool: &PoolFacts,
    reach: Reach,
) -> String {
    let p = &pool.name;
    match (code, reach) {
        ("POOL_FULL", Reach::ThisPool) => {
            let by_quota = detail.iter().any(|l| l.contains("quota"));
            match pool.quota_bytes.filter(|q| *q > 0) {
                Some(q) if by_quota => format!("pool {p} is full (quota {})", human(q)),
                _ if by_quota => format!("pool {p} is full (its quota is reached)"),
                _ => format!("pool {p} is full (its OSDs are full)"),
            }
        }
        ("POOL_NEARFULL", Reach::ThisPool) => match pool.quota_bytes.filter(|q| *q > 0) {
            Some(q) => format!("pool {p} is nearly full (quota {})", human(q)),
            None => format!("pool {p} is nearly full"),
        },
        (_, Reach::ThisPool) if !detail.is_empty() => {
            let mine: Vec<&String> = detail
                .iter()
                .filter(|l| l.contains(&format!("'{p}'")))
                .collect();
            match mine.first() {
                Some(l) => l.replace(&format!("'{p}'"), p),
                None => summary.to_string(),
            }
        }
        (_, Reach::OtherPool) => detail
            .first()
            .map_or_else(|| summary.to_string(), |l| l.replace('\'', "")),
        _ => summary.to_string(),
    }
}

/// The first name Ceph quoted in a check's detail (`pool 'other' is full` gives `other`).
fn first_quoted(detail: &[String]) -> Option<String> {
    detail
        .iter()
        .find_map(|l| l.split('\'').nth(1).map(String::from))
        .filter(|s| !s.is_empty())
}

/// The fix with its placeholders filled from the pool and the check's detail.
fn fill(fix: &str, pool: &PoolFacts, detail: &[String]) -> String {
    let words = |prefix: &str| -> Vec<String> {
        let mut v: Vec<String> = detail
            .iter()
            .flat_map(|l| l.split_whitespace())
            .map(|w| w.trim_matches(|c: char| !c.is_ascii_alphanumeric() && c != '.' && c != '-'))
            .filter(|w| w.starts_with(prefix) && w.len() > prefix.len())
            .map(String::from)
            .collect();
        v.dedup();
        v
    };
    let osds = words("osd.");
    let mons = words("mon.");
    let item = detail
        .first()
        .and_then(|l| l.split_whitespace().nth(1))
        .unwrap_or("")
        .trim_matches('\'')
        .to_string();
    fix.replace("{pool}", &pool.name)
        .replace(
            "{osds}",
            &if osds.is_empty() {
                "the down OSDs (ceph osd tree down)".to_string()
            } else {
                osds.join(", ")
            },
        )
        .replace(
            "{mons}",
            &if mons.is_empty() {
                "the monitors named (ceph mon stat)".to_string()
            } else {
                mons.join(", ")
            },
        )
        .replace("{item}", &item)
}

/// A quota as an operator set it: exact, in the largest binary unit that divides it
/// (`20 MiB`), else in bytes.
fn human(bytes: u64) -> String {
    const UNITS: [(u64, &str); 4] = [
        (1 << 40, "TiB"),
        (1 << 30, "GiB"),
        (1 << 20, "MiB"),
        (1 << 10, "KiB"),
    ];
    UNITS
        .iter()
        .find(|(u, _)| bytes.is_multiple_of(*u))
        .map_or(format!("{bytes} bytes"), |(u, name)| {
            format!("{} {name}", bytes / u)
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pool() -> PoolFacts {
        PoolFacts {
            name: "volumes".into(),
            id: Some(1),
            quota_bytes: Some(20 << 20),
        }
    }

    fn check(sev: &str, summary: &str, detail: &[&str]) -> Value {
        json!({"severity": sev, "summary": {"message": summary, "count": 1},
               "detail": detail.iter().map(|d| json!({"message": d})).collect::<Vec<_>>(),
               "muted": false})
    }

    #[test]
    fn own_pool_full_blocks_and_names_the_quota_and_fix() {
        let f = assess(
            "POOL_FULL",
            &check(
                "HEALTH_WARN",
                "1 pool(s) full",
                &["pool 'volumes' is full (running out of quota)"],
            ),
            &pool(),
        );
        assert_eq!((f.reach, f.impact), (Reach::ThisPool, Impact::Blocks));
        assert_eq!(f.headline, "pool volumes is full (quota 20 MiB)");
        assert!(
            f.fix.contains("ceph osd pool set-quota volumes max_bytes"),
            "{}",
            f.fix
        );
        assert!(f.blocks_here());
    }

    #[test]
    fn another_pools_full_is_information() {
        let f = assess(
            "POOL_FULL",
            &check(
                "HEALTH_WARN",
                "1 pool(s) full",
                &["pool 'volumes-old' is full (running out of quota)"],
            ),
            &pool(),
        );
        assert_eq!((f.reach, f.impact), (Reach::OtherPool, Impact::Info));
        assert!(!f.blocks_here());
        assert_eq!(
            f.headline,
            "pool volumes-old is full (running out of quota)"
        );
        assert!(f.fix.contains("set-quota volumes-old "), "{}", f.fix);
        assert!(
            f.summary
                .ends_with("pool volumes (this backend's) is not affected"),
            "{}",
            f.summary
        );
    }

    #[test]
    fn placement_groups_are_matched_by_pool_id() {
        let inactive = |pg: &str| {
            check(
                "HEALTH_WARN",
                "Reduced data availability: 1 pg inactive",
                &[&format!(
                    "pg {pg} is stuck inactive for 60s, current state unknown"
                )],
            )
        };
        assert_eq!(
            assess("PG_AVAILABILITY", &inactive("1.a"), &pool()).reach,
            Reach::ThisPool
        );
        let other = assess("PG_AVAILABILITY", &inactive("11.a"), &pool());
        assert_eq!(
            (other.reach, other.impact),
            (Reach::OtherPool, Impact::Info)
        );
    }

    #[test]
    fn pause_flags_block_and_noout_does_not() {
        let paused = assess(
            "OSDMAP_FLAGS",
            &check("HEALTH_WARN", "pauserd,pausewr flag(s) set", &[]),
            &pool(),
        );
        assert_eq!(
            (paused.reach, paused.impact),
            (Reach::Cluster, Impact::Blocks)
        );
        let noout = assess(
            "OSDMAP_FLAGS",
            &check("HEALTH_WARN", "noout flag(s) set", &[]),
            &pool(),
        );
        assert_eq!(noout.impact, Impact::Info);
    }

    #[test]
    fn down_osds_are_named_in_the_fix_and_a_whole_root_down_blocks() {
        let d = assess(
            "OSD_DOWN",
            &check(
                "HEALTH_WARN",
                "1 osds down",
                &["osd.3 (root=default,host=a) is down"],
            ),
            &pool(),
        );
        assert_eq!(d.impact, Impact::Slows);
        assert!(d.fix.contains("start osd.3"), "{}", d.fix);
        let root = assess(
            "OSD_ROOT_DOWN",
            &check(
                "HEALTH_WARN",
                "1 root (1 osds) down",
                &["root default (1 osds) is down"],
            ),
            &pool(),
        );
        assert_eq!(root.impact, Impact::Blocks);
        let rack = assess(
            "OSD_RACK_DOWN",
            &check(
                "HEALTH_WARN",
                "1 rack down",
                &["rack r1 (root=default) is down"],
            ),
            &pool(),
        );
        assert_eq!(rack.impact, Impact::Slows, "read as OSD_HOST_DOWN");
    }

    #[test]
    fn unknown_and_cephfs_codes_are_still_shown() {
        let u = assess(
            "SOMETHING_NEW",
            &check("HEALTH_ERR", "it broke", &[]),
            &pool(),
        );
        assert_eq!(u.impact, Impact::Slows);
        assert!(u.summary.contains("does not know"));
        let fs = assess(
            "MDS_SLOW_REQUEST",
            &check("HEALTH_WARN", "1 MDSs report slow requests", &[]),
            &pool(),
        );
        assert_eq!(fs.impact, Impact::Info);
    }

    #[test]
    fn every_table_entry_has_a_unique_code_and_words() {
        let mut seen = std::collections::HashSet::new();
        for c in health_codes::CODES {
            assert!(seen.insert(c.code), "{} twice", c.code);
            assert!(!c.means.is_empty() && !c.fix.is_empty(), "{}", c.code);
        }
    }
}
