//! The command line, as clap types. Nouns then verbs, like the `openstack` CLI.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use clap_complete::ArgValueCandidates;

pub mod attach;
mod backup;
mod bench;

pub use backup::BackupCmd;
pub use bench::BenchCmd;

use super::complete;
use crate::db::Status;
use crate::service::lifecycle::RESET_STATES;

/// ember: operations console and volume service for block-storage backends.
///
/// With no command, opens the full-screen console, which also runs the services of the
/// configured backends (the console is the worker).
#[derive(Debug, Parser)]
#[command(name = "ember", version, propagate_version = true)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(flatten)]
    pub console: ConsoleArgs,
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Args, Clone, Default)]
pub struct ConsoleArgs {
    /// Open the console on the database without running services (watch workers elsewhere)
    #[arg(long)]
    pub attach: bool,
    /// Hide and refuse every action that changes something (on-call viewers)
    #[arg(long)]
    pub read_only: bool,
    /// Theme: dark, light, high-contrast, or a theme file (NO_COLOR turns colours off)
    #[arg(long, value_name = "NAME|PATH")]
    pub theme: Option<String>,
}

#[derive(Debug, Args, Clone)]
pub struct Global {
    /// Config file (ember TOML or a cinder.conf); else $EMBER_CONFIG, ./config/ember.toml,
    /// ~/.config/ember/ember.toml, /etc/ember/ember.toml
    #[arg(long, global = true, value_name = "PATH")]
    pub config: Option<PathBuf>,
    /// Database URL (sqlite://PATH or postgres://...); overrides the config's database_url
    #[arg(
        long,
        global = true,
        env = "EMBER_DATABASE_URL",
        value_name = "URL",
        hide_env_values = true
    )]
    pub database_url: Option<String>,
    /// Print data as JSON (stable snake_case keys) instead of tables
    #[arg(long, global = true)]
    pub json: bool,
    /// `--read-only` was given (on the console's flags); with `read_only = true` in the config,
    /// every database handle this command opens refuses changes.
    #[arg(skip)]
    pub read_only: bool,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// The full-screen console (the default command)
    Console {
        /// Do not run services: only watch the database (same as --attach)
        #[arg(long)]
        no_worker: bool,
        /// The console's own flags also after `console` (`ember console --attach`)
        #[command(flatten)]
        args: ConsoleArgs,
    },
    /// Run the volume services of the configured backends headless (for systemd; logs to stderr)
    Serve,
    /// Volume services and their heartbeats
    #[command(subcommand)]
    Service(ServiceCmd),
    /// The database itself: who may change what
    #[command(subcommand)]
    Db(DbCmd),
    /// Configured backends, their drivers, state and capacity
    #[command(subcommand)]
    Backend(BackendCmd),
    /// Volumes
    #[command(subcommand)]
    Volume(VolumeCmd),
    /// Jobs (long storage work: clone, flatten, delete...)
    #[command(subcommand)]
    Job(JobCmd),
    /// Backups of volumes in the backup store (backup_posix_path): each chunk stored once
    #[command(subcommand)]
    Backup(BackupCmd),
    /// The audit log: what was done, to what, by whom
    Events {
        /// How many of the newest events to show
        #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(i64).range(1..=100_000))]
        limit: i64,
    },
    /// Configuration
    #[command(subcommand)]
    Config(ConfigCmd),
    /// Print the shell completion script: `source <(ember completions bash)` (zsh: the same;
    /// fish: `ember completions fish | source`). Names complete from the database
    Completions {
        #[arg(value_parser = ["bash", "zsh", "fish"])]
        shell: String,
    },
    /// Print the manual page (roff): `ember man | man -l -`
    Man,
    /// Benchmarks: figures beside a baseline measured in the same run
    #[command(subcommand)]
    Bench(BenchCmd),
    /// Diagnose what is wrong and say what to do: config, Ceph (conf, monitors, keyring,
    /// auth, pool, health), services and their heartbeats, database, jobs.
    /// Exit 0 when all is ok, 2 on any failure, 1 on warnings with --strict
    Doctor {
        /// Only this backend's checks (and the installation's)
        #[arg(long)]
        backend: Option<String>,
        /// Exit 1 on warnings too
        #[arg(long)]
        strict: bool,
        /// Show the evidence of passing checks too
        #[arg(long, short)]
        verbose: bool,
        /// A running job whose progress has not moved for this many seconds is stuck
        #[arg(long, default_value_t = crate::doctor::STUCK_AFTER_SECS)]
        stuck_after: u64,
        /// Print every Ceph health check the doctor explains (what it means for volumes, the
        /// fix) and exit; no config or cluster needed
        #[arg(long)]
        ceph_checks: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum DbCmd {
    /// Print the SQL that creates ember's PostgreSQL roles (ember_viewer, ember_operator,
    /// ember_service) with the least privileges each needs; --apply runs it (connect as the
    /// owner of ember's tables)
    Roles {
        #[arg(long)]
        apply: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum ServiceCmd {
    /// List services with state (up/down) and heartbeat age
    List,
    /// Stop a service from taking new work (Cinder's `service set --disable`): it heartbeats,
    /// claims no job, and no new volume is placed on it
    Disable {
        /// The service, `HOST@BACKEND` (as `service list` shows it)
        #[arg(add = ArgValueCandidates::new(complete::services))]
        service: String,
        /// Why, shown in `service list` (who disabled it is recorded in `events`)
        #[arg(long)]
        reason: String,
    },
    /// Let a disabled service take work again
    Enable {
        /// The service, `HOST@BACKEND`
        #[arg(add = ArgValueCandidates::new(complete::services))]
        service: String,
    },
    /// Delete a dead service's row (`cinder-manage service remove`). Refused while it is up;
    /// the jobs only it could run fail with the reason, and its half-done volumes go to error
    Remove {
        /// The service, `HOST@BACKEND`
        #[arg(add = ArgValueCandidates::new(complete::services))]
        service: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum BackendCmd {
    /// List backends
    List,
    /// Move every volume of a backend to another (`volume migrate` jobs, N at a time, clones
    /// first), after marking it draining. Ctrl-C pauses (the jobs under way go on); running it
    /// again carries on. Exit 0 when nothing is left, 1 when some volumes could not move
    Evacuate {
        #[arg(add = ArgValueCandidates::new(complete::backends))]
        backend: String,
        /// Where they go: NAME, HOST@NAME or CLUSTER@NAME
        #[arg(long, add = ArgValueCandidates::new(complete::backends))]
        to: String,
        /// Migrations at once
        #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u16).range(1..=64))]
        parallel: u16,
    },
    /// No new volume is placed on the backend (its services keep running their jobs); --off
    /// undoes it
    Drain {
        #[arg(add = ArgValueCandidates::new(complete::backends))]
        backend: String,
        #[arg(long)]
        off: bool,
    },
}

fn rate(s: &str) -> Result<u64, String> {
    crate::service::units::parse_rate(s).map_err(|e| e.to_string())
}

fn size(s: &str) -> Result<u64, String> {
    crate::service::units::parse_size(s).map_err(|e| e.to_string())
}

/// Follow the job until it ends: progress (bytes, rate, ETA) on stderr; exit 0 only if it succeeded
#[derive(Debug, Args, Clone, Copy)]
pub struct Wait {
    #[arg(long)]
    pub wait: bool,
}

/// What `reset-state` sets, and the operator's confirmation.
#[derive(Debug, Args, Clone)]
pub struct Reset {
    /// The state to set
    #[arg(long, value_parser = reset_states())]
    pub state: Status,
    /// Why, kept with the state and in the audit event
    #[arg(long)]
    pub reason: Option<String>,
    /// Do not ask: the record changes, the storage does not (check it first)
    #[arg(long)]
    pub yes: bool,
}

#[derive(Debug, Subcommand)]
pub enum VolumeCmd {
    /// List volumes
    List {
        /// Only this backend's volumes
        #[arg(long, add = ArgValueCandidates::new(complete::backends))]
        backend: Option<String>,
        /// Only the volumes of this owner: `HOST@BACKEND`, `CLUSTER@BACKEND`, or a host or
        /// cluster name
        #[arg(long)]
        host: Option<String>,
        /// Also what each image really uses (asks the storage of this host's backends)
        #[arg(long)]
        wide: bool,
    },
    /// Show one volume (by id or unique name)
    Show {
        #[arg(add = ArgValueCandidates::new(complete::volumes))]
        volume: String,
    },
    /// Create a volume: empty, or a clone of a snapshot or of another volume
    Create {
        name: String,
        /// Size: 512M, 10G, 1T; a bare number is GiB. Clones default to their source's size
        #[arg(long, value_parser = size)]
        size: Option<u64>,
        /// Backend for a new empty volume (clones stay on their source's backend)
        #[arg(long, add = ArgValueCandidates::new(complete::backends))]
        backend: Option<String>,
        /// Clone from this snapshot (id or name)
        #[arg(long, conflicts_with = "source", add = ArgValueCandidates::new(complete::snapshots))]
        snapshot: Option<String>,
        /// Clone this volume (snapshot + clone underneath, as Cinder's rbd driver)
        #[arg(long, add = ArgValueCandidates::new(complete::volumes))]
        source: Option<String>,
        /// May be attached to several consumers at once (a cluster file system's disk)
        #[arg(long)]
        multiattach: bool,
        #[command(flatten)]
        wait: Wait,
    },
    /// Attach a volume to a consumer: record who has it (the volume becomes in-use) and print
    /// the connection info it opens the volume with
    Attach(attach::AttachArgs),
    /// End attachments; the last one makes the volume available again
    Detach(attach::DetachArgs),
    /// Serve a volume over NBD (qemu-nbd) until Ctrl-C, recorded as an attachment
    Export(attach::ExportArgs),
    /// List attachments: every volume's, or one volume's
    Attachments {
        #[arg(add = ArgValueCandidates::new(complete::volumes))]
        volume: Option<String>,
    },
    /// Move a volume to another backend, keeping its id and name: a copy read back and
    /// compared before the switch (a clone whose parent stays arrives flattened). Cancel
    /// leaves it on its source
    Migrate {
        #[arg(add = ArgValueCandidates::new(complete::volumes))]
        volume: String,
        /// The backend to move it to: NAME, HOST@NAME or CLUSTER@NAME
        #[arg(long, value_name = "BACKEND", add = ArgValueCandidates::new(complete::backends))]
        to: String,
        /// Move the clones of its snapshots (and theirs) with it, in one job: each arrives as
        /// a clone of the same snapshot on the target, only its own data copied
        #[arg(long)]
        with_clones: bool,
        #[command(flatten)]
        wait: Wait,
    },
    /// Copy into a clone what it still reads from its parent, and cut the link
    Flatten {
        #[arg(add = ArgValueCandidates::new(complete::volumes))]
        volume: String,
        #[command(flatten)]
        wait: Wait,
    },
    /// Compare a volume's data, byte for byte, with a snapshot: its parent while it is a
    /// layered clone, else the snapshot it was flattened from (while that exists), or --against.
    /// A job (progress, rate limit, cancel); with --wait, exits 0 only if they are equal, and
    /// prints the first differing offset and how many bytes differ
    Verify {
        #[arg(add = ArgValueCandidates::new(complete::volumes))]
        volume: String,
        /// The snapshot to compare with (id or name)
        #[arg(long, add = ArgValueCandidates::new(complete::snapshots))]
        against: Option<String>,
        /// Read at most this many bytes per second: bytes, or with a unit (`100M`); 0: no
        /// limit (default: the backend's volume_copy_bps_limit)
        #[arg(long, value_parser = rate)]
        bps_limit: Option<u64>,
        #[command(flatten)]
        wait: Wait,
    },
    /// Grow a volume
    Extend {
        #[arg(add = ArgValueCandidates::new(complete::volumes))]
        volume: String,
        /// The new size (larger than the current one)
        #[arg(long, value_parser = size)]
        size: u64,
        /// Even though someone has the volume open (see `volume locks`); recorded in the events
        #[arg(long)]
        force: bool,
        #[command(flatten)]
        wait: Wait,
    },
    /// Delete a volume (refused while clones depend on its snapshots, or while someone has it open)
    Delete {
        #[arg(add = ArgValueCandidates::new(complete::volumes))]
        volume: String,
        /// Delete its snapshots too
        #[arg(long)]
        cascade: bool,
        /// Even though someone has the volume open (see `volume locks`); recorded in the events
        #[arg(long)]
        force: bool,
        #[command(flatten)]
        wait: Wait,
    },
    /// Adopt an image no volume records (Cinder's manage): renamed volume-<new id>, layering kept
    /// when it is a clone of a snapshot ember knows
    Manage {
        #[arg(add = ArgValueCandidates::new(complete::backends))]
        backend: String,
        /// The image's name on the backend (rbd image, or file in file_dir)
        image: String,
        /// The new volume's name
        #[arg(long)]
        name: String,
    },
    /// Forget a volume and leave its image in place (Cinder's unmanage)
    Unmanage {
        #[arg(add = ArgValueCandidates::new(complete::volumes))]
        volume: String,
    },
    /// Set a volume's state by hand (Cinder's reset-state): ember's record only, not the storage
    ResetState {
        #[arg(add = ArgValueCandidates::new(complete::volumes))]
        volume: String,
        #[command(flatten)]
        reset: Reset,
    },
    /// Who has a volume open: watchers and lockers (rbd), processes (file), hosts named
    Locks {
        #[arg(add = ArgValueCandidates::new(complete::volumes))]
        volume: String,
    },
    /// Break a stale lock: blocklist the locker's address (1 h), then remove its lock
    BreakLock {
        #[arg(add = ArgValueCandidates::new(complete::volumes))]
        volume: String,
        /// The locker's client (`client.4242`, from `volume locks`)
        #[arg(long)]
        locker: String,
        /// Even though the locker still watches the image (it is alive)
        #[arg(long)]
        force: bool,
    },
    /// Volume snapshots
    #[command(subcommand)]
    Snapshot(SnapshotCmd),
    /// Compare the database with what the backend holds; --fix repairs the differences
    Reconcile {
        #[arg(add = ArgValueCandidates::new(complete::backends))]
        backend: String,
        /// Delete orphan images, mark volumes whose image is missing as error, take the
        /// storage's word for parent links
        #[arg(long)]
        fix: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum SnapshotCmd {
    /// Snapshot a volume
    Create {
        name: String,
        /// The volume (id or name)
        #[arg(long, add = ArgValueCandidates::new(complete::volumes))]
        volume: String,
        #[command(flatten)]
        wait: Wait,
    },
    /// Delete a snapshot (refused while clones depend on it, unless deferred deletion is on)
    Delete {
        #[arg(add = ArgValueCandidates::new(complete::snapshots))]
        snapshot: String,
        #[command(flatten)]
        wait: Wait,
    },
    /// Set a snapshot's state by hand (Cinder's snapshot-reset-state)
    ResetState {
        #[arg(add = ArgValueCandidates::new(complete::snapshots))]
        snapshot: String,
        #[command(flatten)]
        reset: Reset,
    },
    /// List snapshots
    List {
        /// Only this volume's snapshots
        #[arg(long, add = ArgValueCandidates::new(complete::volumes))]
        volume: Option<String>,
        /// Include the snapshots ember makes under `create --source`
        #[arg(long)]
        all: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum JobCmd {
    /// List recent jobs
    List {
        #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(i64).range(1..=100_000))]
        limit: i64,
        /// Also each job's id and its target's id
        #[arg(long)]
        wide: bool,
    },
    /// Show one job (id or unique id prefix)
    Show {
        #[arg(add = ArgValueCandidates::new(complete::jobs))]
        id: String,
    },
    /// Follow a job until it ends, with a progress bar
    Watch {
        #[arg(add = ArgValueCandidates::new(complete::jobs))]
        id: String,
    },
    /// Cancel a job: a queued one at once, a running one at its next progress step
    Cancel {
        #[arg(add = ArgValueCandidates::new(complete::jobs))]
        id: String,
    },
    /// Queue a failed or cancelled job again, with the same parameters (a new job naming the old)
    Retry {
        #[arg(add = ArgValueCandidates::new(complete::jobs))]
        id: String,
        #[command(flatten)]
        wait: Wait,
    },
}

#[derive(Debug, Subcommand)]
pub enum ConfigCmd {
    /// Validate a config and print what ember understood (exit 1 on errors)
    Check {
        /// The file to check (default: the file ember would use)
        path: Option<PathBuf>,
    },
}

/// What parsing the command line gave: the command, or what to print and the exit code.
pub enum Parsed {
    Run(Box<Cli>),
    /// `--help`, `--version`: clap prints them itself.
    Print(clap::Error),
    /// Bad arguments: one line naming what is wrong (clap's own words, without its usage
    /// block), for stderr, exit code 2.
    Bad(String),
}

/// Parses arguments as the binary does (`args` includes the program name).
pub fn parse_args<I, T>(args: I) -> Parsed
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    use clap::Parser;
    use clap::error::ErrorKind;
    match Cli::try_parse_from(args) {
        Ok(c) => Parsed::Run(Box::new(c)),
        Err(e)
            if matches!(
                e.kind(),
                ErrorKind::DisplayHelp
                    | ErrorKind::DisplayVersion
                    | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
            ) =>
        {
            Parsed::Print(e)
        }
        Err(e) => Parsed::Bad(one_line(&e.render().to_string())),
    }
}

/// clap's message up to its usage block, on one line: `unexpected argument '--frob' found
/// (tip: ...)`, `the following required arguments were not provided: <NAME>`.
fn one_line(text: &str) -> String {
    let body = text
        .split("\n\nUsage:")
        .next()
        .unwrap_or(text)
        .split("\n\nFor more information")
        .next()
        .unwrap_or(text);
    let flat = body.split_whitespace().collect::<Vec<_>>().join(" ");
    let flat = flat.strip_prefix("error: ").unwrap_or(&flat).to_string();
    format!("{flat} (ember --help shows the usage)")
}

/// `--state`: the statuses reset-state may set, as clap lists them in `--help`.
fn reset_states() -> impl clap::builder::TypedValueParser<Value = Status> {
    use clap::builder::TypedValueParser;
    let words: Vec<&'static str> = RESET_STATES.iter().map(|s| s.as_str()).collect();
    clap::builder::PossibleValuesParser::new(words).map(|s| Status::parse(&s))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `ember console --attach` is how operators (and the bench's terminal row) open a watcher:
    /// it used to be refused as an unknown argument.
    #[test]
    fn console_flags_parse_after_the_subcommand_too() {
        for line in [
            &[
                "ember",
                "console",
                "--attach",
                "--read-only",
                "--theme",
                "light",
            ][..],
            &[
                "ember",
                "--attach",
                "--read-only",
                "--theme",
                "light",
                "console",
            ][..],
        ] {
            let Parsed::Run(cli) = parse_args(line.iter().map(|s| s.to_string())) else {
                panic!("{line:?} did not parse");
            };
            let (top, sub) = match cli.command {
                Some(Command::Console { args, .. }) => (cli.console, args),
                other => panic!("{line:?}: {other:?}"),
            };
            assert!(top.attach || sub.attach, "{line:?}");
            assert!(top.read_only || sub.read_only, "{line:?}");
            assert_eq!(top.theme.or(sub.theme).as_deref(), Some("light"));
        }
    }
}
