//! The console's on-call pieces: who has the selected volume open (asked in the background,
//! refreshed while the detail pane shows it), the delete that names them and asks for FORCE,
//! retrying a failed job and resetting a volume's state by hand.

use crate::service::inspect::Inspection;
use crate::service::lifecycle::RESET_STATES;
use crate::service::view::{JobState, Status, VolumeView};

use super::action::Action;
use super::state::{App, Command, Prompt, PromptKind, View};

/// How often the detail pane asks again who has its volume open.
pub const HOLDERS_EVERY_MS: i64 = 5_000;

/// The last answer about who has a volume open.
#[derive(Debug, Default)]
pub struct HoldersSeen {
    /// The volume asked about, when the answer came, and the answer.
    pub last: Option<(String, i64, Result<Inspection, String>)>,
    /// A question is out (one at a time).
    pub asking: Option<String>,
}

impl HoldersSeen {
    /// The answer for this volume, if one came.
    pub fn of(&self, volume: &str) -> Option<&Result<Inspection, String>> {
        match &self.last {
            Some((v, _, r)) if v == volume => Some(r),
            _ => None,
        }
    }
}

impl App {
    /// The question to send now, if the detail pane shows a volume whose answer is missing
    /// or older than [`HOLDERS_EVERY_MS`].
    pub fn holders_wanted(&mut self, now_ms: i64) -> Option<Command> {
        if self.view != View::Volumes || !self.detail || self.holders.asking.is_some() {
            return None;
        }
        let id = self.selected_volume()?.id.to_string();
        let fresh = matches!(&self.holders.last, Some((v, at, _)) if *v == id && now_ms - at < HOLDERS_EVERY_MS);
        if fresh {
            return None;
        }
        self.holders.asking = Some(id.clone());
        Some(Command::Inspection(id))
    }

    pub fn set_holders(&mut self, volume: String, now_ms: i64, answer: Result<Inspection, String>) {
        self.holders.asking = None;
        self.holders.last = Some((volume, now_ms, answer));
    }

    /// The delete confirmation: the name typed, and when someone else has the volume open
    /// (as last seen), a second field naming them that wants FORCE.
    pub(super) fn ask_delete(&mut self, v: &VolumeView) {
        let open_by = match self.holders.of(&v.id) {
            Some(Ok(h)) if !h.others().is_empty() => Some(
                h.others()
                    .iter()
                    .map(|x| x.describe())
                    .collect::<Vec<_>>()
                    .join("; "),
            ),
            _ => None,
        };
        let (title, fields): (String, Vec<(&str, &str)>) = match &open_by {
            Some(who) => (
                format!(
                    "Delete volume {} ({})? It is OPEN by {who}. Type its name, then FORCE",
                    v.name, v.id
                ),
                vec![("name", ""), ("FORCE (it is open)", "")],
            ),
            None => (
                format!(
                    "Delete volume {} ({})? Type its name to confirm",
                    v.name, v.id
                ),
                vec![("name", "")],
            ),
        };
        self.ask(
            PromptKind::Delete {
                volume: v.id.to_string(),
                name: v.name.to_string(),
                open_by,
            },
            title,
            &fields,
        );
    }

    pub(super) fn oncall_action(&mut self, action: Action) -> Option<Command> {
        match action {
            Action::RetryJob => match self.selected_job().cloned() {
                Some(j) if matches!(j.state, JobState::Failed | JobState::Cancelled) => {
                    self.ask(
                        PromptKind::RetryJob { job: j.id.clone() },
                        format!(
                            "Retry {} job {} (a new job with the same parameters)? (y/n)",
                            j.kind_name(),
                            crate::service::units::short_id(&j.id)
                        ),
                        &[],
                    );
                }
                Some(j) => {
                    self.toast = Some((
                        format!(
                            "job {} is {}: only a failed or cancelled job can be retried",
                            crate::service::units::short_id(&j.id),
                            j.state
                        ),
                        true,
                    ))
                }
                None => self.toast = Some(("no job selected".into(), true)),
            },
            Action::ResetState => match self.selected_volume().cloned() {
                Some(v) => {
                    let words: Vec<&str> = RESET_STATES.iter().map(|s| s.as_str()).collect();
                    let reset_label = format!("state ({})", words.join(", "));
                    self.ask(
                    PromptKind::ResetState {
                        volume: v.id.to_string(),
                        name: v.name.to_string(),
                    },
                    format!(
                        "Reset {} (now {}) by hand: ember's record only, the storage is not touched",
                        v.name, v.status
                    ),
                    &[
                        (reset_label.as_str(), Status::Available.as_str()),
                        ("reason", ""),
                        ("type the volume's name", ""),
                    ],
                    )
                }
                None => self.toast = Some(("no volume selected".into(), true)),
            },
            Action::BreakLock => match self.selected_volume().cloned() {
                Some(v) => {
                    // The first lock someone else holds, as last seen in the detail pane.
                    let locker = match self.holders.of(&v.id) {
                        Some(Ok(h)) => h
                            .others()
                            .iter()
                            .find(|x| x.cookie.is_some())
                            .map(|x| x.client.clone())
                            .unwrap_or_default(),
                        _ => String::new(),
                    };
                    self.ask(
                        PromptKind::BreakLock {
                            volume: v.id.to_string(),
                        },
                        format!(
                            "Break a stale lock on {}: the locker is blocklisted for an hour first (refused if it still watches)",
                            v.name
                        ),
                        &[("locker (client.N)", &locker), ("type BREAK", "")],
                    );
                }
                None => self.toast = Some(("no volume selected".into(), true)),
            },
            Action::Unmanage => match self.selected_volume().cloned() {
                Some(v) => self.ask(
                    PromptKind::Unmanage {
                        volume: v.id.to_string(),
                        name: v.name.to_string(),
                    },
                    format!(
                        "Unmanage {}: ember forgets it, its image stays on {}. Type its name",
                        v.name, v.backend
                    ),
                    &[("name", "")],
                ),
                None => self.toast = Some(("no volume selected".into(), true)),
            },
            _ => {}
        }
        None
    }
}

/// A filled on-call prompt (reset-state, break-lock, unmanage) as the command to send.
pub fn build_command(p: &Prompt) -> Result<Command, String> {
    let f = |i: usize| {
        p.fields
            .get(i)
            .map(|x| x.1.trim().to_string())
            .unwrap_or_default()
    };
    match &p.kind {
        PromptKind::ResetState { .. } => build_reset(p),
        PromptKind::BreakLock { volume } => {
            let locker = f(0);
            if !locker.starts_with("client.") {
                return Err("locker: the client that holds the lock (client.N)".into());
            }
            if f(1) != "BREAK" {
                return Err("type BREAK to break the lock".into());
            }
            Ok(Command::BreakLock {
                volume: volume.clone(),
                locker,
            })
        }
        PromptKind::Unmanage { volume, name } => {
            if f(0) != *name {
                return Err(format!("type the volume's name ({name}) to unmanage it"));
            }
            Ok(Command::Unmanage(volume.clone()))
        }
        _ => Err("nothing to send".into()),
    }
}

/// `:manage BACKEND IMAGE NAME` typed in the command line: None when it is another command.
pub fn manage_command(text: &str) -> Option<Result<Command, String>> {
    let mut words = text.split_whitespace();
    if words.next() != Some("manage") {
        return None;
    }
    let rest: Vec<&str> = words.collect();
    Some(match rest.as_slice() {
        [backend, image, name] => Ok(Command::Manage {
            backend: backend.to_string(),
            image: image.to_string(),
            name: name.to_string(),
        }),
        _ => Err(":manage BACKEND IMAGE NAME (the orphans: ember volume reconcile BACKEND)".into()),
    })
}

/// A filled reset-state prompt as the command to send.
pub fn build_reset(p: &Prompt) -> Result<Command, String> {
    let PromptKind::ResetState { volume, name } = &p.kind else {
        return Err("not a reset-state prompt".into());
    };
    let f = |i: usize| {
        p.fields
            .get(i)
            .map(|x| x.1.trim().to_string())
            .unwrap_or_default()
    };
    let state = Status::parse(&f(0));
    if !RESET_STATES.contains(&state) {
        let list: Vec<&str> = RESET_STATES.iter().map(|s| s.as_str()).collect();
        return Err(format!("state: one of {}", list.join(", ")));
    }
    if f(2) != *name {
        return Err(format!("type the volume's name ({name}) to confirm"));
    }
    Ok(Command::ResetState {
        volume: volume.clone(),
        state,
        reason: Some(f(1)).filter(|r| !r.is_empty()),
    })
}
