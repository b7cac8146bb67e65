//! `ember volume attach / detach / export`: the attachment commands' arguments.

use std::net::SocketAddr;

use clap::Args;
use clap_complete::ArgValueCandidates;

use crate::cli::complete;
use crate::service::attach::Mode;
use crate::service::connection::Format;

#[derive(Debug, Args)]
pub struct AttachArgs {
    #[arg(add = ArgValueCandidates::new(complete::volumes))]
    pub volume: String,
    /// The consumer's host (a hypervisor's name or address): what the doctor matches the
    /// storage's clients against
    #[arg(long)]
    pub host: String,
    /// The instance (guest) it is attached to
    #[arg(long)]
    pub instance: Option<String>,
    #[arg(long, value_enum, default_value = "rw")]
    pub mode: Mode,
    /// json: Cinder's connection info; libvirt: a <disk> element; qemu: a block URI
    #[arg(long, value_enum, default_value = "json")]
    pub format: Format,
}

#[derive(Debug, Args)]
pub struct DetachArgs {
    #[arg(add = ArgValueCandidates::new(complete::volumes))]
    pub volume: String,
    /// The attachment (id or its first characters, from `volume attachments`)
    #[arg(long, conflicts_with_all = ["host", "all"])]
    pub attachment: Option<String>,
    /// Every attachment to this consumer host
    #[arg(long, conflicts_with = "all")]
    pub host: Option<String>,
    /// Every attachment of the volume
    #[arg(long)]
    pub all: bool,
    /// Even though the consumer still has the image open (or the export's server still runs:
    /// it is stopped when it runs on this host); recorded in the events
    #[arg(long)]
    pub force: bool,
}

#[derive(Debug, Args)]
pub struct ExportArgs {
    #[arg(add = ArgValueCandidates::new(complete::volumes))]
    pub volume: String,
    /// Where the NBD server listens
    #[arg(long, default_value = "127.0.0.1:10809")]
    pub listen: SocketAddr,
    #[arg(long)]
    pub read_only: bool,
    /// Allow a non-loopback --listen (NBD has no authentication)
    #[arg(long)]
    pub allow_remote: bool,
}
