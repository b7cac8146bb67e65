//! The console's state and the one place it changes: `App::handle_key` (input → action) and
//! `App::update` (action → state, maybe a command for the service). Drawing only reads it.

use crate::service::view::JobState;
use std::collections::HashMap;
use std::sync::Arc;

use ratatui::crossterm::event::KeyEvent;

use crate::service::jobs::Request;
use crate::service::snapshot::Snapshot;

use super::action::Action;
pub use super::filter::filter_sort;
use super::filter::{filter_words, matches};
use super::keymap::Keymap;
use super::theme::Theme;

pub use super::prompt::{Prompt, PromptKind};
pub use super::view::View;

#[derive(Debug, Clone, PartialEq)]
pub enum Mode {
    Normal,
    Help,
    Filter,
    /// `:` typed so far, and which remembered command it shows (up/down walk the history).
    Command(String),
    Prompt(Prompt),
}

/// Something the service must do; the event loop sends it and reports back.
#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    Submit(Request),
    Cancel(String),
    /// Run `ember doctor`'s checks; results come back one by one.
    Doctor,
    /// Ask who has this volume open (for the detail pane and the delete confirmation).
    Inspection(String),
    Retry(String),
    BreakLock {
        volume: String,
        locker: String,
    },
    Unmanage(String),
    Manage {
        backend: String,
        image: String,
        name: String,
    },
    ResetState {
        volume: String,
        state: crate::service::view::Status,
        reason: Option<String>,
    },
    /// Read the database now (`ctrl-r`), not at the next push or poll.
    Refresh,
    Quit,
}

pub struct App {
    pub view: View,
    pub mode: Mode,
    pub snap: Arc<Snapshot>,
    pub keymap: Keymap,
    pub theme: Theme,
    pub read_only: bool,
    /// Why the console is read-only, when the database says so (a viewer's login).
    pub read_only_reason: Option<String>,
    pub worker: bool,
    pub host: String,
    /// Selected row per view.
    pub selected: [usize; View::ALL.len()],
    /// The Volumes view's filter and sort (a column of `columns::VOLUMES`).
    pub filter: String,
    pub sort: usize,
    pub sort_desc: bool,
    /// The Events view's filter (`actor:`, `kind:`, `target:` or words).
    pub event_filter: String,
    /// The other tables' sorts, by view name (none: their natural order).
    pub sorts: super::columns::Sorts,
    /// The columns shown per table, from the config's `[columns]` (none: all that fit).
    pub columns: std::collections::HashMap<&'static str, Vec<usize>>,
    /// Views visited before this one, for `esc` (newest last).
    pub history: Vec<View>,
    /// `:` commands entered, oldest first, and the one the up/down keys show.
    pub commands: Vec<String>,
    pub command_pos: Option<usize>,
    /// The family view's rows, and the volume it was opened on.
    pub family: Vec<super::family::Member>,
    pub family_of: Option<String>,
    /// Bytes done of each running job over time (ms, bytes), for the job detail's chart.
    pub samples: HashMap<String, Vec<(i64, i64)>>,
    /// Indices into `snap.volumes` after filter and sort; rebuilt only when they change.
    pub visible: Vec<usize>,
    visible_key: (usize, String, usize, bool),
    /// The volumes `visible` was computed over (kept to patch it after a small change).
    visible_of: Arc<Vec<Arc<crate::service::view::VolumeView>>>,
    pub detail: bool,
    /// The last message for the operator: (text, is_error).
    pub toast: Option<(String, bool)>,
    pub quit: bool,
    /// Table rows on screen (for mouse clicks), set by the event loop from the terminal size.
    pub page_rows: usize,
    /// Bytes done per job at the previous snapshot, for rates: (bytes, at ms).
    pub rates: HashMap<String, f64>,
    last_progress: HashMap<String, (i64, i64)>,
    /// The log view's own state: scroll position, target selection, levels per target.
    pub logs: tui_logger::TuiWidgetState,
    /// Whether the Logs view shows its target list (`h`).
    pub log_targets_shown: bool,
    /// The Logs view's `/` filter (words); lines come from `tui::logbook` while it is set,
    /// scrolled `log_scroll` lines up from the newest.
    pub log_filter: String,
    pub log_scroll: usize,
    /// The last (or running) doctor run, for the Doctor view and the Overview.
    pub doctor: super::doctor::DoctorState,
    /// Who has the selected volume open, as last asked (see `tui/oncall.rs`).
    pub holders: super::oncall::HoldersSeen,
}

impl App {
    pub fn new(keymap: Keymap, theme: Theme, read_only: bool, worker: bool, host: String) -> App {
        App {
            view: View::Overview,
            mode: Mode::Normal,
            snap: Arc::new(Snapshot::default()),
            keymap,
            theme,
            read_only,
            read_only_reason: None,
            worker,
            host,
            selected: [0; View::ALL.len()],
            filter: String::new(),
            sort: 0,
            sort_desc: false,
            event_filter: String::new(),
            sorts: Default::default(),
            columns: Default::default(),
            history: vec![],
            commands: vec![],
            command_pos: None,
            family: vec![],
            family_of: None,
            samples: HashMap::new(),
            visible: vec![],
            visible_key: (0, String::new(), usize::MAX, false),
            visible_of: Default::default(),
            detail: false,
            toast: None,
            quit: false,
            page_rows: 20,
            rates: HashMap::new(),
            last_progress: HashMap::new(),
            logs: {
                // The target list starts hidden: full-width lines; `h` shows it.
                let st = tui_logger::TuiWidgetState::new()
                    .set_default_display_level(tui_logger::LevelFilter::Info);
                st.transition(tui_logger::TuiWidgetEvent::HideKey);
                st
            },
            log_targets_shown: false,
            log_filter: String::new(),
            log_scroll: 0,
            doctor: Default::default(),
            holders: Default::default(),
        }
    }

    /// Takes in a new snapshot: job rates from the progress since the last one, and the
    /// volume view (only if the volumes, filter or sort changed).
    pub fn set_snapshot(&mut self, snap: Arc<Snapshot>) {
        for j in snap.jobs.iter().filter(|j| j.state == JobState::Running) {
            if let Some((done, at)) = self.last_progress.get(&j.id)
                && j.updated_at > *at
            {
                let rate = (j.bytes_done - done) as f64 / ((j.updated_at - at) as f64 / 1000.0);
                self.rates.insert(j.id.clone(), rate.max(0.0));
            }
            self.last_progress
                .insert(j.id.clone(), (j.bytes_done, j.updated_at));
            super::jobs::sample(&mut self.samples, j);
        }
        self.samples
            .retain(|id, _| snap.jobs.iter().any(|j| j.id == *id));
        self.snap = snap;
        self.refresh_visible();
        self.refresh_family();
        self.clamp();
    }

    pub fn refresh_visible(&mut self) {
        let key = (
            Arc::as_ptr(&self.snap.volumes) as usize,
            self.filter.clone(),
            self.sort,
            self.sort_desc,
        );
        if key == self.visible_key {
            return;
        }
        let (ptr, old_filter, sort, desc) = &self.visible_key;
        // A new `field:` changes what a word means: recompute then.
        let narrowing = *ptr == key.0
            && *sort == key.2
            && *desc == key.3
            && key.1.starts_with(old_filter.as_str())
            && key.1.matches(':').count() == old_filter.matches(':').count();
        if narrowing {
            // Typing narrows the filter: keep the already sorted rows that still match,
            // no re-sort (a keystroke on 100,000 volumes stays a linear scan).
            let words = filter_words(&self.filter);
            let vols = &self.snap.volumes;
            self.visible
                .retain(|i| vols.get(*i).is_some_and(|v| matches(v, &words)));
        } else {
            // Only the rows changed: patch the sorted list (a new volume every few seconds
            // on 100,000 must not sort them all again).
            let patched = (*old_filter == key.1 && *sort == key.2 && *desc == key.3)
                .then(|| {
                    super::filter::patch_visible(
                        &self.visible_of,
                        &self.snap.volumes,
                        &self.visible,
                        &self.filter,
                        self.sort,
                        self.sort_desc,
                    )
                })
                .flatten();
            self.visible = patched.unwrap_or_else(|| {
                filter_sort(&self.snap, &self.filter, self.sort, self.sort_desc)
            });
        }
        self.visible_key = key;
        self.visible_of = self.snap.volumes.clone();
    }

    pub fn rows(&self, view: View) -> usize {
        match view {
            View::Overview => self.snap.backends.len(),
            View::Services => self.snap.services.len(),
            View::Volumes => self.visible.len(),
            View::Jobs => self.snap.jobs.len(),
            View::Logs => 0,
            View::Doctor => self.doctor.checks.len(),
            View::Events => self.visible_events().len(),
            View::Family => self.family.len(),
            View::Backups => self.snap.backups.len(),
        }
    }

    pub(super) fn clamp(&mut self) {
        for v in View::ALL {
            let n = self.rows(v);
            let s = &mut self.selected[v.index()];
            *s = if n == 0 { 0 } else { (*s).min(n - 1) };
        }
    }

    /// Jobs running now (the Jobs title, the question at quit).
    pub fn running_jobs(&self) -> usize {
        self.snap
            .jobs
            .iter()
            .filter(|j| j.state == JobState::Running)
            .count()
    }

    pub fn selection(&self, view: View) -> usize {
        self.selected[view.index()]
    }

    /// The volume the volume keys act on: the Volumes view's row, or in the family view the
    /// selected member when it is a volume.
    pub fn selected_volume(&self) -> Option<&crate::service::view::VolumeView> {
        if self.view == View::Family {
            return self
                .family
                .get(self.selection(View::Family))
                .and_then(|m| m.volume());
        }
        self.visible
            .get(self.selection(View::Volumes))
            .and_then(|i| self.snap.volumes.get(*i))
            .map(|v| &**v)
    }

    pub fn selected_job(&self) -> Option<&crate::service::view::JobView> {
        self.job_order()
            .get(self.selection(View::Jobs))
            .and_then(|i| self.snap.jobs.get(*i))
    }

    fn move_by(&mut self, delta: isize) {
        let n = self.rows(self.view) as isize;
        let i = self.view.index();
        let cur = self.selected[i] as isize;
        self.selected[i] = (cur + delta).clamp(0, (n - 1).max(0)) as usize;
    }

    /// Input → action (via the keymap) → state. Returns a command for the service, if any.
    pub fn handle_key(&mut self, key: KeyEvent) -> Option<Command> {
        match &mut self.mode {
            Mode::Help => {
                self.mode = Mode::Normal;
                None
            }
            Mode::Filter => {
                self.filter_key(key);
                None
            }
            Mode::Command(_) => self.command_key(key),
            Mode::Prompt(_) => self.prompt_key(key),
            Mode::Normal => {
                let action = self.keymap.lookup(self.view, &key, self.read_only)?;
                self.update(action)
            }
        }
    }

    pub(super) fn ask(&mut self, kind: PromptKind, title: String, fields: &[(&str, &str)]) {
        self.mode = Mode::Prompt(Prompt {
            kind,
            title,
            fields: fields
                .iter()
                .map(|(l, v)| (l.to_string(), v.to_string()))
                .collect(),
            focus: 0,
            error: None,
        });
    }

    pub fn update(&mut self, action: Action) -> Option<Command> {
        let page = 10;
        if self.view == View::Logs && !self.log_filter.is_empty() {
            // The filtered lines scroll by themselves (from the newest, at the bottom).
            let by = match action {
                Action::Up => Some(1),
                Action::Down => Some(-1),
                Action::PageUp => Some(page),
                Action::PageDown => Some(-page),
                _ => None,
            };
            if let Some(by) = by {
                self.log_scroll = self.log_scroll.saturating_add_signed(by);
                return None;
            }
        }
        if self.view == View::Logs {
            use tui_logger::TuiWidgetEvent as E;
            let event = match action {
                Action::Up => Some(E::UpKey),
                Action::Down => Some(E::DownKey),
                Action::PageUp => Some(E::PrevPageKey),
                Action::PageDown => Some(E::NextPageKey),
                Action::LogTargets => Some(E::HideKey),
                Action::LogMore => Some(E::RightKey),
                Action::LogLess => Some(E::LeftKey),
                _ => None,
            };
            if let Some(e) = event {
                if action == Action::LogTargets {
                    self.log_targets_shown = !self.log_targets_shown;
                }
                self.logs.transition(e);
                return None;
            }
        }
        match action {
            Action::Help => self.mode = Mode::Help,
            Action::Quit => {
                let running = self.running_jobs();
                if self.worker && running > 0 {
                    self.ask(
                        PromptKind::Quit,
                        format!(
                            "{running} job(s) running. Quit and hand them back to the queue? (y/n)"
                        ),
                        &[],
                    );
                } else {
                    self.quit = true;
                    return Some(Command::Quit);
                }
            }
            Action::Command => {
                self.mode = Mode::Command(String::new());
                self.command_pos = None;
            }
            Action::Overview => self.show(View::Overview),
            Action::Services => self.show(View::Services),
            Action::Volumes => self.show(View::Volumes),
            Action::Jobs => self.show(View::Jobs),
            Action::Logs => self.show(View::Logs),
            Action::Doctor => self.show(View::Doctor),
            Action::Events => self.show(View::Events),
            Action::Backups => self.show(View::Backups),
            Action::Family => self.open_family(),
            Action::Refresh => {
                self.toast = Some(("reading the database now".into(), false));
                return Some(Command::Refresh);
            }
            Action::RerunDoctor => return self.doctor.start(),
            Action::Up => self.move_by(-1),
            Action::Down => self.move_by(1),
            Action::PageUp => self.move_by(-page),
            Action::PageDown => self.move_by(page),
            Action::Top => self.selected[self.view.index()] = 0,
            Action::Bottom => {
                self.selected[self.view.index()] = self.rows(self.view).saturating_sub(1)
            }
            Action::Back => self.back(),
            Action::Filter => self.mode = Mode::Filter,
            Action::Detail => {
                let some = match self.view {
                    View::Jobs => self.selected_job().is_some(),
                    _ => self.selected_volume().is_some(),
                };
                self.detail = some && !self.detail;
            }
            Action::Jump => self.jump_to_member(),
            Action::Sort => self.sort_next(false),
            Action::SortReverse => self.sort_next(true),
            Action::NewVolume => {
                let backend = self
                    .snap
                    .backends
                    .first()
                    .map(|b| b.name.clone())
                    .unwrap_or_default();
                self.ask(
                    PromptKind::NewVolume,
                    "New volume".into(),
                    &[
                        ("name", ""),
                        ("size (10G, 512M)", ""),
                        ("backend", &backend),
                    ],
                );
            }
            Action::Snapshot
            | Action::CloneVolume
            | Action::Extend
            | Action::Delete
            | Action::Verify
            | Action::Migrate
            | Action::Flatten => {
                let Some(v) = self.selected_volume().cloned() else {
                    self.toast = Some(("no volume selected".into(), true));
                    return None;
                };
                match action {
                    Action::Snapshot => self.ask(
                        PromptKind::Snapshot {
                            volume: v.id.to_string(),
                        },
                        format!("Snapshot of {}", v.name),
                        &[("snapshot name", &format!("{}-snap", v.name))],
                    ),
                    Action::CloneVolume => self.ask(
                        PromptKind::CloneVolume {
                            volume: v.id.to_string(),
                        },
                        format!("Clone of {}", v.name),
                        &[
                            ("new volume name", &format!("{}-clone", v.name)),
                            ("size (empty: same)", ""),
                        ],
                    ),
                    Action::Extend => self.ask(
                        PromptKind::Extend {
                            volume: v.id.to_string(),
                        },
                        format!("Extend {} (now {} bytes)", v.name, v.size_bytes),
                        &[("new size", "")],
                    ),
                    Action::Delete => self.ask_delete(&v),
                    Action::Migrate => {
                        // Prefilled with the first other backend, as the usual target.
                        let other = self
                            .snap
                            .backends
                            .iter()
                            .map(|b| b.name.clone())
                            .find(|b| **b != *v.backend)
                            .unwrap_or_default();
                        self.ask(
                            PromptKind::Migrate {
                                volume: v.id.to_string(),
                            },
                            format!(
                                "Migrate {} from {}: copy, compare, switch",
                                v.name, v.backend
                            ),
                            &[
                                ("to backend", &other),
                                ("with its clones, kept layered (y/n)", "n"),
                            ],
                        )
                    }
                    Action::Verify => self.ask(
                        PromptKind::Verify {
                            volume: v.id.to_string(),
                        },
                        format!("Verify {}: compare its data, byte for byte, with", v.name),
                        &[(
                            "snapshot (empty: its parent, or what it was flattened from)",
                            "",
                        )],
                    ),
                    _ => self.ask(
                        PromptKind::Flatten {
                            volume: v.id.to_string(),
                            name: v.name.to_string(),
                        },
                        format!(
                            "Flatten {}: copy what it reads from its parent? (y/n)",
                            v.name
                        ),
                        &[],
                    ),
                }
            }
            Action::RetryJob | Action::ResetState | Action::BreakLock | Action::Unmanage => {
                return self.oncall_action(action);
            }
            // Only meaningful in the logs view, handled above.
            Action::LogTargets | Action::LogMore | Action::LogLess => {}
            Action::CancelJob => match self.selected_job().cloned() {
                Some(j) if j.state == JobState::Queued || j.state == JobState::Running => {
                    self.ask(
                        PromptKind::CancelJob { job: j.id.clone() },
                        format!(
                            "Cancel {} job {}? (y/n)",
                            j.kind_name(),
                            crate::service::units::short_id(&j.id)
                        ),
                        &[],
                    );
                }
                Some(j) => {
                    self.toast = Some((
                        format!(
                            "job {} is already {}",
                            crate::service::units::short_id(&j.id),
                            j.state
                        ),
                        true,
                    ))
                }
                None => self.toast = Some(("no job selected".into(), true)),
            },
        }
        None
    }
}
