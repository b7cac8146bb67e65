//! The command line, as clap types. Nouns then verbs, like the `openstack` CLI.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// ember: operations console and volume service for block-storage backends.
#[derive(Debug, Parser)]
#[command(
    name = "ember",
    version,
    propagate_version = true,
    arg_required_else_help = true
)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Option<Command>,
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
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the volume services of the configured backends headless (for systemd; logs to stderr)
    Serve,
    /// Volume services and their heartbeats
    #[command(subcommand)]
    Service(ServiceCmd),
    /// Configured backends, their drivers, state and capacity
    #[command(subcommand)]
    Backend(BackendCmd),
    /// Volumes
    #[command(subcommand)]
    Volume(VolumeCmd),
    /// Jobs (long storage work: clone, flatten, delete...)
    #[command(subcommand)]
    Job(JobCmd),
    /// The audit log: what was done, to what, by whom
    Events {
        /// How many of the newest events to show
        #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(i64).range(1..=100_000))]
        limit: i64,
    },
    /// Configuration
    #[command(subcommand)]
    Config(ConfigCmd),
}

#[derive(Debug, Subcommand)]
pub enum ServiceCmd {
    /// List services with state (up/down) and heartbeat age
    List,
}

#[derive(Debug, Subcommand)]
pub enum BackendCmd {
    /// List backends
    List,
}

#[derive(Debug, Subcommand)]
pub enum VolumeCmd {
    /// List volumes
    List {
        /// Only this backend's volumes
        #[arg(long)]
        backend: Option<String>,
    },
    /// Show one volume (by id or unique name)
    Show { volume: String },
}

#[derive(Debug, Subcommand)]
pub enum JobCmd {
    /// List recent jobs
    List {
        #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(i64).range(1..=100_000))]
        limit: i64,
    },
    /// Show one job
    Show { id: String },
}

#[derive(Debug, Subcommand)]
pub enum ConfigCmd {
    /// Validate a config and print what ember understood (exit 1 on errors)
    Check {
        /// The file to check (default: the file ember would use)
        path: Option<PathBuf>,
    },
}
