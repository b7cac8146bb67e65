//! The doctor's table of Ceph health checks: it covers every code the installed Ceph can
//! raise about pools, PGs, OSDs, monitors, the manager or clocks (as
//! `scripts/ceph-health-codes.sh` finds them in the daemons and manager modules), and the
//! README shows it exactly as `ember doctor --ceph-checks` prints it.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeSet;
use std::process::Command;

use common::*;

fn table() -> String {
    let o = ember(&["doctor", "--ceph-checks"]);
    assert!(o.status.success(), "{}", stderr(&o));
    stdout(&o)
}

fn table_codes() -> BTreeSet<String> {
    let o = ember(&["doctor", "--ceph-checks", "--json"]);
    json(&o)
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            for k in ["means", "fix", "severity"] {
                assert!(!c[k].as_str().unwrap().is_empty(), "{c}");
            }
            c["code"].as_str().unwrap().to_string()
        })
        .collect()
}

#[test]
fn the_readme_shows_the_table_as_generated() {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let begin = "<!-- ceph-checks:begin -->\n";
    let end = "<!-- ceph-checks:end -->";
    let a = readme
        .find(begin)
        .expect("README has the ceph-checks markers")
        + begin.len();
    let b = readme.find(end).unwrap();
    assert_eq!(
        &readme[a..b],
        table(),
        "README's Ceph health table is stale: paste `ember doctor --ceph-checks` between the markers"
    );
}

#[test]
fn every_code_the_installed_ceph_raises_is_explained() {
    if !tools_present(&["ceph-mon", "strings"], "the Ceph health codes test") {
        return;
    }
    let out = Command::new("bash")
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/scripts/ceph-health-codes.sh"
        ))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let found: BTreeSet<String> = stdout(&out).lines().map(String::from).collect();
    // A sanity floor: the extraction really read the daemons.
    for code in [
        "POOL_FULL",
        "OSD_DOWN",
        "PG_AVAILABILITY",
        "MON_DOWN",
        "MGR_DOWN",
    ] {
        assert!(
            found.contains(code),
            "{code} not found by the script: {found:?}"
        );
    }
    let known = table_codes();
    let missing: Vec<&String> = found.difference(&known).collect();
    assert!(
        missing.is_empty(),
        "codes Ceph raises that the doctor does not explain: {missing:?}"
    );
}
