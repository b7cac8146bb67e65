//! Shell completion (bash, zsh, fish) from the same clap definitions as the commands, with
//! names from the database: `ember completions SHELL` prints the shell's registration, and the
//! shell then asks `ember` itself (`COMPLETE=SHELL ember -- ...`) for candidates, so volume,
//! snapshot, backend, service and job names complete from what exists now. A completion never
//! hangs the shell: the database gets 2 s, and any failure completes nothing.

use std::ffi::OsString;
use std::io::Write;
use std::time::Duration;

use clap::CommandFactory;
use clap_complete::CompletionCandidate;
use clap_complete::env::{Bash, EnvCompleter, Fish, Zsh};

use crate::config;
use crate::db::Db;

/// The environment variable the registration scripts set when they ask for candidates.
const VAR: &str = "COMPLETE";
/// How long a completion may wait for the database.
const LIMIT: Duration = Duration::from_secs(2);

/// Answers a shell's completion request and exits, if this run is one (call first in main).
pub fn answer_if_asked() {
    clap_complete::CompleteEnv::with_factory(super::args::Cli::command)
        .var(VAR)
        .complete();
}

/// `ember completions SHELL`: the script to source (`source <(ember completions bash)`).
pub fn registration(shell: &str, out: &mut dyn Write) -> anyhow::Result<()> {
    let me = std::env::current_exe()
        .map(|p| p.to_string_lossy().into_owned())
        .unwrap_or_else(|_| "ember".into());
    let completer: &dyn EnvCompleter = match shell {
        "bash" => &Bash,
        "zsh" => &Zsh,
        "fish" => &Fish,
        other => anyhow::bail!("completions {other:?}: unknown shell (bash, zsh or fish)"),
    };
    completer.write_registration(VAR, "ember", "ember", &me, out)?;
    Ok(())
}

/// `--config` / `--database-url` as typed on the line being completed (the shell passes it).
fn typed(flag: &str) -> Option<String> {
    let args: Vec<OsString> = std::env::args_os().collect();
    let at = args.iter().position(|a| a == flag)?;
    args.get(at + 1).map(|a| a.to_string_lossy().into_owned())
}

/// Runs `f` against the database the line being completed would use; empty on any failure.
fn from_db<F, Fut>(f: F) -> Vec<CompletionCandidate>
where
    F: FnOnce(Db) -> Fut,
    Fut: std::future::Future<Output = Result<Vec<CompletionCandidate>, crate::db::DbError>>,
{
    let config = typed("--config").map(std::path::PathBuf::from);
    let url = typed("--database-url").or_else(|| {
        let path = config::locate(config.as_deref()).ok()?;
        config::load(&path).ok().map(|c| c.database_url)
    });
    let Some(url) = url else {
        return vec![];
    };
    let Ok(rt) = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    else {
        return vec![];
    };
    rt.block_on(async {
        let work = async {
            let db = Db::connect_read_only(&url).await?;
            f(db).await
        };
        match tokio::time::timeout(LIMIT, work).await {
            Ok(Ok(c)) => c,
            _ => vec![],
        }
    })
}

pub fn volumes() -> Vec<CompletionCandidate> {
    from_db(|db| async move {
        use futures_util::TryStreamExt;
        let rows: Vec<_> = db.stream_volumes(None, None).try_collect().await?;
        Ok(rows
            .into_iter()
            .map(|v| {
                CompletionCandidate::new(v.name)
                    .help(Some(format!("{} {}", v.status, v.backend).into()))
            })
            .collect())
    })
}

pub fn snapshots() -> Vec<CompletionCandidate> {
    from_db(|db| async move {
        Ok(db
            .list_snapshots(None, false)
            .await?
            .into_iter()
            .map(|s| CompletionCandidate::new(s.name).help(Some(s.status.as_str().into())))
            .collect())
    })
}

pub fn services() -> Vec<CompletionCandidate> {
    from_db(|db| async move {
        Ok(db
            .list_services()
            .await?
            .into_iter()
            .map(|s| CompletionCandidate::new(s.host))
            .collect())
    })
}

pub fn jobs() -> Vec<CompletionCandidate> {
    from_db(|db| async move {
        use futures_util::TryStreamExt;
        let rows: Vec<_> = db.stream_jobs(200).try_collect().await?;
        Ok(rows
            .into_iter()
            .map(|j| {
                CompletionCandidate::new(j.id).help(Some(format!("{} {}", j.kind, j.state).into()))
            })
            .collect())
    })
}

/// Backends come from the config (no database needed).
pub fn backends() -> Vec<CompletionCandidate> {
    let config = typed("--config").map(std::path::PathBuf::from);
    config::locate(config.as_deref())
        .ok()
        .and_then(|p| config::load(&p).ok())
        .map(|c| {
            c.backends
                .iter()
                .map(|b| {
                    CompletionCandidate::new(b.name.clone()).help(Some(b.driver_name().into()))
                })
                .collect()
        })
        .unwrap_or_default()
}

/// `ember man`: the manual page, from the same definitions as `--help`.
pub fn man_page(out: &mut dyn Write) -> anyhow::Result<()> {
    clap_mangen::Man::new(super::args::Cli::command()).render(out)?;
    Ok(())
}
