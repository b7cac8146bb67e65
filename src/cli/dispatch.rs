//! The subcommands of `service`, `volume`, `job`, `db` and `bench`: each loads what it needs
//! and hands over to the module that owns it. Every volume command that queues a job builds
//! its [`Request`] here; the match is exhaustive, so a new command cannot fall through.

use std::process::ExitCode;

use anyhow::{Context, bail};

use crate::config;
use crate::service::jobs::Request;

use super::args::{self, Global, JobCmd, ServiceCmd, SnapshotCmd, VolumeCmd};
use super::listing::{job_list, job_show, service_list, volume_list, volume_show};
use super::{
    bench, bench_live, bench_rbd, bench_takeover, jobs, load_config, load_for_reading, oncall,
    open_db, reconcile, service_admin,
};

pub async fn db_roles(g: &Global, apply: bool) -> anyhow::Result<ExitCode> {
    if !apply {
        print!("{}", crate::db::roles::roles_sql());
        return Ok(ExitCode::SUCCESS);
    }
    let (cfg, url) = load_for_reading(g)?;
    let db = open_db(g, cfg.as_ref(), &url).await?;
    db.ensure_writable("create roles")?;
    db.apply_roles().await?;
    eprintln!(
        "roles {}, {} and {} ready on {}: GRANT one of them TO each login",
        crate::db::roles::VIEWER,
        crate::db::roles::OPERATOR,
        crate::db::roles::SERVICE,
        db.display_url
    );
    Ok(ExitCode::SUCCESS)
}

pub async fn service(g: &Global, cmd: ServiceCmd) -> anyhow::Result<ExitCode> {
    if let ServiceCmd::List = cmd {
        return service_list(g).await;
    }
    let (cfg, url) = load_for_reading(g)?;
    let db = open_db(g, cfg.as_ref(), &url).await?;
    match cmd {
        ServiceCmd::List => service_list(g).await,
        ServiceCmd::Disable { service, reason } => {
            service_admin::set_disabled(g, &db, &service, Some(&reason)).await
        }
        ServiceCmd::Enable { service } => service_admin::set_disabled(g, &db, &service, None).await,
        ServiceCmd::Remove { service } => {
            let down = cfg
                .as_ref()
                .map_or(config::defaults::SERVICE_DOWN_TIME_S * 1000, |c| {
                    c.service_down_time.as_millis() as i64
                });
            service_admin::remove(g, &db, &service, down).await
        }
    }
}

pub async fn volume(g: &Global, cmd: VolumeCmd) -> anyhow::Result<ExitCode> {
    let (req, wait) = match cmd {
        VolumeCmd::List {
            backend,
            host,
            wide,
        } => return volume_list(g, backend.as_deref(), host.as_deref(), wide).await,
        VolumeCmd::Show { volume } => return volume_show(g, &volume).await,
        VolumeCmd::Snapshot(s) => match s {
            SnapshotCmd::List { volume, all } => {
                let (cfg, url) = load_for_reading(g)?;
                let db = open_db(g, cfg.as_ref(), &url).await?;
                return jobs::snapshot_list(g, &db, volume.as_deref(), all).await;
            }
            SnapshotCmd::ResetState { snapshot, reset } => {
                return oncall::reset_state(g, &snapshot, true, &reset).await;
            }
            SnapshotCmd::Create { name, volume, wait } => {
                (Request::SnapshotCreate { name, volume }, wait)
            }
            SnapshotCmd::Delete { snapshot, wait } => (Request::SnapshotDelete { snapshot }, wait),
        },
        VolumeCmd::Reconcile { backend, fix } => return reconcile(g, &backend, fix).await,
        VolumeCmd::Locks { volume } => return oncall::locks(g, &volume).await,
        VolumeCmd::Manage {
            backend,
            image,
            name,
        } => return oncall::manage(g, &backend, &image, &name).await,
        VolumeCmd::Unmanage { volume } => return oncall::unmanage(g, &volume).await,
        VolumeCmd::ResetState { volume, reset } => {
            return oncall::reset_state(g, &volume, false, &reset).await;
        }
        VolumeCmd::BreakLock {
            volume,
            locker,
            force,
        } => return oncall::break_lock(g, &volume, &locker, force).await,
        VolumeCmd::Attach(a) => {
            return super::attach::attach_cmd(
                g,
                &a.volume,
                &a.host,
                a.instance.as_deref(),
                a.mode,
                a.format,
            )
            .await;
        }
        VolumeCmd::Detach(d) => {
            let how = super::attach::DetachArgs {
                attachment: d.attachment.as_deref(),
                host: d.host.as_deref(),
                all: d.all,
                force: d.force,
            };
            return super::attach::detach_cmd(g, &d.volume, how).await;
        }
        VolumeCmd::Export(x) => {
            let how = super::export::ExportArgs {
                volume: &x.volume,
                listen: x.listen,
                read_only: x.read_only,
                allow_remote: x.allow_remote,
            };
            return super::export::export_cmd(g, how).await;
        }
        VolumeCmd::Attachments { volume } => {
            return super::attach::list_cmd(g, volume.as_deref()).await;
        }
        VolumeCmd::Create {
            name,
            size,
            backend,
            snapshot,
            source,
            multiattach,
            wait,
        } => {
            if size.is_none() && snapshot.is_none() && source.is_none() {
                bail!("volume create needs --size (or --snapshot / --source to clone)");
            }
            let req = Request::Create {
                multiattach,
                name,
                size,
                backend,
                snapshot,
                source,
            };
            (req, wait)
        }
        VolumeCmd::Flatten { volume, wait } => (Request::Flatten { volume }, wait),
        VolumeCmd::Migrate {
            volume,
            to,
            with_clones,
            wait,
        } => (
            Request::Migrate {
                volume,
                to,
                with_clones,
            },
            wait,
        ),
        VolumeCmd::Verify {
            volume,
            against,
            bps_limit,
            wait,
        } => {
            let req = Request::Verify {
                volume,
                against,
                bps_limit,
            };
            (req, wait)
        }
        VolumeCmd::Extend {
            volume,
            size,
            force,
            wait,
        } => {
            let req = Request::Extend {
                volume,
                size,
                force,
            };
            (req, wait)
        }
        VolumeCmd::Delete {
            volume,
            cascade,
            force,
            wait,
        } => {
            let req = Request::Delete {
                volume,
                cascade,
                force,
            };
            (req, wait)
        }
    };
    let cfg = load_config(g)?;
    let db = open_db(g, Some(&cfg), &cfg.database_url).await?;
    jobs::submit(g, &cfg, &db, req, wait.wait).await
}

pub async fn job(g: &Global, cmd: JobCmd) -> anyhow::Result<ExitCode> {
    match cmd {
        JobCmd::List { limit, wide } => job_list(g, limit, wide).await,
        JobCmd::Show { id } => job_show(g, &id).await,
        JobCmd::Watch { id } => {
            let cfg = load_config(g)?;
            let db = open_db(g, Some(&cfg), &cfg.database_url).await?;
            jobs::watch(g, &cfg, &db, &id).await
        }
        JobCmd::Cancel { id } => {
            let (cfg, url) = load_for_reading(g)?;
            jobs::cancel(g, &open_db(g, cfg.as_ref(), &url).await?, &id).await
        }
        JobCmd::Retry { id, wait } => {
            let cfg = load_config(g)?;
            let db = open_db(g, Some(&cfg), &cfg.database_url).await?;
            oncall::retry(g, &cfg, &db, &id, wait.wait).await
        }
    }
}

pub async fn bench(g: &Global, cmd: args::BenchCmd) -> anyhow::Result<ExitCode> {
    use args::BenchCmd;
    match cmd {
        BenchCmd::Heartbeat {
            jobs,
            seconds,
            threads,
        } => {
            let threads = threads
                .map(|t| t as usize)
                .unwrap_or_else(|| config::defaults::native_threads_pool_size() as usize);
            bench::heartbeat(g, &jobs, seconds, threads).await
        }
        BenchCmd::Console { volumes } => bench::console(g, &volumes).await,
        BenchCmd::ConsoleLive {
            volumes,
            seconds,
            one,
        } => match one {
            Some(one) => bench_live::one(g, &one, seconds).await,
            None => bench_live::console_live(g, &volumes, seconds).await,
        },
        BenchCmd::Takeover { rounds } => {
            let Some(url) = g.database_url.as_deref() else {
                bail!(
                    "bench takeover needs --database-url postgres://... (a database it may write bench rows to)"
                );
            };
            bench_takeover::takeover(url, rounds as usize).await
        }
        BenchCmd::Flatten { dir, size, data } => bench::flatten(g, &dir, size, data),
        BenchCmd::Migrate { dir, size, data } => super::bench_migrate::file(g, &dir, size, data),
        BenchCmd::Backup { dir, size, data } => super::bench_backup::run(g, &dir, size, data),
        BenchCmd::RbdFlatten {
            backend,
            size,
            data,
            rounds,
        } => {
            let cfg = load_config(g)?;
            bench_rbd::flatten(g, backend_named(&cfg, &backend)?, size, data, rounds.max(1))
        }
        BenchCmd::RbdBackup {
            backend,
            dir,
            size,
            data,
            change,
            rounds,
            to_pool,
        } => {
            let cfg = load_config(g)?;
            let b = backend_named(&cfg, &backend)?;
            if change > size {
                anyhow::bail!("--change ({change} bytes) is larger than --size ({size} bytes)");
            }
            let sizes = super::bench_rbd_backup::Sizes { size, data, change };
            super::bench_rbd_backup::backup(g, b, &dir, sizes, rounds.max(1), to_pool.as_deref())
        }
        BenchCmd::RbdMigrate {
            backend,
            to,
            size,
            data,
            rounds,
        } => {
            let cfg = load_config(g)?;
            super::bench_rbd_migrate::migrate(
                g,
                backend_named(&cfg, &backend)?,
                backend_named(&cfg, &to)?,
                size,
                data,
                rounds.max(1),
            )
        }
    }
}

/// The backend section `name` of the config, for a bench that names one.
fn backend_named<'a>(
    cfg: &'a crate::config::Config,
    name: &str,
) -> anyhow::Result<&'a crate::config::BackendConfig> {
    cfg.backends
        .iter()
        .find(|b| b.name == name)
        .with_context(|| format!("no backend {name:?} in the config"))
}
