//! Prompts: what each one asks for (`PromptKind`), and a filled prompt turned into a request;
//! the size units, the names and the typed confirmation are checked here, before anything is
//! sent to the service.

use crate::service::jobs::Request;
use crate::service::units::parse_size;

/// What a prompt is for.
#[derive(Debug, Clone, PartialEq)]
pub enum PromptKind {
    NewVolume,
    Snapshot {
        volume: String,
    },
    CloneVolume {
        volume: String,
    },
    Extend {
        volume: String,
    },
    /// Destructive: the operator types the volume's name; when someone has it open
    /// (`open_by` names them), also FORCE.
    Delete {
        volume: String,
        name: String,
        open_by: Option<String>,
    },
    /// Sets the state by hand: the state, a reason, and the name typed.
    ResetState {
        volume: String,
        name: String,
    },
    RetryJob {
        job: String,
    },
    /// The locker's client, prefilled from the last answer of who holds the volume.
    BreakLock {
        volume: String,
    },
    /// Destructive for the record: the operator types the volume's name.
    Unmanage {
        volume: String,
        name: String,
    },
    Flatten {
        volume: String,
        name: String,
    },
    CancelJob {
        job: String,
    },
    Quit,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Prompt {
    pub kind: PromptKind,
    pub title: String,
    /// (label, value) pairs; a yes/no prompt has none.
    pub fields: Vec<(String, String)>,
    pub focus: usize,
    pub error: Option<String>,
}

/// Validates a filled prompt into a request (size units, names, the typed confirmation).
pub(crate) fn build_request(p: &Prompt) -> Result<Request, String> {
    let f = |i: usize| {
        p.fields
            .get(i)
            .map(|(_, v)| v.trim().to_string())
            .unwrap_or_default()
    };
    let size = |s: &str| parse_size(s).map_err(|e| e.to_string());
    let name = |s: String| {
        crate::service::units::check_name(&s)
            .map(|_| s.clone())
            .map_err(|e| e.to_string())
    };
    Ok(match &p.kind {
        PromptKind::NewVolume => Request::Create {
            name: name(f(0))?,
            size: Some(size(&f(1))?),
            backend: Some(f(2)).filter(|b| !b.is_empty()),
            snapshot: None,
            source: None,
        },
        PromptKind::Snapshot { volume } => Request::SnapshotCreate {
            name: name(f(0))?,
            volume: volume.clone(),
        },
        PromptKind::CloneVolume { volume } => Request::Create {
            name: name(f(0))?,
            size: if f(1).is_empty() {
                None
            } else {
                Some(size(&f(1))?)
            },
            backend: None,
            snapshot: None,
            source: Some(volume.clone()),
        },
        PromptKind::Extend { volume } => Request::Extend {
            volume: volume.clone(),
            size: size(&f(0))?,
            force: false,
        },
        PromptKind::Delete {
            volume,
            name,
            open_by,
        } => {
            if f(0) != *name {
                return Err(format!("type the volume's name ({name}) to delete it"));
            }
            let force = match open_by {
                Some(who) if f(1) != "FORCE" => {
                    return Err(format!(
                        "it is open by {who}: type FORCE to delete it anyway"
                    ));
                }
                Some(_) => true,
                None => false,
            };
            Request::Delete {
                volume: volume.clone(),
                cascade: false,
                force,
            }
        }
        _ => return Err("nothing to submit".into()),
    })
}
