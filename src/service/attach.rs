//! Attachments: handing a volume to a consumer (`volume attach`, Cinder's
//! `initialize_connection` plus its attachment record), taking it back (`volume detach`), and
//! comparing the records with who really has the image open (the doctor, the console's
//! detail pane). Every refusal of a request because a volume is attached names the
//! attachments, from here.

use std::collections::HashSet;
use std::net::{IpAddr, ToSocketAddrs};

use uuid::Uuid;

use crate::db::attachments::{Attach, Detach, KIND_ATTACH, NewAttachment};
use crate::db::events::NewEvent;
use crate::db::{AttachmentRow, Db, EventKind, Status, VolumeRow};
use crate::driver::{Holder, address_ip};

use super::jobs::JobError;
use super::units::short_id;

/// How the consumer may use the volume.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    Rw,
    Ro,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Rw => "rw",
            Mode::Ro => "ro",
        }
    }
}

/// Who asks for which volume, for whom.
#[derive(Debug, Clone)]
pub struct AttachRequest<'a> {
    pub volume: &'a str,
    /// The consumer's host (a hypervisor's name or address).
    pub host: &'a str,
    pub instance: Option<&'a str>,
    pub mode: Mode,
    /// `attach`, or `export` (with the NBD endpoint and the server's process).
    pub kind: &'a str,
    pub endpoint: Option<&'a str>,
    pub served_by: Option<&'a str>,
    pub pid: Option<i64>,
}

/// A refusal naming the attachments that hold a volume, and what to do.
pub fn held_by(v: &VolumeRow, action: &str, held: &[AttachmentRow]) -> JobError {
    let names: Vec<String> = held.iter().map(AttachmentRow::describe).collect();
    let fix = match held.first() {
        Some(a) if held.len() == 1 => format!(
            "detach it first (ember volume detach {} --attachment {})",
            v.name,
            short_id(&a.id)
        ),
        _ => format!("detach them first (ember volume detach {} --all)", v.name),
    };
    JobError::Refused(format!(
        "cannot {action} volume {} ({}): it is in-use, attached to {}; {fix}",
        v.name,
        v.id,
        names.join("; ")
    ))
}

/// Refuses `action` on a volume that is attached, naming the attachments (None: not attached,
/// or the attachments are gone and the status check decides).
pub async fn refuse_if_attached(db: &Db, v: &VolumeRow, action: &str) -> Result<(), JobError> {
    if v.status != Status::InUse {
        return Ok(());
    }
    let held = db.attachments_of(&v.id).await?;
    if held.is_empty() {
        return Ok(());
    }
    Err(held_by(v, action, &held))
}

/// Records an attachment; the volume becomes `in-use`. Refused, saying why, when the volume
/// is not usable or (not multiattach) already attached.
pub async fn attach(
    db: &Db,
    r: &AttachRequest<'_>,
    actor: &str,
) -> Result<(VolumeRow, AttachmentRow), JobError> {
    let v = super::jobs::volume(db, r.volume).await?;
    if r.host.trim().is_empty() {
        return Err(JobError::Refused(
            "attach needs the consumer's host (--host NAME)".into(),
        ));
    }
    let id = Uuid::new_v4().to_string();
    let outcome = db
        .attach(&NewAttachment {
            id: &id,
            volume_id: &v.id,
            attached_host: r.host,
            instance: r.instance,
            mode: r.mode.as_str(),
            kind: r.kind,
            endpoint: r.endpoint,
            served_by: r.served_by,
            pid: r.pid,
            asked_by: actor,
        })
        .await?;
    match outcome {
        Attach::Attached => {}
        Attach::NoVolume => {
            return Err(JobError::NotFound {
                what: "volume",
                key: r.volume.to_string(),
            });
        }
        Attach::Held(held) => {
            let mut e = held_by(&v, "attach", &held).to_string();
            e += &format!(
                "; volume {} was not created --multiattach, so it takes one attachment at a time",
                v.name
            );
            return Err(JobError::Refused(e));
        }
        Attach::Status(s) => {
            return Err(JobError::Refused(format!(
                "cannot attach volume {} ({}): it is {s}; attach needs it available (or in-use, when created --multiattach)",
                v.name, v.id
            )));
        }
    }
    let a = db
        .attachments_of(&v.id)
        .await?
        .into_iter()
        .find(|a| a.id == id)
        .ok_or_else(|| JobError::Refused(format!("attachment {id} vanished at once")))?;
    let what = if r.kind == KIND_ATTACH {
        "attached"
    } else {
        "exported"
    };
    let _ = db
        .add_event(&NewEvent {
            actor,
            host: None,
            kind: EventKind::VolumeAttached,
            target: Some(&v.id),
            message: &format!("{what} {}: {}", v.name, a.describe()),
        })
        .await;
    Ok((v, a))
}

/// Which attachments of a volume a detach ends.
#[derive(Debug, Clone)]
pub enum Which<'a> {
    /// The one attachment (refused when there are several).
    Only,
    /// By id or id prefix.
    Id(&'a str),
    /// Every attachment held by this consumer host.
    Host(&'a str),
    All,
}

/// The attachments a detach would end, or why none.
pub fn pick<'a>(
    v: &VolumeRow,
    live: &'a [AttachmentRow],
    which: &Which<'_>,
) -> Result<Vec<&'a AttachmentRow>, JobError> {
    if live.is_empty() {
        return Err(JobError::Refused(format!(
            "volume {} ({}) has no attachment; it is {}",
            v.name, v.id, v.status
        )));
    }
    let picked: Vec<&AttachmentRow> = match which {
        Which::All => live.iter().collect(),
        Which::Only if live.len() == 1 => live.iter().collect(),
        Which::Only => {
            let list: Vec<String> = live.iter().map(AttachmentRow::describe).collect();
            return Err(JobError::Refused(format!(
                "volume {} has {} attachments: {}; name one (--attachment ID or --host HOST) or --all",
                v.name,
                live.len(),
                list.join("; ")
            )));
        }
        Which::Id(k) => live.iter().filter(|a| a.id.starts_with(k)).collect(),
        Which::Host(h) => live.iter().filter(|a| a.attached_host == *h).collect(),
    };
    if picked.is_empty() {
        let list: Vec<String> = live.iter().map(AttachmentRow::describe).collect();
        return Err(JobError::Refused(format!(
            "volume {} has no such attachment; it has: {}",
            v.name,
            list.join("; ")
        )));
    }
    Ok(picked)
}

/// Ends one attachment and records it; the volume's status after it.
pub async fn end(
    db: &Db,
    v: &VolumeRow,
    a: &AttachmentRow,
    actor: &str,
    why: &str,
) -> Result<Status, JobError> {
    match db.detach(&a.id).await? {
        Detach::NotAttached => Ok(v.status),
        Detach::Detached { now } => {
            let _ = db
                .add_event(&NewEvent {
                    actor,
                    host: None,
                    kind: EventKind::VolumeDetached,
                    target: Some(&v.id),
                    message: &format!("detached {} from {}{why}", v.name, a.describe()),
                })
                .await;
            Ok(now)
        }
    }
}

/// An attachment compared with who has the image open.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[serde(tag = "finding", rename_all = "snake_case")]
pub enum Mismatch {
    /// Recorded, but no client of that host has the image open.
    PaperOnly { attachment: AttachmentRow },
    /// Open by a client no attachment accounts for (ember's own clients aside).
    Unattached { holder: Holder },
}

impl Mismatch {
    /// One line with the fix, for the doctor and the detail pane.
    pub fn describe(&self, volume: &str) -> String {
        match self {
            Mismatch::PaperOnly { attachment } => format!(
                "attached on paper only: volume {volume} is attached to {}, but nothing there has it open; if that consumer is gone: ember volume detach {volume} --attachment {}",
                attachment.describe(),
                short_id(&attachment.id)
            ),
            Mismatch::Unattached { holder } => format!(
                "used but not attached: volume {volume} is open by {} with no attachment recording it; record it (ember volume attach {volume} --host HOST) or stop that client",
                holder.describe(),
            ),
        }
    }
}

/// The addresses a host name stands for (itself when it is an address; empty when it does
/// not resolve). `local`: the addresses of this machine's own names.
pub fn addresses_of(host: &str) -> HashSet<IpAddr> {
    if let Ok(ip) = host.parse::<IpAddr>() {
        return [ip].into();
    }
    (host, 0)
        .to_socket_addrs()
        .map(|it| it.map(|a| a.ip()).collect())
        .unwrap_or_default()
}

/// Whether a holder is the consumer an attachment names: the export's own server process, a
/// client at one of the host's addresses, or one the services table places on that host.
/// `local_ips`: this machine's addresses, for the file backend's holders (processes here).
fn serves(a: &AttachmentRow, h: &Holder, host_ips: &HashSet<IpAddr>, local: bool) -> bool {
    if let Some(pid) = a.pid
        && h.client == format!("pid {pid}")
    {
        return true;
    }
    if h.host.as_deref() == Some(a.attached_host.as_str())
        || (a.is_export() && h.host.is_some() && h.host == a.served_by)
    {
        return true;
    }
    if h.client.starts_with("pid ") {
        // A process on this host: the attachment's host must be this host.
        return local && !a.is_export();
    }
    address_ip(&h.address)
        .parse::<IpAddr>()
        .is_ok_and(|ip| host_ips.contains(&ip))
}

/// Compares a volume's attachments with its holders. `resolve` names a host's addresses;
/// `is_local` says whether a consumer host is this machine (whose processes the file backend
/// sees). An export is matched by its server's process or its serving host.
pub fn compare(
    attachments: &[AttachmentRow],
    holders: &[Holder],
    resolve: &dyn Fn(&str) -> HashSet<IpAddr>,
    is_local: &dyn Fn(&str) -> bool,
) -> Vec<Mismatch> {
    let others: Vec<&Holder> = holders.iter().filter(|h| !h.ember).collect();
    let mut used = vec![false; others.len()];
    let mut out = vec![];
    for a in attachments {
        let ips = resolve(&a.attached_host);
        let local = is_local(&a.attached_host);
        let mut found = false;
        for (i, h) in others.iter().enumerate() {
            if serves(a, h, &ips, local) {
                used[i] = true;
                found = true;
            }
        }
        if !found {
            out.push(Mismatch::PaperOnly {
                attachment: a.clone(),
            });
        }
    }
    for (h, u) in others.iter().zip(used) {
        if !u {
            out.push(Mismatch::Unattached {
                holder: (*h).clone(),
            });
        }
    }
    out
}

/// A host's addresses without asking DNS: an address literal, or `localhost`; None for any
/// other name (the console draws without blocking on a resolver).
pub fn literal_addresses(host: &str) -> Option<HashSet<IpAddr>> {
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Some([ip].into());
    }
    (host == "localhost").then(|| {
        [
            IpAddr::from([127, 0, 0, 1]),
            IpAddr::from(std::net::Ipv6Addr::LOCALHOST),
        ]
        .into()
    })
}

/// Whether a consumer host is this machine: a loopback address, or a name resolving to an
/// address of this machine's own name.
pub fn is_this_host(host: &str) -> bool {
    let ips = addresses_of(host);
    if ips.iter().any(IpAddr::is_loopback) {
        return true;
    }
    let me = hostname::get()
        .map(|h| h.to_string_lossy().into_owned())
        .unwrap_or_default();
    host == me || (!ips.is_empty() && ips.iter().any(|ip| addresses_of(&me).contains(ip)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(id: &str, host: &str, kind: &str, pid: Option<i64>) -> AttachmentRow {
        AttachmentRow {
            id: id.into(),
            volume_id: "v".into(),
            attached_host: host.into(),
            instance: None,
            mode: "rw".into(),
            kind: kind.into(),
            endpoint: None,
            served_by: Some("h1".into()),
            pid,
            asked_by: "t".into(),
            created_at: 0,
            detached_at: None,
        }
    }

    fn holder(client: &str, address: &str, ember: bool) -> Holder {
        Holder {
            client: client.into(),
            address: address.into(),
            how: "watcher".into(),
            cookie: None,
            host: None,
            ember,
        }
    }

    fn resolve(h: &str) -> HashSet<IpAddr> {
        match h {
            "hv1" => [IpAddr::from([10, 0, 0, 5])].into(),
            _ => HashSet::new(),
        }
    }

    #[test]
    fn a_watcher_at_the_hosts_address_is_the_attachment() {
        let a = [row("a1", "hv1", "attach", None)];
        let h = [holder("client.7", "10.0.0.5:0/123", false)];
        assert!(compare(&a, &h, &resolve, &|_| false).is_empty());
    }

    #[test]
    fn paper_only_and_unattached_are_both_found() {
        let a = [row("a1", "hv1", "attach", None)];
        let h = [
            holder("client.8", "10.0.0.9:0/5", false),
            holder("client.9", "10.0.0.5:0/1", true), // ember's own: never a finding
        ];
        let m = compare(&a, &h, &resolve, &|_| false);
        assert_eq!(m.len(), 2, "{m:?}");
        assert!(matches!(&m[0], Mismatch::PaperOnly { attachment } if attachment.id == "a1"));
        assert!(matches!(&m[1], Mismatch::Unattached { holder } if holder.client == "client.8"));
    }

    #[test]
    fn an_export_is_its_server_process() {
        let a = [row("a1", "127.0.0.1", "export", Some(4242))];
        let h = [holder("pid 4242", "qemu-nbd ...", false)];
        assert!(compare(&a, &h, &resolve, &|_| true).is_empty());
        let other = [holder("pid 4243", "dd ...", false)];
        assert_eq!(compare(&a, &other, &resolve, &|_| true).len(), 2);
    }
}
