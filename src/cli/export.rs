//! `ember volume export VOL`: serves a volume over NBD through qemu-nbd (a maintained server:
//! qemu's own block layer, rbd included where qemu-block-extra is installed), recorded as an
//! attachment for as long as it runs. Ctrl-C or SIGTERM ends it: the server is stopped (it
//! flushes), the attachment ends, and the volume is available again. The server dies with
//! this process, so a `kill -9` leaves no server behind, only an attachment the doctor names.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{ExitCode, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use tokio::io::AsyncReadExt;
use tokio::process::{Child, Command};

use crate::config::DriverConfig;
use crate::db::attachments::KIND_EXPORT;
use crate::service::actor::current_actor;
use crate::service::attach::{self, AttachRequest, Mode};
use crate::service::connection;
use crate::service::jobs::volume;

use super::args::Global;
use super::{load_config, open_db};

/// How long qemu-nbd may take to listen.
const START_LIMIT: Duration = Duration::from_secs(20);

/// What `volume export` was asked.
pub struct ExportArgs<'a> {
    pub volume: &'a str,
    pub listen: SocketAddr,
    pub read_only: bool,
    pub allow_remote: bool,
}

pub async fn export_cmd(g: &Global, x: ExportArgs<'_>) -> anyhow::Result<ExitCode> {
    if !x.listen.ip().is_loopback() && !x.allow_remote {
        bail!(
            "--listen {}: not a loopback address, and NBD has no authentication: anyone who reaches it could read and write the volume; add --allow-remote if that is meant",
            x.listen
        );
    }
    let cfg = load_config(g)?;
    let db = open_db(g, Some(&cfg), &cfg.database_url).await?;
    db.ensure_writable("export a volume")?;
    let v = volume(&db, x.volume).await?;
    let Some(b) = cfg.backend(&v.backend) else {
        bail!(
            "volume {} is on backend {}, which this host's config has no section for: export it from a host that serves it",
            v.name,
            v.backend
        );
    };
    if let DriverConfig::Fake(_) = b.driver {
        bail!(
            "backend {}: the fake driver holds no data to export",
            b.name
        );
    }
    // A port already taken is named now, not as a server that dies at start.
    drop(
        TcpListener::bind(x.listen)
            .with_context(|| format!("--listen {}: cannot listen there", x.listen))?,
    );
    let endpoint = format!("nbd://{}", x.listen);
    let mode = if x.read_only { Mode::Ro } else { Mode::Rw };
    let req = AttachRequest {
        volume: &v.id,
        host: &x.listen.ip().to_string(),
        instance: None,
        mode,
        kind: KIND_EXPORT,
        endpoint: Some(&endpoint),
        served_by: Some(&cfg.host),
        pid: None,
    };
    let actor = current_actor();
    let (v, a) = attach::attach(&db, &req, &actor).await?;
    let source = connection::connection_info(b, &v, &a).map(|c| c.qemu);
    let started = match source {
        Ok(src) => start(&src, x.listen, x.read_only).await,
        Err(e) => Err(anyhow::Error::new(e)),
    };
    let mut child = match started {
        Ok(c) => c,
        Err(e) => {
            attach::end(&db, &v, &a, &actor, " (the server did not start)").await?;
            return Err(e).context(format!("export volume {}", v.name));
        }
    };
    if let Some(mut e) = child.stderr.take() {
        // What the server says goes to this terminal (and never fills a pipe it waits on).
        tokio::spawn(async move { tokio::io::copy(&mut e, &mut tokio::io::stderr()).await });
    }
    let pid = child.id().map(i64::from);
    if let Some(p) = pid {
        db.set_attachment_pid(&a.id, p).await?;
    }
    println!("{endpoint}");
    eprintln!(
        "serving volume {} ({}, {}) at {endpoint} through qemu-nbd pid {}; attachment {}; Ctrl-C ends it",
        v.name,
        v.id,
        mode.as_str(),
        pid.unwrap_or_default(),
        crate::service::units::short_id(&a.id)
    );
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).context("listen for SIGTERM")?;
    let mut hup = signal(SignalKind::hangup()).context("listen for SIGHUP")?;
    let ended_by = tokio::select! {
        _ = tokio::signal::ctrl_c() => None,
        _ = term.recv() => None,
        _ = hup.recv() => None,
        s = child.wait() => Some(s),
    };
    let code = match ended_by {
        None => {
            // SIGTERM: qemu-nbd flushes and exits; SIGKILL only if it does not within 10 s.
            if let Some(p) = pid {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(p as i32),
                    nix::sys::signal::Signal::SIGTERM,
                );
            }
            if tokio::time::timeout(Duration::from_secs(10), child.wait())
                .await
                .is_err()
            {
                let _ = child.kill().await;
            }
            ExitCode::SUCCESS
        }
        Some(status) => {
            let why = status.map_or_else(|e| e.to_string(), |s| s.to_string());
            eprintln!("qemu-nbd ended by itself ({why}); the export is over");
            ExitCode::from(1)
        }
    };
    let now = attach::end(&db, &v, &a, &actor, "").await?;
    eprintln!("export of {} ended; it is {now}", v.name);
    Ok(code)
}

/// Starts qemu-nbd on `source` and waits until it listens. It is killed with this process
/// (PR_SET_PDEATHSIG), so no server outlives its export.
#[allow(unsafe_code)]
async fn start(source: &str, listen: SocketAddr, read_only: bool) -> anyhow::Result<Child> {
    let mut cmd = Command::new("qemu-nbd");
    cmd.arg("--format=raw")
        .arg(format!("--bind={}", listen.ip()))
        .arg(format!("--port={}", listen.port()))
        .arg("--persistent")
        .arg("--shared=16")
        // The host's cache, flushed when a client flushes and when the server stops: O_DIRECT
        // (cache=none) would refuse an image whose size is not a multiple of the disk's block.
        .arg("--cache=writeback");
    if read_only {
        cmd.arg("--read-only");
    } else {
        cmd.arg("--discard=unmap");
    }
    cmd.arg(source)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    // SAFETY: the closure runs in the forked child before exec and only calls prctl, which
    // is async-signal-safe and sets a flag of the child process.
    unsafe {
        cmd.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = cmd.spawn().map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => {
            anyhow::anyhow!("qemu-nbd is not installed: apt-get install qemu-utils")
        }
        _ => anyhow::anyhow!("cannot start qemu-nbd: {e}"),
    })?;
    let deadline = Instant::now() + START_LIMIT;
    loop {
        if let Some(status) = child.try_wait()? {
            let mut err = String::new();
            if let Some(mut e) = child.stderr.take() {
                let _ = e.read_to_string(&mut err).await;
            }
            let hint = if err.contains("Unknown protocol 'rbd'")
                || err.contains("Unknown driver 'rbd'")
            {
                ": this qemu-nbd has no rbd block driver; install qemu-block-extra of the same version as qemu-utils"
            } else {
                ""
            };
            bail!("qemu-nbd exited at start ({status}): {}{hint}", err.trim());
        }
        if TcpStream::connect_timeout(&listen, Duration::from_millis(200)).is_ok() {
            return Ok(child);
        }
        if Instant::now() > deadline {
            let _ = child.kill().await;
            bail!(
                "qemu-nbd did not listen on {listen} within {}s",
                START_LIMIT.as_secs()
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
