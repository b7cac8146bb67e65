//! `ember bench ...`: each benchmark's arguments.

use std::path::PathBuf;

use clap::Subcommand;

use super::size;

#[derive(Debug, Subcommand)]
pub enum BenchCmd {
    /// Heartbeat lateness while jobs copy data: ember's storage pool vs plain spawn_blocking
    Heartbeat {
        /// Jobs submitted per run (comma-separated)
        #[arg(long, value_delimiter = ',', default_values_t = [0, 8, 64])]
        jobs: Vec<usize>,
        /// Seconds per run
        #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=600))]
        seconds: u64,
        /// Storage pool threads (backend_native_threads_pool_size; default: its default, the
        /// number of CPUs)
        #[arg(long, value_parser = clap::value_parser!(u64).range(1..=1024))]
        threads: Option<u64>,
    },
    /// Console speed with many volumes: frame, filter keystroke, first frame from SQLite, RSS
    Console {
        /// Volume counts (comma-separated)
        #[arg(long, value_delimiter = ',', default_values_t = [1_000, 10_000, 100_000])]
        volumes: Vec<usize>,
    },
    /// File-driver clone and flatten of a volume with data vs `cp --sparse=always`
    Flatten {
        /// Where to put the test files (a filesystem like the backend's)
        #[arg(long, default_value = "/var/tmp")]
        dir: PathBuf,
        #[arg(long, value_parser = size, default_value = "1G")]
        size: u64,
        /// How much of it holds data
        #[arg(long, value_parser = size, default_value = "512M")]
        data: u64,
    },
    /// Backup of a file volume with data (full, after a small change) and its restore, vs
    /// `cp --sparse=always` + sync (+ cmp)
    Backup {
        /// Where to put the test files (a filesystem like the backends')
        #[arg(long, default_value = "/var/tmp")]
        dir: PathBuf,
        #[arg(long, value_parser = size, default_value = "1G")]
        size: u64,
        /// How much of it holds data
        #[arg(long, value_parser = size, default_value = "512M")]
        data: u64,
    },
    /// File-to-file migration of a volume with data (copy, read back, check) vs
    /// `cp --sparse=always` + sync, and + cmp
    Migrate {
        /// Where to put the test files (a filesystem like the backends')
        #[arg(long, default_value = "/var/tmp")]
        dir: PathBuf,
        #[arg(long, value_parser = size, default_value = "1G")]
        size: u64,
        /// How much of it holds data
        #[arg(long, value_parser = size, default_value = "512M")]
        data: u64,
    },
    /// The console as operators run it: N volumes + N snapshots, the real refresh loop and
    /// render, idle and with a change every 2 s from another process; CPU, RSS, rows read per
    /// refresh and change-to-screen latency, beside a full reload (SQLite; PostgreSQL too with
    /// an admin --database-url)
    ConsoleLive {
        #[arg(long, value_delimiter = ',', default_values_t = [1_000, 10_000, 100_000])]
        volumes: Vec<usize>,
        /// Seconds of each phase (idle, changes)
        #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u64).range(4..=600))]
        seconds: u64,
        /// Internal: measure one configuration in this process (`URL N full|incremental`) and
        /// print its figures as JSON; the bench runs each configuration so, for honest RSS.
        #[arg(long, num_args = 3, hide = true)]
        one: Option<Vec<String>>,
    },
    /// Takeover in a cluster: seconds from `kill -9` of the member running a job to the job
    /// running on a peer (needs a PostgreSQL --database-url; real processes)
    Takeover {
        #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u64).range(1..=50))]
        rounds: u64,
    },
    /// A volume with data moved between two rbd backends' pools: ember's live migration vs
    /// `rbd migration prepare/execute/commit` (one cluster), ember's copy through this host vs
    /// `rbd export | import` and `export-diff | import-diff` (images made and removed by the bench)
    RbdMigrate {
        /// The rbd backend to move from
        #[arg(long)]
        backend: String,
        /// The rbd backend to move to
        #[arg(long)]
        to: String,
        #[arg(long, value_parser = size, default_value = "1G")]
        size: u64,
        /// How much of it holds data
        #[arg(long, value_parser = size, default_value = "512M")]
        data: u64,
        /// Rounds; the medians are printed
        #[arg(long, default_value_t = 3)]
        rounds: usize,
    },
    /// An rbd volume backed up into a directory store (full, then incremental after writes)
    /// and restored, vs `rbd snap create` + `export-diff` + sync and `import-diff`, on the pool
    /// of an rbd backend of the config (images are made and removed by the bench)
    RbdBackup {
        /// The rbd backend whose cluster, pool and user to use
        #[arg(long)]
        backend: String,
        /// Where to put the store and the CLI's diff files
        #[arg(long, default_value = "/var/tmp")]
        dir: PathBuf,
        #[arg(long, value_parser = size, default_value = "1G")]
        size: u64,
        /// How much of it holds data
        #[arg(long, value_parser = size, default_value = "512M")]
        data: u64,
        /// How much is written (at seeded offsets) between the two backups
        #[arg(long, value_parser = size, default_value = "32M")]
        change: u64,
        /// Rounds; the medians are printed
        #[arg(long, default_value_t = 3)]
        rounds: usize,
        /// Back up into this rbd pool of the same cluster (backup_driver = "ceph") instead of
        /// a directory; the CLI then pipes export-diff into import-diff into it, as Cinder's
        /// Ceph backup driver does
        #[arg(long)]
        to_pool: Option<String>,
    },
    /// rbd flatten of a clone with data, ember's driver vs the `rbd flatten` CLI, on the pool
    /// of an rbd backend of the config (images are made and removed by the bench)
    RbdFlatten {
        /// The rbd backend whose cluster, pool and user to use
        #[arg(long)]
        backend: String,
        #[arg(long, value_parser = size, default_value = "1G")]
        size: u64,
        /// How much of the parent holds data
        #[arg(long, value_parser = size, default_value = "512M")]
        data: u64,
        /// Rounds; the medians are printed
        #[arg(long, default_value_t = 5)]
        rounds: usize,
    },
}
