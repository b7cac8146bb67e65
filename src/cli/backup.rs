//! `ember backup ...`: jobs through the same request path as every volume command; `list`,
//! `show` and `verify` read the database and the store.

use std::process::ExitCode;

use anyhow::Context;

use super::args::{BackupCmd, Global};
use super::output::{human_bytes, print_json, rfc3339, table};
use super::{jobs, load_config, open_db};
use crate::db::BackupRow;
use crate::service::jobs::{JobError, Request, request};
use crate::service::units::short_id;

/// A backup as scripts see it.
#[derive(Debug, serde::Serialize)]
struct BackupJson<'a> {
    #[serde(flatten)]
    row: &'a BackupRow,
    volume_name: Option<String>,
    created: String,
}

pub async fn run(g: &Global, cmd: BackupCmd) -> anyhow::Result<ExitCode> {
    let cfg = load_config(g)?;
    let db = open_db(g, Some(&cfg), &cfg.database_url).await?;
    let (req, wait) = match cmd {
        BackupCmd::Create {
            volume,
            incremental,
            name,
            wait,
        } => (
            Request::BackupCreate {
                volume,
                name,
                incremental,
            },
            wait,
        ),
        BackupCmd::Restore {
            backup,
            name,
            backend,
            wait,
        } => (
            Request::BackupRestore {
                backup,
                name,
                backend,
            },
            wait,
        ),
        BackupCmd::Delete { backup, wait } => (Request::BackupDelete { backup }, wait),
        BackupCmd::List { volume } => {
            let volume = match volume {
                Some(k) => Some(match request::volume(&db, &k).await {
                    Ok(v) => v.id,
                    // A deleted volume's backups, by its id.
                    Err(JobError::NotFound { .. }) => k,
                    Err(e) => return Err(e.into()),
                }),
                None => None,
            };
            let rows = db.list_backups(volume.as_deref()).await?;
            return list(g, &db, &rows).await;
        }
        BackupCmd::Show { backup } => {
            let b = found(&db, &backup).await?;
            return list(g, &db, std::slice::from_ref(&b)).await;
        }
        BackupCmd::Verify { backup } => {
            let b = found(&db, &backup).await?;
            let target = cfg.backup.clone();
            let id = b.id.clone();
            let report = tokio::task::spawn_blocking(move || {
                crate::backup::open(&target)?.verify(&id, &crate::driver::NoProgress)
            })
            .await
            .context("verify")??;
            if g.json {
                print_json(&report)?;
            } else if report.damaged.is_empty() {
                println!(
                    "backup {} is whole: {} chunks, {} read and checked against their hash",
                    b.name,
                    report.chunks,
                    human_bytes(report.checked_bytes as i64)
                );
            } else {
                for (chunk, offset, missing) in &report.damaged {
                    eprintln!(
                        "ember: backup {}: chunk {chunk} (volume bytes {offset}..) {}",
                        b.name,
                        if *missing { "is missing" } else { "is damaged" }
                    );
                }
            }
            return Ok(if report.damaged.is_empty() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(2)
            });
        }
    };
    jobs::submit(g, &cfg, &db, req, wait.wait).await
}

async fn found(db: &crate::db::Db, key: &str) -> anyhow::Result<BackupRow> {
    Ok(crate::service::jobs::request::found(
        "backup",
        key,
        db.find_backup(key).await?,
    )?)
}

async fn list(g: &Global, db: &crate::db::Db, rows: &[BackupRow]) -> anyhow::Result<ExitCode> {
    let mut names = std::collections::HashMap::new();
    for b in rows {
        if !names.contains_key(&b.volume_id) {
            let n = db.get_volume(&b.volume_id).await?.map(|v| v.name);
            names.insert(b.volume_id.clone(), n);
        }
    }
    if g.json {
        let out: Vec<BackupJson> = rows
            .iter()
            .map(|b| BackupJson {
                row: b,
                volume_name: names.get(&b.volume_id).cloned().flatten(),
                created: rfc3339(b.created_at),
            })
            .collect();
        print_json(&out)?;
        return Ok(ExitCode::SUCCESS);
    }
    if rows.is_empty() {
        println!("no backups");
        return Ok(ExitCode::SUCCESS);
    }
    let mut t = table(&[
        "Name",
        "Volume",
        "Status",
        "Size",
        "Data",
        "Read",
        "Stored",
        "Incremental",
        "Created",
        "Id",
    ]);
    for b in rows {
        t.add_row(vec![
            b.name.clone(),
            names
                .get(&b.volume_id)
                .cloned()
                .flatten()
                .unwrap_or_else(|| format!("{} (deleted)", short_id(&b.volume_id))),
            b.status.to_string(),
            human_bytes(b.size_bytes),
            human_bytes(b.data_bytes),
            human_bytes(b.read_bytes),
            human_bytes(b.stored_bytes),
            if b.parent_id.is_some() { "yes" } else { "-" }.into(),
            rfc3339(b.created_at),
            short_id(&b.id).to_string(),
        ]);
    }
    println!("{t}");
    Ok(ExitCode::SUCCESS)
}
