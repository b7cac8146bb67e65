//! `ember doctor`: the checks of `crate::doctor`, as text (80 columns) or stable JSON, with
//! an exit code for scripts and monitoring: 0 all ok, 1 warnings (only with --strict),
//! 2 any failure.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use crate::doctor::{self, Status, Target};

use super::args::Global;
use super::output::print_json;

/// `ember doctor --ceph-checks`: the table the doctor explains Ceph's health checks with, as
/// the README's Markdown table or JSON.
pub fn ceph_checks(g: &Global) -> anyhow::Result<ExitCode> {
    use crate::driver::rbd::health_codes;
    if g.json {
        let rows: Vec<serde_json::Value> = health_codes::CODES
            .iter()
            .map(|c| {
                serde_json::json!({
                    "code": c.code,
                    "severity": health_codes::severity_text(c),
                    "means": c.means,
                    "fix": c.fix,
                })
            })
            .collect();
        print_json(&serde_json::Value::Array(rows))?;
    } else {
        print!("{}", health_codes::markdown_table());
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn run(
    g: &Global,
    backend: Option<String>,
    strict: bool,
    verbose: bool,
    stuck_after: u64,
) -> anyhow::Result<ExitCode> {
    // A config that does not load is itself the finding: nothing else can be checked.
    let config = match super::load_config(g) {
        Ok(c) => Arc::new(c),
        Err(e) => {
            if g.json {
                print_json(&serde_json::json!({
                    "status": "fail",
                    "summary": "the config does not load",
                    "checks": [{"id": "ember.config", "scope": "ember", "check": "config", "status": "fail",
                        "summary": e.to_string(), "evidence": [], "fix": "correct the file and line named, then `ember config check`", "took_ms": 0}],
                }))?;
            } else {
                println!("ember\n  FAIL config    {e}\n\n1 checks: 1 failed");
            }
            return Ok(ExitCode::from(2));
        }
    };
    if let Some(b) = &backend
        && !config.backends.iter().any(|x| &x.name == b)
    {
        anyhow::bail!(
            "no backend {b:?} in the config; known: {}",
            config
                .backends
                .iter()
                .map(|b| b.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    let db = crate::db::Db::connect(&config.database_url)
        .await
        .map_err(|e| e.to_string());
    let checks = doctor::run_all(Target {
        config,
        db,
        backend,
        stuck_after: Duration::from_secs(stuck_after),
    })
    .await;
    let worst = doctor::worst(&checks);
    if g.json {
        print_json(&serde_json::json!({
            "status": worst,
            "summary": doctor::summary(&checks),
            "checks": checks,
        }))?;
    } else {
        doctor::print_text(&mut std::io::stdout().lock(), &checks, verbose)?;
    }
    Ok(match worst {
        Status::Fail => ExitCode::from(2),
        Status::Warn if strict => ExitCode::from(1),
        _ => ExitCode::SUCCESS,
    })
}
