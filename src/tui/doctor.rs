//! The console's copy of the doctor's findings: filled check by check as the run reports
//! them, read by the Doctor view and by the Overview (which lists what fails).

use crate::service::handle::{Check, Status};

use super::state::Command;

#[derive(Debug, Default)]
pub struct DoctorState {
    /// In their stable order (scope, then check), as they have arrived.
    pub checks: Vec<Check>,
    pub running: bool,
    /// When the last run finished (ms).
    pub finished_at: Option<i64>,
}

impl DoctorState {
    /// A new run, unless one is going: the old results stay until the new ones replace them.
    pub fn start(&mut self) -> Option<Command> {
        if self.running {
            return None;
        }
        self.running = true;
        Some(Command::Doctor)
    }

    /// One finished check: replaces the previous run's result for the same id.
    pub fn add(&mut self, c: Check) {
        match self.checks.iter_mut().find(|x| x.id == c.id) {
            Some(slot) => *slot = c,
            None => {
                let at = self.checks.partition_point(|x| x.order < c.order);
                self.checks.insert(at, c);
            }
        }
    }

    pub fn finish(&mut self, now_ms: i64) {
        self.running = false;
        self.finished_at = Some(now_ms);
    }

    /// Checks that failed, for the Overview.
    pub fn failing(&self) -> impl Iterator<Item = &Check> {
        self.checks.iter().filter(|c| c.status == Status::Fail)
    }

    pub fn count(&self, s: Status) -> usize {
        self.checks.iter().filter(|c| c.status == s).count()
    }
}
