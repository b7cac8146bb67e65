//! Prompts: what each one asks for (`PromptKind`), and a filled prompt turned into a request;
//! the size units, the names and the typed confirmation are checked here, before anything is
//! sent to the service.

use ratatui::crossterm::event::{KeyCode, KeyEvent};

use crate::service::jobs::Request;
use crate::service::units::parse_size;

use super::state::{App, Command, Mode};

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
    Verify {
        volume: String,
    },
    Migrate {
        volume: String,
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
            multiattach: false,
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
            multiattach: false,
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
        PromptKind::Verify { volume } => Request::Verify {
            volume: volume.clone(),
            against: Some(f(0)).filter(|s| !s.is_empty()),
            bps_limit: None,
        },
        PromptKind::Migrate { volume } => {
            let to = f(0);
            if to.is_empty() {
                return Err("name the backend to move it to".into());
            }
            let with_clones = match f(1).to_ascii_lowercase().as_str() {
                "" | "n" | "no" => false,
                "y" | "yes" => true,
                other => return Err(format!("with its clones: answer y or n, not {other:?}")),
            };
            Request::Migrate {
                volume: volume.clone(),
                to,
                with_clones,
            }
        }
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

impl App {
    /// A key while a prompt is open: yes/no, or editing its fields and submitting.
    pub(super) fn prompt_key(&mut self, key: KeyEvent) -> Option<Command> {
        let Mode::Prompt(p) = &mut self.mode else {
            return None;
        };
        if p.fields.is_empty() {
            // A yes/no question.
            return match key.code {
                KeyCode::Char('y') | KeyCode::Char('Y') => {
                    let kind = p.kind.clone();
                    self.mode = Mode::Normal;
                    match kind {
                        PromptKind::Flatten { volume, .. } => {
                            Some(Command::Submit(Request::Flatten { volume }))
                        }
                        PromptKind::CancelJob { job } => Some(Command::Cancel(job)),
                        PromptKind::RetryJob { job } => Some(Command::Retry(job)),
                        PromptKind::Quit => {
                            self.quit = true;
                            Some(Command::Quit)
                        }
                        _ => None,
                    }
                }
                KeyCode::Char('n') | KeyCode::Char('N') | KeyCode::Esc => {
                    self.mode = Mode::Normal;
                    None
                }
                _ => None,
            };
        }
        match key.code {
            KeyCode::Esc => self.mode = Mode::Normal,
            KeyCode::Tab | KeyCode::Down => p.focus = (p.focus + 1) % p.fields.len(),
            KeyCode::Up | KeyCode::BackTab => {
                p.focus = (p.focus + p.fields.len() - 1) % p.fields.len()
            }
            KeyCode::Backspace => {
                p.fields[p.focus].1.pop();
            }
            KeyCode::Char(c) => p.fields[p.focus].1.push(c),
            KeyCode::Enter
                if matches!(
                    p.kind,
                    PromptKind::ResetState { .. }
                        | PromptKind::BreakLock { .. }
                        | PromptKind::Unmanage { .. }
                ) =>
            {
                match super::oncall::build_command(p) {
                    Ok(cmd) => {
                        self.mode = Mode::Normal;
                        return Some(cmd);
                    }
                    Err(e) => p.error = Some(e),
                }
            }
            KeyCode::Enter => match build_request(p) {
                Ok(req) => {
                    self.mode = Mode::Normal;
                    return Some(Command::Submit(req));
                }
                Err(e) => p.error = Some(e),
            },
            _ => {}
        }
        None
    }
}
