//! Getting around: views and `esc` back through them, the `:` command line with its history,
//! the filter line of the view that has one, and sorting any table by any column.

use ratatui::crossterm::event::{KeyCode, KeyEvent, MouseButton, MouseEvent, MouseEventKind};

use super::action::Action;
use super::columns::{self, SortBy};
use super::state::{App, Command, Mode, View};

/// How many views `esc` remembers, and how many `:` commands.
const HISTORY: usize = 32;

impl App {
    /// Goes to a view, remembering where the operator came from.
    pub(super) fn show(&mut self, v: View) {
        if v != self.view {
            self.history.push(self.view);
            if self.history.len() > HISTORY {
                self.history.remove(0);
            }
        }
        self.view = v;
        self.detail = false;
    }

    /// The mouse (only with `mouse = true`): the wheel moves the selection, a click on a
    /// table row selects it (rows start three lines down: title bar, border, header).
    /// True when something changed.
    pub fn mouse(&mut self, m: MouseEvent) -> bool {
        if self.mode != Mode::Normal {
            return false;
        }
        match m.kind {
            MouseEventKind::ScrollDown => {
                self.update(Action::Down);
                true
            }
            MouseEventKind::ScrollUp => {
                self.update(Action::Up);
                true
            }
            MouseEventKind::Down(MouseButton::Left) if m.row >= 3 => {
                let row = (m.row - 3) as usize;
                let n = self.rows(self.view);
                // Tables scroll to keep the selection in view: a click counts from the top
                // of what is shown, which starts at 0 until the selection is past a screen.
                let first = self
                    .selection(self.view)
                    .saturating_sub(self.page_rows.saturating_sub(1));
                let at = first + row;
                if at < n && !matches!(self.view, View::Overview | View::Logs) {
                    self.selected[self.view.index()] = at;
                    return true;
                }
                false
            }
            _ => false,
        }
    }

    /// `esc`: closes the detail pane, else clears the filter, else returns to the view before.
    pub(super) fn back(&mut self) {
        if self.detail {
            self.detail = false;
        } else if !self.filter_text().is_empty() {
            self.filter_mut().clear();
            self.refresh_visible();
        } else {
            self.view = self.history.pop().unwrap_or(View::Overview);
            self.detail = false;
            if self.view == View::Family {
                self.refresh_family();
            }
        }
        self.clamp();
    }

    /// The filter of the view on screen (Volumes and Events have one).
    pub fn filter_text(&self) -> &str {
        match self.view {
            View::Events => &self.event_filter,
            View::Logs => &self.log_filter,
            View::Volumes => &self.filter,
            _ => "",
        }
    }

    fn filter_mut(&mut self) -> &mut String {
        match self.view {
            View::Events => &mut self.event_filter,
            View::Logs => &mut self.log_filter,
            _ => &mut self.filter,
        }
    }

    pub(super) fn filter_key(&mut self, key: KeyEvent) {
        match key.code {
            KeyCode::Esc => {
                self.filter_mut().clear();
                self.mode = Mode::Normal;
            }
            KeyCode::Enter => self.mode = Mode::Normal,
            KeyCode::Backspace => {
                self.filter_mut().pop();
            }
            KeyCode::Char(c) => self.filter_mut().push(c),
            _ => {}
        }
        self.log_scroll = 0;
        let owner = if self.view == View::Events {
            View::Events
        } else {
            View::Volumes
        };
        self.selected[owner.index()] = 0;
        self.refresh_visible();
        self.clamp();
    }

    /// The `:` line: editing, up/down through the commands entered before, enter runs it.
    pub(super) fn command_key(&mut self, key: KeyEvent) -> Option<Command> {
        let Mode::Command(text) = &mut self.mode else {
            return None;
        };
        match key.code {
            KeyCode::Esc => self.mode = Mode::Normal,
            KeyCode::Backspace => {
                text.pop();
            }
            KeyCode::Char(c) => text.push(c),
            KeyCode::Up | KeyCode::Down if !self.commands.is_empty() => {
                let last = self.commands.len() - 1;
                let pos = match (key.code, self.command_pos) {
                    (KeyCode::Up, None) => Some(last),
                    (KeyCode::Up, Some(p)) => Some(p.saturating_sub(1)),
                    (_, Some(p)) if p < last => Some(p + 1),
                    _ => None,
                };
                *text = pos
                    .and_then(|p| self.commands.get(p).cloned())
                    .unwrap_or_default();
                self.command_pos = pos;
            }
            KeyCode::Enter => {
                let t = text.trim().to_string();
                self.mode = Mode::Normal;
                if !t.is_empty() {
                    self.commands.retain(|c| *c != t);
                    self.commands.push(t.clone());
                    if self.commands.len() > HISTORY {
                        self.commands.remove(0);
                    }
                }
                return self.run_command(&t);
            }
            _ => {}
        }
        None
    }

    fn run_command(&mut self, t: &str) -> Option<Command> {
        if let Some(cmd) = super::oncall::manage_command(t) {
            return cmd.map_err(|e| self.toast = Some((e, true))).ok();
        }
        if let Some(rest) = t.strip_prefix("sort") {
            self.sort_by_name(rest.trim());
            return None;
        }
        match t {
            "q" | "quit" => self.update(Action::Quit),
            "refresh" | "r" => self.update(Action::Refresh),
            other => {
                match View::parse(other) {
                    Some(View::Family) => self.open_family(),
                    Some(v) => self.show(v),
                    None => {
                        self.toast = Some((
                            format!(
                                "unknown command :{other} (try :volumes, :jobs, :services, :events, :logs, :overview, :sort COLUMN, :q)"
                            ),
                            true,
                        ))
                    }
                }
                None
            }
        }
    }

    /// The sort of the view on screen.
    pub fn sort_of(&self, view: View) -> Option<SortBy> {
        match view {
            View::Volumes => Some(SortBy {
                col: self.sort,
                desc: self.sort_desc,
            }),
            v => self.sorts.get(v.name()).copied(),
        }
    }

    fn set_sort(&mut self, s: SortBy) {
        match self.view {
            View::Volumes => {
                self.sort = s.col;
                self.sort_desc = s.desc;
                self.refresh_visible();
            }
            v => {
                self.sorts.insert(v.name(), s);
            }
        }
    }

    /// `o`: the next shown column, ascending; `O`: the same column reversed.
    pub(super) fn sort_next(&mut self, reverse: bool) {
        let cols = columns::of(self.view);
        if cols.is_empty() {
            self.toast = Some((
                format!("the {} view has no table to sort", self.view.name()),
                true,
            ));
            return;
        }
        let shown = self.columns_of(self.view);
        let cur = self.sort_of(self.view);
        let next = match (reverse, cur) {
            (true, Some(s)) => SortBy {
                col: s.col,
                desc: !s.desc,
            },
            (true, None) => SortBy {
                col: shown[0],
                desc: true,
            },
            (false, Some(s)) => {
                let at = shown.iter().position(|c| *c == s.col).map_or(0, |p| p + 1);
                SortBy {
                    col: shown[at % shown.len()],
                    desc: false,
                }
            }
            (false, None) => SortBy {
                col: shown[0],
                desc: false,
            },
        };
        self.set_sort(next);
        self.toast = Some((
            format!(
                "sorted by {}{}",
                cols[next.col].title,
                if next.desc { " (reversed)" } else { "" }
            ),
            false,
        ));
    }

    /// `:sort NAME` (`:sort -NAME` reversed).
    fn sort_by_name(&mut self, name: &str) {
        let (desc, name) = match name.strip_prefix('-') {
            Some(n) => (true, n),
            None => (false, name),
        };
        match columns::find(self.view, name) {
            Some(col) => self.set_sort(SortBy { col, desc }),
            None => {
                let cols = columns::of(self.view);
                self.toast = Some((
                    if cols.is_empty() {
                        format!("the {} view has no table to sort", self.view.name())
                    } else {
                        format!(
                            ":sort {name}: no such column here (columns: {})",
                            cols.iter().map(|c| c.title).collect::<Vec<_>>().join(", ")
                        )
                    },
                    true,
                ));
            }
        }
    }

    /// The columns a table shows, in order: the config's choice, else all.
    pub fn columns_of(&self, view: View) -> Vec<usize> {
        self.columns
            .get(view.name())
            .cloned()
            .unwrap_or_else(|| (0..columns::of(view).len()).collect())
    }

    /// Jobs in the order on screen (indices into the snapshot's jobs).
    pub fn job_order(&self) -> Vec<usize> {
        let jobs = &self.snap.jobs;
        let mut idx: Vec<usize> = (0..jobs.len()).collect();
        if let Some(s) = self.sort_of(View::Jobs) {
            idx.sort_by(|a, b| {
                let o = columns::cmp_jobs(&jobs[*a], &jobs[*b], s.col, &self.rates);
                if s.desc { o.reverse() } else { o }
            });
        }
        idx
    }

    /// Services in the order on screen.
    pub fn service_order(&self) -> Vec<usize> {
        let svcs = &self.snap.services;
        let mut idx: Vec<usize> = (0..svcs.len()).collect();
        if let Some(s) = self.sort_of(View::Services) {
            idx.sort_by(|a, b| {
                let o = columns::cmp_services(&svcs[*a], &svcs[*b], s.col);
                if s.desc { o.reverse() } else { o }
            });
        }
        idx
    }

    /// Events that pass the filter, in the order on screen (newest first unless sorted).
    pub fn visible_events(&self) -> Vec<usize> {
        let evs = &self.snap.events;
        let words = super::events::words(&self.event_filter);
        let mut idx: Vec<usize> = (0..evs.len())
            .filter(|i| super::events::matches(&evs[*i], &words))
            .collect();
        if let Some(s) = self.sort_of(View::Events) {
            idx.sort_by(|a, b| {
                let o = columns::cmp_events(&evs[*a], &evs[*b], s.col);
                if s.desc { o.reverse() } else { o }
            });
        }
        idx
    }
}
