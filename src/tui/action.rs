//! What a key asks for. Keys map to actions through the keymap (data), and only
//! `App::update` turns actions into state changes.

use serde::Deserialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum Action {
    Help,
    Quit,
    Command,
    Overview,
    Services,
    Volumes,
    Jobs,
    Logs,
    Doctor,
    /// The audit log.
    Events,
    /// The Backups view.
    Backups,
    /// Volumes: the selected volume's clone family.
    Family,
    /// Family view: go to the selected member in the Volumes view.
    Jump,
    /// Read the database now.
    Refresh,
    /// Doctor view: run every check again.
    RerunDoctor,
    Up,
    Down,
    Top,
    Bottom,
    PageUp,
    PageDown,
    Back,
    Filter,
    Detail,
    /// Sort by the next column.
    Sort,
    /// Reverse the sort.
    SortReverse,
    NewVolume,
    Snapshot,
    CloneVolume,
    Flatten,
    /// Compare the selected volume's data with a snapshot (a job that reads only).
    Verify,
    Extend,
    Delete,
    /// Move the selected volume to another backend (a job: copy, compare, switch).
    Migrate,
    CancelJob,
    /// Jobs view: queue a failed or cancelled job again.
    RetryJob,
    /// Volumes view: set the selected volume's state by hand.
    ResetState,
    /// Volumes view: break a stale lock on the selected volume.
    BreakLock,
    /// Volumes view: forget the selected volume, keep its image.
    Unmanage,
    /// Logs view: show or hide the target list (with per-target levels).
    LogTargets,
    /// Logs view: more detail for the selected target.
    LogMore,
    /// Logs view: less detail for the selected target.
    LogLess,
}

impl Action {
    /// Every action an operator can trigger: each must have a key (tested).
    pub fn user_facing() -> &'static [Action] {
        use Action::*;
        &[
            Help,
            Quit,
            Command,
            Overview,
            Services,
            Volumes,
            Jobs,
            Logs,
            Doctor,
            Events,
            Backups,
            Family,
            Jump,
            Refresh,
            RerunDoctor,
            Up,
            Down,
            Top,
            Bottom,
            PageUp,
            PageDown,
            Back,
            Filter,
            Detail,
            Sort,
            SortReverse,
            NewVolume,
            Snapshot,
            CloneVolume,
            Flatten,
            Verify,
            Extend,
            Delete,
            Migrate,
            CancelJob,
            RetryJob,
            ResetState,
            BreakLock,
            Unmanage,
        ]
    }
}
