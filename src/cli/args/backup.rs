//! `ember backup ...`: the backup commands' arguments.

use clap::Subcommand;
use clap_complete::ArgValueCandidates;

use super::Wait;
use crate::cli::complete;

#[derive(Debug, Subcommand)]
pub enum BackupCmd {
    /// Back a volume up: its data read through the driver, chunks the store already holds
    /// not written again. The volume must be available and open by nobody else
    Create {
        #[arg(add = ArgValueCandidates::new(complete::volumes))]
        volume: String,
        /// Refused unless the volume has an earlier backup (Cinder's --incremental); every
        /// backup after the first stores only what changed either way
        #[arg(long)]
        incremental: bool,
        /// Default: VOLUME-YYYYMMDDTHHMMSSZ
        #[arg(long)]
        name: Option<String>,
        #[command(flatten)]
        wait: Wait,
    },
    /// List backups, newest first
    List {
        /// Only this volume's (id or name; also a deleted volume's id)
        #[arg(long)]
        volume: Option<String>,
    },
    /// One backup, with its manifest's figures
    Show { backup: String },
    /// A new volume from a backup, written and checked (hashed where stored, or read back)
    Restore {
        backup: String,
        /// The new volume's name (default: BACKUP-restore)
        #[arg(long)]
        name: Option<String>,
        /// Where to put it (default: the backed-up volume's backend)
        #[arg(long, add = ArgValueCandidates::new(complete::backends))]
        backend: Option<String>,
        #[command(flatten)]
        wait: Wait,
    },
    /// Delete a backup, and the chunks no other backup holds
    Delete {
        backup: String,
        #[command(flatten)]
        wait: Wait,
    },
    /// Read every chunk of a backup and check it against its hash: exit 2 when any is
    /// damaged or missing (naming them)
    Verify { backup: String },
}
